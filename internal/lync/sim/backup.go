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
//   - NotInitialized: CentralMgmt.CMSMaster on the pool that does not host the active CMS (there
//     is no master to export; after FailoverCMS that is the pool it moved from), or the direction
//     has never been active with this partner.
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
//
// A running LYNCBACKUP serves the partner it loaded when it started (the partner its server was
// bootstrapped for then) until it stops: neither a new pairing nor a Bootstrapper run changes
// what a running service does. A Front End of a paired pool where LYNCBACKUP runs serving
// another partner than the pool's backup pool is stale, and so is its pool: the sim cannot tell
// which Front End hosts the pool's active instance, so one stale service is enough. A stale pool
// reports ErrorState for the export AND the import of every module (CentralMgmt.CMSMaster on the
// pool that does not host the CMS stays NotInitialized), whether or not the direction ever
// replicated with the new partner; both directions between it and its partner stop (no periodic
// sync, no forced sync; the partner's export goes NonSteadyState, or stays NotInitialized, as
// with a stopped service) until every stale service in the pool is restarted
// (RestartBackupService, or a reboot). StartBackupService on a running stale service does
// nothing. An unpaired pool has no direction: NotInitialized, however its services run.
//
// Backup data: when a direction first replicates, the partner starts holding the pool's data
// (poolMut.BackupDataOf). It stays when the pairing changes; Unpair removes it. A direction to a
// new partner always starts from scratch (initialBacklog), whatever data is left behind.

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

// timingOf is the timing in force: the file's, with the sync interval of the state.
func timingOf(st *mutState, t *topology) timing {
	tm := t.timing
	if st.SyncInterval > 0 {
		tm.SyncInterval = time.Duration(st.SyncInterval)
	}
	return tm
}

func running(sm *serverMut) bool {
	return sm.BackupService.Installed && sm.BackupService.Status == protocol.ServiceRunning
}

// serving reports whether pool has LYNCBACKUP running on a Front End bootstrapped for partner,
// serving partner since it started.
func serving(st *mutState, t *topology, pool, partner string) bool {
	p, _ := t.pool(pool)
	for _, s := range p.Servers {
		sm := st.Servers[s]
		if running(sm) && sm.BootstrappedFor == partner && sm.ServiceServes == partner {
			return true
		}
	}
	return false
}

// staleService reports whether the server's LYNCBACKUP runs serving another partner than its
// pool's backup pool.
func staleService(sm *serverMut, pm *poolMut) bool {
	return pm.BackupPool != "" && running(sm) && sm.ServiceServes != pm.BackupPool
}

// staleServers lists, pool by pool, the servers of the given pools whose LYNCBACKUP runs serving
// another partner than their pool's backup pool.
func staleServers(st *mutState, t *topology, pools ...string) []string {
	var out []string
	for _, name := range pools {
		p, ok := t.pool(name)
		if !ok {
			continue
		}
		for _, s := range p.Servers {
			if staleService(st.Servers[s], st.Pools[name]) {
				out = append(out, s)
			}
		}
	}
	return out
}

// active reports whether the direction from pool replicates: paired both ways, the backup
// service serving the pairing on each side, and no stale service in either pool.
func active(st *mutState, t *topology, pool string) bool {
	b := st.Pools[pool].BackupPool
	if b == "" || st.Pools[b].BackupPool != pool {
		return false
	}
	return serving(st, t, pool, b) && serving(st, t, b, pool) && len(staleServers(st, t, pool, b)) == 0
}

// settle brings every direction up to now under the activity that held until now, then applies
// the activity the mutation just produced. Every mutation ends with it.
func settle(st *mutState, t *topology, now time.Time) {
	tm := timingOf(st, t)
	for _, p := range t.pools {
		pm := st.Pools[p.FQDN]
		dir := pm.Backup.at(now, tm)
		if dir.Partner != pm.BackupPool {
			dir = direction{Partner: pm.BackupPool, Since: now}
		}
		on := active(st, t, p.FQDN)
		switch {
		case on && !dir.Active:
			if !dir.Initialized {
				dir.Initialized = true
				dir.Backlog = float64(t.timing.InitialBacklog)
				// The partner now holds this pool's data.
				b := st.Pools[pm.BackupPool]
				b.BackupDataOf = uniqueSorted(append(b.BackupDataOf, p.FQDN))
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
	tm := timingOf(st, t)
	dir := pm.Backup.at(now, tm)
	stale := len(staleServers(st, t, pool)) > 0
	out := protocol.BackupStatus{PoolFQDN: pool, BackupPool: pm.BackupPool, Modules: []protocol.BackupModule{}, SyncIntervalSeconds: wholeSeconds(tm.SyncInterval)}
	for _, m := range modulesFor(t.product) {
		out.Modules = append(out.Modules, protocol.BackupModule{
			Identity:     m,
			ExportStatus: exportStatus(m, pool, st.CMSPool, t, pm, dir, stale),
			ImportStatus: importStatus(m, pm, stale),
		})
	}
	return out, dir
}

// wholeSeconds rounds up to whole seconds, at least 1 for a positive duration.
func wholeSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// exportStatus is one module's export state; cms is the pool that hosts the active CMS; stale
// says a LYNCBACKUP of the pool serves another partner than its backup pool.
func exportStatus(module, pool, cms string, t *topology, pm *poolMut, dir direction, stale bool) string {
	switch {
	case module == protocol.ModuleCMSMaster && pool != cms:
		return protocol.ExportNotInitialized
	case stale: // only ever true for a paired pool
		return protocol.ExportErrorState
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

func importStatus(module string, pm *poolMut, stale bool) string {
	if pm.BackupPool != "" && (stale || slices.Contains(pm.ImportError, module)) {
		return protocol.ImportErrorState
	}
	return protocol.ImportNormalState
}

// failingExports lists the modules of pool whose export the exportError fault breaks.
func failingExports(t *topology, st *mutState, pool string) []string {
	pm := st.Pools[pool]
	var out []string
	for _, m := range modulesFor(t.product) {
		if m == protocol.ModuleCMSMaster && pool != st.CMSPool {
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
