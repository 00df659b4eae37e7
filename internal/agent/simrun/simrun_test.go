package simrun

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const deploymentYAML = `
product: lync2013
sites: [Redmond, Dublin]
cms: {pool: pool01.contoso.com}
durations: {pairPools: 0s, bootstrap: 1h, startBackupService: 0s, syncBackup: 0s, syncInterval: 20s}
pools:
  - fqdn: pool01.contoso.com
    site: Redmond
    edition: Enterprise
    version: Lync Server 2013
    servers:
      - fqdn: fe01.pool01.contoso.com
  - fqdn: pool02.contoso.com
    site: Dublin
    edition: Enterprise
    version: Lync Server 2013
    servers:
      - fqdn: fe01.pool02.contoso.com
`

var (
	certsOnce sync.Once
	certs     *devcerts.Bundle
)

func testCerts(t *testing.T) *devcerts.Bundle {
	certsOnce.Do(func() {
		var err error
		if certs, err = devcerts.Generate([]string{"127.0.0.1", "localhost"}, "poolpair-operator"); err != nil {
			panic(err)
		}
	})
	return certs
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func anyPort(sim.Endpoint) string { return "127.0.0.1:0" }

func startTestSim(t *testing.T) (*SimRunner, *agentclient.Client) {
	t.Helper()
	b := testCerts(t)
	d, err := sim.Parse([]byte(deploymentYAML))
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartSim(t.Context(), d, TLS{CAPEM: b.CACertPEM, CertPEM: b.ServerCertPEM, KeyPEM: b.ServerKeyPEM}, t.TempDir(), anyPort, WithLogger(quiet()), WithVersion("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	c, err := agentclient.New(agentclient.Config{CertPEM: b.ClientCertPEM, KeyPEM: b.ClientKeyPEM, CAPEM: b.CACertPEM, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return r, c
}

func TestEveryEndpointServesItsOwnAgent(t *testing.T) {
	r, c := startTestSim(t)
	eps := r.Endpoints()
	if len(eps) != 4 {
		t.Fatalf("endpoints %v", eps)
	}
	want := map[string]protocol.Info{
		"pool01.contoso.com":      {PoolFQDN: "pool01.contoso.com"},
		"pool02.contoso.com":      {PoolFQDN: "pool02.contoso.com"},
		"fe01.pool01.contoso.com": {ServerFQDN: "fe01.pool01.contoso.com", PoolFQDN: "pool01.contoso.com"},
		"fe01.pool02.contoso.com": {ServerFQDN: "fe01.pool02.contoso.com", PoolFQDN: "pool02.contoso.com"},
	}
	for fqdn, w := range want {
		info, err := c.Info(t.Context(), eps[fqdn])
		if err != nil {
			t.Fatalf("%s: %v", fqdn, err)
		}
		if info.ServerFQDN != w.ServerFQDN || info.PoolFQDN != w.PoolFQDN || info.Backend != "sim" || info.AgentVersion != "test" {
			t.Errorf("%s answered %+v", fqdn, info)
		}
	}
	if l := r.List(); l[0].Kind != sim.KindPool || l[3].Kind != sim.KindServer {
		t.Errorf("List order %+v", l)
	}
}

func TestUnreachableEndpointDropsConnections(t *testing.T) {
	r, c := startTestSim(t)
	ep := r.Endpoints()["fe01.pool01.contoso.com"]
	if _, err := c.Info(t.Context(), ep); err != nil { // leaves a kept-alive connection
		t.Fatal(err)
	}
	if err := r.Deployment().SetUnreachable("fe01.pool01.contoso.com", true); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the kept-alive connection, then a new one
		_, err := c.Info(t.Context(), ep)
		t.Logf("unreachable: %v", err)
		if !errors.Is(err, agentclient.ErrUnavailable) {
			t.Fatalf("unreachable endpoint answered: %v", err)
		}
	}
	// Other endpoints are unaffected.
	if _, err := c.Info(t.Context(), r.Endpoints()["fe01.pool02.contoso.com"]); err != nil {
		t.Errorf("other server: %v", err)
	}
	if err := r.Deployment().SetUnreachable("fe01.pool01.contoso.com", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(t.Context(), ep); err != nil {
		t.Errorf("reachable again: %v", err)
	}
}

// TestStoppedAgentComesBackWithItsJournal: an agent stopped mid-Bootstrap refuses connections,
// and once started again reports that Bootstrap as interrupted and retryable.
func TestStoppedAgentComesBackWithItsJournal(t *testing.T) {
	r, c := startTestSim(t)
	const fe = "fe01.pool02.contoso.com"
	ep := r.Endpoints()[fe]
	if _, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "boot-1", Kind: protocol.KindBootstrap}); err != nil {
		t.Fatal(err)
	}
	if err := r.StopEndpoint(fe); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(t.Context(), ep); !errors.Is(err, agentclient.ErrUnavailable) {
		t.Fatalf("stopped agent: %v", err)
	}
	if err := r.StartEndpoint(fe); err != nil {
		t.Fatal(err)
	}
	if got := r.Endpoints()[fe]; got != ep {
		t.Errorf("restarted on %s, was %s", got, ep)
	}
	op, err := c.Operation(t.Context(), ep, "boot-1")
	if err != nil {
		t.Fatal(err)
	}
	if op.State != protocol.StateFailed || !op.Retryable || !strings.Contains(op.Message, "interrupted") {
		t.Errorf("after restart: %+v", op)
	}
}

func TestPortInUseStopsEverything(t *testing.T) {
	b := testCerts(t)
	// Four free addresses; the third stays taken.
	var addrs []string
	var busy net.Listener
	for i := range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		if i == 2 {
			busy = ln
			defer ln.Close()
		} else {
			ln.Close()
		}
	}
	d, err := sim.Parse([]byte(deploymentYAML))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	override := func(sim.Endpoint) string { i++; return addrs[i-1] }
	_, err = StartSim(t.Context(), d, TLS{CAPEM: b.CACertPEM, CertPEM: b.ServerCertPEM, KeyPEM: b.ServerKeyPEM}, t.TempDir(), override, WithLogger(quiet()))
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), "fe01.pool01.contoso.com") {
		t.Fatalf("want an error naming %s and fe01.pool01.contoso.com, got %v", busy.Addr(), err)
	}
	for j, a := range addrs {
		if j == 2 {
			continue
		}
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listening after the failed start", a)
		}
	}
}

func TestRunSimPrintsEndpointsAndServesAdmin(t *testing.T) {
	b := testCerts(t)
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if err := b.WriteDir(tlsDir); err != nil {
		t.Fatal(err)
	}
	depFile := filepath.Join(dir, "deployment.yaml")
	if err := os.WriteFile(depFile, []byte(deploymentYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	ready := make(chan *SimRunner, 1)
	done := make(chan error, 1)
	go func() {
		done <- RunSim(ctx, RunOptions{
			DeploymentFile: depFile, TLSDir: tlsDir, JournalDir: filepath.Join(dir, "journal"),
			StateFile: filepath.Join(dir, "state.json"), AdminListen: "127.0.0.1:0",
			ListenOverride: anyPort, Logger: quiet(), Ready: func(r *SimRunner) { ready <- r },
		}, &out)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("RunSim: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	text := out.String()
	t.Logf("output:\n%s", text)
	lines := []string{
		`^pool   pool01\.contoso\.com  https://127\.0\.0\.1:\d+$`,
		`^pool   pool02\.contoso\.com  https://127\.0\.0\.1:\d+$`,
		`^server fe01\.pool01\.contoso\.com \(pool01\.contoso\.com\)  https://127\.0\.0\.1:\d+$`,
		`^server fe01\.pool02\.contoso\.com \(pool02\.contoso\.com\)  https://127\.0\.0\.1:\d+$`,
		`^admin  https://127\.0\.0\.1:\d+$`,
		`^ready$`,
	}
	got := strings.Split(strings.TrimSpace(text), "\n")
	if len(got) != len(lines) {
		t.Fatalf("%d lines, want %d", len(got), len(lines))
	}
	for i, re := range lines {
		if !regexp.MustCompile(re).MatchString(got[i]) {
			t.Errorf("line %d %q does not match %s", i, got[i], re)
		}
	}
	adminURL := strings.TrimPrefix(got[4], "admin  ")
	tlsCfg, err := clientTLS(b)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 5 * time.Second}
	resp, err := hc.Get(adminURL + sim.AdminPrefix + "/state")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("pool01.contoso.com")) {
		t.Errorf("admin state: %d %s", resp.StatusCode, body)
	}
	hc.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunSim returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RunSim did not stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "journal", "fe01.pool01.contoso.com")); err != nil {
		t.Errorf("per-endpoint journal: %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
