package agent

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
)

// TestMutualTLSRefusals: every refusal happens in the TLS handshake, so the handler never runs.
func TestMutualTLSRefusals(t *testing.T) {
	a := startAgent(t, agentOpts{allowed: []string{"poolpair-operator"}})
	b := a.certs
	foreign, err := devcerts.Generate([]string{"127.0.0.1"}, "poolpair-operator")
	if err != nil {
		t.Fatal(err)
	}
	intruderCert, intruderKey, err := b.IssueClient("intruder")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		client *http.Client
	}{
		{"no client certificate", clientFor(t, b.CACertPEM, nil, nil)},
		{"certificate from another CA", clientFor(t, b.CACertPEM, foreign.ClientCertPEM, foreign.ClientKeyPEM)},
		{"subject not allowed", clientFor(t, b.CACertPEM, intruderCert, intruderKey)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.Get(a.url + "/v1/info")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with status %d", resp.StatusCode)
			}
			t.Logf("refused: %v", err)
			var opErr *net.OpError
			if !errors.As(err, &opErr) || opErr.Op != "remote error" {
				t.Errorf("want a TLS alert from the server, got %v", err)
			}
		})
	}

	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(a.url, "https://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Logf("refused: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		t.Logf("refused: %d %q", resp.StatusCode, body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "HTTPS") {
			t.Errorf("plain HTTP answered %d %q", resp.StatusCode, body)
		}
	})

	if n := a.hits.Load(); n != 0 {
		t.Errorf("handler ran %d times for refused connections", n)
	}
	if n := a.backend.total(); n != 0 {
		t.Errorf("backend called %d times", n)
	}

	// The allowed client still gets through, over TLS 1.2 as well as 1.3.
	if status, raw := a.do("GET", "/v1/info", "", nil); status != 200 {
		t.Fatalf("allowed client: %d %s", status, raw)
	}
	c12 := clientFor(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	c12.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS12
	resp, err := c12.Get(a.url + "/v1/info")
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	resp.Body.Close()
	// And TLS 1.1 is refused.
	c11 := clientFor(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	c11.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	c11.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if resp, err := c11.Get(a.url + "/v1/info"); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.1 accepted")
	}
	if n := a.hits.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

func TestAllowedClientsMatchCommonNameOrDNSName(t *testing.T) {
	b := testBundle(t)
	client, _ := tls.X509KeyPair(b.ClientCertPEM, b.ClientKeyPEM)
	withSAN, _ := tls.X509KeyPair(b.ServerCertPEM, b.ServerKeyPEM) // DNS names: localhost
	for _, tc := range []struct {
		allowed []string
		leaf    *x509.Certificate
		ok      bool
	}{
		{[]string{" other ", "Poolpair-Operator"}, client.Leaf, true},
		{[]string{"other"}, client.Leaf, false},
		{[]string{"LOCALHOST"}, withSAN.Leaf, true},
		{[]string{"pool01.contoso.com"}, withSAN.Leaf, false},
	} {
		cfg, err := ServerTLSConfig(b.ServerCertPEM, b.ServerKeyPEM, b.CACertPEM, tc.allowed)
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.leaf}})
		if (err == nil) != tc.ok {
			t.Errorf("allowed %q, subject %q: err = %v", tc.allowed, tc.leaf.Subject.CommonName, err)
		}
	}
}

func TestServerTLSConfigRejectsBadInput(t *testing.T) {
	b := testBundle(t)
	if _, err := ServerTLSConfig(b.ServerCertPEM, b.ServerKeyPEM, []byte("not a cert"), nil); err == nil {
		t.Error("accepted a CA without certificates")
	}
	if _, err := ServerTLSConfig(b.ServerCertPEM, b.ClientKeyPEM, b.CACertPEM, nil); err == nil {
		t.Error("accepted a key that does not match the certificate")
	}
}

func TestServeRefusesWithoutTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := Serve(t.Context(), ln, http.NotFoundHandler(), nil, nil); err == nil {
		t.Fatal("Serve without TLS config returned nil")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open")
	}
}
