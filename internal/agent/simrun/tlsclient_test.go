package simrun

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
)

func clientTLS(b *devcerts.Bundle) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(b.ClientCertPEM, b.ClientKeyPEM)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.CACertPEM)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
