package powershell

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

var bg = context.Background()

func TestEveryProductImportsItsModuleOnce(t *testing.T) {
	for product, module := range wantModule {
		t.Run(product, func(t *testing.T) {
			b, log := newTestBackend(t, product, nil)
			id, err := b.Identity(bg)
			if err != nil {
				t.Fatalf("Identity: %v", err)
			}
			want := lync.Identity{ServerFQDN: "fe01.contoso.com", PoolFQDN: "pool01.contoso.com", Product: product, Backend: "powershell"}
			if id != want {
				t.Errorf("Identity = %+v, want %+v", id, want)
			}
			if n := log.count("script-mismatch"); n != 0 {
				t.Fatalf("the fake rejected the script: %v", log.lines())
			}
			if got := log.count("import " + module); got != 1 {
				t.Errorf("imports of %s = %d, want 1; log: %v", module, got, log.lines())
			}
		})
	}
}

func TestModuleImportedOnceAcrossManyCalls(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	for i := range 25 {
		if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if _, err := b.BackupService(bg); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if starts, imports := log.count("start "), log.count("import "); starts != 1 || imports != 1 {
		t.Errorf("starts = %d, imports = %d over 50 calls, want 1 and 1", starts, imports)
	}
	if n := len(log.requests(t)); n != 50 {
		t.Errorf("requests = %d, want 50", n)
	}
}

func TestReadsAndWritesHaveTheirOwnHost(t *testing.T) {
	t.Setenv(envLyncBackup, "Stopped")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	for range 3 {
		if _, err := b.Identity(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Pool(bg, "pool03.contoso.com"); err != nil {
			t.Fatal(err)
		}
		if err := b.SyncBackup(bg, "pool03.contoso.com"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.BackupStatus(bg, "pool03.contoso.com"); err != nil {
			t.Fatal(err)
		}
		if err := b.StartBackupService(bg); err != nil {
			t.Fatal(err)
		}
		if svc, err := b.BackupService(bg); err != nil || svc.Status != protocol.ServiceRunning {
			// The write host started it; the read host sees the same deployment.
			t.Fatalf("BackupService after the write = %+v, %v", svc, err)
		}
	}
	if starts, imports := log.count("start "), log.count("import "); starts != 2 || imports != 2 {
		t.Errorf("starts = %d, imports = %d; want 2 and 2 (two hosts, each imports the module once)", starts, imports)
	}
	hostOf := map[string]map[int]bool{}
	for _, r := range log.requests(t) {
		if hostOf[r.Op] == nil {
			hostOf[r.Op] = map[int]bool{}
		}
		hostOf[r.Op][r.PID] = true
	}
	readers, writers := map[int]bool{}, map[int]bool{}
	for op, pids := range hostOf {
		role := readers
		if op == opSyncBackup || op == opStartBackupService {
			role = writers
		}
		for pid := range pids {
			role[pid] = true
		}
	}
	if len(readers) != 1 || len(writers) != 1 {
		t.Fatalf("read ops ran on %v, write ops on %v; want one host each", readers, writers)
	}
	for pid := range readers {
		if writers[pid] {
			t.Errorf("reads and writes ran on the same host %d", pid)
		}
	}
}

// While a write runs for minutes (Enable-CsTopology, a forced sync), reads answer within the
// operator's read timeout.
func TestReadsAnswerWhileAWriteRuns(t *testing.T) {
	const writeTakes = 30 * time.Second
	const readTimeout = 5 * time.Second // the operator's; far below the write
	t.Setenv(envDelayOn, "SyncBackup="+writeTakes.String())
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.CallTimeout = 2 * writeTakes })
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil { // the read host is up
		t.Fatal(err)
	}
	writeDone := make(chan error, 1)
	go func() { writeDone <- b.SyncBackup(bg, "pool03.contoso.com") }()
	t.Cleanup(func() { // no need to sit out the write: stop its host
		b.write.mu.Lock()
		h := b.write.cur
		b.write.mu.Unlock()
		if h != nil {
			h.kill("test over")
		}
		<-writeDone
	})
	waitFor(t, 10*time.Second, "the write host to receive SyncBackup", func() bool { return slices.Contains(log.ops(t), opSyncBackup) })

	for i := range 5 {
		ctx, cancel := context.WithTimeout(bg, readTimeout)
		_, errPool := b.Pool(ctx, "pool02.contoso.com")
		_, errStatus := b.BackupStatus(ctx, "pool03.contoso.com")
		_, errService := b.BackupService(ctx)
		_, errIdentity := b.Identity(ctx)
		cancel()
		if err := errors.Join(errPool, errStatus, errService, errIdentity); err != nil {
			t.Fatalf("reads (round %d) while the write runs: %v", i, err)
		}
	}
	select {
	case err := <-writeDone:
		t.Fatalf("the write ended (%v) before the reads did: the test proves nothing", err)
	default:
	}
}

func TestPoolShapes(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	cases := []struct {
		fqdn string
		want protocol.Pool
	}{
		{"pool01.contoso.com", protocol.Pool{FQDN: "pool01.contoso.com", Site: "EMEA", Edition: protocol.EditionEnterprise,
			Version: "Lync Server 2013", Computers: []string{"fe01.contoso.com", "fe02.contoso.com"}, HostsCMS: true, CMSPool: "pool01.contoso.com",
			EdgePools: []string{"edge01.contoso.com"}}},
		// {"value":[...],"Count":1} wrapper from Windows PowerShell's ConvertTo-Json; FQDN as Windows typed it.
		{"pool02.contoso.com", protocol.Pool{FQDN: "POOL02.contoso.com", Site: "APAC", Edition: protocol.EditionEnterprise,
			Version: "Lync Server 2013", Computers: []string{"fe03.contoso.com"}, CMSPool: "pool01.contoso.com"}},
		// A lone computer unrolled to a string; a Standard Edition server holds its own user store
		// (the topology document installs UserStore on its SQL Server instance).
		{"se01.contoso.com", protocol.Pool{FQDN: "se01.contoso.com", Site: "EMEA", Edition: protocol.EditionStandard,
			Version: "Lync Server 2013", Computers: []string{"se01.contoso.com"}, CMSPool: "pool01.contoso.com"}},
		{"pool03.contoso.com", protocol.Pool{FQDN: "pool03.contoso.com", Site: "AMER", Edition: protocol.EditionEnterprise,
			Version: "Lync Server 2013", Computers: []string{"fe05.contoso.com"}, BackupPool: "pool04.contoso.com", CMSPool: "pool01.contoso.com"}},
		// ServiceVersion 5 in the topology document.
		{"pool06.contoso.com", protocol.Pool{FQDN: "pool06.contoso.com", Site: "AMER", Edition: protocol.EditionEnterprise,
			Version: "Lync Server 2010", Computers: []string{"fe08.contoso.com"}, CMSPool: "pool01.contoso.com"}},
		// Not in the topology document: the edition from Get-CsPool's services, the version unknown.
		{"pool07.contoso.com", protocol.Pool{FQDN: "pool07.contoso.com", Site: "AMER", Edition: protocol.EditionEnterprise,
			Computers: []string{"fe09.contoso.com"}, CMSPool: "pool01.contoso.com"}},
	}
	for _, c := range cases {
		got, err := b.Pool(bg, c.fqdn)
		if err != nil {
			t.Fatalf("Pool(%s): %v", c.fqdn, err)
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", c.want) {
			t.Errorf("Pool(%s)\n got %+v\nwant %+v", c.fqdn, got, c.want)
		}
	}
}

func TestVersionPerProduct(t *testing.T) {
	for product, want := range map[string]string{
		protocol.ProductSfB2015: "Skype for Business Server 2015",
		protocol.ProductSfB2019: "Skype for Business Server 2019", // the fake sends "8", a string
	} {
		b, _ := newTestBackend(t, product, nil)
		p, err := b.Pool(bg, "pool01.contoso.com")
		if err != nil || p.Version != want {
			t.Errorf("%s: Pool version = %q, %v; want %q", product, p.Version, err, want)
		}
	}
}

func TestBackupStatus(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	st, err := b.BackupStatus(bg, "pool03.contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.BackupStatus{PoolFQDN: "pool03.contoso.com", BackupPool: "pool04.contoso.com", Modules: []protocol.BackupModule{
		{Identity: "UserServices.PresenceFocus", ExportStatus: protocol.ExportFinalState, ImportStatus: protocol.ImportNormalState},
		{Identity: "ConfServices.DataConf", ExportStatus: protocol.ExportNonSteadyState, ImportStatus: protocol.ImportNormalState},
		{Identity: protocol.ModuleCMSMaster, ExportStatus: protocol.ExportNotInitialized, ImportStatus: protocol.ImportNormalState},
	}, SyncIntervalSeconds: 120}
	if fmt.Sprintf("%+v", st) != fmt.Sprintf("%+v", want) {
		t.Errorf("BackupStatus\n got %+v\nwant %+v", st, want)
	}
}

func TestBackupServiceAndStart(t *testing.T) {
	t.Run("absent", func(t *testing.T) {
		t.Setenv(envLyncBackup, "absent")
		b, _ := newTestBackend(t, protocol.ProductSfB2019, nil)
		svc, err := b.BackupService(bg)
		if err != nil || svc != (protocol.BackupService{}) {
			t.Errorf("BackupService = %+v, %v; want not installed", svc, err)
		}
		if err := b.StartBackupService(bg); !errors.Is(err, lync.ErrNotFound) {
			t.Errorf("StartBackupService without LYNCBACKUP = %v, want ErrNotFound", err)
		}
	})
	t.Run("stopped then started", func(t *testing.T) {
		t.Setenv(envLyncBackup, "Stopped")
		b, log := newTestBackend(t, protocol.ProductSfB2019, nil)
		svc, err := b.BackupService(bg)
		if err != nil || svc != (protocol.BackupService{Installed: true, Status: protocol.ServiceStopped}) {
			t.Errorf("BackupService = %+v, %v", svc, err)
		}
		for range 2 { // safe to repeat
			if err := b.StartBackupService(bg); err != nil {
				t.Fatalf("StartBackupService: %v", err)
			}
		}
		if svc, _ := b.BackupService(bg); svc.Status != protocol.ServiceRunning {
			t.Errorf("after start: %+v", svc)
		}
		if got := log.ops(t); !slices.Equal(got, []string{"GetBackupService", "StartBackupService", "StartBackupService", "GetBackupService"}) {
			t.Errorf("ops = %v", got)
		}
	})
}

func TestSyncBackup(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	if err := b.SyncBackup(bg, "pool03.contoso.com"); err != nil {
		t.Fatal(err)
	}
	reqs := log.requests(t)
	if len(reqs) != 1 || reqs[0].Op != "SyncBackup" || reqs[0].Params["poolFqdn"] != "pool03.contoso.com" {
		t.Errorf("requests = %+v", reqs)
	}
	err := b.SyncBackup(bg, "pool01.contoso.com") // unpaired: the cmdlet fails
	var ce *CmdletError
	if !errors.As(err, &ce) || ce.Kind != nil || !strings.Contains(err.Error(), "has no backup pool") {
		t.Errorf("SyncBackup of an unpaired pool = %v, want a plain cmdlet error", err)
	}
}

func TestPairAndUnpair(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	voice := &protocol.VoiceFailover{Enabled: true, FailureDetectionIntervalSeconds: 300, FailbackDetectionIntervalSeconds: 600}
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com", VoiceFailover: voice}); err != nil {
		t.Fatalf("PairPools: %v", err)
	}
	reqs := log.requests(t)
	last := reqs[len(reqs)-1]
	if last.Op != "PairPools" || last.Params["primaryFqdn"] != "pool01.contoso.com" || last.Params["backupFqdn"] != "pool02.contoso.com" {
		t.Fatalf("pair request = %s", last.Raw)
	}
	if v, _ := last.Params["voiceFailover"].(map[string]any); v["enabled"] != true || v["failureDetectionIntervalSeconds"] != 300.0 || v["failbackDetectionIntervalSeconds"] != 600.0 {
		t.Errorf("voice failover travelled as %v", last.Params["voiceFailover"])
	}
	for a, want := range map[string]string{"pool01.contoso.com": "pool02.contoso.com", "pool02.contoso.com": "pool01.contoso.com"} {
		if p, err := b.Pool(bg, a); err != nil || p.BackupPool != want {
			t.Errorf("after pairing, %s backup = %q, %v; want %s", a, p.BackupPool, err, want)
		}
	}
	// Pairing again is harmless (same pair).
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool02.contoso.com", BackupFQDN: "pool01.contoso.com"}); err != nil {
		t.Errorf("PairPools again: %v", err)
	}

	if err := b.Unpair(bg, protocol.UnpairParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatalf("Unpair: %v", err)
	}
	if p, _ := b.Pool(bg, "pool01.contoso.com"); p.BackupPool != "" {
		t.Errorf("after Unpair, backup = %q", p.BackupPool)
	}
	writes := func() int {
		n := 0
		for _, op := range log.ops(t) {
			if op == "PairPools" || op == "Unpair" {
				n++
			}
		}
		return n
	}
	before := writes()
	if err := b.Unpair(bg, protocol.UnpairParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Errorf("Unpair of unpaired pools: %v", err)
	}
	if writes() != before {
		t.Errorf("Unpair of unpaired pools wrote the topology")
	}
}

func TestPairRefusals(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	cases := []struct {
		name     string
		a, b     string
		wantKind error
	}{
		{"paired with a third pool", "pool01.contoso.com", "pool03.contoso.com", lync.ErrConflict},
		{"edition mismatch", "pool01.contoso.com", "se01.contoso.com", lync.ErrConflict},
		{"unknown pool", "pool01.contoso.com", "pool99.contoso.com", lync.ErrNotFound},
	}
	for _, c := range cases {
		err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: c.a, BackupFQDN: c.b})
		if !errors.Is(err, c.wantKind) {
			t.Errorf("%s: PairPools = %v, want %v", c.name, err, c.wantKind)
		}
	}
	if err := b.Unpair(bg, protocol.UnpairParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool03.contoso.com"}); !errors.Is(err, lync.ErrConflict) {
		t.Errorf("Unpair of someone else's pairing = %v, want ErrConflict", err)
	}
	var fe *protocol.FieldError
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "POOL01.contoso.com."}); !errors.As(err, &fe) {
		t.Errorf("pairing a pool with itself = %v, want a FieldError", err)
	}
	for _, op := range log.ops(t) {
		if op == "PairPools" || op == "Unpair" {
			t.Errorf("a refused request reached the topology: %v", log.ops(t))
		}
	}
}

func TestErrorClassification(t *testing.T) {
	cases := []struct {
		kind     string
		want     error
		wantText string
	}{
		{"permission", lync.ErrPermission, "RTCUniversalServerAdmins"},
		{"permission-ad", lync.ErrPermission, "Insufficient access rights"},
		{"notfound", lync.ErrNotFound, "does not exist"},
		{"unavailable", lync.ErrUnavailable, "no endpoint listening"},
		{"cmdlet", nil, "Enable-CsTopology failed: the topology has validation errors"},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			t.Setenv(envErrorOn, "GetBackupStatus="+c.kind)
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			_, err := b.BackupStatus(bg, "pool01.contoso.com")
			var ce *CmdletError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *CmdletError", err, err)
			}
			if ce.Kind != c.want || (c.want != nil && !errors.Is(err, c.want)) {
				t.Errorf("kind = %v, want %v (err %v)", ce.Kind, c.want, err)
			}
			for _, sentinel := range []error{lync.ErrPermission, lync.ErrNotFound, lync.ErrUnavailable, lync.ErrConflict} {
				if sentinel != c.want && errors.Is(err, sentinel) {
					t.Errorf("err also is %v", sentinel)
				}
			}
			if !strings.Contains(err.Error(), c.wantText) || !strings.Contains(err.Error(), "GetBackupStatus") {
				t.Errorf("message %q lacks %q", err, c.wantText)
			}
			// A cmdlet failure is an answer, not a broken host: the host stays.
			if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
				t.Errorf("next call: %v", err)
			}
			if n := log.count("start "); n != 1 {
				t.Errorf("starts = %d, want 1", n)
			}
		})
	}
}

func TestModuleImportFailure(t *testing.T) {
	for product, module := range wantModule {
		t.Run(product, func(t *testing.T) {
			t.Setenv(envImportFail, "1")
			b, log := newTestBackend(t, product, nil)
			_, err := b.Pool(bg, "pool01.contoso.com")
			if !errors.Is(err, lync.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			name := products[product].name
			for _, s := range []string{`"` + module + `"`, name, product, "no valid module file"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not name %q", err, s)
				}
			}
			// The next call tries again with a new host (the module may have been installed since).
			_, _ = b.Pool(bg, "pool01.contoso.com")
			if n := log.count("start "); n != 2 {
				t.Errorf("starts = %d, want 2", n)
			}
			if n := len(log.requests(t)); n != 0 {
				t.Errorf("requests sent to a host without its module: %d", n)
			}
		})
	}
}

func TestWrongScriptIsRefusedByTheFake(t *testing.T) {
	// The fake expects the sfb2015 script but gets the lync2013 one: it must fail every call.
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	t.Setenv(envProduct, protocol.ProductSfB2015)
	if _, err := b.Pool(bg, "pool01.contoso.com"); err == nil || !strings.Contains(err.Error(), "ScriptMismatch") {
		t.Errorf("err = %v, want the fake's ScriptMismatch", err)
	}
	if log.count("script-mismatch") != 1 {
		t.Errorf("log: %v", log.lines())
	}
}

func TestHostRestartsAfterDying(t *testing.T) {
	t.Setenv(envDieOn, "SyncBackup,GetBackupStatus")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	for range 3 {
		if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
			t.Fatal(err)
		}
	}
	// The write host dies: the error says so, and the read host goes on as it was.
	err := b.SyncBackup(bg, "pool03.contoso.com")
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "crashed") {
		t.Fatalf("call that kills the write host = %v, want ErrUnavailable with its stderr", err)
	}
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
		t.Fatalf("read after the write host crashed: %v", err)
	}
	if starts := log.count("start "); starts != 2 {
		t.Errorf("starts = %d, want 2: the read host must not restart for the write host's crash", starts)
	}
	// The next write starts a new write host.
	if err := b.StartBackupService(bg); err != nil {
		t.Fatalf("write after the crash: %v", err)
	}
	// The read host dies, and the next read starts a new one.
	if _, err := b.BackupStatus(bg, "pool01.contoso.com"); !errors.Is(err, lync.ErrUnavailable) {
		t.Fatalf("call that kills the read host = %v, want ErrUnavailable", err)
	}
	for range 3 {
		if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
			t.Fatalf("after the read host crashed: %v", err)
		}
	}
	if starts, imports := log.count("start "), log.count("import "); starts != 4 || imports != 4 {
		t.Errorf("starts = %d, imports = %d; want 4 and 4 (each host started, crashed, restarted)", starts, imports)
	}
}

func TestCallTimeoutKillsHost(t *testing.T) {
	t.Setenv(envDelayOn, "GetBackupService=1m")
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.CallTimeout = 500 * time.Millisecond })
	begin := time.Now()
	_, err := b.BackupService(bg)
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "no reply within") {
		t.Fatalf("err = %v, want ErrUnavailable after the call timeout", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("timed out after %s", d)
	}
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
		t.Fatalf("next call: %v", err)
	}
	if n := log.count("start "); n != 2 {
		t.Errorf("starts = %d, want 2 (killed, then restarted)", n)
	}
}

func TestCallerGivingUpKeepsHost(t *testing.T) {
	t.Setenv(envDelayOn, "GetBackupService=700ms")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil { // start the host
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	if _, err := b.BackupService(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// The late reply to the abandoned call must not be taken for this one.
	p, err := b.Pool(bg, "pool02.contoso.com")
	if err != nil || p.Site != "APAC" {
		t.Fatalf("next call = %+v, %v", p, err)
	}
	if n := log.count("start "); n != 1 {
		t.Errorf("starts = %d, want 1", n)
	}
}

func TestSlowStartSurvivesImpatientCaller(t *testing.T) {
	t.Setenv(envStartDelay, "600ms")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	if _, err := b.Pool(ctx, "pool01.contoso.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
		t.Fatal(err)
	}
	if n := log.count("start "); n != 1 {
		t.Errorf("starts = %d, want 1: a caller giving up must not restart a slow import", n)
	}
}

func TestStartTimeout(t *testing.T) {
	t.Setenv(envStartDelay, "1m")
	b, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.StartTimeout = 300 * time.Millisecond })
	_, err := b.Pool(bg, "pool01.contoso.com")
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "did not load module Lync") {
		t.Fatalf("err = %v, want ErrUnavailable naming the module", err)
	}
}

func TestNoiseIsIgnored(t *testing.T) {
	t.Setenv(envNoise, "1")
	var logs syncBuffer
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.Logger = testLogger(&logs) })
	for range 3 {
		p, err := b.Pool(bg, "pool01.contoso.com")
		if err != nil || p.FQDN != "pool01.contoso.com" || !p.HostsCMS {
			t.Fatalf("Pool = %+v, %v", p, err)
		}
		svc, err := b.BackupService(bg)
		if err != nil || !svc.Installed {
			t.Fatalf("BackupService = %+v, %v", svc, err)
		}
	}
	if n := log.count("start "); n != 1 {
		t.Errorf("starts = %d, want 1", n)
	}
	if !strings.Contains(logs.String(), "Machine is not up to date") {
		t.Errorf("noise lines are not logged at debug")
	}
}

func TestHostileParametersTravelAsData(t *testing.T) {
	hostile := []string{
		"pool01.contoso.com; Remove-CsPool -Identity pool01.contoso.com",
		"$(whoami)",
		"pool01'; Remove-CsPool; '",
		`pool01"; Remove-CsPool; "`,
		"pool01.contoso.com\nRemove-CsPool\r\n" + bootstrapSentinel + "\n",
		"`whoami`",
		"@{a=1}",
		"<<LYNCAGENT>>{\"id\":1,\"ok\":true}",
		"é ünïcødé 🐙",
	}
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	// The backend refuses them before PowerShell sees them...
	for _, h := range hostile {
		var fe *protocol.FieldError
		if _, err := b.Pool(bg, h); !errors.As(err, &fe) {
			t.Errorf("Pool(%q) = %v, want a FieldError", h, err)
		}
	}
	if n := len(log.requests(t)); n != 0 {
		t.Fatalf("%d refused requests reached the host", n)
	}
	// ...and even sent straight to the host, they stay JSON data.
	for _, h := range hostile {
		err := b.read.call(bg, opGetPool, map[string]string{"fqdn": h}, nil)
		if !errors.Is(err, lync.ErrNotFound) || !strings.Contains(err.Error(), h) {
			t.Errorf("call with %q = %v; want the fake's not-found error quoting it intact", h, err)
		}
	}
	reqs := log.requests(t)
	if len(reqs) != len(hostile) {
		t.Fatalf("requests = %d, want %d", len(reqs), len(hostile))
	}
	for i, r := range reqs {
		if r.Params["fqdn"] != hostile[i] {
			t.Errorf("fake received %q, want %q", r.Params["fqdn"], hostile[i])
		}
		for _, c := range r.Raw {
			if c > 0x7e || c < 0x20 {
				t.Errorf("request line %q has a raw control or non-ASCII character %q", r.Raw, c)
				break
			}
		}
	}
	if log.count("script-mismatch") != 0 || log.count("start ") != 1 {
		t.Errorf("log: %v", log.lines())
	}
}

func TestConcurrentCallsAreSerialized(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductSfB2015, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fqdn := []string{"pool01.contoso.com", "pool02.contoso.com", "se01.contoso.com"}[i%3]
			p, err := b.Pool(bg, fqdn)
			if err == nil && !protocol.SameFQDN(p.FQDN, fqdn) {
				err = fmt.Errorf("asked %s, got %s", fqdn, p.FQDN)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := log.count("start "); n != 1 {
		t.Errorf("starts = %d, want 1", n)
	}
}

func TestClose(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
		t.Fatal(err)
	}
	if err := b.StartBackupService(bg); err != nil {
		t.Fatal(err)
	}
	hosts := []*host{b.read.cur, b.write.cur}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i, h := range hosts {
		select {
		case <-h.dead:
		default:
			t.Errorf("host %d is still running after Close", i)
		}
		if h.exitErr != nil {
			t.Errorf("host %d did not exit cleanly on Close: %v", i, h.exitErr)
		}
	}
	if _, err := b.Pool(bg, "pool01.contoso.com"); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("read after Close: %v, want ErrUnavailable", err)
	}
	if err := b.SyncBackup(bg, "pool03.contoso.com"); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("write after Close: %v, want ErrUnavailable", err)
	}
}

func TestIdentityNamesThisServer(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.ServerFQDN = "fe03.contoso.com" })
	for range 3 {
		id, err := b.Identity(bg)
		if err != nil || id.PoolFQDN != "pool02.contoso.com" || id.ServerFQDN != "fe03.contoso.com" {
			t.Fatalf("Identity = %+v, %v", id, err)
		}
	}
	reqs := log.requests(t)
	if len(reqs) != 1 || reqs[0].Params["serverFqdn"] != "fe03.contoso.com" {
		t.Errorf("requests = %+v (want one, cached afterwards)", reqs)
	}

	unknown, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.ServerFQDN = "edge01.contoso.com" })
	if _, err := unknown.Identity(bg); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("unknown server: %v, want ErrNotFound", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	if _, err := New(Options{Product: "lync2010"}); err == nil || !strings.Contains(err.Error(), "lync2013") {
		t.Errorf("unknown product: %v", err)
	}
	if _, err := New(Options{Product: protocol.ProductLync2013, ServerFQDN: "fe01; whoami"}); err == nil {
		t.Errorf("bad ServerFQDN accepted")
	}
	t.Setenv("ProgramFiles", `D:\Program Files`)
	b, err := New(Options{Product: protocol.ProductSfB2015, ServerFQDN: "fe01.contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	if b.read.exe != DefaultExecutable || b.write.exe != DefaultExecutable ||
		b.boot.path != `D:\Program Files\Skype for Business Server 2015\Deployment\Bootstrapper.exe` ||
		b.boot.timeout != DefaultBootstrapTimeout || b.read.callTimeout != DefaultCallTimeout || b.write.callTimeout != DefaultCallTimeout {
		t.Errorf("defaults: exe %q boot %q %s call %s", b.read.exe, b.boot.path, b.boot.timeout, b.read.callTimeout)
	}
}

func TestMissingExecutableIsUnavailable(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.Executable = "/nonexistent/powershell.exe" })
	if _, err := b.Pool(bg, "pool01.contoso.com"); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}
