package pairing

import (
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func modules(export, imp string) []protocol.BackupModule {
	return []protocol.BackupModule{
		{Identity: "UserServices.PresenceFocus", ExportStatus: export, ImportStatus: imp},
		{Identity: "ConfServices.DataConf", ExportStatus: export, ImportStatus: imp},
		{Identity: protocol.ModuleCMSMaster, ExportStatus: export, ImportStatus: imp},
	}
}

func TestDirectionHealth(t *testing.T) {
	cmsNotInit := modules(protocol.ExportSteadyState, protocol.ImportNormalState)
	cmsNotInit[2].ExportStatus = protocol.ExportNotInitialized
	cases := []struct {
		name      string
		mods      []protocol.BackupModule
		hostsCMS  bool
		healthy   bool
		mentioned string
	}{
		{"final state", modules(protocol.ExportFinalState, protocol.ImportNormalState), true, true, ""},
		{"steady state", modules(protocol.ExportSteadyState, protocol.ImportNormalState), false, true, ""},
		{"backlog", modules(protocol.ExportNonSteadyState, protocol.ImportNormalState), true, false, "NonSteadyState"},
		{"export error", modules(protocol.ExportErrorState, protocol.ImportNormalState), true, false, "export ErrorState"},
		{"import error", modules(protocol.ExportFinalState, protocol.ImportErrorState), true, false, "import ErrorState"},
		{"not initialized", modules(protocol.ExportNotInitialized, protocol.ImportNormalState), false, false, "PresenceFocus export NotInitialized"},
		{"CMSMaster not initialized on the non-CMS pool is normal", cmsNotInit, false, true, ""},
		{"CMSMaster not initialized on the CMS pool is not", cmsNotInit, true, false, "CMSMaster"},
		{"no modules", nil, true, false, "no backup modules"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			healthy, reason := DirectionHealth(protocol.BackupStatus{Modules: tc.mods}, tc.hostsCMS)
			if healthy != tc.healthy || !strings.Contains(reason, tc.mentioned) {
				t.Fatalf("got healthy=%v reason=%q; want healthy=%v mentioning %q", healthy, reason, tc.healthy, tc.mentioned)
			}
		})
	}
}

func TestServerBootstrappedNeedsARunThatSawThePairing(t *testing.T) {
	ok := protocol.Server{
		BackupService: protocol.BackupService{Installed: true, Status: protocol.ServiceStopped},
		LastBootstrap: &protocol.BootstrapRun{Succeeded: true, BackupPool: "POOL02.contoso.com"},
	}
	if !ServerBootstrapped(ok, "pool02.contoso.com") {
		t.Fatal("a successful run that saw the pairing (names compared case-insensitively) must count")
	}
	before := ok
	before.LastBootstrap = &protocol.BootstrapRun{Succeeded: true}
	failed := ok
	failed.LastBootstrap = &protocol.BootstrapRun{Succeeded: false, BackupPool: "pool02.contoso.com"}
	notInstalled := ok
	notInstalled.BackupService = protocol.BackupService{}
	never := ok
	never.LastBootstrap = nil
	askedForRestart := ok
	askedForRestart.LastBootstrap = &protocol.BootstrapRun{Succeeded: true, RebootRequired: true, ExitCode: 3010, BackupPool: "pool02.contoso.com"}
	for name, s := range map[string]protocol.Server{"run before pairing": before, "failed run": failed, "service not installed": notInstalled, "never run": never, "run that asked for a restart": askedForRestart} {
		if ServerBootstrapped(s, "pool02.contoso.com") {
			t.Errorf("%s counted as bootstrapped", name)
		}
	}
}

func TestMilestonesReachedInOrder(t *testing.T) {
	if got := (Milestones{TopologyPublished: true, Bootstrapped: false, BackupServiceRunning: true, BackupSynced: true}).Reached(); got != 1 {
		t.Fatalf("a later milestone without the earlier ones must not count: got %d", got)
	}
	if got := (Milestones{true, true, true, true}).Reached(); got != 4 {
		t.Fatalf("got %d", got)
	}
}

func TestPairedAndPairedElsewhere(t *testing.T) {
	a := protocol.Pool{FQDN: "pool01.contoso.com", BackupPool: "pool02.contoso.com"}
	b := protocol.Pool{FQDN: "pool02.contoso.com", BackupPool: "pool01.contoso.com"}
	if !Paired(a, b) {
		t.Fatal("reciprocal pairing not recognised")
	}
	b.BackupPool = ""
	if Paired(a, b) {
		t.Fatal("a one-sided pairing is not a pairing")
	}
	c := protocol.Pool{FQDN: "pool02.contoso.com", BackupPool: "pool03.contoso.com"}
	if got := PairedElsewhere(c, "pool01.contoso.com"); got != "pool03.contoso.com" {
		t.Fatalf("third pool not reported: %q", got)
	}
	if got := PairedElsewhere(b, "pool01.contoso.com"); got != "" {
		t.Fatalf("an unpaired pool is not paired elsewhere: %q", got)
	}
}

func TestBackoffGrowsIsCappedAndDeterministic(t *testing.T) {
	b := Backoff{Base: time.Second, Cap: 8 * time.Second, Limit: 5}
	prev := time.Duration(0)
	for f := int32(1); f <= 4; f++ {
		d := b.Delay(f, "uid")
		if d <= prev {
			t.Fatalf("delay after %d failures (%v) did not grow from %v", f, d, prev)
		}
		if d != b.Delay(f, "uid") {
			t.Fatal("the delay must be the same when computed again (restart-safe)")
		}
		prev = d
	}
	if d := b.Delay(20, "uid"); d < 8*time.Second || d > 8*time.Second*6/5 {
		t.Fatalf("delay not capped: %v", d)
	}
	if b.Delay(0, "uid") != 0 {
		t.Fatal("no failure, no delay")
	}
	if b.Exhausted(4) || !b.Exhausted(5) {
		t.Fatal("limit off by one")
	}
}

func TestOperationIDNamesTheSlotAndSequence(t *testing.T) {
	id := OperationID("1234", "Bootstrap", "FE01.pool01.contoso.com", 1733130000123)
	if id != "1234/Bootstrap/fe01.pool01.contoso.com/1733130000123" {
		t.Fatalf("got %s", id)
	}
	if err := protocol.ValidateOperationID(id); err != nil {
		t.Fatalf("the agent would refuse the key: %v", err)
	}
	pair := OperationID("1234", "PairPools", protocol.PairTarget("pool02.contoso.com", "pool01.contoso.com"), 7)
	if pair != "1234/PairPools/pool01.contoso.com:pool02.contoso.com/7" {
		t.Fatalf("pair target: got %s", pair)
	}
	if err := protocol.ValidateOperationID(pair); err != nil {
		t.Fatalf("the agent would refuse the pair key: %v", err)
	}
}

// TestSequencesNeverRepeat: the next sequence is above the last one, and above any sequence used
// before now even when the last one was forgotten (a wiped status starts from 0).
func TestSequencesNeverRepeat(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	first := NextSequence(0, now)
	if first != now.UnixMilli() {
		t.Fatalf("first sequence %d", first)
	}
	// Two starts in the same millisecond still differ.
	if second := NextSequence(first, now); second != first+1 {
		t.Fatalf("second sequence in the same millisecond: %d after %d", second, first)
	}
	// A wiped status (last 0) a second later does not reuse the sequences of before the wipe.
	if again := NextSequence(0, now.Add(time.Second)); again <= first+1 {
		t.Fatalf("after a wipe: %d, not above %d", again, first+1)
	}
}

func TestBackupServiceStaleWhenStartedBeforeTheLastBootstrap(t *testing.T) {
	finished := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	server := func(status string, started *time.Time) protocol.Server {
		return protocol.Server{
			BackupService: protocol.BackupService{Installed: true, Status: status, Started: started},
			LastBootstrap: &protocol.BootstrapRun{Finished: finished, Succeeded: true, BackupPool: "pool02.contoso.com"},
		}
	}
	before, after := finished.Add(-time.Hour), finished.Add(time.Millisecond)
	for _, tc := range []struct {
		name string
		s    protocol.Server
		want bool
	}{
		{"running since before the run", server(protocol.ServiceRunning, &before), true},
		{"started after the run", server(protocol.ServiceRunning, &after), false},
		{"start time unknown", server(protocol.ServiceRunning, nil), false},
		{"stopped", server(protocol.ServiceStopped, nil), false},
		{"never bootstrapped", protocol.Server{BackupService: protocol.BackupService{Installed: true, Status: protocol.ServiceRunning, Started: &before}}, false},
	} {
		if got := BackupServiceStale(tc.s); got != tc.want {
			t.Errorf("%s: stale = %v, want %v", tc.name, got, tc.want)
		}
	}
}
