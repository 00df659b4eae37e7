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
	orig.Pools["p.contoso.com"] = &poolMut{BackupPool: "q.contoso.com", VoiceFailover: &protocol.VoiceFailover{Enabled: true}, ExportError: []string{"m"}}
	orig.Servers["s.contoso.com"] = &serverMut{LastBootstrap: &BootstrapRun{ExitCode: 1}}
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
	c.Counts["Bootstrap/s.contoso.com"] = 2
	if after, _ := json.Marshal(orig); string(after) != string(before) {
		t.Fatalf("changing the clone changed the original:\n%s\n%s", after, before)
	}
}
