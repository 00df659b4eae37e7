package doctor

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agent"
)

// TLSFiles are serve's --tls-cert, --tls-key, --client-ca and --allowed-clients.
type TLSFiles struct {
	Cert, Key, ClientCA string
	AllowedClients      []string
}

// TLSResult is what CheckTLS found.
type TLSResult struct {
	Checks []Check
	// Cert is the server certificate (the first of --tls-cert); nil when it could not be read.
	Cert *x509.Certificate
	// Names are the names the certificates carry (subjects, DNS names), for a Masker.
	Names []string
}

// expirySoon is when a certificate's coming expiry is pointed out.
const expirySoon = 30 * 24 * time.Hour

const (
	flagHint   = "give doctor the same --tls-cert, --tls-key and --client-ca as serve (or the same --config)"
	assumeTLS  = "serve loads --tls-cert, --tls-key and --client-ca (PEM) and serves HTTPS to clients the CA signed"
	assumeName = "the operator reaches this agent at https://<server FQDN>:<port> unless the PoolPair gives an agentEndpoint, and verifies the server certificate against that name"
)

// CheckTLS checks the agent's TLS files the way serve loads them (agent.ServerTLSConfig), and
// what serve does not check: that the certificates are valid now, that the server certificate is
// for server authentication, and whether the client CA also issued the server certificate. It
// returns the checks tls-cert, tls-key, client-ca and tls-chain.
func CheckTLS(f TLSFiles, now time.Time) TLSResult {
	var res TLSResult
	add := func(c Check) { res.Checks = append(res.Checks, c.About(assumeTLS)) }

	certPEM, certCheck := readPEMFile("tls-cert", f.Cert)
	var chain []*x509.Certificate
	if certCheck == nil {
		var err error
		chain, err = parseCerts(certPEM)
		switch {
		case err != nil:
			c := Failed("tls-cert", fmt.Sprintf("%s: %v", f.Cert, err), "give --tls-cert a PEM file that starts with the server certificate (its chain may follow)")
			certCheck = &c
		default:
			res.Cert = chain[0]
			res.Names = append(res.Names, certNames(chain[0])...)
			c := judgeServerCert(f.Cert, chain[0], now)
			certCheck = &c
		}
	}
	add(*certCheck)

	keyPEM, keyCheck := readPEMFile("tls-key", f.Key)
	switch {
	case keyCheck != nil:
	case res.Cert == nil:
		c := Unknowns("tls-key", "not checked: the server certificate could not be read", "fix tls-cert first")
		keyCheck = &c
	default:
		c := judgeKey(f.Key, certPEM, keyPEM)
		keyCheck = &c
	}
	add(*keyCheck)

	caPEM, caCheck := readPEMFile("client-ca", f.ClientCA)
	var cas []*x509.Certificate
	if caCheck == nil {
		var err error
		cas, err = parseCerts(caPEM)
		if err != nil {
			c := Failed("client-ca", fmt.Sprintf("%s: %v", f.ClientCA, err), "give --client-ca the PEM certificate(s) of the CA that signs the operator's client certificate")
			caCheck = &c
		} else {
			for _, ca := range cas {
				res.Names = append(res.Names, certNames(ca)...)
			}
			c := judgeClientCA(f, cas, certPEM, keyPEM, caPEM, keyCheck.Status == Pass, now)
			caCheck = &c
		}
	}
	add(*caCheck)

	switch {
	case res.Cert == nil || len(cas) == 0:
		add(Unknowns("tls-chain", "not checked: needs both the server certificate and the client CA", "fix tls-cert and client-ca first"))
	default:
		add(judgeChain(chain, cas, now))
	}
	return res
}

// readPEMFile reads a file named by a flag; a check is returned when it cannot.
func readPEMFile(flag, path string) ([]byte, *Check) {
	if path == "" {
		c := Unknowns(flag, "--"+flag+" not given: not checked", flagHint)
		return nil, &c
	}
	b, err := os.ReadFile(path)
	if err != nil {
		c := Failed(flag, fmt.Sprintf("cannot read %s: %v", path, err), "check the path, and that the account the agent runs as can read the file")
		return nil, &c
	}
	return b, nil
}

// parseCerts parses every CERTIFICATE block of a PEM file.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block (a DER or PFX file? serve reads PEM)")
	}
	return certs, nil
}

func judgeServerCert(path string, c *x509.Certificate, now time.Time) Check {
	saw := fmt.Sprintf("%s: %s, issued by %s, %s", path, describeCert(c), subjectName(c.Issuer.CommonName, c.Issuer.String()), validity(c, now))
	if problem := validityProblem(c, now); problem != "" {
		return Failed("tls-cert", saw, problem+": issue a new server certificate")
	}
	if !serverAuthOK(c) {
		return Failed("tls-cert", saw+"; extended key usages do not include serverAuth",
			"issue the certificate with the Server Authentication extended key usage (1.3.6.1.5.5.7.3.1): the operator refuses it otherwise")
	}
	return Passed("tls-cert", saw+", for server authentication")
}

func judgeKey(path string, certPEM, keyPEM []byte) Check {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		fix := "give --tls-key the private key of the server certificate, as an unencrypted PEM file readable only by the agent's account"
		if block, _ := pem.Decode(keyPEM); block != nil && (strings.Contains(block.Type, "ENCRYPTED") || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED")) {
			fix = "the key is encrypted: serve reads an unencrypted PEM key; decrypt it (openssl pkey -in key.pem -out key-plain.pem) and protect the file with its ACL"
		}
		return Failed("tls-key", fmt.Sprintf("%s: %v", path, err), fix)
	}
	kind := "the private key"
	if block, _ := pem.Decode(keyPEM); block != nil {
		kind += " (PEM " + block.Type + ")"
	}
	return Passed("tls-key", fmt.Sprintf("%s: %s matches the server certificate", path, kind))
}

func judgeClientCA(f TLSFiles, cas []*x509.Certificate, certPEM, keyPEM, caPEM []byte, keyOK bool, now time.Time) Check {
	var descs []string
	usable := 0
	for _, ca := range cas {
		d := describeCert(ca) + ", " + validity(ca, now)
		if !ca.IsCA {
			d += ", not a CA certificate"
		}
		if validityProblem(ca, now) == "" {
			usable++
		}
		descs = append(descs, d)
	}
	saw := fmt.Sprintf("%s: %d certificate(s): %s", f.ClientCA, len(cas), strings.Join(descs, "; "))
	if usable == 0 {
		return Failed("client-ca", saw, "no certificate in --client-ca is valid now: clients it signed are refused; give the current CA certificate")
	}
	if len(f.AllowedClients) == 0 {
		return Failed("client-ca", saw+"; no --allowed-clients: any certificate this CA signed would be let in",
			"give --allowed-clients the name (Subject CN or DNS name) of the operator's client certificate: serve refuses to start without it")
	}
	allowed := "clients let in: " + strings.Join(f.AllowedClients, ", ")
	if !keyOK {
		return Passed("client-ca", saw+"; "+allowed)
	}
	// The same call serve makes: the three files together are what it accepts.
	if _, err := agent.ServerTLSConfig(certPEM, keyPEM, caPEM, f.AllowedClients); err != nil {
		return Failed("client-ca", saw+": "+err.Error(), "fix the file serve refuses")
	}
	return Passed("client-ca", saw+"; serve accepts the three files; "+allowed)
}

// judgeChain says whether the client CA also issued the server certificate. The operator checks
// the server certificate against its own ca.crt, which need not be the client CA; one CA for both
// is what `lync-agent certs` makes.
func judgeChain(chain, cas []*x509.Certificate, now time.Time) Check {
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err == nil {
		return Passed("tls-chain", "the client CA also issued the server certificate: the operator's ca.crt can be the --client-ca file").About(assumeTLS)
	}
	issuer := subjectName(chain[0].Issuer.CommonName, chain[0].Issuer.String())
	return Unknowns("tls-chain", fmt.Sprintf("the server certificate (issued by %s) does not verify against --client-ca: %v", issuer, err),
		"the ca.crt of the operator's agent TLS Secret must be the CA that issued the server certificate ("+issuer+"); fine if your PKI has one CA for agents and another for the operator").About(assumeTLS)
}

// CheckServerName says whether the server certificate is valid for the server's FQDN, the name
// the operator reaches the agent at by default (https://<fqdn>:<port>). fqdn is what the topology
// calls this server; "" when unknown.
func CheckServerName(cert *x509.Certificate, fqdn, port string) Check {
	switch {
	case cert == nil:
		return Unknowns("tls-name", "not checked: the server certificate could not be read", "fix tls-cert first").About(assumeName)
	case fqdn == "":
		return Unknowns("tls-name", "not checked: this server's FQDN is not known (see server)",
			"check that the certificate's DNS names include the name the operator uses for this server").About(assumeName)
	}
	endpoint := "https://" + fqdn
	if port != "" {
		endpoint += ":" + port
	}
	if err := cert.VerifyHostname(fqdn); err != nil {
		return Failed("tls-name", fmt.Sprintf("the server certificate is for %s, not %s", strings.Join(certHosts(cert), ", "), fqdn),
			"issue the server certificate with DNS name "+fqdn+" (the operator's default endpoint is "+endpoint+
				"), or give this server an agentEndpoint in the PoolPair with a name the certificate has").About(assumeName)
	}
	return Passed("tls-name", "the server certificate is valid for "+fqdn+", the operator's default endpoint "+endpoint).About(assumeName)
}

func serverAuthOK(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true // no restriction
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func validityProblem(c *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "not valid before " + c.NotBefore.UTC().Format(time.DateOnly)
	case now.After(c.NotAfter):
		return "expired on " + c.NotAfter.UTC().Format(time.DateOnly)
	}
	return ""
}

func validity(c *x509.Certificate, now time.Time) string {
	if p := validityProblem(c, now); p != "" {
		return p
	}
	left := c.NotAfter.Sub(now)
	s := fmt.Sprintf("valid until %s (%d days)", c.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	if left < expirySoon {
		s += ", renew it soon"
	}
	return s
}

func describeCert(c *x509.Certificate) string {
	s := subjectName(c.Subject.CommonName, c.Subject.String())
	if hosts := certHosts(c); len(hosts) > 0 && !(len(hosts) == 1 && hosts[0] == c.Subject.CommonName) {
		s += " (names " + strings.Join(hosts, ", ") + ")"
	}
	return s + " " + keyDescription(c)
}

func subjectName(cn, full string) string {
	if cn != "" {
		return "CN=" + cn
	}
	if full != "" {
		return full
	}
	return "an empty subject"
}

func keyDescription(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("[RSA %d]", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "[ECDSA " + k.Curve.Params().Name + "]"
	case ed25519.PublicKey:
		return "[Ed25519]"
	}
	return "[" + c.PublicKeyAlgorithm.String() + "]"
}

func certHosts(c *x509.Certificate) []string {
	hosts := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hosts
}

func certNames(c *x509.Certificate) []string {
	names := append([]string{}, c.DNSNames...)
	for _, n := range []string{c.Subject.CommonName, c.Issuer.CommonName} {
		if n != "" {
			names = append(names, n)
		}
	}
	return names
}

// sameCert says whether a and b are the same certificate.
func sameCert(a, b *x509.Certificate) bool {
	return a != nil && b != nil && bytes.Equal(a.Raw, b.Raw)
}
