package agentclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/devcerts/certtest"

	"github.com/lync-dr/poolpair-operator/internal/agent"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
)

// serveWithCert runs an HTTPS server presenting certPEM (not an agent: ServerTLSConfig would refuse
// some of these certificates) and returns its endpoint by the name localhost.
func serveWithCert(t *testing.T, certPEM, keyPEM []byte) string {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "{}") }))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Config.ErrorLog = slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelInfo)
	s.StartTLS()
	t.Cleanup(s.Close)
	return strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
}

// serveAgentTLS runs an agent with tlsCfg and returns its endpoint by the name localhost.
func serveAgentTLS(t *testing.T, tlsCfg *tls.Config) string {
	t.Helper()
	j, err := agent.OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := agent.NewHandler(agent.Config{Backend: &backend{}, Journal: j, Logger: quiet, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, ln, h, tlsCfg, quiet) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			<-served
			_ = h.Close(context.Background())
			_ = j.Close()
		})
	})
	return "https://localhost:" + strings.Split(ln.Addr().String(), ":")[1]
}

// checkTLSError: err is ErrUnauthorized (not ErrUnavailable) with a *TLSError saying want, and
// reads "GET <url>: unauthorized: <want>".
func checkTLSError(t *testing.T, err error, url, want string) {
	t.Helper()
	if !errors.Is(err, agentclient.ErrUnauthorized) || errors.Is(err, agentclient.ErrUnavailable) {
		t.Errorf("%v: want ErrUnauthorized only", err)
	}
	var te *agentclient.TLSError
	if !errors.As(err, &te) {
		t.Fatalf("%v: no *TLSError", err)
	}
	if te.Problem != want {
		t.Errorf("problem\n%s\nwant\n%s", te.Problem, want)
	}
	if full := "GET " + url + ": unauthorized: " + want; err.Error() != full {
		t.Errorf("error\n%s\nwant\n%s", err, full)
	}
	if te.Err == nil {
		t.Error("TLSError without the TLS error")
	}
}

// TestAgentCertificateProblemsSayWhatToDo: the operator refuses an agent's server certificate, and
// says which certificate, what is wrong and what to do.
func TestAgentCertificateProblemsSayWhatToDo(t *testing.T) {
	agents := certtest.NewCA(t, "Contoso Agents CA")
	other := certtest.NewCA(t, "Contoso Other CA")
	twin := certtest.NewCA(t, "Contoso Agents CA") // the same name, another key: a CA made again
	clientPEM, clientKey := agents.Issue(t, certtest.Leaf(0x4100, "poolpair-operator", x509.ExtKeyUsageClientAuth))
	server := func(serial int64, dns []string, usages ...x509.ExtKeyUsage) *x509.Certificate {
		c := certtest.Leaf(serial, "localhost", usages...)
		c.DNSNames = dns
		return c
	}
	expired := server(0x4003, []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	expired.NotBefore, expired.NotAfter = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	wrongName := server(0x4001, []string{"fe02.pool01.contoso.com"}, x509.ExtKeyUsageServerAuth)
	wrongName.Subject.CommonName = "fe02.pool01.contoso.com"
	const trusted = `"CN=Contoso Agents CA", in the ca.crt of the operator's agent TLS Secret or --agent-tls-dir`
	for _, tc := range []struct {
		name string
		ca   *certtest.CA
		tmpl *x509.Certificate
		want string
	}{
		{"another name", agents, wrongName,
			`the agent's server certificate "CN=fe02.pool01.contoso.com" (issued by "CN=Contoso Agents CA", serial 4001) is not valid for localhost ` +
				`(it names fe02.pool01.contoso.com): issue it with localhost among its DNS names (subject alternative names)`},
		{"name in the common name only", agents, server(0x4002, nil, x509.ExtKeyUsageServerAuth),
			`the agent's server certificate "CN=localhost" (issued by "CN=Contoso Agents CA", serial 4002) names the server only in its subject common name, ` +
				`which TLS clients no longer accept: issue it with localhost among its DNS names (subject alternative names)`},
		{"expired", agents, expired,
			`the agent's server certificate "CN=localhost" (issued by "CN=Contoso Agents CA", serial 4003) expired on 2025-01-02 00:00:00 UTC: ` +
				`issue a new one and give it to the agent (--tls-cert, --tls-key)`},
		{"client authentication only", agents, server(0x4004, []string{"localhost"}, x509.ExtKeyUsageClientAuth),
			`the agent's server certificate "CN=localhost" (issued by "CN=Contoso Agents CA", serial 4004) lacks the Server Authentication extended key usage ` +
				`(it has Client Authentication): issue it from a template with Server Authentication (1.3.6.1.5.5.7.3.1), such as Web Server`},
		{"another CA", other, server(0x4005, []string{"localhost"}, x509.ExtKeyUsageServerAuth),
			`the agent's server certificate "CN=localhost" (issued by "CN=Contoso Other CA", serial 4005) is not signed by a CA the operator trusts ` +
				`(` + trusted + `): issue it from that CA, or add the CA that issued it ("CN=Contoso Other CA") to that ca.crt`},
		{"a CA of the same name", twin, server(0x4006, []string{"localhost"}, x509.ExtKeyUsageServerAuth),
			`the agent's server certificate "CN=localhost" (issued by "CN=Contoso Agents CA", serial 4006) is signed by another CA than the one the operator trusts ` +
				`under the same name ("CN=Contoso Agents CA", the ca.crt of the operator's agent TLS Secret or --agent-tls-dir): ` +
				`the CA was created again or renewed with a new key; put the CA certificate that issued it in that ca.crt`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM := tc.ca.Issue(t, tc.tmpl)
			ep := serveWithCert(t, certPEM, keyPEM)
			c := newClient(t, agentclient.Config{CertPEM: clientPEM, KeyPEM: clientKey, CAPEM: agents.PEM})
			_, err := c.Info(t.Context(), ep)
			checkTLSError(t, err, ep+"/v1/info", tc.want)
		})
	}
}

// TestRefusedClientCertificateSaysWhatToDo: the agent refuses the operator's client certificate;
// the operator says which certificate, what it can tell of the reason, and where to look.
func TestRefusedClientCertificateSaysWhatToDo(t *testing.T) {
	agents := certtest.NewCA(t, "Contoso Agents CA")
	other := certtest.NewCA(t, "Contoso Other CA")
	srvTmpl := certtest.Leaf(0x4000, "localhost", x509.ExtKeyUsageServerAuth)
	srvTmpl.DNSNames = []string{"localhost"}
	srvPEM, srvKey := agents.Issue(t, srvTmpl)
	tlsCfg, err := agent.ServerTLSConfig(srvPEM, srvKey, agents.PEM, []string{"poolpair-operator"})
	if err != nil {
		t.Fatal(err)
	}
	ep := serveAgentTLS(t, tlsCfg)
	expired := certtest.Leaf(0x4102, "poolpair-operator", x509.ExtKeyUsageClientAuth)
	expired.NotBefore, expired.NotAfter = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		ca   *certtest.CA
		tmpl *x509.Certificate
		want string
	}{
		{"not allowed", agents, certtest.Leaf(0x4101, "intruder", x509.ExtKeyUsageClientAuth),
			`the agent refused the operator's client certificate "CN=intruder" (issued by "CN=Contoso Agents CA", serial 4101) (remote error: tls: bad certificate): ` +
				`check the agent's --client-ca (it must hold "CN=Contoso Agents CA", the CA that issued it) and --allowed-clients (it must list "intruder"); ` +
				`the agent logs why ("TLS handshake refused")`},
		{"expired", agents, expired,
			`the agent refused the operator's client certificate "CN=poolpair-operator" (issued by "CN=Contoso Agents CA", serial 4102): it expired on 2025-01-02 00:00:00 UTC; ` +
				`issue a new one (tls.crt and tls.key of the operator's agent TLS Secret or --agent-tls-dir)`},
		{"server authentication only", agents, certtest.Leaf(0x4103, "poolpair-operator", x509.ExtKeyUsageServerAuth),
			`the agent refused the operator's client certificate "CN=poolpair-operator" (issued by "CN=Contoso Agents CA", serial 4103): ` +
				`it lacks the Client Authentication extended key usage (it has Server Authentication); issue it from a template with Client Authentication (1.3.6.1.5.5.7.3.2)`},
		{"another CA", other, certtest.Leaf(0x4104, "poolpair-operator", x509.ExtKeyUsageClientAuth),
			`the agent refused the operator's client certificate "CN=poolpair-operator" (issued by "CN=Contoso Other CA", serial 4104) (remote error: tls: bad certificate): ` +
				`check the agent's --client-ca (it must hold "CN=Contoso Other CA", the CA that issued it) and --allowed-clients (it must list "poolpair-operator"); ` +
				`the agent logs why ("TLS handshake refused")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM := tc.ca.Issue(t, tc.tmpl)
			c := newClient(t, agentclient.Config{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: agents.PEM})
			_, err := c.Info(t.Context(), ep)
			checkTLSError(t, err, ep+"/v1/info", tc.want)
		})
	}
	// The right certificate gets through.
	okPEM, okKey := agents.Issue(t, certtest.Leaf(0x4105, "poolpair-operator", x509.ExtKeyUsageClientAuth))
	if _, err := newClient(t, agentclient.Config{CertPEM: okPEM, KeyPEM: okKey, CAPEM: agents.PEM}).Info(t.Context(), ep); err != nil {
		t.Fatal(err)
	}
}
