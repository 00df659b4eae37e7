package agent

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/certinfo"
)

// DefaultTLSPollInterval is how often the agent looks at its TLS files for a change.
const DefaultTLSPollInterval = 10 * time.Second

// settleWindow: a file modified this shortly before it was looked at may be rewritten again
// without its size or modification time changing (timestamps are coarse: a few milliseconds on
// NTFS and ext4 in practice, 2 s on FAT), so it is read again at the next poll.
const settleWindow = 2 * time.Second

// TLSFiles are the agent's TLS files and the client names it lets in (--allowed-clients, which
// do not change while it runs).
type TLSFiles struct {
	CertFile       string // --tls-cert
	KeyFile        string // --tls-key
	ClientCAFile   string // --client-ca
	AllowedClients []string
}

// TLSReloader gives the agent a TLS configuration that follows its files: every new handshake
// uses the latest files that passed ServerTLSConfig's checks, while connections already open keep
// the configuration they began with. Files that fail the checks leave the previous configuration
// in use, so a half-written or wrong file never takes the agent down.
type TLSReloader struct {
	files   [3]tlsFile // certificate, key, client CA: the order of the contents read
	allowed []string
	logger  *slog.Logger
	current atomic.Pointer[tls.Config]
	watch   watch // Run's alone after NewTLSReloader

	mu     sync.Mutex           // serialises Reload; guards loaded and logged
	loaded [3][sha256.Size]byte // the contents' hashes of the files current was built from
	logged string               // the refusal logged last, so that one that persists is logged once
}

// tlsFile is one TLS file and the flag that names it in messages.
type tlsFile struct{ flag, path string }

// loadedTLS is a configuration built from files that passed the checks, and what to log about it.
type loadedTLS struct {
	config  *tls.Config
	leaf    *x509.Certificate
	caNames string
}

// NewTLSReloader loads the files; they must pass ServerTLSConfig's checks, and a refusal is
// ServerTLSConfig's (or names the file that cannot be read).
func NewTLSReloader(files TLSFiles, logger *slog.Logger) (*TLSReloader, error) {
	if logger == nil {
		logger = slog.Default()
	}
	r := &TLSReloader{
		files:   [3]tlsFile{{"tls-cert", files.CertFile}, {"tls-key", files.KeyFile}, {"client-ca", files.ClientCAFile}},
		allowed: files.AllowedClients,
		logger:  logger,
	}
	// Stamps taken before the read: a change during it shows at the first poll.
	now, st := time.Now(), r.stat()
	data, sums, err := r.read()
	if err != nil {
		return nil, err
	}
	l, err := buildTLS(data, r.allowed)
	if err != nil {
		return nil, err
	}
	r.current.Store(l.config)
	r.loaded = sums
	r.watch.update(st, now, nil)
	return r, nil
}

// Config is the tls.Config to serve with: it hands each handshake the configuration in use then.
func (r *TLSReloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current.Load(), nil
		},
	}
}

// Reload reads the files and, when their content differs from the configuration in use and
// passes the checks, makes new handshakes use them, and logs the new certificate. Otherwise it
// returns why, keeps the configuration in use, and logs the refusal unless it logged the same
// one last.
func (r *TLSReloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, sums, err := r.read()
	if err != nil {
		return r.refuse(err)
	}
	if sums == r.loaded {
		// Back to the files in use (or never left them): a refusal seen before is news again.
		r.logged = ""
		return nil
	}
	l, err := buildTLS(data, r.allowed)
	if err != nil {
		return r.refuse(err)
	}
	r.current.Store(l.config)
	r.loaded, r.logged = sums, ""
	r.logger.Info("TLS files reloaded: new connections use them", "serverCert", certinfo.Describe(l.leaf),
		"notAfter", certinfo.Date(l.leaf.NotAfter), "clientCAs", l.caNames)
	return nil
}

// Run reloads the files when they change, looking every interval (DefaultTLSPollInterval when
// not positive), until ctx ends. It polls rather than asks for file system notifications, which
// miss some of the ways scripts replace files on Windows. Run one Run at a time.
func (r *TLSReloader) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultTLSPollInterval
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		now, st := time.Now(), r.stat()
		if r.watch.changed(st) {
			r.watch.update(st, now, r.Reload())
		}
	}
}

// read reads the three files and hashes them.
func (r *TLSReloader) read() (data [3][]byte, sums [3][sha256.Size]byte, err error) {
	for i, f := range r.files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return data, sums, &fileError{flag: f.flag, err: fmt.Errorf("--%s: %w", f.flag, err)}
		}
		data[i], sums[i] = b, sha256.Sum256(b)
	}
	return data, sums, nil
}

// buildTLS runs ServerTLSConfig's checks on the contents of the certificate, key and client CA
// files, and builds the configuration.
func buildTLS(data [3][]byte, allowed []string) (*loadedTLS, error) {
	cert, err := loadServerCert(data[0], data[1])
	if err != nil {
		return nil, err
	}
	v, err := newClientVerifier(data[2], allowed)
	if err != nil {
		return nil, err
	}
	leaf := cert.Leaf
	if leaf == nil { // GODEBUG x509keypairleaf=0
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, &fileError{flag: "tls-cert", err: fmt.Errorf("agent TLS: server certificate (--tls-cert): %w", err)}
		}
	}
	return &loadedTLS{config: serverConfig(cert, v), leaf: leaf, caNames: v.caNames}, nil
}

// refuse logs why the files were refused, once while the same refusal persists, and returns it.
func (r *TLSReloader) refuse(err error) error {
	file := r.blame(err)
	if key := file + "\n" + err.Error(); key != r.logged {
		r.logged = key
		r.logger.Error("TLS files not reloaded: the agent keeps serving with the previous ones and reads them again when they change",
			"file", file, "reason", err.Error())
	}
	return err
}

// blame names the file a refusal is about, with its flag.
func (r *TLSReloader) blame(err error) string {
	var fe *fileError
	if errors.As(err, &fe) {
		for _, f := range r.files {
			if f.flag == fe.flag {
				return "--" + f.flag + " " + f.path
			}
		}
	}
	return "--tls-cert, --tls-key or --client-ca"
}

// stat looks at the three files without reading them.
func (r *TLSReloader) stat() stamps {
	var st stamps
	for i, f := range r.files {
		if fi, err := os.Stat(f.path); err == nil {
			st[i] = fileStamp{modTime: fi.ModTime(), size: fi.Size(), ok: true}
		}
	}
	return st
}

// fileStamp is what a look at a file sees without reading it; ok is false when it could not look.
type fileStamp struct {
	modTime time.Time
	size    int64
	ok      bool
}

// stamps are the three files' stamps, in the reloader's order.
type stamps [3]fileStamp

func (s stamps) equal(o stamps) bool {
	for i := range s {
		if s[i].ok != o[i].ok || s[i].size != o[i].size || !s[i].modTime.Equal(o[i].modTime) {
			return false
		}
	}
	return true
}

// recent tells whether a file was modified within settleWindow of now.
func (s stamps) recent(now time.Time) bool {
	for _, f := range s {
		if f.ok && now.Sub(f.modTime) < settleWindow {
			return true
		}
	}
	return false
}

// watch is what Run knows of the files between polls.
type watch struct {
	last stamps
	// recheck: read the files at the next poll even if their stamps stay the same, because they
	// were too fresh to trust the stamps or could not be read (a file locked or missing while a
	// script replaces it may show no change once it is back).
	recheck bool
}

func (w *watch) changed(st stamps) bool { return w.recheck || !st.equal(w.last) }

// update records a look at the files, taken at now, after which reading them gave err.
func (w *watch) update(st stamps, now time.Time, err error) {
	var pathErr *fs.PathError
	w.last, w.recheck = st, st.recent(now) || errors.As(err, &pathErr)
}
