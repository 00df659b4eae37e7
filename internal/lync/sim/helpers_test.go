package sim

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// t0 is an arbitrary fixed start for the fake clock.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// baseYAML has the pools the tests need: a pair to make (pool01, pool02), a third Enterprise pool,
// a Standard Edition pool and an Enterprise pool of another version.
const baseYAML = `
product: lync2013
sites: [Redmond, Dublin, Paris]
cms: {pool: pool01.contoso.com}
durations:
  pairPools: 3s
  bootstrap: 4s
  startBackupService: 1s
  syncBackup: 3s
  syncInterval: 20s
  changeRate: 0
  batchCapacity: 100
  initialBacklog: 500
pools:
- fqdn: pool01.contoso.com
  site: Redmond
  edition: Enterprise
  listen: 127.0.0.1:0
  servers:
  - fqdn: fe01.pool01.contoso.com
  - fqdn: fe02.pool01.contoso.com
- fqdn: pool02.contoso.com
  site: Dublin
  edition: Enterprise
  servers:
  - fqdn: fe01.pool02.contoso.com
  - fqdn: fe02.pool02.contoso.com
- fqdn: pool03.contoso.com
  site: Paris
  edition: Enterprise
  servers:
  - fqdn: fe01.pool03.contoso.com
- fqdn: se01.contoso.com
  site: Paris
  edition: Standard
  servers:
  - fqdn: se01srv.contoso.com
- fqdn: pool15.contoso.com
  site: Paris
  edition: Enterprise
  version: Skype for Business Server 2015
  servers:
  - fqdn: fe01.pool15.contoso.com
`

const (
	pool01 = "pool01.contoso.com"
	pool02 = "pool02.contoso.com"
	pool03 = "pool03.contoso.com"
	fe1p1  = "fe01.pool01.contoso.com"
	fe2p1  = "fe02.pool01.contoso.com"
	fe1p2  = "fe01.pool02.contoso.com"
	fe2p2  = "fe02.pool02.contoso.com"
)

// replace edits baseYAML, failing the test when old is not there (so edits cannot silently rot).
func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("test YAML does not contain %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

func newSim(t *testing.T, yml string, opts ...Option) (*Deployment, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(t0)
	d, err := Parse([]byte(yml), append([]Option{WithClock(clk)}, opts...)...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d, clk
}

// backend is a new agent process's view of server fqdn.
func backend(t *testing.T, d *Deployment, fqdn string) lync.Backend {
	t.Helper()
	b, err := d.Backend(fqdn)
	if err != nil {
		t.Fatalf("Backend(%s): %v", fqdn, err)
	}
	return b
}

// via is the view of the first Front End of pool: pool-level calls go to any server of the pool.
func via(t *testing.T, d *Deployment, pool string) lync.Backend {
	t.Helper()
	servers, err := d.Servers(pool)
	if err != nil {
		t.Fatalf("Servers(%s): %v", pool, err)
	}
	return backend(t, d, servers[0])
}

// do runs fn, which may wait on the fake clock, in a goroutine; if fn starts waiting, it steps the
// clock by step and returns fn's result. Operations that return without waiting return at once.
func do[T any](t *testing.T, clk *FakeClock, step time.Duration, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	waiting := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := clk.Waiters() + 1
	go func() { waiting <- clk.WaitForWaiters(ctx, n) }()
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("operation neither finished nor waited on the clock")
	}
	clk.Step(step)
	select {
	case v := <-done:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("operation did not finish after stepping the clock by %v", step)
	}
	var zero T
	return zero
}

// instant runs fn and fails the test if fn waits on the fake clock instead of returning at once
// (an idempotent call that would redo its work). The clock is then stepped to release fn.
func instant[T any](t *testing.T, clk *FakeClock, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	waiting := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := clk.Waiters() + 1
	go func() { waiting <- clk.WaitForWaiters(ctx, n) }()
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-waiting:
		clk.Step(24 * time.Hour)
		<-done
		t.Fatal("the call waited on the clock; it should have returned at once")
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return")
	}
	var zero T
	return zero
}

// anyView is the view of the deployment's first server: pool reads work from any server.
func anyView(t *testing.T, d *Deployment) lync.Backend {
	t.Helper()
	return backend(t, d, d.topo.servers[0].FQDN)
}

// timelineSummary renders a timeline for failure messages.
func timelineSummary(tl []Execution) string {
	var b strings.Builder
	for _, x := range tl {
		fin := "running"
		if x.Finished != nil {
			fin = stamp(*x.Finished)
		}
		fmt.Fprintf(&b, "%s %s on %s: %s .. %s %s\n", x.Kind, x.Target, x.Server, stamp(x.Started), fin, x.Outcome)
	}
	return b.String()
}

type bootOut struct {
	res lync.BootstrapResult
	err error
}

func pair(t *testing.T, d *Deployment, clk *FakeClock, a, b string) error {
	t.Helper()
	be := via(t, d, a)
	return do(t, clk, 3*time.Second, func() error {
		return be.PairPools(context.Background(), protocol.PairPoolsParams{PrimaryFQDN: a, BackupFQDN: b})
	})
}

func bootstrap(t *testing.T, d *Deployment, clk *FakeClock, server string) (lync.BootstrapResult, error) {
	t.Helper()
	be := backend(t, d, server)
	o := do(t, clk, 4*time.Second, func() bootOut {
		r, err := be.Bootstrap(context.Background())
		return bootOut{r, err}
	})
	return o.res, o.err
}

func startService(t *testing.T, d *Deployment, clk *FakeClock, server string) error {
	t.Helper()
	be := backend(t, d, server)
	return do(t, clk, time.Second, func() error { return be.StartBackupService(context.Background()) })
}

func restartService(t *testing.T, d *Deployment, clk *FakeClock, server string) error {
	t.Helper()
	be := backend(t, d, server)
	return do(t, clk, time.Second, func() error { return be.RestartBackupService(context.Background()) })
}

func syncBackup(t *testing.T, d *Deployment, clk *FakeClock, pool string) error {
	t.Helper()
	be := via(t, d, pool)
	return do(t, clk, 3*time.Second, func() error { return be.SyncBackup(context.Background(), pool) })
}

// pairAndRun pairs pool01 and pool02, bootstraps every server of both and starts LYNCBACKUP on
// the first Front End of each: both directions are then active.
func pairAndRun(t *testing.T, d *Deployment, clk *FakeClock) {
	t.Helper()
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatalf("PairPools: %v", err)
	}
	for _, s := range []string{fe1p1, fe2p1, fe1p2, fe2p2} {
		if r, err := bootstrap(t, d, clk, s); err != nil || !r.Succeeded {
			t.Fatalf("Bootstrap %s: %+v, %v", s, r, err)
		}
	}
	for _, s := range []string{fe1p1, fe1p2} {
		if err := startService(t, d, clk, s); err != nil {
			t.Fatalf("StartBackupService %s: %v", s, err)
		}
	}
}

func status(t *testing.T, d *Deployment, pool string) protocol.BackupStatus {
	t.Helper()
	s, err := anyView(t, d).BackupStatus(context.Background(), pool)
	if err != nil {
		t.Fatalf("BackupStatus(%s): %v", pool, err)
	}
	return s
}

// exports maps module -> export status.
func exports(t *testing.T, d *Deployment, pool string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range status(t, d, pool).Modules {
		out[m.Identity] = m.ExportStatus
	}
	return out
}

func serverState(t *testing.T, d *Deployment, fqdn string) ServerState {
	t.Helper()
	for _, s := range d.Snapshot().Servers {
		if s.FQDN == fqdn {
			return s
		}
	}
	t.Fatalf("no server %s in snapshot", fqdn)
	return ServerState{}
}

func poolOf(t *testing.T, d *Deployment, fqdn string) protocol.Pool {
	t.Helper()
	p, err := anyView(t, d).Pool(context.Background(), fqdn)
	if err != nil {
		t.Fatalf("Pool(%s): %v", fqdn, err)
	}
	return p
}
