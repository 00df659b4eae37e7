package sim

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const fe1p3 = "fe01.pool03.contoso.com"

func unpair(t *testing.T, d *Deployment, clk *FakeClock, a, b string) error {
	t.Helper()
	be := via(t, d, a)
	return do(t, clk, 3*time.Second, func() error {
		return be.Unpair(context.Background(), protocol.UnpairParams{PrimaryFQDN: a, BackupFQDN: b})
	})
}

// imports maps module -> import status.
func imports(t *testing.T, d *Deployment, pool string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range status(t, d, pool).Modules {
		out[m.Identity] = m.ImportStatus
	}
	return out
}

func poolState(t *testing.T, d *Deployment, fqdn string) PoolState {
	t.Helper()
	for _, p := range d.Snapshot().Pools {
		if p.FQDN == fqdn {
			return p
		}
	}
	t.Fatalf("no pool %s in snapshot", fqdn)
	return PoolState{}
}

// repairWithPool03 takes a running pool01-pool02 pair, unpairs it and pairs pool01 with pool03 the
// documented way (publish, Bootstrapper on every Front End of both pools, LYNCBACKUP started on
// pool03), but leaves pool01's LYNCBACKUP running as it was: started for pool02.
func repairWithPool03(t *testing.T, d *Deployment, clk *FakeClock) {
	t.Helper()
	pairAndRun(t, d, clk)
	if err := unpair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	if err := pair(t, d, clk, pool01, pool03); err != nil {
		t.Fatal(err)
	}
	for _, x := range [][2]string{{fe1p1, pool03}, {fe2p1, pool03}, {fe1p3, pool01}} {
		if r, err := bootstrap(t, d, clk, x[0]); err != nil || !r.Succeeded || r.BackupPool != x[1] {
			t.Fatalf("Bootstrap %s = %+v, %v", x[0], r, err)
		}
	}
	if err := startService(t, d, clk, fe1p3); err != nil {
		t.Fatal(err)
	}
}

// TestRunningServiceIgnoresANewPartner: a LYNCBACKUP that ran before the pairing changed keeps
// serving its old partner; Bootstrapper does not restart it and StartBackupService does nothing,
// so its pool's backup is in ErrorState (export and import) and nothing replicates either way
// until RestartBackupService.
func TestRunningServiceIgnoresANewPartner(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	repairWithPool03(t, d, clk)
	started := *serverState(t, d, fe1p1).BackupService.Started

	s := serverState(t, d, fe1p1)
	if !s.BackupServiceStale || s.BackupServiceServes != pool02 || s.BootstrappedFor != pool03 || s.BackupService.Status != protocol.ServiceRunning {
		t.Fatalf("fe01.pool01 = %+v", s)
	}
	if s := serverState(t, d, fe2p1); s.BackupServiceStale { // installed, never started
		t.Errorf("fe02.pool01 = %+v", s)
	}
	if s := serverState(t, d, fe1p3); s.BackupServiceStale || s.BackupServiceServes != pool01 {
		t.Errorf("fe01.pool03 = %+v", s)
	}
	// pool02 is unpaired: whatever its service does, it has no direction.
	if s := serverState(t, d, fe1p2); s.BackupServiceStale {
		t.Errorf("fe01.pool02 (unpaired pool) = %+v", s)
	}
	checkExports(t, d, pool02, nonCMS(protocol.ExportNotInitialized), "unpaired pool")

	stuck := func(when string) {
		t.Helper()
		checkExports(t, d, pool01, all(protocol.ExportErrorState), when)
		for m, st := range imports(t, d, pool01) {
			if st != protocol.ImportErrorState {
				t.Errorf("%s: pool01 import %s = %s, want ErrorState", when, m, st)
			}
		}
		// The partner's side: never replicated, nothing to import.
		checkExports(t, d, pool03, nonCMS(protocol.ExportNotInitialized), when)
		for m, st := range imports(t, d, pool03) {
			if st != protocol.ImportNormalState {
				t.Errorf("%s: pool03 import %s = %s", when, m, st)
			}
		}
		if p := poolState(t, d, pool01); p.BackupActive || poolState(t, d, pool03).BackupActive {
			t.Errorf("%s: a direction is active", when)
		}
		for _, p := range []string{pool01, pool03} {
			err := syncBackup(t, d, clk, p)
			if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "LYNCBACKUP on "+fe1p1+" still serves") {
				t.Errorf("%s: SyncBackup(%s) = %v", when, p, err)
			}
		}
	}
	stuck("stale service")
	// Starting a running service does nothing, at once.
	if err := instant(t, clk, func() error { return backend(t, d, fe1p1).StartBackupService(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe1p1); !s.BackupServiceStale || !s.BackupService.Started.Equal(started) {
		t.Errorf("StartBackupService changed the running service: %+v", s)
	}
	// Bootstrapper again: still not restarted.
	if _, err := bootstrap(t, d, clk, fe1p1); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Hour) // no periodic sync happens either
	stuck("an hour later")

	// The restart: stopped at once, running after the duration.
	be := backend(t, d, fe1p1)
	done := make(chan error, 1)
	n := clk.Waiters() + 1
	go func() { done <- be.RestartBackupService(context.Background()) }()
	if err := clk.WaitForWaiters(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe1p1); s.BackupService.Status != protocol.ServiceStopped || s.BackupService.Started != nil || s.BackupServiceStale {
		t.Errorf("during the restart: %+v", s)
	}
	clk.Step(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s = serverState(t, d, fe1p1)
	if s.BackupService.Status != protocol.ServiceRunning || !s.BackupService.Started.Equal(clk.Now()) || s.BackupServiceStale || s.BackupServiceServes != pool03 {
		t.Fatalf("after the restart: %+v", s)
	}
	// From scratch with the new partner: the first export is a backlog.
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "restarted")
	checkExports(t, d, pool03, nonCMS(protocol.ExportNonSteadyState), "restarted")
	for m, st := range imports(t, d, pool01) {
		if st != protocol.ImportNormalState {
			t.Errorf("pool01 import %s = %s after the restart", m, st)
		}
	}
	if b := poolState(t, d, pool01).Backlog; b != 500 {
		t.Errorf("backlog = %v, want the initial 500", b)
	}
	if err := syncBackup(t, d, clk, pool01); err != nil {
		t.Errorf("sync after the restart: %v", err)
	}
	var restarts []Execution
	for _, x := range d.Timeline() {
		if x.Kind == string(protocol.KindRestartBackupService) {
			restarts = append(restarts, x)
		}
	}
	if len(restarts) != 1 || restarts[0].Target != fe1p1 || restarts[0].Server != fe1p1 || restarts[0].Outcome != OutcomeSucceeded ||
		!restarts[0].Finished.Equal(restarts[0].Started.Add(time.Second)) {
		t.Errorf("restarts = %+v", restarts)
	}
	if c := d.Counts()["RestartBackupService/"+fe1p1]; c != 1 {
		t.Errorf("count = %d", c)
	}
}

// TestOneStaleServiceBreaksThePool: with two running Front Ends, one fresh and one stale, the pool
// is still broken: the sim cannot tell which one is active, so every stale one must be restarted.
// A reboot fixes one as a restart does.
func TestOneStaleServiceBreaksThePool(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	if err := startService(t, d, clk, fe2p1); err != nil { // both Front Ends of pool01 run
		t.Fatal(err)
	}
	// An administrator re-pairs pool01 with pool03 in Topology Builder, out of band.
	for _, x := range [][2]string{{pool02, ""}, {pool01, pool03}, {pool03, pool01}} {
		if err := d.SetBackupPool(x[0], x[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{fe1p1, fe2p1, fe1p3} {
		if _, err := bootstrap(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := startService(t, d, clk, fe1p3); err != nil {
		t.Fatal(err)
	}
	if err := restartService(t, d, clk, fe2p1); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(protocol.ExportErrorState), "fe01 still stale")
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "both fresh")
}

// TestRestartBackupService: the edges of Stop-CsWindowsService then Start-CsWindowsService.
func TestRestartBackupService(t *testing.T) {
	yml := replace(t, baseYAML, "  startBackupService: 1s\n", "  startBackupService: 1s\n  restartBackupService: 5s\n")
	yml = replace(t, yml, "  - fqdn: fe02.pool01.contoso.com\n", "  - fqdn: fe02.pool01.contoso.com\n    faults: {serviceWillNotStart: true}\n")
	d, clk := newSim(t, yml)

	err := restartService(t, d, clk, fe1p1)
	if !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("restart where not installed: %v", err)
	}
	pairAndRun(t, d, clk)

	// Its own duration (restartBackupService: 5s).
	be := backend(t, d, fe1p1)
	if err := do(t, clk, 5*time.Second, func() error { return be.RestartBackupService(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	tl := d.Timeline()
	if x := tl[len(tl)-1]; x.Kind != "RestartBackupService" || !x.Finished.Equal(x.Started.Add(5*time.Second)) {
		t.Errorf("restart = %+v", x)
	}
	// Not idempotent: a second one restarts again, and is a duplicate (of the 2nd execution: the
	// 1st, refused, Failed).
	first := *serverState(t, d, fe1p1).BackupService.Started
	clk.Step(time.Minute)
	if err := do(t, clk, 5*time.Second, func() error { return be.RestartBackupService(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe1p1); s.BackupService.Started.Equal(first) {
		t.Error("the second restart did not restart")
	}
	if dups := Duplicates(d.Timeline()); len(dups) != 1 || !strings.Contains(dups[0], "RestartBackupService "+fe1p1+" ran 3 times; the 3rd") || !strings.Contains(dups[0], "after the 2nd succeeded") {
		t.Errorf("duplicates = %q", dups)
	}

	// A stopped service is just started.
	if s := serverState(t, d, fe2p2); s.BackupService.Status != protocol.ServiceStopped {
		t.Fatalf("fe02.pool02 = %+v", s)
	}
	if err := do(t, clk, 5*time.Second, func() error { return backend(t, d, fe2p2).RestartBackupService(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe2p2); s.BackupService.Status != protocol.ServiceRunning {
		t.Errorf("fe02.pool02 = %+v", s)
	}

	// Will not start: stopped, and left so.
	if err := startService(t, d, clk, fe2p1); err == nil {
		t.Fatal("the fault did not work")
	}
	err = do(t, clk, 5*time.Second, func() error { return backend(t, d, fe2p1).RestartBackupService(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), "did not start again") {
		t.Errorf("restart with serviceWillNotStart = %v", err)
	}
	if s := serverState(t, d, fe2p1); s.BackupService.Status != protocol.ServiceStopped {
		t.Errorf("fe02.pool01 = %+v", s)
	}

	// Cut short (the agent died): the stop happened, the start did not.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	n := clk.Waiters() + 1
	go func() { done <- be.RestartBackupService(ctx) }()
	if err := clk.WaitForWaiters(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cut short = %v", err)
	}
	clk.Step(time.Minute)
	if s := serverState(t, d, fe1p1); s.BackupService.Status != protocol.ServiceStopped || s.BackupService.Started != nil {
		t.Errorf("after a cut-short restart: %+v", s)
	}
	tl = d.Timeline()
	if x := tl[len(tl)-1]; x.Kind != "RestartBackupService" || x.Outcome != OutcomeInterrupted {
		t.Errorf("last execution = %+v", x)
	}
}

// TestRestartBackupServiceDefaultsToStartDuration: without restartBackupService, a restart takes
// the startBackupService duration.
func TestRestartBackupServiceDefaultsToStartDuration(t *testing.T) {
	d, clk := newSim(t, baseYAML) // startBackupService: 1s
	pairAndRun(t, d, clk)
	if d.topo.timing.RestartBackupService != time.Second {
		t.Fatalf("timing = %+v", d.topo.timing)
	}
	if err := restartService(t, d, clk, fe1p1); err != nil {
		t.Fatal(err)
	}
	tl := d.Timeline()
	if x := tl[len(tl)-1]; !x.Finished.Equal(x.Started.Add(time.Second)) {
		t.Errorf("restart = %+v", x)
	}
}

// TestUnpairRemovesBackupData: each pool holds its partner's data once that direction has
// replicated; a pairing changed out of band leaves it behind, as Lync does; Unpair removes it from
// both pools; a later pairing with a third pool starts from scratch.
func TestUnpairRemovesBackupData(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	if p := poolState(t, d, pool01); len(p.BackupDataOf) != 0 {
		t.Fatalf("data before any replication: %v", p.BackupDataOf)
	}
	pairAndRun(t, d, clk) // the pair is already published: only the rest happens
	if a, b := poolState(t, d, pool01).BackupDataOf, poolState(t, d, pool02).BackupDataOf; !slices.Equal(a, []string{pool02}) || !slices.Equal(b, []string{pool01}) {
		t.Fatalf("backup data = %v, %v", a, b)
	}

	// Out of band: the association goes, the data stays.
	for _, p := range []string{pool01, pool02} {
		if err := d.SetBackupPool(p, ""); err != nil {
			t.Fatal(err)
		}
	}
	if a := poolState(t, d, pool01).BackupDataOf; !slices.Equal(a, []string{pool02}) {
		t.Fatalf("data after an out-of-band unpair = %v", a)
	}
	// Unpair of pools already unpaired still removes what they hold, taking its time, and
	// publishes nothing.
	version := d.Snapshot().TopologyVersion
	if err := unpair(t, d, clk, pool02, pool01); err != nil {
		t.Fatal(err)
	}
	st := d.Snapshot()
	if st.TopologyVersion != version {
		t.Errorf("topology published: %d -> %d", version, st.TopologyVersion)
	}
	for _, p := range st.Pools {
		if len(p.BackupDataOf) != 0 {
			t.Errorf("%s still holds %v", p.FQDN, p.BackupDataOf)
		}
	}
	// Nothing left: the next Unpair returns at once.
	if err := instant(t, clk, func() error {
		return via(t, d, pool01).Unpair(context.Background(), protocol.UnpairParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}); err != nil {
		t.Fatal(err)
	}

	// A fresh deployment: the operator's own Unpair removes association and data in one go.
	d, clk = newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	if err := syncBackup(t, d, clk, pool01); err != nil {
		t.Fatal(err)
	}
	if err := unpair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Snapshot().Pools {
		if p.BackupPool != "" || len(p.BackupDataOf) != 0 || p.BackupActive {
			t.Errorf("after Unpair: %s = backup pool %q, data %v, active %v", p.FQDN, p.BackupPool, p.BackupDataOf, p.BackupActive)
		}
	}
	// A later pairing with a third pool starts from scratch: the initial backlog.
	if err := pair(t, d, clk, pool01, pool03); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fe1p1, fe2p1, fe1p3} {
		if _, err := bootstrap(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{fe1p3} {
		if err := startService(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}
	checkExports(t, d, pool01, all(protocol.ExportErrorState), "fe01.pool01 still serves pool02")
	if err := restartService(t, d, clk, fe1p1); err != nil {
		t.Fatal(err)
	}
	p1 := poolState(t, d, pool01)
	if !p1.BackupActive || p1.Backlog != 500 {
		t.Errorf("pool01 -> pool03 = active %v, backlog %v; want the initial 500", p1.BackupActive, p1.Backlog)
	}
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "first export to pool03")
	if a, c := poolState(t, d, pool01).BackupDataOf, poolState(t, d, pool03).BackupDataOf; !slices.Equal(a, []string{pool03}) || !slices.Equal(c, []string{pool01}) {
		t.Errorf("backup data = %v, %v", a, c)
	}
	if b := poolState(t, d, pool02).BackupDataOf; len(b) != 0 {
		t.Errorf("pool02 holds %v", b)
	}
}

// TestNextSteps: Skype for Business Server asks the administrator to re-apply the cumulative
// update after a successful Bootstrapper run; Lync Server 2013 does not.
func TestNextSteps(t *testing.T) {
	for _, product := range []string{protocol.ProductLync2013, protocol.ProductSfB2015, protocol.ProductSfB2019} {
		t.Run(product, func(t *testing.T) {
			yml := replace(t, baseYAML, "product: lync2013", "product: "+product)
			yml = replace(t, yml, "  version: Skype for Business Server 2015\n", "  version: Other\n")
			yml = replace(t, yml, "  - fqdn: fe02.pool01.contoso.com\n", "  - fqdn: fe02.pool01.contoso.com\n    faults: {bootstrapFailures: 1, rebootRequired: 1}\n")
			d, clk := newSim(t, yml)
			r, err := bootstrap(t, d, clk, fe1p1)
			if err != nil || !r.Succeeded {
				t.Fatalf("Bootstrap = %+v, %v", r, err)
			}
			if product == protocol.ProductLync2013 {
				if len(r.NextSteps) != 0 || serverState(t, d, fe1p1).LastBootstrap.NextSteps != nil {
					t.Errorf("Lync 2013 next steps = %q", r.NextSteps)
				}
			} else {
				if len(r.NextSteps) != 1 || !strings.Contains(r.NextSteps[0], fe1p1) || !strings.Contains(r.NextSteps[0], "SkypeServerUpdateInstaller.exe") || !strings.Contains(r.NextSteps[0], "cumulative update") {
					t.Errorf("next steps = %q", r.NextSteps)
				}
				if got := serverState(t, d, fe1p1).LastBootstrap.NextSteps; !slices.Equal(got, r.NextSteps) {
					t.Errorf("snapshot next steps = %q", got)
				}
			}
			// Runs that did not succeed have none.
			for i := 0; i < 2; i++ {
				if r, _ := bootstrap(t, d, clk, fe2p1); r.Succeeded || len(r.NextSteps) != 0 {
					t.Errorf("failed run %d = %+v", i+1, r)
				}
			}
		})
	}
}

// TestSyncInterval: reported in whole seconds (rounded up), changed at run time within its range,
// and it drives the periodic syncs from the change on.
func TestSyncInterval(t *testing.T) {
	d, clk := newSim(t, baseYAML) // syncInterval: 20s
	if s := status(t, d, pool01); s.SyncIntervalSeconds != 20 {
		t.Errorf("SyncIntervalSeconds = %d", s.SyncIntervalSeconds)
	}
	for _, x := range []struct {
		in   time.Duration
		want int
	}{{90 * time.Second, 90}, {1500 * time.Millisecond, 2}, {time.Second, 1}, {3 * time.Hour, 10800}, {2*time.Minute + time.Nanosecond, 121}} {
		if err := d.SetSyncInterval(x.in); err != nil {
			t.Fatalf("SetSyncInterval(%v): %v", x.in, err)
		}
		if s := status(t, d, pool02); s.SyncIntervalSeconds != x.want || d.SyncInterval() != x.in {
			t.Errorf("%v: SyncIntervalSeconds = %d, want %d", x.in, s.SyncIntervalSeconds, x.want)
		}
	}
	for _, bad := range []time.Duration{999 * time.Millisecond, 0, -time.Second, 3*time.Hour + time.Second} {
		if err := d.SetSyncInterval(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "syncInterval") {
			t.Errorf("SetSyncInterval(%v) = %v", bad, err)
		}
	}
	if got := d.Snapshot().SyncInterval; got != "2m0.000000001s" {
		t.Errorf("snapshot sync interval = %q", got)
	}

	// The periodic syncs follow the interval in force.
	d, clk = newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "first export pending")
	clk.Step(10 * time.Second)
	if err := d.SetSyncInterval(time.Hour); err != nil {
		t.Fatal(err)
	}
	clk.Step(50 * time.Second) // the old 20s interval would have synced twice by now
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "long interval")
	if err := d.SetSyncInterval(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Step(4 * time.Second)
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "4s into a 5s interval")
	clk.Step(time.Second)
	checkExports(t, d, pool01, all(protocol.ExportFinalState), "5s into a 5s interval")

	// The default is Lync's: 120 s.
	d, _ = newSim(t, replace(t, baseYAML, "  syncInterval: 20s\n", ""))
	if s := status(t, d, pool01); s.SyncIntervalSeconds != 120 {
		t.Errorf("default SyncIntervalSeconds = %d", s.SyncIntervalSeconds)
	}
}
