package sim

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const (
	presence = "UserServices.PresenceFocus"
	dataConf = "ConfServices.DataConf"
	cms      = protocol.ModuleCMSMaster
)

// want describes the export states of the three lync2013 modules.
type want struct{ presence, dataConf, cms string }

func checkExports(t *testing.T, d *Deployment, pool string, w want, when string) {
	t.Helper()
	got := exports(t, d, pool)
	if got[presence] != w.presence || got[dataConf] != w.dataConf || got[cms] != w.cms {
		t.Errorf("%s: %s exports = %v, want %+v", when, pool, got, w)
	}
}

func all(s string) want { return want{s, s, s} }

// nonCMS is what the pool that does not host the CMS reports: CMSMaster NotInitialized.
func nonCMS(s string) want { return want{s, s, protocol.ExportNotInitialized} }

func TestBackupStatusTransitions(t *testing.T) {
	const (
		ni  = protocol.ExportNotInitialized
		nss = protocol.ExportNonSteadyState
		fs  = protocol.ExportFinalState
	)
	d, clk := newSim(t, baseYAML) // changeRate 0, batchCapacity 100, initialBacklog 500, syncInterval 20s

	checkExports(t, d, pool01, all(ni), "unpaired")
	if s := status(t, d, pool01); s.PoolFQDN != pool01 || s.BackupPool != "" || len(s.Modules) != 3 {
		t.Errorf("unpaired status = %+v", s)
	}
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(ni), "paired, not bootstrapped")
	for _, s := range []string{fe1p1, fe1p2} {
		if _, err := bootstrap(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := startService(t, d, clk, fe1p1); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(ni), "service running on one side only")
	if err := syncBackup(t, d, clk, pool01); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("sync with one side stopped: %v", err)
	}

	if err := startService(t, d, clk, fe1p2); err != nil {
		t.Fatal(err)
	}
	// Active: the first export (500 changes waiting) is a backlog.
	checkExports(t, d, pool01, all(nss), "first export pending")
	checkExports(t, d, pool02, nonCMS(nss), "first export pending")
	if s := status(t, d, pool02); s.BackupPool != pool01 {
		t.Errorf("status backup pool = %q", s.BackupPool)
	}
	for _, m := range status(t, d, pool01).Modules {
		if m.ImportStatus != protocol.ImportNormalState {
			t.Errorf("import %s = %s", m.Identity, m.ImportStatus)
		}
	}

	// A forced sync of pool01 drains pool01 -> pool02 only; with no new changes that is FinalState.
	if err := syncBackup(t, d, clk, pool01); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(fs), "after SyncBackup")
	checkExports(t, d, pool02, nonCMS(nss), "other direction not synced yet")

	// The service's own sync interval drains the other direction (20s after it became active).
	clk.Step(16 * time.Second)
	checkExports(t, d, pool02, nonCMS(nss), "19s after activation")
	clk.Step(time.Second)
	checkExports(t, d, pool02, nonCMS(fs), "after the periodic sync")
	checkExports(t, d, pool01, all(fs), "after the periodic sync")
}

func TestBackupWithChangeRate(t *testing.T) {
	tests := []struct {
		name       string
		rate       string
		afterSync  string // right after a forced sync
		beforeTick string // 19s into a sync interval
		backlogMax float64
	}{
		// 0.5/s × 20s = 10 changes per interval: fits one batch of 100.
		{"moderate", "0.5", protocol.ExportSteadyState, protocol.ExportSteadyState, 10},
		// 8/s: a batch fills in 12.5s, so the export falls behind before each periodic sync.
		{"high", "8", protocol.ExportSteadyState, protocol.ExportNonSteadyState, 160},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newSim(t, replace(t, baseYAML, "changeRate: 0\n", "changeRate: "+tc.rate+"\n"))
			pairAndRun(t, d, clk)
			// Activation happened at the end of pairAndRun; align on its periodic syncs.
			activated := clk.Now()
			checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "first export pending")
			if err := syncBackup(t, d, clk, pool01); err != nil {
				t.Fatal(err)
			}
			// The sync drained at its end; nothing has arrived since.
			if got := exports(t, d, pool01)[presence]; got != protocol.ExportFinalState {
				t.Errorf("at the end of the sync = %s, want FinalState", got)
			}
			clk.Step(time.Second)
			if got := exports(t, d, pool01)[presence]; got != tc.afterSync {
				t.Errorf("1s after the sync = %s, want %s", got, tc.afterSync)
			}
			clk.Set(activated.Add(39 * time.Second))
			if got := exports(t, d, pool01)[presence]; got != tc.beforeTick {
				t.Errorf("19s into the interval = %s, want %s", got, tc.beforeTick)
			}
			clk.Set(activated.Add(40 * time.Second))
			if got := exports(t, d, pool01)[presence]; got != protocol.ExportFinalState {
				t.Errorf("at the periodic sync = %s, want FinalState (backlog drained)", got)
			}
			clk.Set(activated.Add(60*time.Second - time.Nanosecond))
			if b := d.Snapshot().Pools[0].Backlog; b > tc.backlogMax || b < tc.backlogMax*0.99 {
				t.Errorf("backlog just before a periodic sync = %v, want about %v", b, tc.backlogMax)
			}
		})
	}
}

func TestCMSMasterOnlyOnCMSPool(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	clk.Step(20 * time.Second)
	checkExports(t, d, pool01, all(protocol.ExportFinalState), "CMS pool")
	checkExports(t, d, pool02, nonCMS(protocol.ExportFinalState), "non-CMS pool")
	p1, p2 := poolOf(t, d, pool01), poolOf(t, d, pool02)
	if !p1.HostsCMS || p2.HostsCMS {
		t.Errorf("HostsCMS = %v, %v", p1.HostsCMS, p2.HostsCMS)
	}
}

func TestExportAndImportErrors(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	if err := d.SetExportError(pool01, dataConf, true); err != nil {
		t.Fatal(err)
	}
	err := syncBackup(t, d, clk, pool01)
	if err == nil || !strings.Contains(err.Error(), dataConf) || strings.Contains(err.Error(), presence) {
		t.Fatalf("sync with a failing export: %v", err)
	}
	checkExports(t, d, pool01, want{protocol.ExportFinalState, protocol.ExportErrorState, protocol.ExportFinalState}, "DataConf failing")

	// "" = every module; CMSMaster on the non-CMS pool has nothing to export and stays NotInitialized.
	if err := d.SetExportError(pool02, "", true); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool02, nonCMS(protocol.ExportErrorState), "all failing")
	if err := d.SetExportError(pool02, "", false); err != nil {
		t.Fatal(err)
	}
	if err := d.SetExportError(pool01, dataConf, false); err != nil {
		t.Fatal(err)
	}
	if err := syncBackup(t, d, clk, pool01); err != nil {
		t.Errorf("sync after clearing: %v", err)
	}
	checkExports(t, d, pool01, all(protocol.ExportFinalState), "cleared")

	if err := d.SetImportError(pool02, presence, true); err != nil {
		t.Fatal(err)
	}
	for _, m := range status(t, d, pool02).Modules {
		wantImport := protocol.ImportNormalState
		if m.Identity == presence {
			wantImport = protocol.ImportErrorState
		}
		if m.ImportStatus != wantImport {
			t.Errorf("import %s = %s, want %s", m.Identity, m.ImportStatus, wantImport)
		}
	}

	if err := d.SetExportError(pool01, "UserServices.Nope", true); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown module: %v", err)
	}
	if err := d.SetExportError("pool99.contoso.com", "", true); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("unknown pool: %v", err)
	}
}

func TestExportErrorFromFile(t *testing.T) {
	yml := replace(t, baseYAML, "  site: Dublin\n", "  site: Dublin\n  faults: {exportError: [UserServices.PresenceFocus]}\n")
	d, clk := newSim(t, yml)
	checkExports(t, d, pool02, nonCMS(protocol.ExportNotInitialized), "before the first export")
	pairAndRun(t, d, clk)
	checkExports(t, d, pool02, want{protocol.ExportErrorState, protocol.ExportNonSteadyState, protocol.ExportNotInitialized}, "active")
}

func TestStoppedServiceIsUnhealthy(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	if err := startService(t, d, clk, fe2p2); err != nil { // a second running Front End in pool02
		t.Fatal(err)
	}
	clk.Step(20 * time.Second)
	checkExports(t, d, pool01, all(protocol.ExportFinalState), "healthy")

	// One of two running servers stopping does not matter.
	if err := d.StopBackupService(fe1p2); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(protocol.ExportFinalState), "one of two stopped")
	// The last one does, in both directions, even with no changes arriving.
	if err := d.StopBackupService(fe2p2); err != nil {
		t.Fatal(err)
	}
	if svc, _ := backend(t, d, fe2p2).BackupService(t.Context()); svc.Status != protocol.ServiceStopped {
		t.Errorf("service = %+v", svc)
	}
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "stopped in the partner pool")
	checkExports(t, d, pool02, nonCMS(protocol.ExportNonSteadyState), "stopped in the pool")
	clk.Step(time.Hour) // no periodic sync happens while stopped
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "an hour later")
	if err := syncBackup(t, d, clk, pool01); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("sync while stopped: %v", err)
	}

	// Restarted: it resumes (not NotInitialized) and is final after its next sync.
	if err := startService(t, d, clk, fe1p2); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(protocol.ExportSteadyState), "restarted, not synced yet")
	clk.Step(20 * time.Second)
	checkExports(t, d, pool01, all(protocol.ExportFinalState), "restarted and synced")

	if err := d.StopBackupService(fe1p1); err != nil {
		t.Fatal(err)
	}
	if err := d.StopBackupService("fe01.pool03.contoso.com"); !errors.Is(err, lync.ErrConflict) {
		t.Errorf("stop where LYNCBACKUP is not installed: %v", err)
	}
	if err := d.StopBackupService(pool01); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("stop on a pool: %v", err)
	}
}

func TestRepairWithThirdPoolNeedsBootstrap(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	// An administrator re-pairs pool01 with pool03 out of band.
	for _, x := range [][2]string{{pool02, ""}, {pool01, pool03}, {pool03, pool01}} {
		if err := d.SetBackupPool(x[0], x[1]); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := bootstrap(t, d, clk, "fe01.pool03.contoso.com"); err != nil || r.BackupPool != pool01 {
		t.Fatalf("bootstrap pool03: %+v, %v", r, err)
	}
	if err := startService(t, d, clk, "fe01.pool03.contoso.com"); err != nil {
		t.Fatal(err)
	}
	// pool01's running service was started for pool02 and still serves it: pool01's backup is in
	// error, and nothing replicates to pool03 yet.
	checkExports(t, d, pool01, all(protocol.ExportErrorState), "pool01 not bootstrapped for pool03")
	if _, err := bootstrap(t, d, clk, fe1p1); err != nil {
		t.Fatal(err)
	}
	// Bootstrapper does not restart the running service: still in error.
	checkExports(t, d, pool01, all(protocol.ExportErrorState), "bootstrapped for pool03, not restarted")
	if err := restartService(t, d, clk, fe1p1); err != nil {
		t.Fatal(err)
	}
	checkExports(t, d, pool01, all(protocol.ExportNonSteadyState), "bootstrapped for pool03 and restarted")
}
