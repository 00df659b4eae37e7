package sim

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// ex builds a hand-made execution: started and finished are seconds after t0; finished < 0 means
// still running.
func ex(kind, target, server string, started, finished float64, outcome string) Execution {
	x := Execution{Kind: kind, Target: target, Server: server, Started: t0.Add(time.Duration(started * float64(time.Second)))}
	if finished >= 0 {
		f := t0.Add(time.Duration(finished * float64(time.Second)))
		x.Finished, x.Outcome = &f, outcome
	}
	return x
}

// reboot sets the restart flags of a hand-made Bootstrap execution.
func reboot(x Execution, required, pending bool) Execution {
	x.RebootRequired, x.RebootPending = required, pending
	return x
}

func TestDuplicates(t *testing.T) {
	const (
		boot = "Bootstrap"
		pp   = "PairPools"
		sync = "SyncBackup"
	)
	tests := []struct {
		name string
		tl   []Execution
		want []string // one substring per expected line, in order
	}{
		{name: "empty"},
		{name: "retries after failures and interruptions are legitimate", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeFailed),
			ex(boot, fe1p1, fe1p1, 5, 6, OutcomeInterrupted),
			ex(boot, fe1p1, fe1p1, 7, 11, OutcomeSucceeded),
		}},
		{name: "different targets and kinds never collide", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded),
			ex(boot, fe2p1, fe2p1, 1, 5, OutcomeSucceeded),
			ex(sync, pool01, fe1p1, 1, 5, OutcomeSucceeded),
			ex(sync, pool02, fe1p2, 1, 5, OutcomeSucceeded),
			ex(pp, pool01, fe1p1, 0, 3, OutcomeSucceeded),
		}},
		{name: "after a success", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded),
			ex(boot, fe1p1, fe1p1, 10, 14, OutcomeSucceeded),
		}, want: []string{"Bootstrap fe01.pool01.contoso.com ran 2 times; the 2nd started at 2026-03-02T09:00:10.000Z on fe01.pool01.contoso.com after the 1st succeeded at 2026-03-02T09:00:04.000Z"}},
		{name: "while another runs, on another server, even if it fails", tl: []Execution{
			ex(pp, pool01, fe1p1, 0, 3, OutcomeSucceeded),
			ex(pp, pool01, fe2p1, 1, 1, OutcomeFailed),
		}, want: []string{"PairPools pool01.contoso.com ran 2 times; the 2nd started at 2026-03-02T09:00:01.000Z on fe02.pool01.contoso.com while the 1st (started at 2026-03-02T09:00:00.000Z) was still running"}},
		{name: "while another is still running (never finished)", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, -1, ""),
			ex(boot, fe1p1, fe1p1, 100, 104, OutcomeFailed),
		}, want: []string{"the 2nd started at 2026-03-02T09:01:40.000Z on fe01.pool01.contoso.com while the 1st"}},
		{name: "starting as the other finishes is no overlap", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeFailed),
			ex(boot, fe1p1, fe1p1, 4, 8, OutcomeSucceeded),
		}},
		{name: "a forced sync after a successful one counts", tl: []Execution{
			ex(sync, pool01, fe1p1, 0, 3, OutcomeSucceeded),
			ex(sync, pool01, fe2p1, 60, 63, OutcomeSucceeded),
		}, want: []string{"SyncBackup pool01.contoso.com ran 2 times; the 2nd"}},
		{name: "a run while a restart is pending is a duplicate; after the restart it is not", tl: []Execution{
			reboot(ex(boot, fe1p1, fe1p1, 0, 4, OutcomeFailed), true, false),  // asks for a restart
			reboot(ex(boot, fe1p1, fe1p1, 10, 14, OutcomeFailed), true, true), // pending: asks again
			reboot(ex(boot, fe1p1, fe1p1, 20, 24, OutcomeFailed), true, true),
			ex(boot, fe1p1, fe1p1, 60, 64, OutcomeSucceeded), // after the restart
			reboot(ex(boot, fe2p1, fe2p1, 0, 4, OutcomeFailed), true, false),
			ex(boot, fe2p1, fe2p1, 60, 64, OutcomeSucceeded),
		}, want: []string{
			"Bootstrap fe01.pool01.contoso.com ran 4 times; the 2nd started at 2026-03-02T09:00:10.000Z on fe01.pool01.contoso.com while a restart of the server was pending (the 1st asked for it at 2026-03-02T09:00:04.000Z): only the administrator's restart lets Bootstrapper go on",
			"the 3rd started at 2026-03-02T09:00:20.000Z on fe01.pool01.contoso.com while a restart of the server was pending (the 1st asked for it at 2026-03-02T09:00:04.000Z)",
		}},
		{name: "a run that asked for a restart is no success to duplicate, whatever its outcome", tl: []Execution{
			reboot(ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded), true, false),
			ex(boot, fe1p1, fe1p1, 60, 64, OutcomeSucceeded),
		}},
		{name: "every duplicate has its line, in timeline order, even out of start order", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 20, 24, OutcomeSucceeded),
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded),
			ex(boot, fe1p1, fe1p1, 10, 14, OutcomeFailed),
		}, want: []string{
			"ran 3 times; the 3rd started at 2026-03-02T09:00:20.000Z on fe01.pool01.contoso.com after the 1st succeeded",
			"ran 3 times; the 2nd started at 2026-03-02T09:00:10.000Z on fe01.pool01.contoso.com after the 1st succeeded",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Duplicates(tc.tl)
			if len(got) != len(tc.want) {
				t.Fatalf("Duplicates = %q, want %d lines", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
	if o := ordinal(11) + ordinal(12) + ordinal(13) + ordinal(21) + ordinal(22) + ordinal(103); o != "11th12th13th21st22nd103rd" {
		t.Errorf("ordinals %s", o)
	}
}

func TestMaxConcurrent(t *testing.T) {
	const boot = "Bootstrap"
	pool1 := []string{fe1p1, fe2p1}
	tests := []struct {
		name    string
		tl      []Execution
		servers []string
		want    int
	}{
		{name: "empty", servers: pool1, want: 0},
		{name: "one after the other, touching", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded),
			ex(boot, fe2p1, fe2p1, 4, 8, OutcomeSucceeded),
		}, servers: pool1, want: 1},
		{name: "overlapping in the pool", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded),
			ex(boot, fe2p1, fe2p1, 3.9, 8, OutcomeSucceeded),
		}, servers: pool1, want: 2},
		{name: "other pool and other kinds do not count", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, 4, OutcomeSucceeded),
			ex(boot, fe1p2, fe1p2, 1, 5, OutcomeSucceeded),
			ex("StartBackupService", fe2p1, fe2p1, 1, 5, OutcomeSucceeded),
		}, servers: pool1, want: 1},
		{name: "one still running overlaps everything after it", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 0, -1, ""),
			ex(boot, fe2p1, fe2p1, 100, 104, OutcomeSucceeded),
			ex(boot, fe2p1, fe2p1, 200, 204, OutcomeFailed),
		}, servers: pool1, want: 2},
		{name: "three at once among staggered ones", tl: []Execution{
			ex(boot, "fe01.p.contoso.com", "fe01.p.contoso.com", 0, 10, OutcomeSucceeded),
			ex(boot, "fe02.p.contoso.com", "fe02.p.contoso.com", 2, 4, OutcomeSucceeded),
			ex(boot, "fe03.p.contoso.com", "fe03.p.contoso.com", 5, 7, OutcomeSucceeded),
			ex(boot, "fe04.p.contoso.com", "FE04.p.contoso.com", 6, 12, OutcomeSucceeded),
		}, servers: []string{"fe01.p.contoso.com", "fe02.p.contoso.com", "fe03.p.contoso.com", "fe04.p.contoso.com"}, want: 3},
		{name: "started at the same instant", tl: []Execution{
			ex(boot, fe1p1, fe1p1, 1, 2, OutcomeSucceeded),
			ex(boot, fe2p1, fe2p1, 1, 2, OutcomeSucceeded),
		}, servers: pool1, want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MaxConcurrent(tc.tl, "Bootstrap", tc.servers); got != tc.want {
				t.Errorf("MaxConcurrent = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestTimelineRecordsEveryExecution: each kind is recorded with its target, the server whose view
// ran it, its times on the sim's clock and its outcome; the snapshot carries it.
func TestTimelineRecordsEveryExecution(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk) // PairPools, 4 Bootstraps, 2 StartBackupService
	if err := d.SetExportError(pool02, dataConf, true); err != nil {
		t.Fatal(err)
	}
	if err := syncBackup(t, d, clk, pool02); err == nil { // Failed: an export is broken
		t.Fatal("sync with an export error succeeded")
	}
	// Refused before it runs: a call that names a valid target is still an execution, Failed.
	if err := startService(t, d, clk, "fe01.pool03.contoso.com"); !errors.Is(err, lync.ErrConflict) {
		t.Fatalf("start where not installed: %v", err)
	}
	tl := d.Timeline()
	type row struct{ kind, target, server, outcome string }
	want := []row{
		{"PairPools", pool01, fe1p1, OutcomeSucceeded},
		{"Bootstrap", fe1p1, fe1p1, OutcomeSucceeded},
		{"Bootstrap", fe2p1, fe2p1, OutcomeSucceeded},
		{"Bootstrap", fe1p2, fe1p2, OutcomeSucceeded},
		{"Bootstrap", fe2p2, fe2p2, OutcomeSucceeded},
		{"StartBackupService", fe1p1, fe1p1, OutcomeSucceeded},
		{"StartBackupService", fe1p2, fe1p2, OutcomeSucceeded},
		{"SyncBackup", pool02, fe1p2, OutcomeFailed},
		{"StartBackupService", "fe01.pool03.contoso.com", "fe01.pool03.contoso.com", OutcomeFailed},
	}
	if len(tl) != len(want) {
		t.Fatalf("timeline:\n%s", timelineSummary(tl))
	}
	for i, w := range want {
		x := tl[i]
		if (row{x.Kind, x.Target, x.Server, x.Outcome}) != w || x.Finished == nil || x.Finished.Before(x.Started) {
			t.Errorf("execution %d = %+v, want %+v", i, x, w)
		}
	}
	// Times come from the sim's clock: PairPools took its 3 s, the first Bootstrap its 4 s after.
	if !tl[0].Started.Equal(t0) || !tl[0].Finished.Equal(t0.Add(3*time.Second)) || !tl[1].Started.Equal(t0.Add(3*time.Second)) || !tl[1].Finished.Equal(t0.Add(7*time.Second)) {
		t.Errorf("times:\n%s", timelineSummary(tl))
	}
	if dups := Duplicates(tl); len(dups) != 0 {
		t.Errorf("duplicates in a clean run: %v", dups)
	}
	// A copy, and in the snapshot as JSON.
	tl[0].Kind = "X"
	if d.Timeline()[0].Kind != "PairPools" {
		t.Error("Timeline exposes internal state")
	}
	b, _ := json.Marshal(d.Snapshot())
	var raw struct {
		Timeline []map[string]any `json:"timeline"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Timeline) != len(want) {
		t.Fatalf("snapshot timeline: %v %s", err, b)
	}
	for _, k := range []string{"kind", "target", "server", "started", "finished", "outcome"} {
		if _, ok := raw.Timeline[0][k]; !ok {
			t.Errorf("timeline JSON lacks %q: %v", k, raw.Timeline[0])
		}
	}
	// A second PairPools that finds the pools paired is a duplicate.
	if err := pair(t, d, clk, pool02, pool01); err != nil {
		t.Fatal(err)
	}
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	if dups := Duplicates(d.Timeline()); len(dups) != 1 || !strings.Contains(dups[0], "PairPools pool01.contoso.com ran 2 times") {
		t.Errorf("duplicates = %q", dups)
	}
}

// TestTimelinePersisted: the timeline lives in the state file; what ran when the sim process died
// is Interrupted after a restart, and the state change it would have made never happened.
func TestTimelinePersisted(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	d, clk := newSim(t, baseYAML, WithStateFile(stateFile))
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	// A Bootstrapper run is in progress when the process dies.
	go func() { _, _ = backend(t, d, fe1p1).Bootstrap(context.Background()) }()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// Refused at once (the direction is not active): finished, Failed.
	if err := backend(t, d, fe1p2).SyncBackup(context.Background(), pool02); !errors.Is(err, lync.ErrUnavailable) {
		t.Fatalf("SyncBackup = %v", err)
	}
	clk.Step(time.Second)

	d2, err := Parse([]byte(baseYAML), WithClock(NewFakeClock(clk.Now())), WithStateFile(stateFile))
	if err != nil {
		t.Fatal(err)
	}
	tl := d2.Timeline()
	if len(tl) != 3 {
		t.Fatalf("timeline after restart:\n%s", timelineSummary(tl))
	}
	if tl[0].Kind != "PairPools" || tl[0].Outcome != OutcomeSucceeded {
		t.Errorf("PairPools = %+v", tl[0])
	}
	boot := tl[1]
	if boot.Kind != "Bootstrap" || boot.Outcome != OutcomeInterrupted || boot.Finished == nil || !boot.Finished.Equal(clk.Now()) {
		t.Errorf("Bootstrap in progress at the restart = %+v", boot)
	}
	if tl[2].Kind != "SyncBackup" || tl[2].Outcome != OutcomeFailed {
		t.Errorf("SyncBackup = %+v", tl[2])
	}
	if s := serverState(t, d2, fe1p1); s.LastBootstrap != nil {
		t.Errorf("the interrupted run changed the server: %+v", s)
	}
	// The new process can run Bootstrapper at once: no run survived.
	if r, err := bootstrap(t, d2, d2.clock.(*FakeClock), fe1p1); err != nil || !r.Succeeded {
		t.Errorf("Bootstrap after restart = %+v, %v", r, err)
	}
	if n := len(d2.Timeline()); n != 4 {
		t.Errorf("%d executions", n)
	}
}

func TestStateFileRefusesBadTimeline(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	d, _ := newSim(t, baseYAML, WithStateFile(stateFile))
	if err := d.mutate(func(st *mutState, now time.Time) error {
		i := appendExec(st, now, protocol.KindBootstrap, fe1p1, fe1p1)
		finishExec(st, i, now, "Maybe")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]byte(baseYAML), WithStateFile(stateFile)); err == nil || !strings.Contains(err.Error(), "timeline[0]") {
		t.Fatalf("err = %v", err)
	}
}
