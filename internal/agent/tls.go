package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// ServerTLSConfig is the agent's TLS configuration: TLS 1.2 or later, a client certificate signed
// by the CA in clientCAPEM required on every connection, and, when allowedClients is not empty, the
// client certificate's Subject common name or one of its DNS names must be in that list. Refusals
// happen in the handshake, before any request reaches the handler.
func ServerTLSConfig(certPEM, keyPEM, clientCAPEM []byte, allowedClients []string) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent TLS: server certificate and key: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(clientCAPEM) {
		return nil, errors.New("agent TLS: client CA: no PEM certificate found")
	}
	allowed := map[string]bool{}
	for _, c := range allowedClients {
		if c = strings.TrimSpace(c); c != "" {
			allowed[strings.ToLower(c)] = true
		}
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	if len(allowed) > 0 {
		// VerifyConnection runs after the chain was verified, on every handshake, resumed ones too.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			leaf := cs.PeerCertificates[0]
			if allowed[strings.ToLower(leaf.Subject.CommonName)] {
				return nil
			}
			for _, name := range leaf.DNSNames {
				if allowed[strings.ToLower(name)] {
					return nil
				}
			}
			return fmt.Errorf("client certificate %q is not in the allowed clients", leaf.Subject.CommonName)
		}
	}
	return cfg, nil
}
