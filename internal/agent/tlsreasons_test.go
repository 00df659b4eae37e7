package agent

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/devcerts/certtest"
)

const devCA = `"CN=lync-agent development CA"`

// TestClientCertificateRefusalsSayWhy: each refused client certificate is refused in the handshake
// (the client sees the agent's TLS alert, the handler never runs), and the agent logs which
// certificate it refused, why, and what to do.
func TestClientCertificateRefusalsSayWhy(t *testing.T) {
	logs := &syncBuffer{}
	a := startAgent(t, agentOpts{allowed: []string{"poolpair-operator"}, logs: logs})
	ca := certtest.FromBundle(t, a.certs)
	other := certtest.NewCA(t, "Contoso Other CA")
	expired := certtest.Leaf(0x1003, "poolpair-operator", x509.ExtKeyUsageClientAuth)
	expired.NotBefore, expired.NotAfter = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	withNames := certtest.Leaf(0x1005, "backup-operator", x509.ExtKeyUsageClientAuth)
	withNames.DNSNames = []string{"backup-operator.contoso.com"}
	for _, tc := range []struct {
		name   string
		ca     *certtest.CA
		tmpl   *x509.Certificate
		reason string
	}{
		{
			"name not allowed", ca, certtest.Leaf(0x1001, "intruder", x509.ExtKeyUsageClientAuth),
			`client certificate "CN=intruder" (issued by ` + devCA + `, serial 1001) is not in --allowed-clients (poolpair-operator): ` +
				`add "intruder" there if this client may use the agent`,
		},
		{
			"names not allowed", ca, withNames,
			`client certificate "CN=backup-operator" (issued by ` + devCA + `, serial 1005) is not in --allowed-clients (poolpair-operator) ` +
				`by its common name or its DNS names (backup-operator.contoso.com): add one of them there if this client may use the agent`,
		},
		{
			"server authentication only", ca, certtest.Leaf(0x1002, "poolpair-operator", x509.ExtKeyUsageServerAuth),
			`client certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 1002) lacks the Client Authentication extended key usage ` +
				`(it has Server Authentication): issue it from a template with Client Authentication (1.3.6.1.5.5.7.3.2)`,
		},
		{
			"expired", ca, expired,
			`client certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 1003) expired on 2025-01-02 00:00:00 UTC: ` +
				`issue a new one from the CA in --client-ca`,
		},
		{
			"another CA", other, certtest.Leaf(0x1004, "poolpair-operator", x509.ExtKeyUsageClientAuth),
			`client certificate "CN=poolpair-operator" (issued by "CN=Contoso Other CA", serial 1004) is not signed by the CA in --client-ca (` + devCA + `): ` +
				`issue it from that CA, or give --client-ca the CA that issued it (the client must send any intermediate CA certificate with its own)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM := tc.ca.Issue(t, tc.tmpl)
			c := clientFor(t, a.certs.CACertPEM, certPEM, keyPEM)
			defer c.CloseIdleConnections()
			resp, err := c.Get(a.url + "/v1/info")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with status %d", resp.StatusCode)
			}
			var opErr *net.OpError
			if !errors.As(err, &opErr) || opErr.Op != "remote error" {
				t.Errorf("want a TLS alert from the agent, got %v", err)
			}
			if got := waitForRefusal(t, logs, tc.reason); got != tc.reason {
				t.Errorf("agent logged\n%s\nwant reason\n%s", got, tc.reason)
			}
		})
	}
	if n := a.hits.Load(); n != 0 {
		t.Errorf("handler ran %d times for refused connections", n)
	}
	// The allowed client still gets through.
	if status, raw := a.do("GET", "/v1/info", "", nil); status != 200 {
		t.Fatalf("allowed client: %d %s", status, raw)
	}
}

// waitForRefusal waits until the agent logged a "TLS handshake refused" record with reason, and
// returns it; else all such records.
func waitForRefusal(t *testing.T, logs *syncBuffer, reason string) string {
	t.Helper()
	var seen []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		seen = nil
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec struct{ Level, Msg, Remote, Reason string }
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "TLS handshake refused" {
				continue
			}
			if rec.Level != "WARN" || !strings.HasPrefix(rec.Remote, "127.0.0.1:") {
				t.Errorf("refusal logged as %s", line)
			}
			if rec.Reason == reason {
				return reason
			}
			seen = append(seen, rec.Reason)
		}
	}
	return strings.Join(seen, "\n")
}

// TestClientVerifierExplains checks the refusals on their own, resumed sessions included (a
// session begun with a certificate that has expired since is refused).
func TestClientVerifierExplains(t *testing.T) {
	b := testBundle(t)
	ca := certtest.FromBundle(t, b)
	cfg, err := ServerTLSConfig(b.ServerCertPEM, b.ServerKeyPEM, b.CACertPEM, []string{"poolpair-operator"})
	if err != nil {
		t.Fatal(err)
	}
	notYet := certtest.Leaf(0x2002, "poolpair-operator", x509.ExtKeyUsageClientAuth)
	notYet.NotBefore, notYet.NotAfter = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2099, 2, 1, 0, 0, 0, 0, time.UTC)
	expired := certtest.Leaf(0x2003, "poolpair-operator", x509.ExtKeyUsageClientAuth)
	expired.NotBefore, expired.NotAfter = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 2, 12, 30, 0, 0, time.UTC)
	mk := func(tmpl *x509.Certificate) *x509.Certificate {
		p, _ := ca.Issue(t, tmpl)
		return certtest.Parse(t, p)
	}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"valid", mk(certtest.Leaf(0x2001, "poolpair-operator", x509.ExtKeyUsageClientAuth)), ""},
		{"no extended key usage is no restriction", mk(certtest.Leaf(0x2004, "poolpair-operator")), ""},
		{"not yet valid", mk(notYet), `client certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 2002) is not valid before 2099-01-01 00:00:00 UTC: ` +
			`check the clocks of this server and of the client`},
		{"expired", mk(expired), `client certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 2003) expired on 2025-01-02 12:30:00 UTC: ` +
			`issue a new one from the CA in --client-ca`},
		{"code signing", mk(certtest.Leaf(0x2005, "poolpair-operator", x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageServerAuth)),
			`client certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 2005) lacks the Client Authentication extended key usage ` +
				`(it has Code Signing, Server Authentication): issue it from a template with Client Authentication (1.3.6.1.5.5.7.3.2)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := cfg.VerifyPeerCertificate([][]byte{tc.cert.Raw}, nil)
			resumed := cfg.VerifyConnection(tls.ConnectionState{DidResume: true, PeerCertificates: []*x509.Certificate{tc.cert}})
			for what, err := range map[string]error{"full handshake": full, "resumed session": resumed} {
				got := ""
				if err != nil {
					got = err.Error()
				}
				if got != tc.want {
					t.Errorf("%s: got\n%s\nwant\n%s", what, got, tc.want)
				}
			}
		})
	}
	if err := cfg.VerifyPeerCertificate([][]byte{[]byte("junk")}, nil); err == nil || !strings.HasPrefix(err.Error(), "client certificate: certificate 1 of the chain the client sent cannot be parsed: ") {
		t.Errorf("junk certificate: %v", err)
	}
}

// TestServerTLSConfigExplainsBadFiles: a server certificate not for Server Authentication, and a
// client CA file holding a certificate that is not a CA's, are refused with what to do.
func TestServerTLSConfigExplainsBadFiles(t *testing.T) {
	b := testBundle(t)
	ca := certtest.FromBundle(t, b)
	clientOnly := certtest.Leaf(0x3001, "fe01.pool01.contoso.com", x509.ExtKeyUsageClientAuth)
	clientOnly.DNSNames = []string{"fe01.pool01.contoso.com"}
	srvPEM, srvKey := ca.Issue(t, clientOnly)
	anyUsage := certtest.Leaf(0x3002, "fe01.pool01.contoso.com", x509.ExtKeyUsageAny)
	anyPEM, anyKey := ca.Issue(t, anyUsage)
	leafPEM, _ := ca.Issue(t, certtest.Leaf(0x3003, "poolpair-operator", x509.ExtKeyUsageClientAuth))
	for _, tc := range []struct {
		name                string
		cert, key, clientCA []byte
		want                string
	}{
		{"server certificate for client authentication only", srvPEM, srvKey, b.CACertPEM,
			`agent TLS: server certificate (--tls-cert) "CN=fe01.pool01.contoso.com" (issued by ` + devCA + `, serial 3001) lacks the Server Authentication extended key usage ` +
				`(it has Client Authentication): the operator refuses it; issue it from a template with Server Authentication (1.3.6.1.5.5.7.3.1), such as Web Server`},
		{"server certificate for any usage", anyPEM, anyKey, b.CACertPEM, ""},
		{"client certificate given as the client CA", b.ServerCertPEM, b.ServerKeyPEM, leafPEM,
			`agent TLS: client CA (--client-ca): certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 3003) is not a CA certificate (its basic constraints do not say CA): ` +
				`--client-ca takes the certificate of the CA that issues the operator's client certificate, not a client certificate`},
		{"a CA and a client certificate", b.ServerCertPEM, b.ServerKeyPEM, append(append([]byte{}, b.CACertPEM...), leafPEM...),
			`agent TLS: client CA (--client-ca): certificate "CN=poolpair-operator" (issued by ` + devCA + `, serial 3003) is not a CA certificate (its basic constraints do not say CA): ` +
				`--client-ca takes the certificate of the CA that issues the operator's client certificate, not a client certificate`},
		{"no certificate", b.ServerCertPEM, b.ServerKeyPEM, []byte("not a cert"), "agent TLS: client CA (--client-ca): no PEM certificate found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ServerTLSConfig(tc.cert, tc.key, tc.clientCA, nil)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestHandlerRequiresAVerifiedClientCertificate: the handler's second line. A presented client
// certificate that no handshake check passed is refused like none at all; one crypto/tls verified
// (another configuration with RequireAndVerifyClientCert) is accepted.
func TestHandlerRequiresAVerifiedClientCertificate(t *testing.T) {
	a := startAgent(t, agentOpts{})
	b := a.certs
	client, _ := tls.X509KeyPair(b.ClientCertPEM, b.ClientKeyPEM)
	ca := certtest.Parse(t, b.CACertPEM)
	for _, tc := range []struct {
		name   string
		state  *tls.ConnectionState
		status int
	}{
		{"plain HTTP", nil, http.StatusUnauthorized},
		{"no client certificate", &tls.ConnectionState{HandshakeComplete: true}, http.StatusUnauthorized},
		{"presented, never verified", &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{client.Leaf}}, http.StatusUnauthorized},
		{"verified by crypto/tls", &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{client.Leaf},
			VerifiedChains: [][]*x509.Certificate{{client.Leaf, ca}}}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/info", nil)
			r.TLS = tc.state
			w := httptest.NewRecorder()
			a.handler.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("%d %s, want %d", w.Code, w.Body, tc.status)
			}
			if tc.status == http.StatusUnauthorized && !strings.Contains(w.Body.String(), `"code":"Unauthorized"`) {
				t.Errorf("refusal body %s", w.Body)
			}
		})
	}
}

// TestResumedSessionsGetThrough: a client resuming a TLS session is checked again and let in.
func TestResumedSessionsGetThrough(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			a := startAgent(t, agentOpts{allowed: []string{"poolpair-operator"}})
			c := clientFor(t, a.certs.CACertPEM, a.certs.ClientCertPEM, a.certs.ClientKeyPEM)
			tr := c.Transport.(*http.Transport)
			tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			tr.TLSClientConfig.MaxVersion = version
			tr.DisableKeepAlives = true
			resumed := false
			for range 3 {
				resp, err := c.Get(a.url + "/v1/info")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d (resumed: %v)", resp.StatusCode, resp.TLS.DidResume)
				}
				resumed = resumed || resp.TLS.DidResume
			}
			if !resumed {
				t.Error("no session was resumed")
			}
		})
	}
}

// TestHandshakeErrorLogLines: net/http's handshake error lines become structured records; other
// lines pass through.
func TestHandshakeErrorLogLines(t *testing.T) {
	var buf bytes.Buffer
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	l := log.New(errorLogWriter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: noTime}))}, "", 0)
	l.Printf("http: TLS handshake error from %s: %v", "127.0.0.1:5555", `client certificate "CN=intruder" (issued by "CN=Contoso CA", serial 1001) is not in --allowed-clients (poolpair-operator): add "intruder" there if this client may use the agent`)
	l.Printf("http: TLS handshake error from %s: %v", "[::1]:5556", "tls: client didn't provide a certificate")
	l.Printf("http: TLS handshake error from %s: %v", "[::1]:5557", "EOF")
	l.Printf("http: TLS handshake error from %s: %v", "10.0.0.1:5558", "client sent an HTTP request to an HTTPS server")
	l.Printf("http: superfluous response.WriteHeader call from %s", "x.go:1")
	want := `level=WARN msg="TLS handshake refused" remote=127.0.0.1:5555 reason="client certificate \"CN=intruder\" (issued by \"CN=Contoso CA\", serial 1001) is not in --allowed-clients (poolpair-operator): add \"intruder\" there if this client may use the agent"
level=WARN msg="TLS handshake refused" remote=[::1]:5556 reason="client certificate: the client sent none: the agent requires one signed by the CA in --client-ca"
level=INFO msg="TLS handshake failed" remote=[::1]:5557 reason=EOF
level=INFO msg="TLS handshake failed" remote=10.0.0.1:5558 reason="client sent an HTTP request to an HTTPS server"
level=INFO msg="http: superfluous response.WriteHeader call from x.go:1"
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestNoClientCertificateIsLogged: a client without a certificate is refused and the agent says
// what it needs.
func TestNoClientCertificateIsLogged(t *testing.T) {
	logs := &syncBuffer{}
	a := startAgent(t, agentOpts{allowed: []string{"poolpair-operator"}, logs: logs})
	c := clientFor(t, a.certs.CACertPEM, nil, nil)
	if resp, err := c.Get(a.url + "/v1/info"); err == nil {
		resp.Body.Close()
		t.Fatal("request without a client certificate succeeded")
	}
	want := errNoClientCert.Error()
	if got := waitForRefusal(t, logs, want); got != want {
		t.Errorf("agent logged %q, want %q", got, want)
	}
}
