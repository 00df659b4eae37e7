package simrun

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// deploymentYAML: pool01 has two Front Ends, pool02 one; both pools have an alias.
const deploymentYAML = `
product: lync2013
sites: [Redmond, Dublin]
cms: {pool: pool01.contoso.com}
durations: {pairPools: 1h, bootstrap: 1h, startBackupService: 0s, syncBackup: 0s, syncInterval: 20s}
pools:
  - fqdn: pool01.contoso.com
    site: Redmond
    edition: Enterprise
    version: Lync Server 2013
    listen: 127.0.0.1:0
    servers:
      - fqdn: fe01.pool01.contoso.com
      - fqdn: fe02.pool01.contoso.com
  - fqdn: pool02.contoso.com
    site: Dublin
    edition: Enterprise
    version: Lync Server 2013
    listen: 127.0.0.1:0
    servers:
      - fqdn: fe01.pool02.contoso.com
`

const (
	pool01 = "pool01.contoso.com"
	pool02 = "pool02.contoso.com"
	fe1p1  = "fe01.pool01.contoso.com"
	fe2p1  = "fe02.pool01.contoso.com"
	fe1p2  = "fe01.pool02.contoso.com"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

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

// startTestSim serves deploymentYAML on a fake clock.
func startTestSim(t *testing.T) (*SimRunner, *agentclient.Client, *sim.FakeClock) {
	t.Helper()
	b := testCerts(t)
	clk := sim.NewFakeClock(t0)
	d, err := sim.Parse([]byte(deploymentYAML), sim.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartSim(t.Context(), d, TLS{CAPEM: b.CACertPEM, CertPEM: b.ServerCertPEM, KeyPEM: b.ServerKeyPEM}, t.TempDir(), anyPort, WithLogger(quiet()), WithVersion("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r, newClient(t), clk
}

func newClient(t *testing.T) *agentclient.Client {
	t.Helper()
	b := testCerts(t)
	c, err := agentclient.New(agentclient.Config{CertPEM: b.ClientCertPEM, KeyPEM: b.ClientKeyPEM, CAPEM: b.CACertPEM, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// activeConns is the number of open connections of a server's agent.
func (r *SimRunner) activeConns(fqdn string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byFQDN[fqdn]
	if e == nil || e.agent == nil {
		return 0
	}
	e.agent.ln.mu.Lock()
	defer e.agent.ln.mu.Unlock()
	return len(e.agent.ln.conns)
}

// freshInfo asks url for /v1/info over a new connection (no keep-alive: each request is one
// connection, so each goes through the alias's pick).
func freshInfo(t *testing.T, url string) (protocol.Info, error) {
	t.Helper()
	tlsCfg, err := clientTLS(testCerts(t))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Get(url + "/v1/info")
	if err != nil {
		return protocol.Info{}, err
	}
	defer resp.Body.Close()
	var info protocol.Info
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return protocol.Info{}, err
	}
	return info, nil
}

func TestEveryServerServesItsOwnAgent(t *testing.T) {
	r, c, _ := startTestSim(t)
	eps := r.Endpoints()
	if len(eps) != 5 {
		t.Fatalf("endpoints %v", eps)
	}
	for _, fe := range []struct{ server, pool string }{{fe1p1, pool01}, {fe2p1, pool01}, {fe1p2, pool02}} {
		info, err := c.Info(t.Context(), eps[fe.server])
		if err != nil {
			t.Fatalf("%s: %v", fe.server, err)
		}
		if info.ServerFQDN != fe.server || info.PoolFQDN != fe.pool || info.Backend != "sim" || info.AgentVersion != "test" {
			t.Errorf("%s answered %+v", fe.server, info)
		}
	}
	// A pool's alias is not an agent: whoever answers is one of its Front Ends.
	info, err := c.Info(t.Context(), eps[pool02])
	if err != nil || info.ServerFQDN != fe1p2 {
		t.Errorf("pool02's alias: %+v, %v", info, err)
	}
	l := r.List()
	if l[0].Kind != sim.KindPool || l[0].FQDN != pool01 || l[1].Kind != sim.KindPool || l[2].Kind != sim.KindServer || l[4].FQDN != fe1p2 {
		t.Errorf("List order %+v", l)
	}
	// One journal per server, none per alias.
	if err := r.RestartAgent(pool01); !errors.Is(err, sim.ErrInvalid) {
		t.Errorf("RestartAgent(pool) = %v", err)
	}
	if err := r.RestartAgent("fe09.pool01.contoso.com"); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("RestartAgent(unknown) = %v", err)
	}
}

// TestAliasSpreadsConnections: like DNS round robin, the pool alias hands each connection to a
// Front End of the pool picked at random; every server of the pool gets some, no other server any.
func TestAliasSpreadsConnections(t *testing.T) {
	r, _, _ := startTestSim(t)
	alias := r.Endpoints()[pool01]
	seen := map[string]int{}
	for range 40 {
		info, err := freshInfo(t, alias)
		if err != nil {
			t.Fatal(err)
		}
		if info.PoolFQDN != pool01 {
			t.Fatalf("pool01's alias reached %+v", info)
		}
		seen[info.ServerFQDN]++
	}
	t.Logf("connections per server: %v", seen)
	if len(seen) != 2 || seen[fe1p1] == 0 || seen[fe2p1] == 0 {
		t.Errorf("connections per server %v: want both Front Ends of pool01", seen)
	}
}

// TestAliasClosesConnectionToDeadServer: the alias knows nothing of liveness. When the server it
// picks is stopped or unreachable, the client's connection is closed, as a dead host's would be;
// the other server still answers the connections that go to it.
func TestAliasClosesConnectionToDeadServer(t *testing.T) {
	r, _, _ := startTestSim(t)
	alias := r.Endpoints()[pool01]
	try := func(what, dead string) {
		t.Helper()
		failed, answered := 0, 0
		for range 40 {
			info, err := freshInfo(t, alias)
			if err != nil {
				failed++
				continue
			}
			answered++
			if info.ServerFQDN == dead {
				t.Fatalf("%s: %s answered through the alias", what, dead)
			}
		}
		t.Logf("%s: %d connections closed, %d answered", what, failed, answered)
		if failed == 0 || answered == 0 {
			t.Errorf("%s: %d closed, %d answered; want some of each (the alias picks either server)", what, failed, answered)
		}
	}
	if err := r.StopEndpoint(fe2p1); err != nil {
		t.Fatal(err)
	}
	try("fe02 stopped", fe2p1)
	if err := r.StartEndpoint(fe2p1); err != nil {
		t.Fatal(err)
	}
	if err := r.Deployment().SetUnreachable(fe1p1, true); err != nil {
		t.Fatal(err)
	}
	try("fe01 unreachable", fe1p1)
	if err := r.Deployment().SetUnreachable(fe1p1, false); err != nil {
		t.Fatal(err)
	}
	// The pool's own name can be made to fail, or be stopped.
	if err := r.Deployment().SetUnreachable(pool01, true); err != nil {
		t.Fatal(err)
	}
	if _, err := freshInfo(t, alias); err == nil {
		t.Error("unreachable alias answered")
	}
	if err := r.Deployment().SetUnreachable(pool01, false); err != nil {
		t.Fatal(err)
	}
	if err := r.StopEndpoint(pool01); err != nil {
		t.Fatal(err)
	}
	if _, err := freshInfo(t, alias); err == nil {
		t.Error("stopped alias answered")
	}
	if err := r.StartEndpoint(pool01); err != nil {
		t.Fatal(err)
	}
	if _, err := freshInfo(t, alias); err != nil {
		t.Errorf("alias started again: %v", err)
	}
}

func TestUnreachableEndpointDropsConnections(t *testing.T) {
	r, c, _ := startTestSim(t)
	ep := r.Endpoints()[fe1p1]
	if _, err := c.Info(t.Context(), ep); err != nil { // leaves a kept-alive connection
		t.Fatal(err)
	}
	if err := r.Deployment().SetUnreachable(fe1p1, true); err != nil {
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
	if _, err := c.Info(t.Context(), r.Endpoints()[fe1p2]); err != nil {
		t.Errorf("other server: %v", err)
	}
	if err := r.Deployment().SetUnreachable(fe1p1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(t.Context(), ep); err != nil {
		t.Errorf("reachable again: %v", err)
	}
}

// TestBootstrapperSurvivesAgentRestart: an agent killed while Bootstrapper runs comes back on the
// same address with the same journal; the run goes on meanwhile, no second run starts, and the new
// agent (through RunningBootstrap) reports the run's own result for the operation.
func TestBootstrapperSurvivesAgentRestart(t *testing.T) {
	r, c, clk := startTestSim(t)
	d := r.Deployment()
	ep := r.Endpoints()[fe1p1]
	if _, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "boot-1", Kind: protocol.KindBootstrap}); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), 1); err != nil { // Bootstrapper runs
		t.Fatal(err)
	}
	// A long-poll in flight when the agent dies gets no answer: its connection is cut. (A client
	// of its own: a fresh connection, which the transport does not retry on.)
	c2 := newClient(t)
	n0 := r.activeConns(fe1p1)
	polled := make(chan error, 1)
	go func() {
		_, err := c2.WaitOperation(t.Context(), ep, "boot-1", 30*time.Second)
		polled <- err
	}()
	waitFor(t, "the long-poll's connection", func() bool { return r.activeConns(fe1p1) > n0 })
	if err := r.RestartAgent(fe1p1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-polled:
		if !errors.Is(err, agentclient.ErrUnavailable) {
			t.Errorf("long-poll across the kill = %v, want the connection cut", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll was not cut by the kill")
	}
	if got := r.Endpoints()[fe1p1]; got != ep {
		t.Errorf("restarted on %s, was %s", got, ep)
	}
	if got := d.Snapshot().Bootstrapping; len(got) != 1 || got[0] != fe1p1 {
		t.Fatalf("bootstrapping after the restart: %v", got)
	}
	op, err := c.Operation(t.Context(), ep, "boot-1")
	if err != nil || op.State != protocol.StateRunning {
		t.Fatalf("boot-1 after the restart = %+v, %v; want Running (the run goes on)", op, err)
	}
	// Asking for another run, under a new id, starts none.
	if op2, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "boot-2", Kind: protocol.KindBootstrap}); err == nil {
		op2, err = c.AwaitDone(t.Context(), ep, "boot-2")
		if err != nil || op2.State != protocol.StateFailed {
			t.Errorf("second Bootstrap = %+v, %v; want refused", op2, err)
		}
	} else if !errors.Is(err, agentclient.ErrConflict) {
		t.Errorf("second Bootstrap = %v; want a conflict", err)
	}
	if n := clk.Waiters(); n != 1 {
		t.Errorf("%d runs in progress, want 1", n)
	}
	clk.Step(time.Hour) // the run ends
	op, err = c.AwaitDone(t.Context(), ep, "boot-1")
	if err != nil || op.State != protocol.StateSucceeded || !strings.Contains(op.Message, "Bootstrapper.exe succeeded") {
		t.Fatalf("boot-1 = %+v, %v; want the run's own success", op, err)
	}
	srv, err := c.Server(t.Context(), ep)
	if err != nil || srv.LastBootstrap == nil || !srv.LastBootstrap.Succeeded {
		t.Errorf("server after the run = %+v, %v", srv, err)
	}
	tl := d.Timeline()
	boots := 0
	for _, x := range tl {
		if x.Kind == string(protocol.KindBootstrap) {
			boots++
			if x.Outcome != sim.OutcomeSucceeded {
				t.Errorf("run %+v", x)
			}
		}
	}
	if boots != 1 || len(sim.Duplicates(tl)) != 0 {
		t.Errorf("%d Bootstrapper runs, duplicates %v", boots, sim.Duplicates(tl))
	}
}

// TestRestartCutsOtherOperations: anything but Bootstrapper dies with the agent, changes nothing,
// and is reported failed and retryable.
func TestRestartCutsOtherOperations(t *testing.T) {
	r, c, clk := startTestSim(t)
	d := r.Deployment()
	ep := r.Endpoints()[fe2p1]
	req := protocol.OperationRequest{ID: "pair-1", Kind: protocol.KindPairPools, Params: json.RawMessage(`{"primaryFqdn":"pool01.contoso.com","backupFqdn":"pool02.contoso.com"}`)}
	if _, err := c.StartOperation(t.Context(), ep, req); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), 1); err != nil { // publishing
		t.Fatal(err)
	}
	if err := r.RestartAgent(fe2p1); err != nil {
		t.Fatal(err)
	}
	clk.Step(2 * time.Hour) // long past the publish; the abandoned one must not land
	op, err := c.AwaitDone(t.Context(), ep, "pair-1")
	if err != nil || op.State != protocol.StateFailed || !op.Retryable || !strings.Contains(op.Message, "interrupted") {
		t.Errorf("pair-1 after the restart = %+v, %v", op, err)
	}
	for _, p := range d.Snapshot().Pools {
		if p.BackupPool != "" {
			t.Errorf("%s paired by an operation the kill cut short", p.FQDN)
		}
	}
	if tl := d.Timeline(); len(tl) != 1 || tl[0].Outcome != sim.OutcomeInterrupted || tl[0].Server != fe2p1 {
		t.Errorf("timeline %+v", tl)
	}
}

func TestRestartAgentOnTheAdminAPI(t *testing.T) {
	r, c, _ := startTestSim(t)
	admin, err := r.ServeAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := clientTLS(testCerts(t))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	ep := r.Endpoints()[fe1p2]
	if _, err := c.Info(t.Context(), ep); err != nil { // a kept-alive connection the restart cuts
		t.Fatal(err)
	}
	post := func(path string) (int, string) {
		t.Helper()
		resp, err := hc.Post(admin+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(sim.AdminPrefix + "/agents/" + fe1p2 + "/restart"); code != 200 || !strings.Contains(body, `"timeline"`) {
		t.Fatalf("restart: %d %s", code, body)
	}
	if info, err := c.Info(t.Context(), ep); err != nil || info.ServerFQDN != fe1p2 {
		t.Errorf("after the restart: %+v, %v", info, err)
	}
	for path, want := range map[string]int{
		"/agents/fe09.pool01.contoso.com/restart": 404,
		"/agents/" + pool01 + "/restart":          400,
	} {
		if code, body := post(sim.AdminPrefix + path); code != want || !strings.Contains(body, `"code"`) {
			t.Errorf("%s: %d %s, want %d", path, code, body, want)
		}
	}
	// The sim's own routes are still there.
	if code, body := post(sim.AdminPrefix + "/servers/" + fe1p1 + "/stop-backup-service"); code != 409 {
		t.Errorf("stop-backup-service: %d %s", code, body)
	}
}

// TestRebootServer: the machine goes down with its agent and its Bootstrapper run, and comes back
// with a new boot time and its agent on the same address; through the Go API and the admin API.
func TestRebootServer(t *testing.T) {
	r, c, clk := startTestSim(t)
	d := r.Deployment()
	ep := r.Endpoints()[fe1p1]
	if _, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "boot-1", Kind: protocol.KindBootstrap}); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), 1); err != nil { // Bootstrapper runs
		t.Fatal(err)
	}
	clk.Step(time.Minute)
	if err := r.RebootServer(fe1p1); err != nil {
		t.Fatal(err)
	}
	if got := r.Endpoints()[fe1p1]; got != ep {
		t.Errorf("back on %s, was %s", got, ep)
	}
	if b := d.Snapshot().Bootstrapping; len(b) != 0 {
		t.Errorf("Bootstrapper still runs on %v", b)
	}
	op, err := c.AwaitDone(t.Context(), ep, "boot-1")
	if err != nil || op.State != protocol.StateFailed || !op.Retryable {
		t.Errorf("boot-1 across the reboot = %+v, %v", op, err)
	}
	tl := d.Timeline()
	if len(tl) != 1 || tl[0].Kind != "Bootstrap" || tl[0].Outcome != sim.OutcomeInterrupted {
		t.Errorf("timeline %+v", tl)
	}
	// The agent reports the sim's boot time (on the sim's clock).
	srv, err := c.Server(t.Context(), ep)
	if err != nil || srv.BootTime == nil || !srv.BootTime.Equal(t0.Add(time.Minute)) {
		t.Errorf("server after the reboot = %+v, %v", srv, err)
	}
	if srv, err := c.Server(t.Context(), r.Endpoints()[fe2p1]); err != nil || srv.BootTime == nil || !srv.BootTime.Equal(t0) {
		t.Errorf("another server = %+v, %v", srv, err)
	}
	// Nothing runs any more: the next run is a legitimate retry and succeeds. (The cut run's
	// abandoned timer still counts as a waiter until its deadline.)
	n := clk.Waiters() + 1
	if _, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "boot-2", Kind: protocol.KindBootstrap}); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Hour)
	if op, err := c.AwaitDone(t.Context(), ep, "boot-2"); err != nil || op.State != protocol.StateSucceeded {
		t.Errorf("boot-2 = %+v, %v", op, err)
	}
	if dups := sim.Duplicates(d.Timeline()); len(dups) != 0 {
		t.Errorf("duplicates %v", dups)
	}
	if err := r.RebootServer(pool01); !errors.Is(err, sim.ErrInvalid) {
		t.Errorf("reboot of a pool alias: %v", err)
	}
	if err := r.RebootServer("fe09.pool01.contoso.com"); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("reboot of an unknown server: %v", err)
	}

	// The admin API's reboot route is RebootServer's: the agent's connections are cut too.
	admin, err := r.ServeAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := clientTLS(testCerts(t))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	ep2 := r.Endpoints()[fe1p2]
	if _, err := c.Info(t.Context(), ep2); err != nil {
		t.Fatal(err)
	}
	n0 := r.activeConns(fe1p2)
	if n0 == 0 {
		t.Fatal("no kept-alive connection to cut")
	}
	clk.Step(time.Minute)
	resp, err := hc.Post(admin+sim.AdminPrefix+"/servers/"+fe1p2+"/reboot", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"bootTime"`) {
		t.Fatalf("reboot route: %d %s", resp.StatusCode, body)
	}
	if n := r.activeConns(fe1p2); n != 0 {
		t.Errorf("%d connections survived the reboot", n)
	}
	var st sim.State
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Servers {
		if s.FQDN == fe1p2 && !s.BootTime.Equal(clk.Now()) {
			t.Errorf("%s boot time = %v", s.FQDN, s.BootTime)
		}
	}
	if info, err := c.Info(t.Context(), ep2); err != nil && !errors.Is(err, agentclient.ErrUnavailable) || err == nil && info.ServerFQDN != fe1p2 {
		t.Errorf("after the reboot: %+v, %v", info, err)
	}
	if info, err := c.Info(t.Context(), ep2); err != nil || info.ServerFQDN != fe1p2 {
		t.Errorf("after the reboot: %+v, %v", info, err)
	}
}

// waitFor polls a condition of another goroutine's making (real time only synchronizes; the
// sim's time stays on its fake clock).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPortInUseStopsEverything(t *testing.T) {
	b := testCerts(t)
	// Five free addresses (two aliases, three servers); the third, fe01.pool01's, stays taken.
	var addrs []string
	var busy net.Listener
	for i := range 5 {
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
		`^server fe02\.pool01\.contoso\.com \(pool01\.contoso\.com\)  https://127\.0\.0\.1:\d+$`,
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
	adminURL := strings.TrimPrefix(got[5], "admin  ")
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

// TestFailoverOutlivesAgentRestart: a pool failover is a cmdlet of the server's PowerShell host,
// not of the agent: an agent killed while it runs reports it Failed with its outcome unknown; the
// failover goes on and lands, and the pool's read shows it. Nothing runs it twice.
func TestFailoverOutlivesAgentRestart(t *testing.T) {
	b := testCerts(t)
	clk := sim.NewFakeClock(t0)
	yml := strings.Replace(deploymentYAML, "syncInterval: 20s}", "syncInterval: 20s, failoverPool: 1h}", 1)
	yml = strings.Replace(yml, "cms: {pool: pool01.contoso.com}", "cms: {pool: pool02.contoso.com}", 1)
	yml = strings.Replace(yml, "    listen: 127.0.0.1:0\n    servers:\n      - fqdn: fe01.pool01", "    listen: 127.0.0.1:0\n    backupPool: pool02.contoso.com\n    servers:\n      - fqdn: fe01.pool01", 1)
	d, err := sim.Parse([]byte(yml), sim.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartSim(t.Context(), d, TLS{CAPEM: b.CACertPEM, CertPEM: b.ServerCertPEM, KeyPEM: b.ServerKeyPEM}, t.TempDir(), anyPort, WithLogger(quiet()), WithVersion("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	c := newClient(t)
	ep := r.Endpoints()[fe1p2]
	srv, err := c.Server(t.Context(), ep)
	if err != nil || srv.FrontEnd != protocol.ServiceRunning {
		t.Fatalf("server = %+v, %v", srv, err)
	}
	req := protocol.OperationRequest{ID: "over-1", Kind: protocol.KindFailoverPool, Params: json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)}
	if _, err := c.StartOperation(t.Context(), ep, req); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), 1); err != nil { // Invoke-CsPoolFailOver runs
		t.Fatal(err)
	}
	if err := r.RestartAgent(fe1p2); err != nil {
		t.Fatal(err)
	}
	op, err := c.AwaitDone(t.Context(), ep, "over-1")
	if err != nil || op.State != protocol.StateFailed || !op.OutcomeUnknown || !strings.Contains(op.Message, "the outcome is unknown") {
		t.Fatalf("over-1 after the restart = %+v, %v", op, err)
	}
	if p, err := c.Pool(t.Context(), ep, pool01); err != nil || p.FailedOverTo != "" {
		t.Fatalf("pool01 before the cmdlet's end = %+v, %v", p, err)
	}
	clk.Step(time.Hour)
	waitFor(t, "the failover to land", func() bool {
		p, err := c.Pool(t.Context(), ep, pool01)
		return err == nil && p.FailedOverTo == pool02
	})
	// Asking again under the same id answers from the journal; the sim ran it once.
	if op, err := c.StartOperation(t.Context(), ep, req); err != nil || op.State != protocol.StateFailed {
		t.Errorf("over-1 again = %+v, %v", op, err)
	}
	if n := d.Counts()["FailoverPool/"+pool01]; n != 1 {
		t.Errorf("FailoverPool ran %d times", n)
	}
	if tl := d.Timeline(); len(tl) != 1 || tl[0].Outcome != sim.OutcomeSucceeded {
		t.Errorf("timeline %+v", tl)
	}
}

// TestFailoverCutShortByAReboot: a restart of the server cuts the cmdlet short (it changes
// nothing), the agent reports the outcome unknown, and the same step under a new id then runs.
func TestFailoverCutShortByAReboot(t *testing.T) {
	b := testCerts(t)
	clk := sim.NewFakeClock(t0)
	yml := strings.Replace(deploymentYAML, "syncInterval: 20s}", "syncInterval: 20s, failoverPool: 1h}", 1)
	yml = strings.Replace(yml, "cms: {pool: pool01.contoso.com}", "cms: {pool: pool02.contoso.com}", 1)
	yml = strings.Replace(yml, "    listen: 127.0.0.1:0\n    servers:\n      - fqdn: fe01.pool01", "    listen: 127.0.0.1:0\n    backupPool: pool02.contoso.com\n    servers:\n      - fqdn: fe01.pool01", 1)
	d, err := sim.Parse([]byte(yml), sim.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartSim(t.Context(), d, TLS{CAPEM: b.CACertPEM, CertPEM: b.ServerCertPEM, KeyPEM: b.ServerKeyPEM}, t.TempDir(), anyPort, WithLogger(quiet()), WithVersion("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	c := newClient(t)
	ep := r.Endpoints()[fe1p2]
	params := json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)
	if _, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "over-1", Kind: protocol.KindFailoverPool, Params: params}); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if err := r.RebootServer(fe1p2); err != nil {
		t.Fatal(err)
	}
	op, err := c.AwaitDone(t.Context(), ep, "over-1")
	if err != nil || op.State != protocol.StateFailed || !op.OutcomeUnknown {
		t.Fatalf("over-1 after the reboot = %+v, %v", op, err)
	}
	if p, err := c.Pool(t.Context(), ep, pool01); err != nil || p.FailedOverTo != "" {
		t.Fatalf("pool01 after a failover cut short = %+v, %v", p, err)
	}
	// The cut-short run's timer is still on the fake clock: wait for one more.
	n := clk.Waiters()
	if _, err := c.StartOperation(t.Context(), ep, protocol.OperationRequest{ID: "over-2", Kind: protocol.KindFailoverPool, Params: params}); err != nil {
		t.Fatal(err)
	}
	if err := clk.WaitForWaiters(t.Context(), n+1); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Hour)
	if op, err := c.AwaitDone(t.Context(), ep, "over-2"); err != nil || op.State != protocol.StateSucceeded {
		t.Fatalf("over-2 = %+v, %v", op, err)
	}
	if p, err := c.Pool(t.Context(), ep, pool01); err != nil || p.FailedOverTo != pool02 {
		t.Errorf("pool01 = %+v, %v", p, err)
	}
	if tl := d.Timeline(); len(tl) != 2 || tl[0].Outcome != sim.OutcomeInterrupted || tl[1].Outcome != sim.OutcomeSucceeded || len(sim.Duplicates(tl)) != 0 {
		t.Errorf("timeline %+v", tl)
	}
}
