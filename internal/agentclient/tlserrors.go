package agentclient

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/certinfo"
)

// TLSError is a TLS handshake with an agent that failed over a certificate: the agent's, which
// this client refused, or this client's, which the agent refused. Its message says which
// certificate, what is wrong with it and what to do; Err is crypto/tls's error. It comes wrapped
// with ErrUnauthorized: a misconfiguration, not an agent that is down.
type TLSError struct {
	Problem string
	Err     error
}

func (e *TLSError) Error() string { return e.Problem }
func (e *TLSError) Unwrap() error { return e.Err }

// tlsIdentity is what the client knows of its own certificates, to explain a handshake failure.
type tlsIdentity struct {
	// own is this client's certificate; nil when it could not be parsed.
	own *x509.Certificate
	// cas name the CAs this client trusts for agents' certificates ("CN=Contoso CA").
	cas []string
}

func newTLSIdentity(own *x509.Certificate, caPEM []byte) tlsIdentity {
	id := tlsIdentity{own: own}
	for rest := caPEM; ; {
		var c *x509.Certificate
		c, rest = nextCert(rest)
		if c == nil {
			break
		}
		id.cas = append(id.cas, certinfo.Name(c.Subject))
	}
	return id
}

// operatorCA is where the operator's trust of agents comes from, for messages.
const operatorCA = "the ca.crt of the operator's agent TLS Secret or --agent-tls-dir"

// operatorClient is where the operator's client certificate comes from, for messages.
const operatorClient = "tls.crt and tls.key of the operator's agent TLS Secret or --agent-tls-dir"

// explain says what went wrong in a TLS handshake that isAuthFailure reported.
func (id tlsIdentity) explain(err error) *TLSError {
	return &TLSError{Problem: id.problem(err, time.Now()), Err: err}
}

func (id tlsIdentity) problem(err error, now time.Time) string {
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var opErr *net.OpError
	switch {
	case errors.As(err, &hostErr) && hostErr.Certificate != nil:
		c, host := hostErr.Certificate, hostErr.Host
		where := "DNS names"
		if net.ParseIP(host) != nil {
			where = "IP addresses"
		}
		names := certinfo.Hosts(c)
		if len(names) == 0 {
			return fmt.Sprintf("the agent's server certificate %s names the server only in its subject common name, which TLS clients no longer accept: "+
				"issue it with %s among its %s (subject alternative names)", certinfo.Describe(c), host, where)
		}
		return fmt.Sprintf("the agent's server certificate %s is not valid for %s (it names %s): issue it with %s among its %s (subject alternative names)",
			certinfo.Describe(c), host, strings.Join(names, ", "), host, where)
	case errors.As(err, &invalid) && invalid.Cert != nil:
		c := invalid.Cert
		switch invalid.Reason {
		case x509.Expired:
			if now.Before(c.NotBefore) {
				return fmt.Sprintf("the agent's server certificate %s is not valid before %s: check the clocks of the agent's server and of the operator's node",
					certinfo.Describe(c), certinfo.Date(c.NotBefore))
			}
			return fmt.Sprintf("the agent's server certificate %s expired on %s: issue a new one and give it to the agent (--tls-cert, --tls-key)",
				certinfo.Describe(c), certinfo.Date(c.NotAfter))
		case x509.IncompatibleUsage:
			return fmt.Sprintf("the agent's server certificate %s lacks the Server Authentication extended key usage (it has %s): "+
				"issue it from a template with Server Authentication (1.3.6.1.5.5.7.3.1), such as Web Server", certinfo.Describe(c), certinfo.UsageNames(c))
		}
	case errors.As(err, &unknown) && unknown.Cert != nil:
		c := unknown.Cert
		quoted := make([]string, len(id.cas))
		for i, ca := range id.cas {
			quoted[i] = fmt.Sprintf("%q", ca)
		}
		if slices.Contains(id.cas, certinfo.Name(c.Issuer)) {
			return fmt.Sprintf("the agent's server certificate %s is signed by another CA than the one the operator trusts under the same name (%s, %s): "+
				"the CA was created again or renewed with a new key; put the CA certificate that issued it in that ca.crt", certinfo.Describe(c), strings.Join(quoted, ", "), operatorCA)
		}
		return fmt.Sprintf("the agent's server certificate %s is not signed by a CA the operator trusts (%s, in %s): "+
			"issue it from that CA, or add the CA that issued it (%q) to that ca.crt", certinfo.Describe(c), strings.Join(quoted, ", "), operatorCA, certinfo.Name(c.Issuer))
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return id.refused(opErr.Err.Error(), now)
	}
	return "TLS handshake with the agent failed: " + err.Error()
}

// refusedAlerts are the TLS alerts an agent sends when it refuses this client's certificate.
var refusedAlerts = []string{
	"tls: bad certificate", "tls: unsupported certificate", "tls: certificate revoked", "tls: certificate expired",
	"tls: certificate unknown", "tls: unknown certificate authority", "tls: access denied", "tls: certificate required",
}

// refused explains an alert from the agent: what this client can tell about its own certificate,
// and otherwise where the agent's reason is.
func (id tlsIdentity) refused(alert string, now time.Time) string {
	if !slices.Contains(refusedAlerts, alert) {
		return "the agent refused the TLS handshake (remote error: " + alert + ")"
	}
	c := id.own
	if c == nil {
		return "the agent refused the operator's client certificate (remote error: " + alert + "): check the agent's --client-ca and --allowed-clients"
	}
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("the agent refused the operator's client certificate %s: it expired on %s; issue a new one (%s)",
			certinfo.Describe(c), certinfo.Date(c.NotAfter), operatorClient)
	case now.Before(c.NotBefore):
		return fmt.Sprintf("the agent refused the operator's client certificate %s: it is not valid before %s; check the clocks of the agent's server and of the operator's node",
			certinfo.Describe(c), certinfo.Date(c.NotBefore))
	case !certinfo.AllowsUsage(c, x509.ExtKeyUsageClientAuth):
		return fmt.Sprintf("the agent refused the operator's client certificate %s: it lacks the Client Authentication extended key usage (it has %s); "+
			"issue it from a template with Client Authentication (1.3.6.1.5.5.7.3.2)", certinfo.Describe(c), certinfo.UsageNames(c))
	}
	return fmt.Sprintf("the agent refused the operator's client certificate %s (remote error: %s): check the agent's --client-ca (it must hold %q, the CA that issued it) "+
		"and --allowed-clients (it must list %q); the agent logs why (\"TLS handshake refused\")", certinfo.Describe(c), alert, certinfo.Name(c.Issuer), clientName(c))
}

// clientName is the name an agent's --allowed-clients knows a client certificate by: its common
// name, else its first DNS name.
func clientName(c *x509.Certificate) string {
	if c.Subject.CommonName == "" && len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}

// nextCert parses the next CERTIFICATE block of a PEM text; nil when there is none left.
func nextCert(data []byte) (*x509.Certificate, []byte) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			return c, data
		}
	}
}
