// Package devcerts makes a throw-away certificate authority with a server and a client certificate
// for the agent's mutual TLS: for tests, the demo and `lync-agent certs`. Production deployments use
// certificates from the organisation's own CA; nothing here is meant to outlive a lab.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// File names WriteDir writes and LoadDir-style readers expect.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	ClientCertFile = "client.crt"
	ClientKeyFile  = "client.key"
)

// DefaultClientCN is the client certificate's common name when none is given: the operator's.
const DefaultClientCN = "poolpair-operator"

// Validity of the generated certificates. Long enough for a lab, short enough to be noticed.
const (
	caValidity   = 2 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so a peer with a slightly slow clock accepts a fresh certificate.
	clockSkew = time.Hour
)

// Bundle is a development CA with one server and one client certificate, all PEM encoded.
type Bundle struct {
	CACertPEM     []byte
	CAKeyPEM      []byte
	ServerCertPEM []byte
	ServerKeyPEM  []byte
	ClientCertPEM []byte
	ClientKeyPEM  []byte
}

// Generate creates a CA, a server certificate valid for hosts (DNS names and IP addresses) and a
// client certificate whose Subject CommonName is clientCN (DefaultClientCN when empty). Keys are
// ECDSA P-256.
func Generate(hosts []string, clientCN string) (*Bundle, error) {
	if len(hosts) == 0 {
		return nil, errors.New("devcerts: at least one host (DNS name or IP address) is required")
	}
	for _, h := range hosts {
		if err := ValidateHost(h); err != nil {
			return nil, err
		}
	}
	if clientCN == "" {
		clientCN = DefaultClientCN
	}
	if err := validateClientName(clientCN); err != nil {
		return nil, err
	}
	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "lync-agent development CA", Organization: []string{"poolpair-operator"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caCert, caDER, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	b := &Bundle{CACertPEM: certPEM(caDER)}
	if b.CAKeyPEM, err = keyPEM(caKey); err != nil {
		return nil, err
	}
	if b.ServerCertPEM, b.ServerKeyPEM, err = issue(caCert, caKey, serverTemplate(hosts)); err != nil {
		return nil, err
	}
	if b.ClientCertPEM, b.ClientKeyPEM, err = issue(caCert, caKey, clientTemplate(clientCN)); err != nil {
		return nil, err
	}
	return b, nil
}

// IssueClient signs another client certificate with the bundle's CA, for example one whose common
// name an agent does not allow.
func (b *Bundle) IssueClient(cn string) (certPEMBytes, keyPEMBytes []byte, err error) {
	caCert, caKey, err := b.ca()
	if err != nil {
		return nil, nil, err
	}
	return issue(caCert, caKey, clientTemplate(cn))
}

// IssueServer signs another server certificate with the bundle's CA for hosts.
func (b *Bundle) IssueServer(hosts []string) (certPEMBytes, keyPEMBytes []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("devcerts: at least one host is required")
	}
	caCert, caKey, err := b.ca()
	if err != nil {
		return nil, nil, err
	}
	return issue(caCert, caKey, serverTemplate(hosts))
}

// WriteDir writes the bundle's six files into dir (created if missing). Private keys are written
// with mode 0600, certificates 0644.
func (b *Bundle) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CACertFile, b.CACertPEM, 0o644},
		{CAKeyFile, b.CAKeyPEM, 0o600},
		{ServerCertFile, b.ServerCertPEM, 0o644},
		{ServerKeyFile, b.ServerKeyPEM, 0o600},
		{ClientCertFile, b.ClientCertPEM, 0o644},
		{ClientKeyFile, b.ClientKeyPEM, 0o600},
	}
	for _, f := range files {
		if len(f.data) == 0 {
			return fmt.Errorf("devcerts: %s: bundle has no data for it", f.name)
		}
		path := filepath.Join(dir, f.name)
		// Remove first so an existing file's looser mode is not kept by WriteFile.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("devcerts: %w", err)
		}
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return fmt.Errorf("devcerts: %w", err)
		}
	}
	return nil
}

// ParseHosts splits a comma-separated host list, dropping blanks.
func ParseHosts(list string) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(list, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if err := ValidateHost(h); err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, errors.New("no host name or IP address given")
	}
	return hosts, nil
}

// hostLabel is one label of a DNS name (RFC 1123): letters, digits and inner hyphens.
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$`)

// ValidateHost accepts an IP address or a DNS name of RFC 1123 labels (localhost, fe01.contoso.com).
// A certificate for anything else could never match the name a client connects to.
func ValidateHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	name := strings.TrimSuffix(h, ".")
	ok := name != "" && len(name) <= 253
	for _, label := range strings.Split(name, ".") {
		ok = ok && hostLabel.MatchString(label)
	}
	if !ok {
		return fmt.Errorf("%q is neither an IP address nor a DNS name (letters, digits and hyphens in dot-separated labels, such as fe01.pool01.contoso.com)", h)
	}
	return nil
}

// validateClientName refuses a client name that --allowed-clients could not list.
func validateClientName(cn string) error {
	if strings.ContainsAny(cn, ",") || strings.TrimSpace(cn) != cn || len(cn) > 64 {
		return fmt.Errorf("client certificate name %q: at most 64 characters, no comma, no leading or trailing space (it goes in --allowed-clients)", cn)
	}
	for _, r := range cn {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("client certificate name %q: control characters are not allowed", cn)
		}
	}
	return nil
}

func serverTemplate(hosts []string) *x509.Certificate {
	t := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"poolpair-operator"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	return t
}

func clientTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"poolpair-operator"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func issue(caCert *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) ([]byte, []byte, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(leafValidity)
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	_, der, err := sign(tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM(der), kp, nil
}

func (b *Bundle) ca() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(b.CACertPEM)
	kb, _ := pem.Decode(b.CAKeyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("devcerts: bundle has no CA certificate or key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: CA key: %w", err)
	}
	return cert, key, nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: serial: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: sign %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: %w", err)
	}
	return cert, der, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcerts: key: %w", err)
	}
	return k, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("devcerts: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}
