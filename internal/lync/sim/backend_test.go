package sim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestIdentity(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	id, err := backend(t, d, "FE02.pool02.contoso.com").Identity(context.Background())
	want := lync.Identity{ServerFQDN: fe2p2, PoolFQDN: pool02, Product: protocol.ProductLync2013, Backend: "sim"}
	if err != nil || id != want {
		t.Errorf("Identity = %+v, %v; want %+v", id, err, want)
	}
	if _, err := d.Backend("pool99.contoso.com"); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("Backend(unknown) err = %v", err)
	}
}

// TestNoPoolLevelAgent: a pool FQDN has no agent of its own; the error names the pool's servers,
// and pool-level calls work from any server of any pool.
func TestNoPoolLevelAgent(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	_, err := d.Backend(pool01)
	if !errors.Is(err, lync.ErrNotFound) || !strings.Contains(errString(err), fe1p1) || !strings.Contains(errString(err), fe2p1) {
		t.Fatalf("Backend(pool) = %v, want ErrNotFound naming %s and %s", err, fe1p1, fe2p1)
	}
	// A server of pool03 reads pool01 and pairs pool01 with pool02.
	be := backend(t, d, "fe01.pool03.contoso.com")
	p, err := be.Pool(context.Background(), pool01)
	if err != nil || p.FQDN != pool01 || p.CMSPool != pool01 || !p.HostsCMS {
		t.Fatalf("Pool(pool01) from pool03 = %+v, %v", p, err)
	}
	if err := do(t, clk, 3*time.Second, func() error {
		return be.PairPools(context.Background(), protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}); err != nil {
		t.Fatal(err)
	}
	if p := poolOf(t, d, pool02); p.BackupPool != pool01 || p.CMSPool != pool01 || p.HostsCMS {
		t.Errorf("pool02 = %+v", p)
	}
	tl := d.Timeline()
	if len(tl) != 1 || tl[0].Server != "fe01.pool03.contoso.com" || tl[0].Target != pool01 || tl[0].Outcome != OutcomeSucceeded {
		t.Errorf("timeline:\n%s", timelineSummary(tl))
	}
}

func TestPoolFacts(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	be := backend(t, d, fe1p2)
	p, err := be.Pool(context.Background(), pool01)
	if err != nil {
		t.Fatal(err)
	}
	if p.FQDN != pool01 || p.Site != "Redmond" || p.Edition != protocol.EditionEnterprise || p.Version != "Lync Server 2013" ||
		!p.HostsCMS || p.BackupPool != "" || strings.Join(p.Computers, ",") != fe1p1+","+fe2p1 {
		t.Errorf("Pool = %+v", p)
	}
	if p := poolOf(t, d, pool02); p.HostsCMS {
		t.Errorf("pool02 hosts the CMS")
	}
	for _, name := range []string{"pool99.contoso.com", fe1p1} {
		if _, err := be.Pool(context.Background(), name); !errors.Is(err, lync.ErrNotFound) {
			t.Errorf("Pool(%s) err = %v, want ErrNotFound", name, err)
		}
	}
}

func TestPairPools(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	v0 := d.Snapshot().TopologyVersion
	be := via(t, d, pool01)

	// The pairing appears only once the pairPools duration has passed.
	done := make(chan error, 1)
	go func() {
		done <- be.PairPools(context.Background(), protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02,
			VoiceFailover: &protocol.VoiceFailover{Enabled: true, FailureDetectionIntervalSeconds: 300}})
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if p := poolOf(t, d, pool01); p.BackupPool != "" {
		t.Fatalf("paired before the publish finished: %+v", p)
	}
	clk.Step(2 * time.Second)
	if p := poolOf(t, d, pool01); p.BackupPool != "" {
		t.Fatalf("paired after 2s of 3s")
	}
	clk.Step(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a, b := poolOf(t, d, pool01), poolOf(t, d, pool02); a.BackupPool != pool02 || b.BackupPool != pool01 {
		t.Fatalf("backup pools = %q, %q", a.BackupPool, b.BackupPool)
	}
	s := d.Snapshot()
	if s.TopologyVersion != v0+1 {
		t.Errorf("topology version %d, want %d", s.TopologyVersion, v0+1)
	}
	if vf := s.Pools[0].VoiceFailover; vf == nil || !vf.Enabled || vf.FailureDetectionIntervalSeconds != 300 {
		t.Errorf("voice failover = %+v", vf)
	}

	// Idempotent, either way round, and nothing is republished (no wait: do returns at once).
	for _, p := range []protocol.PairPoolsParams{
		{PrimaryFQDN: pool01, BackupFQDN: pool02, VoiceFailover: &protocol.VoiceFailover{Enabled: true, FailureDetectionIntervalSeconds: 300}},
		{PrimaryFQDN: "POOL02.contoso.com", BackupFQDN: pool01},
	} {
		if err := instant(t, clk, func() error { return via(t, d, pool02).PairPools(context.Background(), p) }); err != nil {
			t.Errorf("PairPools(%+v) again: %v", p, err)
		}
	}
	if got := d.Snapshot().TopologyVersion; got != v0+1 {
		t.Errorf("topology version %d after idempotent pairings, want %d", got, v0+1)
	}
	if c := d.Counts(); c["PairPools/"+pool01] != 2 || c["PairPools/"+pool02] != 1 {
		t.Errorf("counts = %v", c)
	}
}

func TestPairPoolsRefused(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, d *Deployment, clk *FakeClock)
		a, b    string
		wantErr error
		wantMsg string
	}{
		{name: "primary paired with a third pool", setup: pairedWith(pool01, pool02), a: pool01, b: pool03, wantErr: lync.ErrConflict, wantMsg: "pool01.contoso.com is already paired with pool02.contoso.com"},
		{name: "backup paired with a third pool", setup: pairedWith(pool01, pool02), a: pool03, b: pool02, wantErr: lync.ErrConflict, wantMsg: "pool02.contoso.com is already paired with pool01.contoso.com"},
		{name: "out-of-band one-sided pairing", setup: func(t *testing.T, d *Deployment, _ *FakeClock) {
			if err := d.SetBackupPool(pool02, pool03); err != nil {
				t.Fatal(err)
			}
		}, a: pool01, b: pool02, wantErr: lync.ErrConflict, wantMsg: "pool02.contoso.com is already paired with pool03.contoso.com"},
		{name: "edition mismatch", a: pool01, b: "se01.contoso.com", wantErr: lync.ErrConflict, wantMsg: "edition mismatch"},
		{name: "version mismatch", a: "pool15.contoso.com", b: pool02, wantErr: lync.ErrConflict, wantMsg: "version mismatch"},
		{name: "unknown pool", a: pool01, b: "pool99.contoso.com", wantErr: lync.ErrNotFound},
		{name: "server is not a pool", a: pool01, b: fe1p2, wantErr: lync.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newSim(t, baseYAML)
			if tc.setup != nil {
				tc.setup(t, d, clk)
			}
			before := d.Snapshot()
			err := pair(t, d, clk, tc.a, tc.b)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(errString(err), tc.wantMsg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
			}
			after := d.Snapshot()
			for i := range before.Pools {
				if before.Pools[i].BackupPool != after.Pools[i].BackupPool {
					t.Errorf("%s backup pool changed %q -> %q", before.Pools[i].FQDN, before.Pools[i].BackupPool, after.Pools[i].BackupPool)
				}
			}
			if before.TopologyVersion != after.TopologyVersion {
				t.Errorf("topology republished")
			}
		})
	}
}

func TestPairPoolsRechecksAfterWait(t *testing.T) {
	// An administrator pairs pool02 elsewhere while the publish is in progress: refused, not overwritten.
	d, clk := newSim(t, baseYAML)
	be := via(t, d, pool01)
	done := make(chan error, 1)
	go func() {
		done <- be.PairPools(context.Background(), protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBackupPool(pool02, pool03); err != nil {
		t.Fatal(err)
	}
	clk.Step(3 * time.Second)
	if err := <-done; !errors.Is(err, lync.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if p := poolOf(t, d, pool01); p.BackupPool != "" {
		t.Errorf("pool01 paired with %q", p.BackupPool)
	}
}

func TestTopologyWritesSerialized(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	v0 := d.Snapshot().TopologyVersion
	params := protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02}
	errs := make(chan error, 2)
	go func() { errs <- via(t, d, pool01).PairPools(context.Background(), params) }()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// The same write again while the first is publishing: it must wait for the first, then find
	// the pools paired and publish nothing. Racing it would publish twice.
	go func() { errs <- via(t, d, pool02).PairPools(context.Background(), params) }()
	waitCount(t, d, "PairPools/"+pool01, 2)
	clk.Step(3 * time.Second)
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the second write is waiting for a publish of its own")
		}
	}
	if v := d.Snapshot().TopologyVersion; v != v0+1 {
		t.Errorf("topology version %d, want %d: the writes were not serialized", v, v0+1)
	}
}

// waitCount waits until the operation counter reaches n (the operation has started). It polls real
// time only to synchronize with another goroutine; the sim's own time stays on the fake clock.
func waitCount(t *testing.T, d *Deployment, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d.Counts()[key] < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %d", key, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func pairedWith(a, b string) func(t *testing.T, d *Deployment, clk *FakeClock) {
	return func(t *testing.T, d *Deployment, clk *FakeClock) {
		t.Helper()
		if err := pair(t, d, clk, a, b); err != nil {
			t.Fatalf("PairPools: %v", err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestUnpair(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	unpair := func(a, b string) error {
		be := via(t, d, a)
		return do(t, clk, 3*time.Second, func() error {
			return be.Unpair(context.Background(), protocol.UnpairParams{PrimaryFQDN: a, BackupFQDN: b})
		})
	}
	if err := unpair(pool01, pool03); !errors.Is(err, lync.ErrConflict) {
		t.Errorf("Unpair with the wrong partner: %v", err)
	}
	if err := unpair(pool02, pool01); err != nil {
		t.Fatal(err)
	}
	if a, b := poolOf(t, d, pool01), poolOf(t, d, pool02); a.BackupPool != "" || b.BackupPool != "" {
		t.Fatalf("still paired: %q, %q", a.BackupPool, b.BackupPool)
	}
	if err := instant(t, clk, func() error {
		return via(t, d, pool01).Unpair(context.Background(), protocol.UnpairParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}); err != nil {
		t.Errorf("Unpair again: %v", err)
	}
	// Without a partner the backup status starts from scratch.
	if got := exports(t, d, pool01)["UserServices.PresenceFocus"]; got != protocol.ExportNotInitialized {
		t.Errorf("export after unpair = %s", got)
	}
	if c := d.Counts(); c["Unpair/"+pool01] != 2 || c["Unpair/"+pool02] != 1 {
		t.Errorf("counts = %v", c)
	}
}

func TestBootstrapFailuresThenSuccess(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe01.pool01.contoso.com\n", "  - fqdn: fe01.pool01.contoso.com\n    faults: {bootstrapFailures: 2, rebootRequired: 1}\n")
	d, clk := newSim(t, yml)
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	wants := []struct {
		rebootFirst     bool // the administrator restarts the server before this run
		exit            int
		succeeded, boot bool
		log             string
	}{
		{exit: 1603, log: "failure code 1603"},
		{exit: 1603, log: "failure code 1603"},
		{exit: 3010, boot: true, log: "restart is required"},
		{exit: 3010, boot: true, log: "a restart of fe01.pool01.contoso.com is pending"}, // no restart yet: nothing happens
		{rebootFirst: true, exit: 0, succeeded: true, log: "completed successfully"},
		{exit: 0, succeeded: true, log: "completed successfully"}, // and again: safe to repeat
	}
	for i, w := range wants {
		if w.rebootFirst {
			if err := d.Reboot(fe1p1); err != nil {
				t.Fatal(err)
			}
		}
		r, err := bootstrap(t, d, clk, fe1p1)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if r.ExitCode != w.exit || r.Succeeded != w.succeeded || r.RebootRequired != w.boot || !strings.Contains(r.LogTail, w.log) {
			t.Fatalf("run %d = %+v, want %+v", i+1, r, w)
		}
		s := serverState(t, d, fe1p1)
		if s.BackupService.Installed != w.succeeded {
			t.Errorf("run %d: installed = %v", i+1, s.BackupService.Installed)
		}
		if s.LastBootstrap == nil || s.LastBootstrap.ExitCode != w.exit || !s.LastBootstrap.Finished.Equal(clk.Now()) {
			t.Errorf("run %d: last bootstrap %+v", i+1, s.LastBootstrap)
		}
		if w.succeeded && (r.BackupPool != pool02 || s.BackupService.Status != protocol.ServiceStopped || s.BootstrappedFor != pool02) {
			t.Errorf("run %d: result %+v, server %+v", i+1, r, s)
		}
	}
	if f := serverState(t, d, fe1p1).Faults; f.BootstrapFailures != 0 || f.RebootRequired != 0 {
		t.Errorf("faults left = %+v", f)
	}
	if c := d.Counts()["Bootstrap/"+fe1p1]; c != len(wants) {
		t.Errorf("Bootstrap count = %d, want %d", c, len(wants))
	}
	// The 4th run (while the restart was pending) and the 6th (after a success) are duplicates;
	// the 5th, after the restart, is not.
	dups := Duplicates(d.Timeline())
	if len(dups) != 2 || !strings.Contains(dups[0], "the 4th started at") || !strings.Contains(dups[0], "while a restart of the server was pending (the 3rd asked for it at") ||
		!strings.Contains(dups[1], "the 6th started at") || !strings.Contains(dups[1], "after the 5th succeeded") {
		t.Errorf("duplicates = %q", dups)
	}
}

func TestBootstrapUnpairedInstallsNothing(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	r, err := bootstrap(t, d, clk, fe1p1)
	if err != nil || !r.Succeeded || r.ExitCode != 0 || r.BackupPool != "" {
		t.Fatalf("Bootstrap = %+v, %v", r, err)
	}
	svc, err := backend(t, d, fe1p1).BackupService(context.Background())
	if err != nil || svc.Installed || svc.Status != "" {
		t.Fatalf("BackupService = %+v, %v", svc, err)
	}
}

func TestBootstrapRemovesServiceAfterUnpair(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	if err := d.SetBackupPool(pool01, ""); err != nil {
		t.Fatal(err)
	}
	if r, err := bootstrap(t, d, clk, fe1p1); err != nil || !r.Succeeded || r.BackupPool != "" {
		t.Fatalf("Bootstrap = %+v, %v", r, err)
	}
	if s := serverState(t, d, fe1p1); s.BackupService.Installed || s.BootstrappedFor != "" {
		t.Errorf("server = %+v", s)
	}
}

// TestBootstrapOutlivesItsCaller: Bootstrapper is a process of the deployment. When the caller's
// ctx ends (the agent dies), Bootstrap returns at once but the run goes on, uses its fault and
// changes the server as it would have; another agent process finds it with RunningBootstrap and
// gets the very result the run produced.
func TestBootstrapOutlivesItsCaller(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe01.pool01.contoso.com\n", "  - fqdn: fe01.pool01.contoso.com\n    faults: {rebootRequired: 1}\n")
	d, clk := newSim(t, yml)
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	first := backend(t, d, fe1p1)
	if _, found, err := first.RunningBootstrap(context.Background()); found || err != nil {
		t.Fatalf("RunningBootstrap before any run: found=%v err=%v", found, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	n := clk.Waiters() + 1
	go func() {
		_, err := first.Bootstrap(ctx)
		done <- err
	}()
	if err := clk.WaitForWaiters(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	// The process that is waiting for its own run is not offered it again.
	if _, found, _ := first.RunningBootstrap(context.Background()); found {
		t.Error("RunningBootstrap offered the caller its own run while it waits for it")
	}
	clk.Step(3 * time.Second) // most of the run
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Bootstrap after its ctx ended: %v, want context.Canceled", err)
	}
	if s := serverState(t, d, fe1p1); s.LastBootstrap != nil {
		t.Fatalf("the run ended early: %+v", s)
	}
	if got := d.Snapshot().Bootstrapping; len(got) != 1 || got[0] != fe1p1 {
		t.Errorf("bootstrapping = %v", got)
	}

	// A new agent process finds the run; so does the old one now that it stopped waiting.
	second := backend(t, d, fe1p1)
	wait, found, err := second.RunningBootstrap(context.Background())
	if err != nil || !found {
		t.Fatalf("RunningBootstrap = found %v, %v", found, err)
	}
	if _, found, _ := first.RunningBootstrap(context.Background()); !found {
		t.Error("the first view no longer waits for the run, yet RunningBootstrap does not offer it")
	}
	// A waiter honours its own ctx without ending the run.
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if _, err := wait(short); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with an ended ctx = %v", err)
	}
	waited := make(chan bootOut, 1)
	go func() {
		r, err := wait(context.Background())
		waited <- bootOut{r, err}
	}()
	clk.Step(time.Second) // the run's end: 4s after it started
	res := <-waited
	if res.err != nil || res.res.ExitCode != exitRebootRequired || !res.res.RebootRequired || res.res.Succeeded {
		t.Fatalf("waiter result = %+v", res)
	}
	s := serverState(t, d, fe1p1)
	if s.LastBootstrap == nil || s.LastBootstrap.ExitCode != exitRebootRequired || s.Faults.RebootRequired != 0 {
		t.Errorf("server after the run = %+v", s)
	}
	if _, found, _ := second.RunningBootstrap(context.Background()); found {
		t.Error("RunningBootstrap found a run after it ended")
	}
	tl := d.Timeline()
	boots := 0
	for _, x := range tl {
		if x.Kind == string(protocol.KindBootstrap) {
			boots++
			if x.Outcome != OutcomeFailed || x.Finished == nil || !x.Finished.Equal(t0.Add(7*time.Second)) || !x.Started.Equal(t0.Add(3*time.Second)) {
				t.Errorf("bootstrap execution %+v", x)
			}
		}
	}
	if boots != 1 {
		t.Errorf("%d Bootstrap executions:\n%s", boots, timelineSummary(tl))
	}
	// The next run starts (the server is not left busy) but asks for the restart again; once the
	// administrator has restarted the server, the one after succeeds.
	if r, err := bootstrap(t, d, clk, fe1p1); err != nil || !r.RebootRequired || r.Succeeded {
		t.Errorf("next run before the restart = %+v, %v", r, err)
	}
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	if r, err := bootstrap(t, d, clk, fe1p1); err != nil || !r.Succeeded {
		t.Errorf("next run after the restart = %+v, %v", r, err)
	}
}

// TestSecondBootstrapConflicts: while Bootstrapper runs on a server, another Bootstrap there fails
// at once with ErrConflict, from the same agent process or another, and starts no second run; other
// servers are not affected.
func TestSecondBootstrapConflicts(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	results := make(chan bootOut, 1)
	go func() {
		r, err := backend(t, d, fe1p1).Bootstrap(context.Background())
		results <- bootOut{r, err}
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	for _, be := range []lync.Backend{backend(t, d, fe1p1), backend(t, d, "FE01.pool01.contoso.com")} {
		o := instant(t, clk, func() bootOut { r, err := be.Bootstrap(context.Background()); return bootOut{r, err} })
		if !errors.Is(o.err, lync.ErrConflict) || !strings.Contains(o.err.Error(), "Bootstrapper.exe is already running on "+fe1p1) {
			t.Fatalf("second Bootstrap = %+v, want ErrConflict", o)
		}
	}
	if n := clk.Waiters(); n != 1 {
		t.Fatalf("%d runs in progress, want 1", n)
	}
	// Another server runs its own at the same time.
	other := make(chan bootOut, 1)
	go func() {
		r, err := backend(t, d, fe2p1).Bootstrap(context.Background())
		other <- bootOut{r, err}
	}()
	if err := clk.WaitForWaiters(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	clk.Step(4 * time.Second)
	for _, ch := range []chan bootOut{results, other} {
		if o := <-ch; o.err != nil || !o.res.Succeeded {
			t.Fatalf("run = %+v", o)
		}
	}
	tl := d.Timeline()
	if len(tl) != 2 || MaxConcurrent(tl, "Bootstrap", []string{fe1p1, fe2p1}) != 2 || MaxConcurrent(tl, "Bootstrap", []string{fe1p1}) != 1 {
		t.Errorf("timeline (refused calls are not executions):\n%s", timelineSummary(tl))
	}
	if dups := Duplicates(tl); len(dups) != 0 {
		t.Errorf("duplicates %v", dups)
	}
	if c := d.Counts()["Bootstrap/"+fe1p1]; c != 3 {
		t.Errorf("Bootstrap calls counted = %d, want 3", c)
	}
}

// TestCloseInterruptsBootstrap: switching the deployment off ends a run without changing anything.
func TestCloseInterruptsBootstrap(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	done := make(chan bootOut, 1)
	go func() {
		r, err := backend(t, d, fe1p1).Bootstrap(context.Background())
		done <- bootOut{r, err}
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if o := <-done; !errors.Is(o.err, lync.ErrUnavailable) {
		t.Fatalf("Bootstrap at Close = %+v", o)
	}
	if s := serverState(t, d, fe1p1); s.LastBootstrap != nil {
		t.Errorf("server changed: %+v", s)
	}
	if tl := d.Timeline(); len(tl) != 1 || tl[0].Outcome != OutcomeInterrupted {
		t.Errorf("timeline:\n%s", timelineSummary(tl))
	}
	if _, err := backend(t, d, fe2p1).Bootstrap(context.Background()); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("Bootstrap after Close = %v", err)
	}
	d.Close() // twice is fine
}

// TestInterruptedOperationsChangeNothing: an operation whose ctx ends mid-way (its agent was
// killed) changes nothing and is recorded Interrupted; the server is not left busy.
func TestInterruptedOperationsChangeNothing(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	be := backend(t, d, fe1p1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- be.PairPools(ctx, protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Step(2 * time.Second)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("PairPools = %v", err)
	}
	clk.Step(time.Minute) // the abandoned timer fires; still nothing may change
	if p := poolOf(t, d, pool01); p.BackupPool != "" {
		t.Fatalf("an interrupted PairPools paired: %+v", p)
	}
	tl := d.Timeline()
	if len(tl) != 1 || tl[0].Outcome != OutcomeInterrupted || tl[0].Finished == nil || !tl[0].Finished.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("timeline:\n%s", timelineSummary(tl))
	}
	// A retry after an interruption is no duplicate; it publishes.
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	if dups := Duplicates(d.Timeline()); len(dups) != 0 {
		t.Errorf("duplicates: %v", dups)
	}
}

func TestStartBackupService(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe02.pool01.contoso.com\n", "  - fqdn: fe02.pool01.contoso.com\n    faults: {serviceWillNotStart: true}\n")
	d, clk := newSim(t, yml)

	// Not installed yet: a clear error.
	err := startService(t, d, clk, fe1p1)
	if !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "Bootstrapper") {
		t.Fatalf("start before bootstrap: %v", err)
	}
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fe1p1, fe2p1} {
		if _, err := bootstrap(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}

	// Running only once the duration has passed.
	done := make(chan error, 1)
	go func() { done <- backend(t, d, fe1p1).StartBackupService(context.Background()) }()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe1p1); s.BackupService.Status != protocol.ServiceStopped {
		t.Fatalf("status before the start finished = %s", s.BackupService.Status)
	}
	clk.Step(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if svc, _ := backend(t, d, fe1p1).BackupService(context.Background()); !svc.Installed || svc.Status != protocol.ServiceRunning || svc.Started == nil || !svc.Started.Equal(clk.Now()) {
		t.Fatalf("BackupService = %+v", svc)
	}
	// Idempotent: returns at once without waiting.
	if err := instant(t, clk, func() error { return backend(t, d, fe1p1).StartBackupService(context.Background()) }); err != nil {
		t.Errorf("start again: %v", err)
	}

	// The fault: the service will not start.
	err = startService(t, d, clk, fe2p1)
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("start with serviceWillNotStart: %v", err)
	}
	if s := serverState(t, d, fe2p1); s.BackupService.Status != protocol.ServiceStopped {
		t.Errorf("status = %s", s.BackupService.Status)
	}
	// Fixed by an administrator: it starts.
	if err := d.SetFaults(fe2p1, ServerFaults{}); err != nil {
		t.Fatal(err)
	}
	if err := startService(t, d, clk, fe2p1); err != nil {
		t.Errorf("start after clearing the fault: %v", err)
	}
	if c := d.Counts(); c["StartBackupService/"+fe1p1] != 3 || c["StartBackupService/"+fe2p1] != 2 {
		t.Errorf("counts = %v", c)
	}
}

func TestCounts(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	if err := syncBackup(t, d, clk, pool01); err != nil {
		t.Fatal(err)
	}
	if err := syncBackup(t, d, clk, pool02); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"PairPools/" + pool01:         1,
		"Bootstrap/" + fe1p1:          1,
		"Bootstrap/" + fe2p1:          1,
		"Bootstrap/" + fe1p2:          1,
		"Bootstrap/" + fe2p2:          1,
		"StartBackupService/" + fe1p1: 1,
		"StartBackupService/" + fe1p2: 1,
		"SyncBackup/" + pool01:        1,
		"SyncBackup/" + pool02:        1,
	}
	got := d.Counts()
	if len(got) != len(want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counts[%s] = %d, want %d", k, got[k], v)
		}
	}
	// Admin controls are not operations.
	_ = d.StopBackupService(fe1p1)
	_ = d.SetUnreachable(fe1p1, true)
	if after := d.Counts(); len(after) != len(want) {
		t.Errorf("admin controls counted: %v", after)
	}
	// Counts returns a copy.
	got["Bootstrap/"+fe1p1] = 99
	if d.Counts()["Bootstrap/"+fe1p1] != 1 {
		t.Error("Counts exposes internal state")
	}
}

func TestReachable(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe02.pool02.contoso.com\n", "  - fqdn: fe02.pool02.contoso.com\n    faults: {unreachable: true}\n")
	d, _ := newSim(t, yml)
	if !d.Reachable(fe1p2) || d.Reachable(fe2p2) || !d.Reachable(pool01) || d.Reachable("pool99.contoso.com") {
		t.Fatal("initial reachability wrong")
	}
	for _, name := range []string{pool01, fe1p1} {
		if err := d.SetUnreachable(name, true); err != nil {
			t.Fatal(err)
		}
		if d.Reachable(name) {
			t.Errorf("%s reachable after SetUnreachable(true)", name)
		}
		if err := d.SetUnreachable(strings.ToUpper(name), false); err != nil {
			t.Fatal(err)
		}
		if !d.Reachable(name) {
			t.Errorf("%s unreachable after SetUnreachable(false)", name)
		}
	}
	if err := d.SetUnreachable("pool99.contoso.com", true); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("SetUnreachable(unknown) = %v", err)
	}
}

func TestSetBackupPoolValidation(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	for _, tc := range []struct {
		pool, backup string
		want         error
	}{
		{pool01, pool01, ErrInvalid},
		{pool01, "pool99.contoso.com", lync.ErrNotFound},
		{fe1p1, pool02, lync.ErrNotFound},
	} {
		if err := d.SetBackupPool(tc.pool, tc.backup); !errors.Is(err, tc.want) {
			t.Errorf("SetBackupPool(%s, %s) = %v, want %v", tc.pool, tc.backup, err, tc.want)
		}
	}
	if err := d.SetBackupPool(pool01, pool03); err != nil {
		t.Fatal(err)
	}
	if a, c := poolOf(t, d, pool01), poolOf(t, d, pool03); a.BackupPool != pool03 || c.BackupPool != "" {
		t.Errorf("one side only: %q, %q", a.BackupPool, c.BackupPool)
	}
}

func TestCancelledContextRefusedUpFront(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	be := backend(t, d, fe1p1)
	calls := map[string]error{
		"Identity":  func() error { _, err := be.Identity(ctx); return err }(),
		"Pool":      func() error { _, err := be.Pool(ctx, pool01); return err }(),
		"Bootstrap": func() error { _, err := be.Bootstrap(ctx); return err }(),
		"PairPools": be.PairPools(ctx, protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02}),
		"Sync":      be.SyncBackup(ctx, pool01),
	}
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c := d.Counts(); len(c) != 0 {
		t.Errorf("counted: %v", c)
	}
}
