package sim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// view is the deployment as seen from one endpoint: a Front End server, or a pool-level endpoint
// (server empty) that can read and write the topology but runs nothing locally.
type view struct {
	d      *Deployment
	server string
	pool   string
}

var _ lync.Backend = (*view)(nil)

// Bootstrapper.exe exit codes the sim produces (Windows Installer codes, which Bootstrapper passes on).
const (
	exitFatal          = 1603 // fatal error during installation
	exitRebootRequired = 3010 // success, but a restart is required to finish
)

var bootstrapperPath = map[string]string{
	protocol.ProductLync2013: `C:\Program Files\Microsoft Lync Server 2013\Deployment\Bootstrapper.exe`,
	protocol.ProductSfB2015:  `C:\Program Files\Skype for Business Server 2015\Deployment\Bootstrapper.exe`,
	protocol.ProductSfB2019:  `C:\Program Files\Skype for Business Server 2019\Deployment\Bootstrapper.exe`,
}

func (v *view) Identity(ctx context.Context) (lync.Identity, error) {
	if err := ctx.Err(); err != nil {
		return lync.Identity{}, err
	}
	return lync.Identity{ServerFQDN: v.server, PoolFQDN: v.pool, Product: v.d.topo.product, Backend: "sim"}, nil
}

func (v *view) Pool(ctx context.Context, fqdn string) (protocol.Pool, error) {
	if err := ctx.Err(); err != nil {
		return protocol.Pool{}, err
	}
	name, err := v.d.resolvePool(fqdn)
	if err != nil {
		return protocol.Pool{}, err
	}
	var out protocol.Pool
	v.d.read(func(st *mutState, _ time.Time) { out = poolInfo(v.d.topo, st, name) })
	return out, nil
}

func (v *view) BackupStatus(ctx context.Context, poolFQDN string) (protocol.BackupStatus, error) {
	if err := ctx.Err(); err != nil {
		return protocol.BackupStatus{}, err
	}
	name, err := v.d.resolvePool(poolFQDN)
	if err != nil {
		return protocol.BackupStatus{}, err
	}
	var out protocol.BackupStatus
	v.d.read(func(st *mutState, now time.Time) { out, _ = backupStatus(st, v.d.topo, name, now) })
	return out, nil
}

func (v *view) BackupService(ctx context.Context) (protocol.BackupService, error) {
	if err := ctx.Err(); err != nil {
		return protocol.BackupService{}, err
	}
	if v.server == "" {
		return protocol.BackupService{}, fmt.Errorf("%w: %s is a pool endpoint; LYNCBACKUP runs on its Front End servers", lync.ErrNotFound, v.pool)
	}
	var out protocol.BackupService
	v.d.read(func(st *mutState, _ time.Time) { out = st.Servers[v.server].BackupService })
	return out, nil
}

// lockTopology takes the topology write lock, or gives up when ctx ends.
func (d *Deployment) lockTopology(ctx context.Context) (unlock func(), err error) {
	select {
	case d.topoWrite <- struct{}{}:
		return func() { <-d.topoWrite }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// PairPools sets each pool as the other's backup pool and publishes the topology after the
// pairPools duration. It refuses (lync.ErrConflict) a pool paired with a third pool and pools of
// different editions or versions; pools already paired with each other only get the voice settings
// rewritten.
func (v *view) PairPools(ctx context.Context, p protocol.PairPoolsParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	a, err := v.d.resolvePool(p.PrimaryFQDN)
	if err != nil {
		return err
	}
	b, err := v.d.resolvePool(p.BackupFQDN)
	if err != nil {
		return err
	}
	if err := v.d.count(protocol.KindPairPools, a); err != nil {
		return err
	}
	unlock, err := v.d.lockTopology(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	check := func(st *mutState) (changed bool, err error) {
		pa, pb := st.Pools[a].BackupPool, st.Pools[b].BackupPool
		if pa != "" && pa != b {
			return false, fmt.Errorf("%w: %s is already paired with %s", lync.ErrConflict, a, pa)
		}
		if pb != "" && pb != a {
			return false, fmt.Errorf("%w: %s is already paired with %s", lync.ErrConflict, b, pb)
		}
		fa, _ := v.d.topo.pool(a)
		fb, _ := v.d.topo.pool(b)
		if err := compatible(fa, fb); err != nil {
			return false, fmt.Errorf("%w: %v", lync.ErrConflict, err)
		}
		return pa != b || pb != a || !sameVoice(st.Pools[a].VoiceFailover, p.VoiceFailover), nil
	}
	var changed bool
	v.d.read(func(st *mutState, _ time.Time) { changed, err = check(st) })
	if err != nil || !changed {
		return err // refused, or already paired as asked: nothing to publish
	}
	if err := sleep(ctx, v.d.clock, v.d.topo.timing.PairPools); err != nil {
		return err
	}
	// Check again: an administrator may have changed the topology out of band meanwhile.
	return v.d.mutate(func(st *mutState, _ time.Time) error {
		if _, err := check(st); err != nil {
			return err
		}
		st.Pools[a].BackupPool, st.Pools[b].BackupPool = b, a
		st.Pools[a].VoiceFailover = nil
		if p.VoiceFailover != nil {
			vf := *p.VoiceFailover
			st.Pools[a].VoiceFailover = &vf
		}
		st.TopologyVersion++
		return nil
	})
}

func sameVoice(a, b *protocol.VoiceFailover) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Unpair removes the association between the two pools (both sides) and publishes the topology.
// Pools that are not paired are left alone; a pool paired with a third pool is a conflict.
func (v *view) Unpair(ctx context.Context, p protocol.UnpairParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a, err := v.d.resolvePool(p.PrimaryFQDN)
	if err != nil {
		return err
	}
	b, err := v.d.resolvePool(p.BackupFQDN)
	if err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("%w: a pool cannot be paired with itself", ErrInvalid)
	}
	if err := v.d.count(protocol.KindUnpair, a); err != nil {
		return err
	}
	unlock, err := v.d.lockTopology(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	check := func(st *mutState) (changed bool, err error) {
		pa, pb := st.Pools[a].BackupPool, st.Pools[b].BackupPool
		if pa != "" && pa != b {
			return false, fmt.Errorf("%w: %s is paired with %s, not %s", lync.ErrConflict, a, pa, b)
		}
		if pb != "" && pb != a {
			return false, fmt.Errorf("%w: %s is paired with %s, not %s", lync.ErrConflict, b, pb, a)
		}
		return pa != "" || pb != "", nil
	}
	var changed bool
	v.d.read(func(st *mutState, _ time.Time) { changed, err = check(st) })
	if err != nil || !changed {
		return err
	}
	if err := sleep(ctx, v.d.clock, v.d.topo.timing.PairPools); err != nil {
		return err
	}
	return v.d.mutate(func(st *mutState, _ time.Time) error {
		if _, err := check(st); err != nil {
			return err
		}
		for _, x := range []string{a, b} {
			st.Pools[x].BackupPool = ""
			st.Pools[x].VoiceFailover = nil
		}
		st.TopologyVersion++
		return nil
	})
}

// Bootstrap runs Bootstrapper.exe: after the bootstrap duration it reconciles the server with the
// published topology. Paired pool: LYNCBACKUP installed (Stopped if it was not installed before),
// for the pool's current backup pool. Unpaired pool: LYNCBACKUP removed. Faults make it exit
// non-zero first. A run cut short by ctx changes nothing.
func (v *view) Bootstrap(ctx context.Context) (lync.BootstrapResult, error) {
	if err := ctx.Err(); err != nil {
		return lync.BootstrapResult{}, err
	}
	if v.server == "" {
		return lync.BootstrapResult{}, fmt.Errorf("%w: Bootstrapper.exe runs on a Front End server; %s is a pool endpoint", lync.ErrConflict, v.pool)
	}
	d := v.d
	if err := d.count(protocol.KindBootstrap, v.server); err != nil {
		return lync.BootstrapResult{}, err
	}
	exe := bootstrapperPath[d.topo.product]

	// One run at a time on a server, as the powershell backend does: a second run waits for the
	// first (running two would make Windows Installer refuse the second with 1618).
	sem := d.bootstrapping[v.server]
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return lync.BootstrapResult{}, ctx.Err()
	}
	defer func() { <-sem }()

	if err := sleep(ctx, d.clock, d.topo.timing.Bootstrap); err != nil {
		return lync.BootstrapResult{}, err
	}
	var res lync.BootstrapResult
	err := d.mutate(func(st *mutState, now time.Time) error {
		sm, pm := st.Servers[v.server], st.Pools[v.pool]
		switch {
		case sm.Faults.BootstrapFailures > 0:
			sm.Faults.BootstrapFailures--
			res = lync.BootstrapResult{
				ExitCode: exitFatal,
				LogTail: strings.Join([]string{
					"Checking prerequisites for Lync Server Backup Service...prerequisites satisfied.",
					"Installing Lync Server Backup Service (LYNCBACKUP)...failure code 1603",
					exe + ` failed. For details, see the log under %TEMP%\Bootstrap-` + v.server + ".html",
				}, "\n"),
			}
		case sm.Faults.RebootRequired > 0:
			sm.Faults.RebootRequired--
			res = lync.BootstrapResult{
				ExitCode:       exitRebootRequired,
				RebootRequired: true,
				LogTail:        "Installing prerequisites...success\nA restart is required to complete the installation. Restart " + v.server + " and run Bootstrapper.exe again.",
			}
		default:
			res = lync.BootstrapResult{Succeeded: true, BackupPool: pm.BackupPool}
			if pm.BackupPool != "" {
				if !sm.BackupService.Installed {
					sm.BackupService = protocol.BackupService{Installed: true, Status: protocol.ServiceStopped}
				}
				sm.BootstrappedFor = pm.BackupPool
				res.LogTail = "Enabling Lync Server Backup Service (LYNCBACKUP) for backup pool " + pm.BackupPool + "...success\nBootstrapper.exe completed successfully."
			} else {
				// The published topology has no backup pool: Bootstrapper removes what it no
				// longer needs, as it reconciles the machine with the topology.
				sm.BackupService = protocol.BackupService{}
				sm.BootstrappedFor = ""
				res.LogTail = "No changes to Lync Server Backup Service: " + v.pool + " has no backup pool.\nBootstrapper.exe completed successfully."
			}
			if d.topo.product != protocol.ProductLync2013 {
				res.LogTail += "\nRe-apply the installed cumulative update (SkypeServerUpdateInstaller.exe)."
			}
		}
		sm.LastBootstrap = &BootstrapRun{
			Finished: now, ExitCode: res.ExitCode, Succeeded: res.Succeeded,
			RebootRequired: res.RebootRequired, BackupPool: res.BackupPool,
		}
		return nil
	})
	if err != nil {
		return lync.BootstrapResult{}, err
	}
	return res, nil
}

// StartBackupService starts LYNCBACKUP (Start-CsWindowsService -Name LYNCBACKUP); it is Running
// after the startBackupService duration. Starting a running service returns at once.
func (v *view) StartBackupService(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if v.server == "" {
		return fmt.Errorf("%w: Start-CsWindowsService LYNCBACKUP runs on a Front End server; %s is a pool endpoint", lync.ErrConflict, v.pool)
	}
	d := v.d
	if err := d.count(protocol.KindStartBackupService, v.server); err != nil {
		return err
	}
	check := func(st *mutState) (running bool, err error) {
		sm := st.Servers[v.server]
		if !sm.BackupService.Installed {
			return false, fmt.Errorf("%w: service LYNCBACKUP is not installed on %s: pair the pool and run Bootstrapper.exe first", lync.ErrConflict, v.server)
		}
		return sm.BackupService.Status == protocol.ServiceRunning, nil
	}
	var running bool
	var err error
	d.read(func(st *mutState, _ time.Time) { running, err = check(st) })
	if err != nil || running {
		return err
	}
	if err := sleep(ctx, d.clock, d.topo.timing.StartBackupService); err != nil {
		return err
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		if _, err := check(st); err != nil {
			return err
		}
		sm := st.Servers[v.server]
		if sm.Faults.ServiceWillNotStart {
			// Not a sentinel error: whether a retry helps depends on what is wrong on the server.
			return fmt.Errorf("service LYNCBACKUP on %s did not start (Start-CsWindowsService): the service did not respond to the start or control request in a timely fashion", v.server)
		}
		sm.BackupService.Status = protocol.ServiceRunning
		return nil
	})
}

// SyncBackup forces a sync of poolFQDN to its backup pool (Invoke-CsBackupServiceSync): after the
// syncBackup duration the direction's backlog is drained. It needs the direction active; modules
// whose export is failing make it return an error after the others were synced.
func (v *view) SyncBackup(ctx context.Context, poolFQDN string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := v.d
	name, err := d.resolvePool(poolFQDN)
	if err != nil {
		return err
	}
	if err := d.count(protocol.KindSyncBackup, name); err != nil {
		return err
	}
	check := func(st *mutState) error {
		pm := st.Pools[name]
		if pm.BackupPool == "" {
			return fmt.Errorf("%w: %s has no backup pool in the published topology", lync.ErrConflict, name)
		}
		if !active(st, d.topo, name) {
			return fmt.Errorf("%w: the backup service does not replicate %s to %s: LYNCBACKUP must run on a bootstrapped Front End server of both pools, paired with each other", lync.ErrUnavailable, name, pm.BackupPool)
		}
		return nil
	}
	d.read(func(st *mutState, _ time.Time) { err = check(st) })
	if err != nil {
		return err
	}
	if err := sleep(ctx, d.clock, d.topo.timing.SyncBackup); err != nil {
		return err
	}
	var failing []string
	err = d.mutate(func(st *mutState, now time.Time) error {
		if err := check(st); err != nil {
			return err
		}
		pm := st.Pools[name]
		// Bring the figures to now under the current activity, then drain.
		dir := pm.Backup.at(now, d.topo.timing)
		dir.Backlog, dir.Since, dir.Imported = 0, now, true
		pm.Backup = dir
		failing = failingExports(d.topo, pm, name)
		return nil
	})
	if err != nil {
		return err
	}
	if len(failing) > 0 {
		return fmt.Errorf("backup sync of %s (Invoke-CsBackupServiceSync): export of %s failed (LS Backup Service event 4069)", name, strings.Join(failing, ", "))
	}
	return nil
}
