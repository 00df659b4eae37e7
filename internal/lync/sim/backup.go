package sim

import (
	"slices"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// The backup model. One direction per pool (pool -> its backup pool), computed lazily from
// timestamps when read: no goroutine ticks in the background, so a fake clock drives it exactly and
// a restarted sim picks up where the state file left off.
//
// Figures: changes arrive at durations.changeRate per second and wait in a backlog. While the
// direction is active, LYNCBACKUP drains the whole backlog at every syncInterval tick (counted
// from when the direction became active) and at the end of every explicit SyncBackup. On its first
// activation a direction must ship durations.initialBacklog (the pool's existing data) first.
//
// Export state of a module, first match wins:
//   - NotInitialized: CentralMgmt.CMSMaster on the pool that does not host the CMS (there is no
//     master to export), or the direction has never been active with this partner.
//   - ErrorState: the pool's exportError fault names the module.
//   - NonSteadyState: the direction was active but is not any more (LYNCBACKUP stopped on every
//     bootstrapped Front End of either pool, or one side's pairing changed). Real Lync keeps the
//     last state in the backup store and the next export has to catch up on everything that
//     arrived meanwhile; we report NonSteadyState even when the backlog is small, so that a stopped
//     service is visibly unhealthy (even at changeRate 0) rather than looking synced. It is not
//     reset to NotInitialized: the first export happened, and the restarted service resumes.
//   - FinalState: active, nothing waiting, and a drain has completed since the direction became
//     active (the partner imported everything).
//   - SteadyState: active and the backlog fits in one batch (batchCapacity).
//   - NonSteadyState: active and the backlog exceeds one batch.
//
// With the defaults (changeRate 0, batchCapacity 100, initialBacklog 500) a new pair goes
// NotInitialized -> NonSteadyState -> (sync) FinalState; with a moderate rate such that
// changeRate × syncInterval <= batchCapacity it settles on SteadyState after a sync.
//
// Import state is the pool's import of its partner's data: ErrorState when the pool's importError
// fault names the module and the pool is paired, NormalState otherwise (Lync reports NormalState
// while there is nothing to import; the export side tells whether data flows).

// modulesFor lists the backup modules Get-CsBackupServiceStatus reports, in its order.
func modulesFor(product string) []string {
	m := []string{"UserServices.PresenceFocus", "ConfServices.DataConf", protocol.ModuleCMSMaster}
	if product == protocol.ProductSfB2019 {
		// Skype for Business Server 2019 CU1 backs up the Response Group store too.
		m = append(m, "ApplicationServer.RGSDataStore", "ApplicationServer.RGSFileStore")
	}
	return m
}

// direction is the stored progress of one direction, as of Since.
type direction struct {
	// Partner is the backup pool this progress is about; a new partner starts from scratch.
	Partner string `json:"partner,omitempty"`
	// Initialized is true once the direction has been active with Partner.
	Initialized bool `json:"initialized,omitempty"`
	// Active is whether the direction replicated from Since on; it only changes at a mutation,
	// where settle brings the figures up to date first.
	Active bool `json:"active,omitempty"`
	// Backlog is the changes waiting at Since.
	Backlog float64   `json:"backlog"`
	Since   time.Time `json:"since"`
	// Imported is true when a drain completed since the direction last became active.
	Imported bool `json:"imported,omitempty"`
	// TickOrigin is when the service's periodic syncs started counting (last activation).
	TickOrigin time.Time `json:"tickOrigin"`
}

// at returns the direction's figures at now, applying the drains and arrivals since Since.
func (d direction) at(now time.Time, tm timing) direction {
	if !d.Initialized {
		return d
	}
	if d.Active && tm.SyncInterval > 0 {
		if k := now.Sub(d.TickOrigin) / tm.SyncInterval; k >= 1 {
			if last := d.TickOrigin.Add(k * tm.SyncInterval); last.After(d.Since) {
				d.Backlog, d.Since, d.Imported = 0, last, true
			}
		}
	}
	if el := now.Sub(d.Since); el > 0 {
		d.Backlog += tm.ChangeRate * el.Seconds()
		d.Since = now
	}
	return d
}

// serving reports whether pool has LYNCBACKUP running on a Front End bootstrapped for partner.
func serving(st *mutState, t *topology, pool, partner string) bool {
	p, _ := t.pool(pool)
	for _, s := range p.Servers {
		sm := st.Servers[s]
		if sm.BackupService.Installed && sm.BackupService.Status == protocol.ServiceRunning && sm.BootstrappedFor == partner {
			return true
		}
	}
	return false
}

// active reports whether the direction from pool replicates: paired both ways and the backup
// service serving the pairing on each side.
func active(st *mutState, t *topology, pool string) bool {
	b := st.Pools[pool].BackupPool
	if b == "" || st.Pools[b].BackupPool != pool {
		return false
	}
	return serving(st, t, pool, b) && serving(st, t, b, pool)
}

// settle brings every direction up to now under the activity that held until now, then applies
// the activity the mutation just produced. Every mutation ends with it.
func settle(st *mutState, t *topology, now time.Time) {
	for _, p := range t.pools {
		pm := st.Pools[p.FQDN]
		dir := pm.Backup.at(now, t.timing)
		if dir.Partner != pm.BackupPool {
			dir = direction{Partner: pm.BackupPool, Since: now}
		}
		on := active(st, t, p.FQDN)
		switch {
		case on && !dir.Active:
			if !dir.Initialized {
				dir.Initialized = true
				dir.Backlog = float64(t.timing.InitialBacklog)
			}
			dir.Active, dir.Imported, dir.Since, dir.TickOrigin = true, false, now, now
		case !on && dir.Active:
			dir.Active, dir.Imported = false, false
		}
		pm.Backup = dir
	}
}

// backupStatus computes Get-CsBackupServiceStatus for pool at now.
func backupStatus(st *mutState, t *topology, pool string, now time.Time) (protocol.BackupStatus, direction) {
	pm := st.Pools[pool]
	dir := pm.Backup.at(now, t.timing)
	out := protocol.BackupStatus{PoolFQDN: pool, BackupPool: pm.BackupPool, Modules: []protocol.BackupModule{}}
	for _, m := range modulesFor(t.product) {
		out.Modules = append(out.Modules, protocol.BackupModule{
			Identity:     m,
			ExportStatus: exportStatus(m, pool, t, pm, dir),
			ImportStatus: importStatus(m, pm),
		})
	}
	return out, dir
}

func exportStatus(module, pool string, t *topology, pm *poolMut, dir direction) string {
	switch {
	case module == protocol.ModuleCMSMaster && pool != t.cmsPool:
		return protocol.ExportNotInitialized
	case !dir.Initialized:
		return protocol.ExportNotInitialized
	case slices.Contains(pm.ExportError, module):
		return protocol.ExportErrorState
	case !dir.Active:
		return protocol.ExportNonSteadyState
	case dir.Backlog == 0 && dir.Imported:
		return protocol.ExportFinalState
	case dir.Backlog <= float64(t.timing.BatchCapacity):
		return protocol.ExportSteadyState
	default:
		return protocol.ExportNonSteadyState
	}
}

func importStatus(module string, pm *poolMut) string {
	if pm.BackupPool != "" && slices.Contains(pm.ImportError, module) {
		return protocol.ImportErrorState
	}
	return protocol.ImportNormalState
}

// failingExports lists the modules of pool whose export the exportError fault breaks.
func failingExports(t *topology, pm *poolMut, pool string) []string {
	var out []string
	for _, m := range modulesFor(t.product) {
		if m == protocol.ModuleCMSMaster && pool != t.cmsPool {
			continue
		}
		if slices.Contains(pm.ExportError, m) {
			out = append(out, m)
		}
	}
	return out
}

func uniqueSorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
