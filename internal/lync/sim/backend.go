package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// view is the deployment as seen from the agent process on one Front End server. Pool-level reads
// and topology writes work from any server's view; the server-level steps act on its own server.
type view struct {
	d      *Deployment
	server string
	pool   string

	mu sync.Mutex
	// waiting counts this view's calls waiting for each Bootstrapper run: RunningBootstrap does
	// not offer a run the calling process is already waiting for.
	waiting map[*bootRun]int
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

// Pool reads a pool's facts from any server (Get-CsPool reads the CMS replica). It pays the read
// latency and, with readsWaitForWrites, waits while this server's agent runs a write.
func (v *view) Pool(ctx context.Context, fqdn string) (protocol.Pool, error) {
	if err := ctx.Err(); err != nil {
		return protocol.Pool{}, err
	}
	name, err := v.d.resolvePool(fqdn)
	if err != nil {
		return protocol.Pool{}, err
	}
	if err := v.d.beforeRead(ctx, v.server); err != nil {
		return protocol.Pool{}, err
	}
	var out protocol.Pool
	v.d.read(func(st *mutState, _ time.Time) { out = poolInfo(v.d.topo, st, name) })
	return out, nil
}

// BackupStatus reads a direction's backup status from any server, as a read (see Pool).
func (v *view) BackupStatus(ctx context.Context, poolFQDN string) (protocol.BackupStatus, error) {
	if err := ctx.Err(); err != nil {
		return protocol.BackupStatus{}, err
	}
	name, err := v.d.resolvePool(poolFQDN)
	if err != nil {
		return protocol.BackupStatus{}, err
	}
	if err := v.d.beforeRead(ctx, v.server); err != nil {
		return protocol.BackupStatus{}, err
	}
	var out protocol.BackupStatus
	v.d.read(func(st *mutState, now time.Time) { out, _ = backupStatus(st, v.d.topo, name, now) })
	return out, nil
}

// BackupService reads LYNCBACKUP on this server, as a read (see Pool).
func (v *view) BackupService(ctx context.Context) (protocol.BackupService, error) {
	if err := ctx.Err(); err != nil {
		return protocol.BackupService{}, err
	}
	if err := v.d.beforeRead(ctx, v.server); err != nil {
		return protocol.BackupService{}, err
	}
	var out protocol.BackupService
	v.d.read(func(st *mutState, _ time.Time) {
		out = st.Servers[v.server].BackupService
		out.Started = cloneTime(out.Started)
	})
	return out, nil
}

// BootTime reads when this server last started (the deployment's start, then each Reboot), as a
// read (see Pool).
func (v *view) BootTime(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if err := v.d.beforeRead(ctx, v.server); err != nil {
		return time.Time{}, err
	}
	var out time.Time
	v.d.read(func(st *mutState, _ time.Time) { out = st.Servers[v.server].BootTime })
	return out, nil
}

// onHost binds a write that this server's agent runs to the server's life: when the server
// restarts (Deployment.Reboot) the returned ctx ends with cause errRestarted. Call release when
// the write returns.
func (d *Deployment) onHost(ctx context.Context, server string) (_ context.Context, release func()) {
	d.ctl.Lock()
	life := d.hosts[server].life
	d.ctl.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(life, func() { cancel(context.Cause(life)) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// restarted names a restart of server as the reason a write (what) failed, when it was.
func restarted(ctx context.Context, err error, server, what string) error {
	if err != nil && errors.Is(context.Cause(ctx), errRestarted) {
		return fmt.Errorf("%w: %s restarted while %s ran on it: cut short, it changed nothing", lync.ErrUnavailable, server, what)
	}
	return err
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
// rewritten. It is a write on this server's host for its whole call.
func (v *view) PairPools(ctx context.Context, p protocol.PairPoolsParams) (err error) {
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
	ctx, release := v.d.onHost(ctx, v.server)
	defer release()
	defer func() { err = restarted(ctx, err, v.server, "PairPools") }()
	defer v.d.beginWrite(v.server)()
	x, err := v.d.begin(protocol.KindPairPools, a, v.server)
	if err != nil {
		return err
	}
	defer func() { x.end(ctx, err) }()
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
	return x.commit(func(st *mutState, _ time.Time) (string, error) {
		if _, err := check(st); err != nil {
			return "", err
		}
		st.Pools[a].BackupPool, st.Pools[b].BackupPool = b, a
		st.Pools[a].VoiceFailover = nil
		if p.VoiceFailover != nil {
			vf := *p.VoiceFailover
			st.Pools[a].VoiceFailover = &vf
		}
		st.TopologyVersion++
		return OutcomeSucceeded, nil
	})
}

func sameVoice(a, b *protocol.VoiceFailover) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Unpair removes the association between the two pools (both sides), publishes the topology and,
// as the documented procedure does with Remove-CsUserStoreBackupData on each pool, removes the
// backup data each of the two pools holds (its partner's, and any earlier partner's): afterwards
// neither holds any. It takes the pairPools duration. Pools that are not paired with each other
// and hold no backup data are left alone at once; pools already unpaired that still hold backup
// data (an unpair done out of band, or cut short) only have it removed; a pool paired with a
// third pool is a conflict.
func (v *view) Unpair(ctx context.Context, p protocol.UnpairParams) (err error) {
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
	ctx, release := v.d.onHost(ctx, v.server)
	defer release()
	defer func() { err = restarted(ctx, err, v.server, "Unpair") }()
	defer v.d.beginWrite(v.server)()
	x, err := v.d.begin(protocol.KindUnpair, a, v.server)
	if err != nil {
		return err
	}
	defer func() { x.end(ctx, err) }()
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
		return pa != "" || pb != "" || len(st.Pools[a].BackupDataOf) > 0 || len(st.Pools[b].BackupDataOf) > 0, nil
	}
	var changed bool
	v.d.read(func(st *mutState, _ time.Time) { changed, err = check(st) })
	if err != nil || !changed {
		return err
	}
	if err := sleep(ctx, v.d.clock, v.d.topo.timing.PairPools); err != nil {
		return err
	}
	return x.commit(func(st *mutState, _ time.Time) (string, error) {
		if _, err := check(st); err != nil {
			return "", err
		}
		if st.Pools[a].BackupPool != "" || st.Pools[b].BackupPool != "" {
			st.TopologyVersion++ // published without the association
		}
		for _, x := range []string{a, b} {
			st.Pools[x].BackupPool = ""
			st.Pools[x].VoiceFailover = nil
			// Remove-CsUserStoreBackupData -PoolFqdn x: the backup data of pools x is no longer
			// paired with, which after the unpair is all of it.
			st.Pools[x].BackupDataOf = nil
		}
		return OutcomeSucceeded, nil
	})
}

// bootRun is one Bootstrapper.exe run: a process of the deployment, not of the agent that
// started it. done is closed when it has ended and its result is set.
type bootRun struct {
	server string
	// ctx is the run's life: it ends when the deployment closes or the server restarts (kill,
	// with cause errRestarted).
	ctx  context.Context
	kill context.CancelCauseFunc
	done chan struct{}
	res  lync.BootstrapResult
	err  error
}

// Bootstrap starts Bootstrapper.exe on this server and waits for it. The run belongs to the
// deployment: when ctx ends first, Bootstrap returns ctx.Err() but the run goes on, changes the
// deployment as it would have, and RunningBootstrap finds it meanwhile. While a run is in progress
// on the server (whoever started it), Bootstrap fails at once with lync.ErrConflict and starts
// nothing. After the bootstrap duration a run reconciles the server with the published topology.
// Paired pool: LYNCBACKUP installed (Stopped if it was not installed before), for the pool's
// current backup pool; a running LYNCBACKUP is left running, serving what it loaded when it
// started (RestartBackupService makes it pick up the new partner). Unpaired pool: LYNCBACKUP
// removed. Faults make it exit non-zero first: bootstrapFailures exit 1603; rebootRequired exits
// 3010 asking for a restart, and until the server restarts (Deployment.Reboot) every run exits
// 3010 again at once and does nothing. A successful run of Skype for Business Server returns the
// administrator's next step: re-apply the installed cumulative update. A restart of the server
// cuts a run short (lync.ErrUnavailable; it changes nothing).
func (v *view) Bootstrap(ctx context.Context) (lync.BootstrapResult, error) {
	if err := ctx.Err(); err != nil {
		return lync.BootstrapResult{}, err
	}
	if err := v.d.count(protocol.KindBootstrap, v.server); err != nil {
		return lync.BootstrapResult{}, err
	}
	// This process waits for its run from before the run starts: RunningBootstrap never offers
	// it the run it is waiting for.
	run, err := v.d.startBootstrap(v.server, v.pool, v.hold)
	if err != nil {
		return lync.BootstrapResult{}, err
	}
	defer v.release(run)
	return awaitRun(ctx, run)
}

// RunningBootstrap finds the Bootstrapper run in progress on this server, unless a Bootstrap call
// of this view (this agent process) is already waiting for it.
func (v *view) RunningBootstrap(ctx context.Context) (func(ctx context.Context) (lync.BootstrapResult, error), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	v.d.ctl.Lock()
	run := v.d.boots[v.server]
	v.d.ctl.Unlock()
	if run == nil {
		return nil, false, nil
	}
	v.mu.Lock()
	mine := v.waiting[run] > 0
	v.mu.Unlock()
	if mine {
		return nil, false, nil
	}
	return func(ctx context.Context) (lync.BootstrapResult, error) {
		v.hold(run)
		defer v.release(run)
		return awaitRun(ctx, run)
	}, true, nil
}

// hold and release mark a call of this view waiting for run.
func (v *view) hold(run *bootRun) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.waiting[run]++
}

func (v *view) release(run *bootRun) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.waiting[run]--; v.waiting[run] == 0 {
		delete(v.waiting, run)
	}
}

// awaitRun waits for run to end, or for ctx.
func awaitRun(ctx context.Context, run *bootRun) (lync.BootstrapResult, error) {
	select {
	case <-run.done:
		return run.res, run.err
	case <-ctx.Done():
		return lync.BootstrapResult{}, ctx.Err()
	}
}

// startBootstrap starts a Bootstrapper run on server, or refuses when one is in progress there.
// before is called with the run before it starts.
func (d *Deployment) startBootstrap(server, pool string, before func(*bootRun)) (*bootRun, error) {
	d.ctl.Lock()
	if d.closed {
		d.ctl.Unlock()
		return nil, fmt.Errorf("%w: the simulated deployment is shut down", lync.ErrUnavailable)
	}
	if d.hosts[server].rebooting {
		d.ctl.Unlock()
		return nil, fmt.Errorf("%w: %s is restarting", lync.ErrUnavailable, server)
	}
	if d.boots[server] != nil {
		d.ctl.Unlock()
		// Windows Installer would refuse a second one (1618); Bootstrapper checks first.
		return nil, fmt.Errorf("%w: Bootstrapper.exe is already running on %s", lync.ErrConflict, server)
	}
	run := &bootRun{server: server, done: make(chan struct{})}
	run.ctx, run.kill = context.WithCancelCause(d.life)
	d.boots[server] = run
	d.processes.Add(1)
	d.ctl.Unlock()
	x := &execution{d: d}
	err := d.mutate(func(st *mutState, now time.Time) error {
		x.index = appendExec(st, now, protocol.KindBootstrap, server, server)
		st.Timeline[x.index].RebootPending = st.Servers[server].RebootRequested != nil
		return nil
	})
	if err != nil {
		d.endBootstrap(run)
		return nil, err
	}
	before(run)
	go d.runBootstrap(run, x, pool)
	return run, nil
}

// endBootstrap frees the server's slot, then tells the waiters: a caller that saw the run end can
// start the next one at once.
func (d *Deployment) endBootstrap(run *bootRun) {
	d.ctl.Lock()
	if d.boots[run.server] == run {
		delete(d.boots, run.server)
	}
	d.ctl.Unlock()
	run.kill(nil)
	close(run.done)
	d.processes.Done()
}

func (d *Deployment) runBootstrap(run *bootRun, x *execution, pool string) {
	defer d.endBootstrap(run)
	server := run.server
	exe := bootstrapperPath[d.topo.product]
	cutShort := func() {
		if errors.Is(context.Cause(run.ctx), errRestarted) {
			run.err = fmt.Errorf("%w: %s restarted while Bootstrapper.exe ran on it: the run was cut short and changed nothing", lync.ErrUnavailable, server)
		} else {
			run.err = fmt.Errorf("%w: the simulated deployment shut down while Bootstrapper.exe ran on %s", lync.ErrUnavailable, server)
		}
		x.finish(OutcomeInterrupted)
	}
	if err := sleep(run.ctx, d.clock, d.topo.timing.Bootstrap); err != nil {
		cutShort()
		return
	}
	var res lync.BootstrapResult
	errCutShort := errors.New("cut short")
	err := x.commit(func(st *mutState, now time.Time) (string, error) {
		if run.ctx.Err() != nil {
			return "", errCutShort // the end of the run and a restart met: the restart won
		}
		sm, pm := st.Servers[server], st.Pools[pool]
		switch {
		case sm.RebootRequested != nil:
			// Bootstrapper finds the restart an earlier run asked for still pending, and stops.
			res = lync.BootstrapResult{
				ExitCode:       exitRebootRequired,
				RebootRequired: true,
				LogTail: "Checking prerequisites...a restart of " + server + " is pending (requested at " + stamp(*sm.RebootRequested) + ").\n" +
					"Nothing was installed. Restart " + server + " and run Bootstrapper.exe again.",
			}
		case sm.Faults.BootstrapFailures > 0:
			sm.Faults.BootstrapFailures--
			res = lync.BootstrapResult{
				ExitCode: exitFatal,
				LogTail: strings.Join([]string{
					"Checking prerequisites for Lync Server Backup Service...prerequisites satisfied.",
					"Installing Lync Server Backup Service (LYNCBACKUP)...failure code 1603",
					exe + ` failed. For details, see the log under %TEMP%\Bootstrap-` + server + ".html",
				}, "\n"),
			}
		case sm.Faults.RebootRequired > 0:
			sm.Faults.RebootRequired--
			sm.RebootRequested = cloneTime(&now)
			res = lync.BootstrapResult{
				ExitCode:       exitRebootRequired,
				RebootRequired: true,
				LogTail:        "Installing prerequisites...success\nA restart is required to complete the installation. Restart " + server + " and run Bootstrapper.exe again.",
			}
		default:
			res = lync.BootstrapResult{Succeeded: true, BackupPool: pm.BackupPool}
			if pm.BackupPool != "" {
				if !sm.BackupService.Installed {
					sm.BackupService = protocol.BackupService{Installed: true, Status: protocol.ServiceStopped}
				}
				// A running LYNCBACKUP is not restarted: it serves what it loaded (ServiceServes).
				sm.BootstrappedFor = pm.BackupPool
				res.LogTail = "Enabling Lync Server Backup Service (LYNCBACKUP) for backup pool " + pm.BackupPool + "...success\nBootstrapper.exe completed successfully."
			} else {
				// The published topology has no backup pool: Bootstrapper removes what it no
				// longer needs, as it reconciles the machine with the topology.
				sm.BackupService = protocol.BackupService{}
				sm.BootstrappedFor, sm.ServiceServes = "", ""
				res.LogTail = "No changes to Lync Server Backup Service: " + pool + " has no backup pool.\nBootstrapper.exe completed successfully."
			}
			if d.topo.product != protocol.ProductLync2013 {
				res.LogTail += "\nRe-apply the installed cumulative update (SkypeServerUpdateInstaller.exe)."
				res.NextSteps = []string{reapplyUpdateStep(server)}
			}
		}
		sm.LastBootstrap = &BootstrapRun{
			Finished: now, ExitCode: res.ExitCode, Succeeded: res.Succeeded,
			RebootRequired: res.RebootRequired, BackupPool: res.BackupPool, NextSteps: cloneStrings(res.NextSteps),
		}
		st.Timeline[x.index].RebootRequired = res.RebootRequired
		if res.Succeeded {
			return OutcomeSucceeded, nil
		}
		return OutcomeFailed, nil
	})
	switch {
	case errors.Is(err, errCutShort):
		cutShort()
	case err != nil:
		run.err = err
		x.finish(OutcomeFailed)
	default:
		run.res = res
	}
}

// reapplyUpdateStep is the step Skype for Business Server's "Deploy Front End pools for disaster
// recovery" page gives after Bootstrapper, for the administrator.
func reapplyUpdateStep(server string) string {
	return "Re-apply the cumulative update installed on " + server + " by running its SkypeServerUpdateInstaller.exe again on that server, as Microsoft's \"Deploy Front End pools for disaster recovery\" requires after Bootstrapper.exe."
}

// StartBackupService starts LYNCBACKUP (Start-CsWindowsService -Name LYNCBACKUP); it is Running
// after the startBackupService duration, serving the partner the server is bootstrapped for then.
// Starting a running service returns at once and changes nothing, even when the service serves a
// partner its pool no longer has: only RestartBackupService (or a reboot) fixes that.
func (v *view) StartBackupService(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := v.d
	ctx, release := d.onHost(ctx, v.server)
	defer release()
	defer func() { err = restarted(ctx, err, v.server, "StartBackupService") }()
	defer d.beginWrite(v.server)()
	x, err := d.begin(protocol.KindStartBackupService, v.server, v.server)
	if err != nil {
		return err
	}
	defer func() { x.end(ctx, err) }()
	check := func(st *mutState) (running bool, err error) {
		sm := st.Servers[v.server]
		if !sm.BackupService.Installed {
			return false, fmt.Errorf("%w: service LYNCBACKUP is not installed on %s: pair the pool and run Bootstrapper.exe first", lync.ErrConflict, v.server)
		}
		return sm.BackupService.Status == protocol.ServiceRunning, nil
	}
	var running bool
	d.read(func(st *mutState, _ time.Time) { running, err = check(st) })
	if err != nil || running {
		return err
	}
	if err := sleep(ctx, d.clock, d.topo.timing.StartBackupService); err != nil {
		return err
	}
	return x.commit(func(st *mutState, now time.Time) (string, error) {
		if _, err := check(st); err != nil {
			return "", err
		}
		sm := st.Servers[v.server]
		if sm.Faults.ServiceWillNotStart {
			// Not a sentinel error: whether a retry helps depends on what is wrong on the server.
			return "", fmt.Errorf("service LYNCBACKUP on %s did not start (Start-CsWindowsService): the service did not respond to the start or control request in a timely fashion", v.server)
		}
		markServiceRunning(sm, now)
		return OutcomeSucceeded, nil
	})
}

// RestartBackupService stops LYNCBACKUP (Stop-CsWindowsService: at once, the service is Stopped
// from the start of the call) and starts it again (Start-CsWindowsService: Running after the
// restartBackupService duration, with a new Started time, serving the partner the server is
// bootstrapped for then). A stopped service is just started. Every call restarts: it is not
// idempotent, and the timeline records each as kind RestartBackupService on this server. When
// the call is cut short (its ctx ends, the server restarts) or the serviceWillNotStart fault is
// on, the stop has happened and the service is left Stopped. Not installed: lync.ErrConflict.
func (v *view) RestartBackupService(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := v.d
	ctx, release := d.onHost(ctx, v.server)
	defer release()
	defer func() { err = restarted(ctx, err, v.server, "RestartBackupService") }()
	defer d.beginWrite(v.server)()
	x, err := d.begin(protocol.KindRestartBackupService, v.server, v.server)
	if err != nil {
		return err
	}
	defer func() { x.end(ctx, err) }()
	installed := func(st *mutState) error {
		if !st.Servers[v.server].BackupService.Installed {
			return fmt.Errorf("%w: service LYNCBACKUP is not installed on %s: pair the pool and run Bootstrapper.exe first", lync.ErrConflict, v.server)
		}
		return nil
	}
	// Stop-CsWindowsService.
	err = d.mutate(func(st *mutState, _ time.Time) error {
		if err := installed(st); err != nil {
			return err
		}
		markServiceStopped(st.Servers[v.server])
		return nil
	})
	if err != nil {
		return err
	}
	// Start-CsWindowsService.
	if err := sleep(ctx, d.clock, d.topo.timing.RestartBackupService); err != nil {
		return err
	}
	return x.commit(func(st *mutState, now time.Time) (string, error) {
		if err := installed(st); err != nil {
			return "", err
		}
		sm := st.Servers[v.server]
		if sm.Faults.ServiceWillNotStart {
			return "", fmt.Errorf("service LYNCBACKUP on %s was stopped but did not start again (Start-CsWindowsService): the service did not respond to the start or control request in a timely fashion", v.server)
		}
		markServiceRunning(sm, now)
		return OutcomeSucceeded, nil
	})
}

// SyncBackup forces a sync of poolFQDN to its backup pool (Invoke-CsBackupServiceSync), from any
// server: after the syncBackup duration the direction's backlog is drained. It needs the direction
// active; modules whose export is failing make it return an error after the others were synced.
func (v *view) SyncBackup(ctx context.Context, poolFQDN string) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := v.d
	name, err := d.resolvePool(poolFQDN)
	if err != nil {
		return err
	}
	ctx, release := d.onHost(ctx, v.server)
	defer release()
	defer func() { err = restarted(ctx, err, v.server, "SyncBackup") }()
	defer d.beginWrite(v.server)()
	x, err := d.begin(protocol.KindSyncBackup, name, v.server)
	if err != nil {
		return err
	}
	defer func() { x.end(ctx, err) }()
	check := func(st *mutState) error {
		pm := st.Pools[name]
		if pm.BackupPool == "" {
			return fmt.Errorf("%w: %s has no backup pool in the published topology", lync.ErrConflict, name)
		}
		if !active(st, d.topo, name) {
			why := "LYNCBACKUP must run on a bootstrapped Front End server of both pools, paired with each other"
			if stale := staleServers(st, d.topo, name, pm.BackupPool); len(stale) > 0 {
				why = "LYNCBACKUP on " + strings.Join(stale, ", ") + " still serves the backup pool it had when it started"
			}
			return fmt.Errorf("%w: the backup service does not replicate %s to %s: %s", lync.ErrUnavailable, name, pm.BackupPool, why)
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
	err = x.commit(func(st *mutState, now time.Time) (string, error) {
		if err := check(st); err != nil {
			return "", err
		}
		pm := st.Pools[name]
		// Bring the figures to now under the current activity, then drain.
		dir := pm.Backup.at(now, timingOf(st, d.topo))
		dir.Backlog, dir.Since, dir.Imported = 0, now, true
		pm.Backup = dir
		if failing = failingExports(d.topo, st, name); len(failing) > 0 {
			return OutcomeFailed, nil
		}
		return OutcomeSucceeded, nil
	})
	if err != nil {
		return err
	}
	if len(failing) > 0 {
		return fmt.Errorf("backup sync of %s (Invoke-CsBackupServiceSync): export of %s failed (LS Backup Service event 4069)", name, strings.Join(failing, ", "))
	}
	return nil
}
