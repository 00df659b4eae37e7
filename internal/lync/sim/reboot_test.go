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

func bootTime(t *testing.T, d *Deployment, server string) time.Time {
	t.Helper()
	bt, err := backend(t, d, server).BootTime(context.Background())
	if err != nil {
		t.Fatalf("BootTime(%s): %v", server, err)
	}
	return bt
}

// TestBootTime: every server started with the deployment; a reboot moves only its own boot time.
func TestBootTime(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	for _, s := range []string{fe1p1, fe2p1, fe1p2} {
		if bt := bootTime(t, d, s); !bt.Equal(t0) {
			t.Errorf("%s boot time = %v, want the deployment's start %v", s, bt, t0)
		}
	}
	clk.Step(time.Hour)
	if err := d.Reboot(fe2p1); err != nil {
		t.Fatal(err)
	}
	if bt := bootTime(t, d, fe2p1); !bt.Equal(t0.Add(time.Hour)) {
		t.Errorf("boot time after the reboot = %v", bt)
	}
	if bt := bootTime(t, d, fe1p1); !bt.Equal(t0) {
		t.Errorf("another server's boot time moved: %v", bt)
	}
	if s := serverState(t, d, fe2p1); !s.BootTime.Equal(t0.Add(time.Hour)) || s.RebootPending {
		t.Errorf("snapshot = %+v", s)
	}
	if err := d.Reboot(pool01); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("reboot of a pool: %v", err)
	}
	if err := d.Reboot("fe09.pool01.contoso.com"); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("reboot of an unknown server: %v", err)
	}
	if c := d.Counts(); len(c) != 0 {
		t.Errorf("a reboot is not an operation, yet counts = %v", c)
	}
	if tl := d.Timeline(); len(tl) != 0 {
		t.Errorf("a reboot is not an execution:\n%s", timelineSummary(tl))
	}
	// A cancelled ctx is refused up front, as by every read.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := backend(t, d, fe1p1).BootTime(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("BootTime with an ended ctx = %v", err)
	}
}

// TestRebootRequiredNeedsTheAdministratorsRestart: a run that asks for a restart leaves the server
// not bootstrapped; until the restart, every run does nothing but ask again (and is a duplicate);
// after it, the next run goes on.
func TestRebootRequiredNeedsTheAdministratorsRestart(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe01.pool01.contoso.com\n", "  - fqdn: fe01.pool01.contoso.com\n    faults: {rebootRequired: 2}\n")
	d, clk := newSim(t, yml)
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	want3010 := func(when, log string, faultsLeft int) {
		t.Helper()
		r, err := bootstrap(t, d, clk, fe1p1)
		if err != nil || r.ExitCode != 3010 || !r.RebootRequired || r.Succeeded || r.BackupPool != "" || len(r.NextSteps) != 0 || !strings.Contains(r.LogTail, log) {
			t.Fatalf("%s: run = %+v, %v", when, r, err)
		}
		s := serverState(t, d, fe1p1)
		if !s.RebootPending || s.RebootRequested == nil || s.BackupService.Installed || s.BootstrappedFor != "" || s.Faults.RebootRequired != faultsLeft {
			t.Fatalf("%s: server = %+v", when, s)
		}
		if s.LastBootstrap == nil || !s.LastBootstrap.RebootRequired || s.LastBootstrap.ExitCode != 3010 {
			t.Fatalf("%s: last bootstrap = %+v", when, s.LastBootstrap)
		}
	}
	want3010("first run", "A restart is required", 1)
	asked := clk.Now()
	// The controller that runs it again instead of waiting gets nowhere: nothing is installed and
	// the fault count is not used up.
	want3010("again before the restart", "a restart of fe01.pool01.contoso.com is pending (requested at "+stamp(asked)+")", 1)
	want3010("and again", "Nothing was installed", 1)
	if s := serverState(t, d, fe1p1); !s.RebootRequested.Equal(asked) {
		t.Errorf("the restart was requested at %v, not %v", s.RebootRequested, asked)
	}

	clk.Step(time.Minute)
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe1p1); s.RebootPending || s.RebootRequested != nil || !s.BootTime.Equal(clk.Now()) {
		t.Fatalf("after the restart: %+v", s)
	}
	// One count was left: the run after the restart asks for another one.
	want3010("first run after the restart", "A restart is required", 0)
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	r, err := bootstrap(t, d, clk, fe1p1)
	if err != nil || !r.Succeeded || r.RebootRequired || r.BackupPool != pool02 {
		t.Fatalf("run after the second restart = %+v, %v", r, err)
	}
	if s := serverState(t, d, fe1p1); !s.BackupService.Installed || s.BootstrappedFor != pool02 || s.RebootPending {
		t.Errorf("bootstrapped server = %+v", s)
	}

	// The timeline says which runs asked and which started while a restart was pending; only
	// those are duplicates.
	type row struct {
		outcome           string
		required, pending bool
	}
	var got []row
	for _, x := range d.Timeline() {
		if x.Kind == string(protocol.KindBootstrap) {
			got = append(got, row{x.Outcome, x.RebootRequired, x.RebootPending})
		}
	}
	want := []row{
		{OutcomeFailed, true, false},
		{OutcomeFailed, true, true},
		{OutcomeFailed, true, true},
		{OutcomeFailed, true, false}, // after the restart
		{OutcomeSucceeded, false, false},
	}
	if len(got) != len(want) {
		t.Fatalf("bootstrap executions = %+v\n%s", got, timelineSummary(d.Timeline()))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("run %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
	dups := Duplicates(d.Timeline())
	if len(dups) != 2 || !strings.Contains(dups[0], "the 2nd started") || !strings.Contains(dups[1], "the 3rd started") {
		t.Fatalf("duplicates = %q", dups)
	}
	for _, l := range dups {
		if !strings.Contains(l, "while a restart of the server was pending (the 1st asked for it at "+stamp(asked)+")") {
			t.Errorf("duplicate line %q does not name the run that asked", l)
		}
	}
}

// TestRebootCutsBootstrapperShort: a run in progress ends with the machine: it changes nothing
// (its fault is not used), its caller gets ErrUnavailable, the timeline says Interrupted, and the
// next run is a legitimate retry.
func TestRebootCutsBootstrapperShort(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe01.pool01.contoso.com\n", "  - fqdn: fe01.pool01.contoso.com\n    faults: {bootstrapFailures: 1}\n")
	d, clk := newSim(t, yml)
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	done := make(chan bootOut, 1)
	n := clk.Waiters() + 1
	go func() {
		r, err := backend(t, d, fe1p1).Bootstrap(context.Background())
		done <- bootOut{r, err}
	}()
	if err := clk.WaitForWaiters(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	// Another agent process waits for the same run.
	wait, found, err := backend(t, d, fe1p1).RunningBootstrap(context.Background())
	if err != nil || !found {
		t.Fatalf("RunningBootstrap = %v, %v", found, err)
	}
	waited := make(chan bootOut, 1)
	go func() {
		r, err := wait(context.Background())
		waited <- bootOut{r, err}
	}()
	clk.Step(2 * time.Second)
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan bootOut{done, waited} {
		o := <-ch
		if !errors.Is(o.err, lync.ErrUnavailable) || !strings.Contains(o.err.Error(), "restarted while Bootstrapper.exe ran") {
			t.Errorf("caller of the cut run = %+v", o)
		}
	}
	if b := d.Snapshot().Bootstrapping; len(b) != 0 {
		t.Errorf("still bootstrapping: %v", b)
	}
	s := serverState(t, d, fe1p1)
	if s.LastBootstrap != nil || s.Faults.BootstrapFailures != 1 || s.BackupService.Installed {
		t.Errorf("the cut run changed the server: %+v", s)
	}
	clk.Step(time.Hour) // the abandoned timer fires: still nothing changes
	tl := d.Timeline()
	last := tl[len(tl)-1]
	if last.Kind != "Bootstrap" || last.Outcome != OutcomeInterrupted || !last.Finished.Equal(t0.Add(5*time.Second)) {
		t.Errorf("timeline:\n%s", timelineSummary(tl))
	}
	if s := serverState(t, d, fe1p1); s.LastBootstrap != nil {
		t.Errorf("the abandoned run landed: %+v", s)
	}
	// The retries are legitimate: first the fault, then a success.
	if r, _ := bootstrap(t, d, clk, fe1p1); r.ExitCode != exitFatal {
		t.Errorf("retry = %+v", r)
	}
	if r, err := bootstrap(t, d, clk, fe1p1); err != nil || !r.Succeeded {
		t.Errorf("second retry = %+v, %v", r, err)
	}
	if dups := Duplicates(d.Timeline()); len(dups) != 0 {
		t.Errorf("duplicates: %v", dups)
	}
	// Rebooting with no run in progress is fine too.
	if err := d.Reboot(fe2p1); err != nil {
		t.Error(err)
	}
}

// TestRebootCutsTheAgentsWrites: what the server's agent runs through the deployment ends with
// the machine, changes nothing and is Interrupted; Reboot returns once it has.
func TestRebootCutsTheAgentsWrites(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	be := backend(t, d, fe1p1)
	done := make(chan error, 1)
	go func() {
		done <- be.PairPools(context.Background(), protocol.PairPoolsParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	// Reboot returns once the write has ended: its execution is recorded, before the restart.
	if tl := d.Timeline(); len(tl) != 1 || tl[0].Outcome != OutcomeInterrupted || tl[0].Finished == nil {
		t.Errorf("timeline when Reboot returned:\n%s", timelineSummary(tl))
	}
	select {
	case err := <-done:
		if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "fe01.pool01.contoso.com restarted while PairPools ran") {
			t.Errorf("PairPools across the reboot = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write the reboot cut short did not return")
	}
	clk.Step(time.Hour)
	if p := poolOf(t, d, pool01); p.BackupPool != "" {
		t.Errorf("the cut publish landed: %+v", p)
	}
	// The same view works after the restart (the agent process is simrun's business).
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Errorf("PairPools after the reboot: %v", err)
	}
	// A write from another server's agent goes on.
	go func() {
		done <- backend(t, d, fe1p2).Unpair(context.Background(), protocol.UnpairParams{PrimaryFQDN: pool01, BackupFQDN: pool02})
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Reboot(fe1p1); err != nil {
		t.Fatal(err)
	}
	clk.Step(3 * time.Second)
	if err := <-done; err != nil {
		t.Errorf("Unpair through another server: %v", err)
	}
}

// TestRebootStartsLYNCBACKUP: an installed LYNCBACKUP starts on its own with the machine
// (automatic start), whatever it was before, serving the partner the server is bootstrapped for;
// unless it will not start.
func TestRebootStartsLYNCBACKUP(t *testing.T) {
	yml := replace(t, baseYAML, "  - fqdn: fe02.pool02.contoso.com\n", "  - fqdn: fe02.pool02.contoso.com\n    faults: {serviceWillNotStart: true}\n")
	d, clk := newSim(t, yml)
	pairAndRun(t, d, clk) // fe01s Running, fe02s installed and Stopped
	started := *serverState(t, d, fe1p1).BackupService.Started
	clk.Step(time.Minute)
	for _, s := range []string{fe1p1, fe2p1, fe2p2, "fe01.pool03.contoso.com"} {
		if err := d.Reboot(s); err != nil {
			t.Fatal(err)
		}
	}
	now := clk.Now()
	for _, s := range []string{fe1p1, fe2p1} {
		st := serverState(t, d, s)
		svc := st.BackupService
		if svc.Status != protocol.ServiceRunning || svc.Started == nil || !svc.Started.Equal(now) || st.BackupServiceServes != pool02 || st.BackupServiceStale {
			t.Errorf("%s after the reboot = %+v", s, st)
		}
	}
	if started.Equal(now) {
		t.Fatal("test needs the restart at another time")
	}
	if svc := serverState(t, d, fe2p2).BackupService; svc.Status != protocol.ServiceStopped || svc.Started != nil {
		t.Errorf("a service that will not start = %+v", svc)
	}
	if svc := serverState(t, d, "fe01.pool03.contoso.com").BackupService; svc.Installed {
		t.Errorf("not installed, yet after a reboot = %+v", svc)
	}
	// The pair replicates again after the restarts (the fe01 of pool02 never went down).
	checkExports(t, d, pool01, all(protocol.ExportSteadyState), "after the restarts")
}

// TestBootstrapRefusedWhileRestarting: between the start and the end of a reboot (here: while
// Reboot waits for a write it cut short to return), Bootstrapper does not start.
func TestBootstrapRefusedWhileRestarting(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	d.ctl.Lock()
	d.hosts[fe1p1].rebooting = true
	d.ctl.Unlock()
	if _, err := backend(t, d, fe1p1).Bootstrap(context.Background()); !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "restarting") {
		t.Errorf("Bootstrap while restarting = %v", err)
	}
	if err := d.Reboot(fe1p1); !errors.Is(err, lync.ErrConflict) {
		t.Errorf("Reboot while restarting = %v", err)
	}
}
