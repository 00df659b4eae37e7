package sim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestStateFileSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "sim-state.json")
	const fe1p3 = "fe01.pool03.contoso.com"
	yml := replace(t, baseYAML, "  - fqdn: fe01.pool03.contoso.com\n", "  - fqdn: fe01.pool03.contoso.com\n    faults: {bootstrapFailures: 3}\n")

	d, clk := newSim(t, yml, WithStateFile(stateFile))
	if _, err := os.Stat(stateFile); err != nil {
		t.Fatalf("the state file is written at start: %v", err)
	}
	pairAndRun(t, d, clk)
	if r, _ := bootstrap(t, d, clk, fe1p3); r.Succeeded {
		t.Fatal("fe01.pool03 should fail its first run")
	}
	if err := d.SetExportError(pool02, dataConf, true); err != nil {
		t.Fatal(err)
	}
	if err := d.SetUnreachable(fe2p2, true); err != nil {
		t.Fatal(err)
	}
	before := d.Snapshot()

	// "Restart": a new Deployment from the same files, with a clock that has moved on.
	clk2 := NewFakeClock(clk.Now())
	d2, err := Parse([]byte(yml), WithClock(clk2), WithStateFile(stateFile))
	if err != nil {
		t.Fatal(err)
	}
	after := d2.Snapshot()
	if !reflect.DeepEqual(normalize(before), normalize(after)) {
		b1, _ := json.MarshalIndent(before, "", " ")
		b2, _ := json.MarshalIndent(after, "", " ")
		t.Fatalf("state changed across a restart:\nbefore %s\nafter %s", b1, b2)
	}
	if after.Pools[0].BackupPool != pool02 || after.Servers[4].Faults.BootstrapFailures != 2 || d2.Reachable(fe2p2) {
		t.Errorf("restored state = %+v", after)
	}
	if after.Counts["Bootstrap/"+fe1p3] != 1 || after.Counts["Bootstrap/"+fe2p1] != 1 {
		t.Errorf("counts restored = %v", after.Counts)
	}
	// And it carries on from there: the periodic sync still happens on schedule.
	clk2.Step(20 * time.Second)
	checkExports(t, d2, pool01, all(protocol.ExportFinalState), "after restart")

	// Without the state file the deployment starts from the file again.
	d3, _ := newSim(t, yml)
	if p := d3.Snapshot().Pools[0]; p.BackupPool != "" {
		t.Errorf("fresh deployment paired: %+v", p)
	}
	// No temporary files are left behind by the atomic writes.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d files, want 1", len(entries))
	}
}

// normalize drops the fields a restart legitimately changes (nothing, today, but Now).
func normalize(s State) State {
	s.Now = time.Time{}
	return s
}

func TestStateFileMismatch(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	if _, err := Parse([]byte(baseYAML), WithClock(NewFakeClock(t0)), WithStateFile(stateFile)); err != nil {
		t.Fatal(err)
	}
	other := replace(t, baseYAML, "fe01.pool03.contoso.com", "fe09.pool03.contoso.com")
	_, err := Parse([]byte(other), WithClock(NewFakeClock(t0)), WithStateFile(stateFile))
	if err == nil || !strings.Contains(err.Error(), "does not match the deployment file") {
		t.Fatalf("err = %v", err)
	}

	if err := os.WriteFile(stateFile, []byte(`{"formatVersion":1,"bogus":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]byte(baseYAML), WithStateFile(stateFile)); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown field in state file: %v", err)
	}
}

func TestStateFileWriteFailureKeepsState(t *testing.T) {
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "state.json")
	d, _ := newSim(t, baseYAML, WithStateFile(stateFile))
	// Make the state file's directory unwritable by replacing it with a path under a file.
	d.stateFile = filepath.Join(stateFile, "nested.json")
	if err := d.SetBackupPool(pool01, pool02); err == nil {
		t.Fatal("mutation succeeded although it could not be saved")
	}
	if p := d.Snapshot().Pools[0]; p.BackupPool != "" {
		t.Errorf("unsaved mutation applied: %+v", p)
	}
}

func TestCloneIsDeep(t *testing.T) {
	orig := newMutState()
	started, asked := t0, t0.Add(time.Second)
	orig.Pools["p.contoso.com"] = &poolMut{BackupPool: "q.contoso.com", VoiceFailover: &protocol.VoiceFailover{Enabled: true}, ExportError: []string{"m"}, BackupDataOf: []string{"q.contoso.com"}}
	orig.Servers["s.contoso.com"] = &serverMut{LastBootstrap: &BootstrapRun{ExitCode: 1, NextSteps: []string{"x"}},
		BackupService: protocol.BackupService{Installed: true, Status: protocol.ServiceRunning, Started: &started}, RebootRequested: &asked}
	orig.Counts["Bootstrap/s.contoso.com"] = 1
	before, _ := json.Marshal(orig)

	c := orig.clone()
	if got, _ := json.Marshal(c); string(got) != string(before) {
		t.Fatalf("clone differs:\n%s\n%s", got, before)
	}
	c.Pools["p.contoso.com"].BackupPool = ""
	c.Pools["p.contoso.com"].VoiceFailover.Enabled = false
	c.Pools["p.contoso.com"].ExportError[0] = "x"
	c.Servers["s.contoso.com"].LastBootstrap.ExitCode = 0
	c.Servers["s.contoso.com"].LastBootstrap.NextSteps[0] = "y"
	c.Pools["p.contoso.com"].BackupDataOf[0] = "z"
	*c.Servers["s.contoso.com"].BackupService.Started = t0.Add(time.Hour)
	*c.Servers["s.contoso.com"].RebootRequested = t0.Add(time.Hour)
	c.Counts["Bootstrap/s.contoso.com"] = 2
	if after, _ := json.Marshal(orig); string(after) != string(before) {
		t.Fatalf("changing the clone changed the original:\n%s\n%s", after, before)
	}
}

// TestStateFileKeepsRestartsServicesAndData: boot times, a pending restart, what a running
// LYNCBACKUP serves (and so a stale one), the backup data each pool holds and the sync interval
// are Lync's state: they survive a restart of the sim process.
func TestStateFileKeepsRestartsServicesAndData(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	yml := replace(t, baseYAML, "  - fqdn: fe02.pool01.contoso.com\n", "  - fqdn: fe02.pool01.contoso.com\n    faults: {rebootRequired: 1}\n")
	d, clk := newSim(t, yml, WithStateFile(stateFile))
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fe1p1, fe1p2} {
		if _, err := bootstrap(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
		if err := startService(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := bootstrap(t, d, clk, fe2p1); !r.RebootRequired {
		t.Fatalf("fe02.pool01 = %+v", r)
	}
	if err := d.SetSyncInterval(45 * time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Minute)
	if err := d.Reboot(fe1p2); err != nil {
		t.Fatal(err)
	}
	// pool01 is re-paired with pool03 out of band: fe01.pool01's service goes stale.
	for _, x := range [][2]string{{pool02, ""}, {pool01, pool03}, {pool03, pool01}} {
		if err := d.SetBackupPool(x[0], x[1]); err != nil {
			t.Fatal(err)
		}
	}
	before := d.Snapshot()

	clk2 := NewFakeClock(clk.Now())
	d2, err := Parse([]byte(yml), WithClock(clk2), WithStateFile(stateFile))
	if err != nil {
		t.Fatal(err)
	}
	after := d2.Snapshot()
	if !reflect.DeepEqual(normalize(before), normalize(after)) {
		b1, _ := json.MarshalIndent(before, "", " ")
		b2, _ := json.MarshalIndent(after, "", " ")
		t.Fatalf("state changed across a restart:\nbefore %s\nafter %s", b1, b2)
	}
	if after.SyncInterval != "45s" || status(t, d2, pool01).SyncIntervalSeconds != 45 {
		t.Errorf("sync interval = %s", after.SyncInterval)
	}
	if s := serverState(t, d2, fe2p1); !s.RebootPending || !s.BootTime.Equal(t0) {
		t.Errorf("fe02.pool01 = %+v", s)
	}
	if s := serverState(t, d2, fe1p2); !s.BootTime.Equal(clk.Now()) || s.BackupService.Started == nil || !s.BackupService.Started.Equal(clk.Now()) {
		t.Errorf("fe01.pool02 = %+v", s)
	}
	if s := serverState(t, d2, fe1p1); !s.BackupServiceStale || s.BackupServiceServes != pool02 {
		t.Errorf("fe01.pool01 = %+v", s)
	}
	if p := poolState(t, d2, pool03); len(p.BackupDataOf) != 0 || len(poolState(t, d2, pool02).BackupDataOf) != 1 {
		t.Errorf("backup data after the restart: %+v", after.Pools)
	}
	// The restart is still pending for the new process's Bootstrapper.
	if r, _ := bootstrap(t, d2, clk2, fe2p1); !r.RebootRequired || !strings.Contains(r.LogTail, "is pending") {
		t.Errorf("run after the sim restarted = %+v", r)
	}
}

// TestStateFileRefusesBadRestartAndServiceState: the new fields are checked, naming the field.
func TestStateFileRefusesBadRestartAndServiceState(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	d, clk := newSim(t, baseYAML, WithStateFile(stateFile))
	pairAndRun(t, d, clk)
	good, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(st map[string]any)
		want string
	}{
		{"version 1", func(st map[string]any) { st["formatVersion"] = 1 }, "format version 1, want 3 (or 2)"},
		{"no boot time", func(st map[string]any) { server(st, fe2p1)["bootTime"] = "0001-01-01T00:00:00Z" }, `servers["fe02.pool01.contoso.com"].bootTime: required`},
		{"running without a start time", func(st map[string]any) {
			delete(server(st, fe1p1)["backupService"].(map[string]any), "started")
		}, `servers["fe01.pool01.contoso.com"].backupService.started: set exactly when the service is Running`},
		{"stopped serving someone", func(st map[string]any) { server(st, fe2p1)["serviceServes"] = pool02 }, `servers["fe02.pool01.contoso.com"].serviceServes: set while the service is not Running`},
		{"serving an unknown pool", func(st map[string]any) { server(st, fe1p1)["serviceServes"] = "pool09.contoso.com" }, `servers["fe01.pool01.contoso.com"].serviceServes: "pool09.contoso.com" is not a pool`},
		{"restart asked before the boot", func(st map[string]any) { server(st, fe1p1)["rebootRequested"] = "2020-01-01T00:00:00Z" }, `servers["fe01.pool01.contoso.com"].rebootRequested: 2020-01-01T00:00:00.000Z is before the boot time`},
		{"data of an unknown pool", func(st map[string]any) {
			st["pools"].(map[string]any)[pool01].(map[string]any)["backupDataOf"] = []any{"pool09.contoso.com"}
		}, `pools["pool01.contoso.com"].backupDataOf: "pool09.contoso.com" is not another pool`},
		{"data of itself", func(st map[string]any) {
			st["pools"].(map[string]any)[pool01].(map[string]any)["backupDataOf"] = []any{pool01}
		}, `pools["pool01.contoso.com"].backupDataOf`},
		{"sync interval too short", func(st map[string]any) { st["syncInterval"] = "10ms" }, "syncInterval: 10ms is outside 1s to 3h0m0s"},
		{"sync interval not a duration", func(st map[string]any) { st["syncInterval"] = "often" }, "often"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st map[string]any
			if err := json.Unmarshal(good, &st); err != nil {
				t.Fatal(err)
			}
			tc.edit(st)
			b, _ := json.Marshal(st)
			if err := os.WriteFile(stateFile, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Parse([]byte(baseYAML), WithClock(NewFakeClock(t0)), WithStateFile(stateFile))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func server(st map[string]any, fqdn string) map[string]any {
	return st["servers"].(map[string]any)[fqdn].(map[string]any)
}
