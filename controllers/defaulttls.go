package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// defaultTLS is the manager's own client certificate for the agents (--agent-tls-dir), kept
// current by controller-runtime's certwatcher: a rotated certificate is used from the next
// request on, without a restart and without reading the files on every pass. ca.crt is read
// again whenever the certificate changes (cert-manager renews both in one Secret update).
type defaultTLS struct {
	dir string
	// ctx bounds the watcher; the manager's.
	ctx context.Context
	// interval is the watcher's poll, beside its file notifications (0: certwatcher's default).
	interval time.Duration

	mu       sync.Mutex // guards watcher creation
	watcher  *certwatcher.CertWatcher
	material atomic.Pointer[TLSMaterial]
}

// get returns the current material. Until the files exist (a Secret volume marked optional may
// fill in later) each call tries to start the watcher again.
func (d *defaultTLS) get() (TLSMaterial, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watcher == nil {
		if err := d.start(); err != nil {
			return TLSMaterial{}, err
		}
	}
	return *d.material.Load(), nil
}

func (d *defaultTLS) start() error {
	certPath, keyPath := filepath.Join(d.dir, tlsCertKey), filepath.Join(d.dir, tlsKeyKey)
	for _, path := range []string{certPath, keyPath, filepath.Join(d.dir, tlsCAKey)} {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("reading the manager's agent client certificate: %w", err)
		}
	}
	w, err := certwatcher.New(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("reading the manager's agent client certificate in %s: %w", d.dir, err)
	}
	if d.interval > 0 {
		w = w.WithWatchInterval(d.interval)
	}
	cert, err := w.GetCertificate(nil)
	if err != nil {
		return err
	}
	m, err := d.materialFor(*cert)
	if err != nil {
		return err
	}
	d.material.Store(&m)
	w.RegisterCallback(d.rotated)
	go func() {
		if err := w.Start(d.ctx); err != nil {
			ctrl.Log.WithName("agent-tls").Error(err, "watching the manager's agent client certificate", "dir", d.dir)
		}
	}()
	d.watcher = w
	return nil
}

// rotated takes a new certificate the watcher read; a CA file that cannot be read keeps the
// previous material, and the next change tries again.
func (d *defaultTLS) rotated(cert tls.Certificate) {
	log := ctrl.Log.WithName("agent-tls")
	m, err := d.materialFor(cert)
	if err != nil {
		log.Error(err, "the rotated agent client certificate is not used; the previous one stays", "dir", d.dir)
		return
	}
	if old := d.material.Load(); old != nil && string(old.CertPEM) == string(m.CertPEM) && string(old.CAPEM) == string(m.CAPEM) {
		return
	}
	d.material.Store(&m)
	if cert.Leaf != nil {
		log.Info("using the rotated agent client certificate", "subject", cert.Leaf.Subject.String(), "serial", cert.Leaf.SerialNumber.String(), "notAfter", cert.Leaf.NotAfter)
	}
}

// materialFor turns the watcher's certificate back into PEM (the agent clients are built and
// cached from PEM) with the CA file beside it.
func (d *defaultTLS) materialFor(cert tls.Certificate) (TLSMaterial, error) {
	ca, err := os.ReadFile(filepath.Join(d.dir, tlsCAKey))
	if err != nil {
		return TLSMaterial{}, fmt.Errorf("reading the CA of the agents' certificates: %w", err)
	}
	var m TLSMaterial
	for _, der := range cert.Certificate {
		m.CertPEM = append(m.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return TLSMaterial{}, fmt.Errorf("encoding the agent client key: %w", err)
	}
	m.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	m.CAPEM = ca
	return m, nil
}

// mayUseDefaultTLS: PoolPairs of namespace may drive the agents with the manager's own
// certificate. Whoever can create a PoolPair there can run Bootstrapper.exe and failover
// cmdlets on every Front End server that trusts it.
func (r *PoolPairReconciler) mayUseDefaultTLS(namespace string) bool {
	return slices.Contains(r.DefaultTLSNamespaces, "*") || slices.Contains(r.DefaultTLSNamespaces, namespace)
}
