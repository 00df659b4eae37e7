package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/lync-dr/poolpair-operator/internal/certinfo"
)

// ServerTLSConfig is the agent's TLS configuration: TLS 1.2 or later, a client certificate signed
// by the CA in clientCAPEM, valid now and for Client Authentication, required on every connection,
// and, when allowedClients is not empty, the client certificate's Subject common name or one of its
// DNS names must be in that list. Refusals happen in the handshake, before any request reaches the
// handler, and say which certificate was refused, why, and what to do (net/http logs them; Serve
// turns those lines into "TLS handshake refused" records).
//
// It refuses a server certificate that is not for Server Authentication (the operator would refuse
// it) and a client CA file holding a certificate that is not a CA's.
func ServerTLSConfig(certPEM, keyPEM, clientCAPEM []byte, allowedClients []string) (*tls.Config, error) {
	cert, err := loadServerCert(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	v, err := newClientVerifier(clientCAPEM, allowedClients)
	if err != nil {
		return nil, err
	}
	return serverConfig(cert, v), nil
}

// serverConfig is the agent's tls.Config for one server certificate and client verifier.
func serverConfig(cert tls.Certificate, v *clientVerifier) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// RequireAnyClientCert rather than RequireAndVerifyClientCert: the agent verifies the
		// client's chain itself, so that a refusal names the certificate and says what to do
		// instead of crypto/tls's bare x509 error. ClientCAs stays empty on purpose: a Go client
		// sends no certificate at all when the server's list of acceptable CAs does not name its
		// issuer, and the refusal could then not say which certificate is wrong.
		ClientAuth: tls.RequireAnyClientCert,
		// VerifyPeerCertificate runs on full handshakes only; VerifyConnection on every one,
		// resumed ones too (see verifyConnection).
		VerifyPeerCertificate: v.verifyPeerCertificate,
		VerifyConnection:      v.verifyConnection,
	}
}

// fileError is a refusal of one of the agent's TLS files. Its message is its cause's, unchanged;
// flag tells the reloader which file to name in its log.
type fileError struct {
	flag string // "tls-cert", "tls-key" or "client-ca"
	err  error
}

func (e *fileError) Error() string { return e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// loadServerCert reads the server certificate and key and checks the certificate.
func loadServerCert(certPEM, keyPEM []byte) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &fileError{flag: pairFault(certPEM), err: fmt.Errorf("agent TLS: server certificate and key: %w", err)}
	}
	if err := checkServerCert(cert); err != nil {
		return tls.Certificate{}, &fileError{flag: "tls-cert", err: err}
	}
	return cert, nil
}

// pairFault names the file a refused certificate and key pair is wrong in: the certificate file
// when its first certificate cannot be read, else the key file (unreadable, or the key of another
// certificate).
func pairFault(certPEM []byte) string {
	for rest := certPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return "tls-cert"
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				return "tls-cert"
			}
			return "tls-key"
		}
	}
}

// newClientVerifier checks the client CA file and builds the verifier of client certificates.
func newClientVerifier(clientCAPEM []byte, allowedClients []string) (*clientVerifier, error) {
	cas, err := parseClientCAs(clientCAPEM)
	if err != nil {
		return nil, &fileError{flag: "client-ca", err: err}
	}
	v := &clientVerifier{roots: x509.NewCertPool(), allowed: map[string]bool{}}
	var caNames []string
	for _, ca := range cas {
		v.roots.AddCert(ca)
		caNames = append(caNames, fmt.Sprintf("%q", certinfo.Name(ca.Subject)))
	}
	v.caNames = strings.Join(caNames, ", ")
	var listed []string
	for _, c := range allowedClients {
		if c = strings.TrimSpace(c); c != "" {
			v.allowed[strings.ToLower(c)] = true
			listed = append(listed, c)
		}
	}
	v.allowedList = strings.Join(listed, ", ")
	return v, nil
}

// checkServerCert refuses a server certificate whose extended key usages leave out Server
// Authentication: every TLS client, the operator included, refuses it.
func checkServerCert(cert tls.Certificate) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("agent TLS: server certificate (--tls-cert): %w", err)
		}
	}
	if !certinfo.AllowsUsage(leaf, x509.ExtKeyUsageServerAuth) {
		return fmt.Errorf("agent TLS: server certificate (--tls-cert) %s lacks the Server Authentication extended key usage (it has %s): "+
			"the operator refuses it; issue it from a template with Server Authentication (1.3.6.1.5.5.7.3.1), such as Web Server",
			certinfo.Describe(leaf), certinfo.UsageNames(leaf))
	}
	return nil
}

// parseClientCAs reads every certificate of the --client-ca file; each must be a CA's.
func parseClientCAs(data []byte) ([]*x509.Certificate, error) {
	var cas []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("agent TLS: client CA (--client-ca): certificate %d: %w", len(cas)+1, err)
		}
		// A version 1 certificate has no basic constraints at all: old roots are like that.
		if !c.IsCA && c.Version >= 3 {
			return nil, fmt.Errorf("agent TLS: client CA (--client-ca): certificate %s is not a CA certificate (its basic constraints do not say CA): "+
				"--client-ca takes the certificate of the CA that issues the operator's client certificate, not a client certificate", certinfo.Describe(c))
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("agent TLS: client CA (--client-ca): no PEM certificate found")
	}
	return cas, nil
}

// clientVerifier checks a client's certificate chain and name.
type clientVerifier struct {
	roots       *x509.CertPool
	caNames     string // the client CAs' subjects, for messages
	allowed     map[string]bool
	allowedList string // --allowed-clients as given, for messages
	// now is the time certificates are checked at; time.Now when nil.
	now func() time.Time
}

// verifyPeerCertificate checks the chain a client sent in a full handshake.
func (v *clientVerifier) verifyPeerCertificate(raw [][]byte, _ [][]*x509.Certificate) error {
	certs := make([]*x509.Certificate, 0, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("client certificate: certificate %d of the chain the client sent cannot be parsed: %v", i+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return errNoClientCert
	}
	return v.verifyChain(certs)
}

var errNoClientCert = errors.New("client certificate: the client sent none: the agent requires one signed by the CA in --client-ca")

// verifyConnection runs after verifyPeerCertificate on a full handshake and alone on a resumed
// one (whose certificates were verified when the session began, but may have expired since, or
// come from a session another configuration issued): it checks the chain again then. It checks
// the client's name, and marks the certificate as verified for the handler (verifiedClient).
func (v *clientVerifier) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoClientCert
	}
	if cs.DidResume {
		if err := v.verifyChain(cs.PeerCertificates); err != nil {
			return err
		}
	}
	leaf := cs.PeerCertificates[0]
	if err := v.checkAllowed(leaf); err != nil {
		return err
	}
	markVerified(leaf)
	return nil
}

// verifyChain verifies certs (the leaf, then the intermediates the client sent) against the client
// CAs, for Client Authentication, and explains a refusal.
func (v *clientVerifier) verifyChain(certs []*x509.Certificate) error {
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	now := time.Now()
	if v.now != nil {
		now = v.now()
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err == nil {
		return nil
	}
	return v.explain(leaf, now, err)
}

// explain turns a verification error into what is wrong with which certificate and what to do.
func (v *clientVerifier) explain(leaf *x509.Certificate, now time.Time, err error) error {
	who := "client certificate " + certinfo.Describe(leaf)
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &invalid) && invalid.Cert != nil:
		c := invalid.Cert
		subject := who
		if !c.Equal(leaf) {
			subject = fmt.Sprintf("%s: the CA certificate %s in its chain", who, certinfo.Describe(c))
		}
		switch invalid.Reason {
		case x509.Expired:
			if now.Before(c.NotBefore) {
				return fmt.Errorf("%s is not valid before %s: check the clocks of this server and of the client", subject, certinfo.Date(c.NotBefore))
			}
			return fmt.Errorf("%s expired on %s: issue a new one from the CA in --client-ca", subject, certinfo.Date(c.NotAfter))
		case x509.IncompatibleUsage:
			if certinfo.AllowsUsage(leaf, x509.ExtKeyUsageClientAuth) {
				return fmt.Errorf("%s: a CA certificate in its chain does not allow Client Authentication (extended key usage): issue it from a CA that may issue client certificates", who)
			}
			return fmt.Errorf("%s lacks the Client Authentication extended key usage (it has %s): issue it from a template with Client Authentication (1.3.6.1.5.5.7.3.2)",
				who, certinfo.UsageNames(leaf))
		case x509.NotAuthorizedToSign:
			return fmt.Errorf("%s is not signed by a CA: %s is not a CA certificate", who, certinfo.Describe(c))
		}
	case errors.As(err, &unknown):
		return fmt.Errorf("%s is not signed by the CA in --client-ca (%s): issue it from that CA, or give --client-ca the CA that issued it "+
			"(the client must send any intermediate CA certificate with its own)", who, v.caNames)
	}
	return fmt.Errorf("%s is refused: %v", who, err)
}

// checkAllowed refuses a certificate whose common name and DNS names are not in --allowed-clients
// (any is allowed when the list is empty).
func (v *clientVerifier) checkAllowed(leaf *x509.Certificate) error {
	if len(v.allowed) == 0 || v.allowed[strings.ToLower(leaf.Subject.CommonName)] {
		return nil
	}
	for _, name := range leaf.DNSNames {
		if v.allowed[strings.ToLower(name)] {
			return nil
		}
	}
	if len(leaf.DNSNames) == 0 {
		return fmt.Errorf("client certificate %s is not in --allowed-clients (%s): add %q there if this client may use the agent",
			certinfo.Describe(leaf), v.allowedList, leaf.Subject.CommonName)
	}
	return fmt.Errorf("client certificate %s is not in --allowed-clients (%s) by its common name or its DNS names (%s): "+
		"add one of them there if this client may use the agent", certinfo.Describe(leaf), v.allowedList, strings.Join(leaf.DNSNames, ", "))
}

// verified holds the client certificates verifyConnection passed, by identity: the
// *x509.Certificate in the connection's state, which every request's r.TLS.PeerCertificates
// shares. An entry goes when its certificate is garbage collected.
var verified sync.Map // weak.Pointer[x509.Certificate] -> struct{}

func markVerified(c *x509.Certificate) {
	p := weak.Make(c)
	if _, loaded := verified.LoadOrStore(p, struct{}{}); !loaded {
		runtime.AddCleanup(c, func(p weak.Pointer[x509.Certificate]) { verified.Delete(p) }, p)
	}
}

// verifiedClient returns the common name of the verified client certificate of a connection, and
// false when there is none. ServerTLSConfig verifies the client's chain itself, which leaves
// cs.VerifiedChains empty, so a certificate counts as verified when crypto/tls verified it
// (VerifiedChains, as under tls.RequireAndVerifyClientCert) or when ServerTLSConfig's checks
// passed this very certificate in the handshake. One that was merely presented (a configuration
// with tls.RequireAnyClientCert and no checks of its own) does not count.
func verifiedClient(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	leaf := cs.PeerCertificates[0]
	if len(cs.VerifiedChains) == 0 {
		if _, ok := verified.Load(weak.Make(leaf)); !ok {
			return "", false
		}
	}
	return leaf.Subject.CommonName, true
}
