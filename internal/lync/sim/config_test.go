package sim

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     string // substring of the error, naming the field
	}{
		{"unknown top-level key", "product: lync2013", "product: lync2013\nprodcut: x", "prodcut: unknown field"},
		{"unknown nested key", "  - fqdn: fe02.pool01.contoso.com", "  - fqdn: fe02.pool01.contoso.com\n    fautls: {}", "pools[0].servers[1].fautls: unknown field"},
		{"unknown fault key", "  - fqdn: fe02.pool01.contoso.com", "  - fqdn: fe02.pool01.contoso.com\n    faults: {bootstrapFailure: 1}", "pools[0].servers[1].faults.bootstrapFailure: unknown field"},
		{"duplicate key", "product: lync2013", "product: lync2013\nproduct: sfb2015", "already set"},
		{"bad product", "product: lync2013", "product: lync2010", "product: \"lync2010\""},
		{"bad pool fqdn", "- fqdn: pool03.contoso.com", "- fqdn: pool03_contoso", "pools[2].fqdn: \"pool03_contoso\" is not a fully qualified"},
		{"bad server fqdn", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01", "pools[2].servers[0].fqdn: \"fe01\" is not a fully qualified"},
		{"duplicate server", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01.pool01.contoso.com", "pools[2].servers[0].fqdn: \"fe01.pool01.contoso.com\" is already used"},
		{"upper-case server", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: FE01.pool03.contoso.com", "pools[2].servers[0].fqdn: \"FE01.pool03.contoso.com\" must be in lower case, as a PoolPair names it (fe01.pool03.contoso.com)"},
		{"server named like a pool", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: pool02.contoso.com", "pools[2].servers[0].fqdn: \"pool02.contoso.com\" is already used"},
		{"site not declared", "  site: Paris\n  edition: Enterprise\n  servers:\n  - fqdn: fe01.pool03", "  site: Oslo\n  edition: Enterprise\n  servers:\n  - fqdn: fe01.pool03", "pools[2].site: \"Oslo\" is not declared"},
		{"missing site", "  site: Redmond\n", "", "pools[0].site: required"},
		{"bad edition", "  site: Dublin\n  edition: Enterprise", "  site: Dublin\n  edition: Datacenter", "pools[1].edition: \"Datacenter\""},
		{"standard pool with two servers", "  - fqdn: se01srv.contoso.com", "  - fqdn: se01srv.contoso.com\n  - fqdn: se02srv.contoso.com", "pools[3].servers: a Standard Edition pool has exactly one server"},
		{"pool without servers", "  servers:\n  - fqdn: fe01.pool03.contoso.com", "  servers: []", "pools[2].servers: an Enterprise Edition pool has 1 to 12"},
		{"cms on unknown pool", "cms: {pool: pool01.contoso.com}", "cms: {pool: pool09.contoso.com}", "cms.pool: \"pool09.contoso.com\" is not a pool"},
		{"cms on a server", "cms: {pool: pool01.contoso.com}", "cms: {pool: fe01.pool01.contoso.com}", "cms.pool: \"fe01.pool01.contoso.com\" is not a pool"},
		{"cms missing", "cms: {pool: pool01.contoso.com}", "", "cms.pool: required"},
		{"backup pool unknown", "  site: Dublin\n", "  site: Dublin\n  backupPool: pool09.contoso.com\n", "pools[1].backupPool: \"pool09.contoso.com\" is not a pool"},
		{"backup pool self", "  site: Dublin\n", "  site: Dublin\n  backupPool: pool02.contoso.com\n", "pools[1].backupPool: a pool cannot be paired with itself"},
		{"backup pool edition mismatch", "  site: Dublin\n", "  site: Dublin\n  backupPool: se01.contoso.com\n", "pools[1].backupPool: edition mismatch"},
		{"backup pool version mismatch", "  site: Dublin\n", "  site: Dublin\n  backupPool: pool15.contoso.com\n", "pools[1].backupPool: version mismatch"},
		{"bad duration", "pairPools: 3s", "pairPools: three", "durations.pairPools: \"three\" is not a Go duration"},
		{"negative duration", "bootstrap: 4s", "bootstrap: -4s", "durations.bootstrap: must not be negative"},
		{"bad restart duration", "startBackupService: 1s", "startBackupService: 1s\n  restartBackupService: soon", "durations.restartBackupService: \"soon\" is not a Go duration"},
		{"negative restart duration", "startBackupService: 1s", "startBackupService: 1s\n  restartBackupService: -1s", "durations.restartBackupService: must not be negative"},
		{"sync interval too long", "syncInterval: 20s", "syncInterval: 4h", "durations.syncInterval: 4h0m0s is outside"},
		{"sync interval too short", "syncInterval: 20s", "syncInterval: 1s", "durations.syncInterval: 1s is outside"},
		{"negative change rate", "changeRate: 0", "changeRate: -1", "durations.changeRate"},
		{"zero batch capacity", "batchCapacity: 100", "batchCapacity: 0", "durations.batchCapacity"},
		{"wrong type", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01.pool03.contoso.com\n    faults: {bootstrapFailures: two}", "pools[2].servers[0].faults.bootstrapFailures: must be a whole number, not the string \"two\""},
		{"pools not a list", "pools:\n- fqdn: pool01", "pools: pool01\nx:\n- fqdn: pool01", "pools: must be a list, not the string \"pool01\""},
		{"rate not a number", "changeRate: 0", "changeRate: fast", "durations.changeRate: must be a number"},
		{"fraction where a count goes", "batchCapacity: 100", "batchCapacity: 2.5", "durations.batchCapacity: must be a whole number, not 2.5"},
		{"flag not a bool", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01.pool03.contoso.com\n    faults: {serviceWillNotStart: 1}", "pools[2].servers[0].faults.serviceWillNotStart: must be true or false"},
		{"negative fault count", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01.pool03.contoso.com\n    faults: {rebootRequired: -1}", "pools[2].servers[0].faults.rebootRequired: must not be negative"},
		{"unknown export module", "  site: Dublin\n", "  site: Dublin\n  faults: {exportError: [UserServices.Presence]}\n", "pools[1].faults.exportError[0]: \"UserServices.Presence\" is not a backup module"},
		{"sfb2019 module on lync2013", "  site: Dublin\n", "  site: Dublin\n  faults: {importError: [ApplicationServer.RGSDataStore]}\n", "pools[1].faults.importError[0]"},
		{"backup service without pairing", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01.pool03.contoso.com\n    backupService: Running", "pools[2].servers[0].backupService: the pool has no backupPool"},
		{"bad backup service", "  - fqdn: fe01.pool03.contoso.com", "  - fqdn: fe01.pool03.contoso.com\n    backupService: Paused", "pools[2].servers[0].backupService: \"Paused\""},
		{"bad listen", "  listen: 127.0.0.1:0", "  listen: localhost", "pools[0].listen: \"localhost\" is not host:port"},
		{"duplicate listen", "  - fqdn: fe01.pool01.contoso.com", "  - fqdn: fe01.pool01.contoso.com\n    listen: 127.0.0.1:19000\n  - fqdn: fe03.pool01.contoso.com\n    listen: 127.0.0.1:19000", "pools[0].servers[1].listen: \"127.0.0.1:19000\" is already the listen address of pools[0].servers[0].listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(replace(t, baseYAML, tc.old, tc.new)))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "product: lync2013\n", "- a\n- b\n"} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	yml := `
product: sfb2019
sites: [A]
cms: {pool: pool01.contoso.com}
pools:
- fqdn: pool01.contoso.com
  site: A
  edition: Enterprise
  servers: [{fqdn: fe01.pool01.contoso.com}]
`
	d, _ := newSim(t, yml)
	tm := d.topo.timing
	if tm.SyncInterval != DefaultSyncInterval || tm.BatchCapacity != DefaultBatchCapacity || tm.InitialBacklog != 5*DefaultBatchCapacity || tm.ChangeRate != 0 || tm.Bootstrap != 0 {
		t.Errorf("timing defaults = %+v", tm)
	}
	p := poolOf(t, d, "POOL01.contoso.com.") // DNS comparison: case and trailing dot ignored
	if p.FQDN != "pool01.contoso.com" || p.Version != "Skype for Business Server 2019" || !p.HostsCMS {
		t.Errorf("pool = %+v", p)
	}
	// A pool without listen has no alias; a server without one listens on an ephemeral port.
	if got := d.Endpoints(); len(got) != 1 || got[0].Kind != KindServer || got[0].Listen != "127.0.0.1:0" {
		t.Errorf("endpoints = %+v", got)
	}
	if n := len(status(t, d, "pool01.contoso.com").Modules); n != 5 {
		t.Errorf("sfb2019 has %d backup modules, want 5", n)
	}
}

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "..", rel)
}

func TestLoadTwoPoolsDemo(t *testing.T) {
	path := repoFile(t, "hack/sim/two-pools.yaml")
	d, err := Load(path, WithClock(NewFakeClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{
		{KindPool, "pool01.contoso.com", "pool01.contoso.com", "127.0.0.1:19441"},
		{KindPool, "pool02.contoso.com", "pool02.contoso.com", "127.0.0.1:19442"},
		{KindServer, "fe01.pool01.contoso.com", "pool01.contoso.com", "127.0.0.1:19451"},
		{KindServer, "fe02.pool01.contoso.com", "pool01.contoso.com", "127.0.0.1:19452"},
		{KindServer, "fe01.pool02.contoso.com", "pool02.contoso.com", "127.0.0.1:19453"},
		{KindServer, "fe02.pool02.contoso.com", "pool02.contoso.com", "127.0.0.1:19454"},
	}
	got := d.Endpoints()
	if len(got) != len(want) {
		t.Fatalf("endpoints = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("endpoint %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	tm := d.topo.timing
	if tm.PairPools != 3*time.Second || tm.Bootstrap != 4*time.Second || tm.StartBackupService != time.Second || tm.SyncBackup != 3*time.Second || tm.SyncInterval != 20*time.Second {
		t.Errorf("timing = %+v", tm)
	}
	if tm.ChangeRate <= 0 || tm.ChangeRate*tm.SyncInterval.Seconds() > float64(tm.BatchCapacity) {
		t.Errorf("changeRate %v should be small but non-zero (SteadyState between syncs)", tm.ChangeRate)
	}
	s := d.Snapshot()
	if s.Product != protocol.ProductLync2013 || s.CMSPool != "pool01.contoso.com" {
		t.Errorf("snapshot = %+v", s)
	}
	for _, p := range s.Pools {
		if p.Edition != protocol.EditionEnterprise || p.Version != "Lync Server 2013" || p.BackupPool != "" || len(p.Computers) != 2 {
			t.Errorf("pool %+v", p.Pool)
		}
	}
	if s.Pools[0].Site != "Redmond" || s.Pools[1].Site != "Dublin" {
		t.Errorf("sites = %s, %s", s.Pools[0].Site, s.Pools[1].Site)
	}
	// The demo has an Edge pool whose next hop is pool01, and failover steps the eye can follow.
	if len(s.EdgePools) != 1 || s.EdgePools[0] != (EdgePoolState{FQDN: "edge01.contoso.com", NextHop: "pool01.contoso.com"}) ||
		strings.Join(s.Pools[0].EdgePools, ",") != "edge01.contoso.com" {
		t.Errorf("Edge pools = %+v, pool01's %v", s.EdgePools, s.Pools[0].EdgePools)
	}
	if tm.FailoverCMS <= 0 || tm.MoveEdgeNextHop <= 0 || tm.FailoverPool <= 0 || tm.FailbackPool <= 0 {
		t.Errorf("failover timing = %+v", tm)
	}

	// Tests override the listen addresses.
	d2, err := Load(path, WithListenOverride(func(e Endpoint) string {
		if e.Kind == KindServer {
			return "127.0.0.1:0"
		}
		return "" // keep the file's
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range d2.Endpoints() {
		if e.Kind == KindServer && e.Listen != "127.0.0.1:0" || e.FQDN == "pool01.contoso.com" && e.Listen != "127.0.0.1:19441" {
			t.Errorf("overridden endpoint %+v", e)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); !os.IsNotExist(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestPreexistingPairing(t *testing.T) {
	yml := replace(t, baseYAML, "  site: Dublin\n", "  site: Dublin\n  backupPool: POOL01.contoso.com\n")
	yml = replace(t, yml, "  - fqdn: fe01.pool01.contoso.com\n", "  - fqdn: fe01.pool01.contoso.com\n    backupService: Running\n")
	yml = replace(t, yml, "  - fqdn: fe02.pool02.contoso.com\n", "  - fqdn: fe02.pool02.contoso.com\n    backupService: Running\n")
	d, _ := newSim(t, yml)
	if p := poolOf(t, d, pool01); p.BackupPool != pool02 {
		t.Errorf("pool01 backup pool = %q (one side implies the other)", p.BackupPool)
	}
	if p := poolOf(t, d, pool02); p.BackupPool != pool01 {
		t.Errorf("pool02 backup pool = %q", p.BackupPool)
	}
	// Running since the deployment started, serving the pairing.
	if s := serverState(t, d, fe1p1); s.BootstrappedFor != pool02 || s.BackupService.Status != protocol.ServiceRunning ||
		s.BackupService.Started == nil || !s.BackupService.Started.Equal(t0) || s.BackupServiceServes != pool02 || s.BackupServiceStale || !s.BootTime.Equal(t0) {
		t.Errorf("fe01.pool01 = %+v", s)
	}
	if s := serverState(t, d, fe2p1); s.BackupService.Installed || s.BackupService.Started != nil || s.BackupServiceServes != "" {
		t.Errorf("fe02.pool01 = %+v", s)
	}
	// Running on both sides from the start: the first export is under way.
	if got := exports(t, d, pool01)["ConfServices.DataConf"]; got != protocol.ExportNonSteadyState {
		t.Errorf("DataConf export = %s, want NonSteadyState", got)
	}
}
