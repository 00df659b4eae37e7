// Package sim is a simulated Lync Server 2013 / Skype for Business Server deployment: sites, Front
// End pools and servers, the Central Management Store, backup pairings, Bootstrapper.exe, the
// LYNCBACKUP service and the backup status that moves over time. It implements lync.Backend for
// every Front End server of a deployment file (there is no pool-level agent: a pool's optional
// listen address is an alias that hands connections to its servers, served by simrun), so one sim
// process can stand in for a whole deployment in demos and tests. Time comes from an injectable
// Clock; faults and durations come from the file and can be changed at run time (Set* methods,
// AdminHandler). Every execution of an operation is recorded in a timeline (Timeline, Duplicates,
// MaxConcurrent) so tests can check what really ran, and when.
//
// The sim is meant to be as hard as a real deployment, never kinder: Bootstrapper.exe runs are
// processes of the deployment that outlive the agent that started them (and refuse a second run
// on the same server), reads can be slow and wait behind writes, and the agents themselves can be
// killed and restarted (simrun) while the deployment goes on. A Bootstrapper run that asks for a
// restart gets nowhere until an administrator restarts the server (Reboot); a running LYNCBACKUP
// ignores a changed pairing until it is restarted (RestartBackupService); Unpair removes the
// backup data the pools hold of each other. Failover (failover.go) follows Microsoft's procedure:
// the active CMS moves only to its pool's backup pool, a pool is failed over only once neither
// the CMS nor an Edge pool's next hop is in it, and each failover cmdlet outlives the agent that
// started it.
package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// ErrInvalid wraps errors about bad arguments to the sim's own controls (400 from AdminHandler).
var ErrInvalid = errors.New("invalid")

// Endpoint kinds.
const (
	// KindPool is a pool alias: the address the pool's DNS name resolves to. It is not an agent
	// and has no journal; each connection goes to a random Front End of the pool.
	KindPool = "pool"
	// KindServer is a Front End server's agent.
	KindServer = "server"
)

// Endpoint is one address the sim serves: a Front End server's agent, or a pool alias.
type Endpoint struct {
	// Kind is KindPool (an alias) or KindServer (an agent).
	Kind string `json:"kind"`
	FQDN string `json:"fqdn"`
	// Pool is the pool's FQDN (the endpoint's own FQDN for a pool alias).
	Pool string `json:"pool"`
	// Listen is the address to serve it on, from the file ("127.0.0.1:0" for a server the file
	// gives none) or from WithListenOverride.
	Listen string `json:"listen"`
}

// Option configures Load and Parse.
type Option func(*options)

type options struct {
	clock     Clock
	stateFile string
	listen    func(Endpoint) string
}

// WithClock sets the clock (default RealClock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithStateFile persists the mutable state to path after every mutation (atomically) and reloads it
// at Load when the file exists: restarting the sim process is then like restarting the agents on
// real servers, while Lync's own state survives. Bootstrapper runs in progress do not survive the
// sim process: the timeline records them Interrupted. The file must match the deployment file.
func WithStateFile(path string) Option { return func(o *options) { o.stateFile = path } }

// WithListenOverride replaces each endpoint's listen address with f's answer (tests use it to pick
// free ports or "127.0.0.1:0"); an empty answer keeps the file's address. It is asked about the
// servers and about the pools that have an alias (a listen in the file). Callers that do their own
// listening can also simply ignore Endpoint.Listen.
func WithListenOverride(f func(Endpoint) string) Option {
	return func(o *options) { o.listen = f }
}

// Deployment is a simulated Lync deployment. It is safe for concurrent use.
type Deployment struct {
	topo      *topology
	clock     Clock
	stateFile string

	mu sync.Mutex
	st *mutState

	// topoWrite serializes topology writes (PairPools, Unpair), as publishing a topology does; a
	// channel rather than a mutex so waiting for it honours ctx.
	topoWrite chan struct{}

	// life bounds the deployment's own processes (Bootstrapper runs); Close ends it.
	life      context.Context
	endLife   context.CancelFunc
	processes sync.WaitGroup

	// ctl guards what follows: the deployment's processes and hosts, not persisted (a sim process
	// that dies takes them with it).
	ctl    sync.Mutex
	closed bool
	// boots holds the Bootstrapper run in progress on each server.
	boots map[string]*bootRun
	// hosts counts the writes each server's agent is running, for readsWaitForWrites.
	hosts map[string]*host
	// readLatency and readsWait are the read settings (durations.read, readsWaitForWrites, SetReads).
	readLatency time.Duration
	readsWait   bool
	// readsChanged is closed and replaced when the read settings change, so waiting reads re-check.
	readsChanged chan struct{}
}

// host is one server's Lync Management Shell as the readsWaitForWrites model sees it, and the
// machine's life as a reboot ends it.
type host struct {
	writes int
	// idle is closed when writes drops to zero.
	idle chan struct{}
	// life ends (with cause errRestarted) when the server restarts: the writes its agent runs are
	// cut short. A new one begins once the restart is over.
	life context.Context
	kill context.CancelCauseFunc
	// rebooting is true while Reboot runs: Bootstrapper refuses to start.
	rebooting bool
}

// errRestarted is the cause of what a server's restart cuts short.
var errRestarted = errors.New("the server restarted")

func newHost() *host {
	h := &host{}
	h.life, h.kill = context.WithCancelCause(context.Background())
	return h
}

// Load reads a deployment file (YAML).
func Load(path string, opts ...Option) (*Deployment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := Parse(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Parse builds a deployment from the YAML text of a deployment file.
func Parse(data []byte, opts ...Option) (*Deployment, error) {
	o := options{clock: RealClock()}
	for _, opt := range opts {
		opt(&o)
	}
	t, st, err := parseConfig(data)
	if err != nil {
		return nil, err
	}
	if o.listen != nil {
		for i := range t.pools {
			p := &t.pools[i]
			if p.Listen == "" {
				continue // no alias
			}
			if l := o.listen(Endpoint{Kind: KindPool, FQDN: p.FQDN, Pool: p.FQDN, Listen: p.Listen}); l != "" {
				p.Listen = l
			}
		}
		for i := range t.servers {
			s := &t.servers[i]
			if l := o.listen(Endpoint{Kind: KindServer, FQDN: s.FQDN, Pool: s.Pool, Listen: s.Listen}); l != "" {
				s.Listen = l
			}
		}
	}
	life, endLife := context.WithCancel(context.Background())
	d := &Deployment{
		topo:         t,
		clock:        o.clock,
		stateFile:    o.stateFile,
		st:           st,
		topoWrite:    make(chan struct{}, 1),
		life:         life,
		endLife:      endLife,
		boots:        map[string]*bootRun{},
		hosts:        map[string]*host{},
		readLatency:  t.timing.Read,
		readsWait:    t.readsWaitForWrites,
		readsChanged: make(chan struct{}),
	}
	now := d.clock.Now()
	for _, s := range t.servers {
		d.hosts[s.FQDN] = newHost()
		// Every server started with the deployment; a LYNCBACKUP the file says runs started then.
		sm := d.st.Servers[s.FQDN]
		sm.BootTime = now
		if sm.BackupService.Status == protocol.ServiceRunning {
			sm.BackupService.Started = cloneTime(&now)
		}
	}
	// Directions that start active (a pre-existing, running pairing in the file) begin now.
	settle(d.st, t, now)
	if d.stateFile != "" {
		saved, found, err := readStateFile(d.stateFile, t)
		if err != nil {
			return nil, err
		}
		if found {
			// Whatever ran when the previous sim process died died with it, and changed nothing.
			for i := range saved.Timeline {
				if saved.Timeline[i].Finished == nil {
					finishExec(saved, i, now, OutcomeInterrupted)
				}
			}
			d.st = saved
		}
		if err := writeStateFile(d.stateFile, d.st); err != nil {
			return nil, fmt.Errorf("state file: %w", err)
		}
	}
	return d, nil
}

// Close ends the deployment's own processes, as switching the whole deployment off would: a
// Bootstrapper run in progress stops, changes nothing and is recorded Interrupted. Reads and the
// admin controls keep working; Bootstrap refuses to start. It waits for the runs to record their
// end, and is safe to call more than once.
func (d *Deployment) Close() {
	d.ctl.Lock()
	d.closed = true
	d.ctl.Unlock()
	d.endLife()
	d.processes.Wait()
}

// mutate applies fn to a copy of the state, settles the backup directions, persists the copy and
// only then makes it current: a failed save leaves the deployment as it was.
func (d *Deployment) mutate(fn func(st *mutState, now time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	next := d.st.clone()
	if err := fn(next, now); err != nil {
		return err
	}
	settle(next, d.topo, now)
	if d.stateFile != "" {
		if err := writeStateFile(d.stateFile, next); err != nil {
			return fmt.Errorf("%w: saving the sim state: %v", lync.ErrUnavailable, err)
		}
	}
	d.st = next
	return nil
}

// read runs fn on the current state under the lock.
func (d *Deployment) read(fn func(st *mutState, now time.Time)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d.st, d.clock.Now())
}

// count records that an operation of kind on target was called.
func (d *Deployment) count(kind protocol.OperationKind, target string) error {
	return d.mutate(func(st *mutState, _ time.Time) error {
		st.Counts[string(kind)+"/"+target]++
		return nil
	})
}

// Endpoints lists the endpoints to serve: pool aliases first (pools with a listen address), then
// every server's agent, in file order.
func (d *Deployment) Endpoints() []Endpoint {
	var out []Endpoint
	for _, p := range d.topo.pools {
		if p.Listen != "" {
			out = append(out, Endpoint{Kind: KindPool, FQDN: p.FQDN, Pool: p.FQDN, Listen: p.Listen})
		}
	}
	for _, s := range d.topo.servers {
		out = append(out, Endpoint{Kind: KindServer, FQDN: s.FQDN, Pool: s.Pool, Listen: s.Listen})
	}
	return out
}

// Servers returns the Front End servers of pool, in file order (Get-CsPool Computers).
func (d *Deployment) Servers(pool string) ([]string, error) {
	name, err := d.resolvePool(pool)
	if err != nil {
		return nil, err
	}
	p, _ := d.topo.pool(name)
	return slices.Clone(p.Servers), nil
}

// Backend returns the deployment as seen from the agent on Front End server fqdn. Each call is a
// new agent process's view: RunningBootstrap on it finds runs that another view started. A pool
// FQDN is an error: there is no pool-level agent.
func (d *Deployment) Backend(fqdn string) (lync.Backend, error) {
	name, ok := d.topo.canonical(fqdn)
	if !ok {
		return nil, fmt.Errorf("%w: %q is neither a pool nor a server of the simulated deployment", lync.ErrNotFound, fqdn)
	}
	if s, ok := d.topo.server(name); ok {
		return &view{d: d, server: s.FQDN, pool: s.Pool, waiting: map[*bootRun]int{}}, nil
	}
	if _, ok := d.topo.edge(name); ok {
		return nil, fmt.Errorf("%w: %s is an Edge pool; agents run on Front End servers", lync.ErrNotFound, name)
	}
	p, _ := d.topo.pool(name)
	return nil, fmt.Errorf("%w: %s is a pool; there is no pool-level agent, agents run on its Front End servers: %s",
		lync.ErrNotFound, name, strings.Join(p.Servers, ", "))
}

// Reachable reports whether the endpoint fqdn (a server's agent or a pool alias) answers; false
// while its "unreachable" fault is on, and for names the deployment does not have.
func (d *Deployment) Reachable(fqdn string) bool {
	name, ok := d.topo.canonical(fqdn)
	if _, edge := d.topo.edge(name); !ok || edge {
		return false
	}
	reachable := false
	d.read(func(st *mutState, _ time.Time) {
		if pm, ok := st.Pools[name]; ok {
			reachable = !pm.Unreachable
		} else {
			reachable = !st.Servers[name].Faults.Unreachable
		}
	})
	return reachable
}

// Counts returns how many times each operation was called, keyed "<Kind>/<target>" with the
// target spelled as in the deployment file: "Bootstrap/<server>", "StartBackupService/<server>",
// "RestartBackupService/<server>", "PairPools/<primary>", "Unpair/<primary>", "SyncBackup/<pool>",
// "FailoverCMS/<pool the CMS moves to>", "MoveEdgeNextHop/<Edge pool>", "FailoverPool/<pool>",
// "FailbackPool/<pool>". A failover write run with whatIf is a rehearsal, not an execution of its
// kind: it counts as "<Kind>(WhatIf)/<target>" (FailoverPool(WhatIf)/pool01.contoso.com), and
// the timeline records it under that kind too.
// A call counts once it names a valid target (a known pool; a server for the per-server kinds),
// before any wait and before the checks that depend on the deployment's state, so a refused or
// cancelled call counts too (a Bootstrap refused because Bootstrapper is already running on the
// server included). The admin controls (Reboot included) are not operations and do not count.
// Timeline says what actually ran.
func (d *Deployment) Counts() map[string]int {
	var out map[string]int
	d.read(func(st *mutState, _ time.Time) {
		out = make(map[string]int, len(st.Counts))
		for k, v := range st.Counts {
			out[k] = v
		}
	})
	return out
}

// Timeline returns a copy of every execution recorded so far, in the order they started.
func (d *Deployment) Timeline() []Execution {
	var out []Execution
	d.read(func(st *mutState, _ time.Time) { out = cloneTimeline(st.Timeline) })
	return out
}

// Snapshot returns a copy of the whole deployment, backup status computed now.
func (d *Deployment) Snapshot() State {
	var out State
	d.read(func(st *mutState, now time.Time) {
		t := d.topo
		out = State{Product: t.product, Now: now, TopologyVersion: st.TopologyVersion, CMSPool: st.CMSPool, Counts: map[string]int{},
			SyncInterval: time.Duration(st.SyncInterval).String()}
		for _, e := range t.edgePools {
			out.EdgePools = append(out.EdgePools, EdgePoolState{FQDN: e.FQDN, NextHop: st.EdgePools[e.FQDN].NextHop})
		}
		for k, v := range st.Counts {
			out.Counts[k] = v
		}
		out.Timeline = cloneTimeline(st.Timeline)
		if out.Timeline == nil {
			out.Timeline = []Execution{}
		}
		for _, p := range t.pools {
			pm := st.Pools[p.FQDN]
			status, dir := backupStatus(st, t, p.FQDN, now)
			ps := PoolState{
				Pool:         poolInfo(t, st, p.FQDN),
				Listen:       p.Listen,
				Unreachable:  pm.Unreachable,
				ExportError:  slices.Clone(pm.ExportError),
				ImportError:  slices.Clone(pm.ImportError),
				Backup:       status,
				BackupActive: dir.Active,
				Backlog:      dir.Backlog,
				BackupDataOf: cloneStrings(pm.BackupDataOf),
			}
			if pm.VoiceFailover != nil {
				v := *pm.VoiceFailover
				ps.VoiceFailover = &v
			}
			out.Pools = append(out.Pools, ps)
		}
		for _, s := range t.servers {
			sm := st.Servers[s.FQDN]
			ss := ServerState{
				FQDN: s.FQDN, Pool: s.Pool, Listen: s.Listen,
				BackupService:       sm.BackupService,
				BootstrappedFor:     sm.BootstrappedFor,
				BackupServiceServes: sm.ServiceServes,
				BackupServiceStale:  staleService(sm, st.Pools[s.Pool]),
				BootTime:            sm.BootTime,
				RebootPending:       sm.RebootRequested != nil,
				RebootRequested:     cloneTime(sm.RebootRequested),
				Faults:              sm.Faults,
				FrontEnd:            frontEndStatus(sm),
			}
			ss.BackupService.Started = cloneTime(sm.BackupService.Started)
			if sm.LastBootstrap != nil {
				r := *sm.LastBootstrap
				r.NextSteps = cloneStrings(r.NextSteps)
				ss.LastBootstrap = &r
			}
			out.Servers = append(out.Servers, ss)
		}
	})
	d.ctl.Lock()
	out.Reads = ReadSettings{Latency: d.readLatency.String(), WaitForWrites: d.readsWait}
	for _, s := range out.Servers {
		if d.boots[s.FQDN] != nil {
			out.Bootstrapping = append(out.Bootstrapping, s.FQDN)
		}
	}
	d.ctl.Unlock()
	return out
}

// poolInfo is Get-CsPool plus Get-CsPoolBackupRelationship for one pool, with where the active CMS
// is, whom the pool's users sign in to, and the Edge pools whose next hop it is.
func poolInfo(t *topology, st *mutState, name string) protocol.Pool {
	p, _ := t.pool(name)
	return protocol.Pool{
		FQDN:         p.FQDN,
		Site:         p.Site,
		Edition:      p.Edition,
		Version:      p.Version,
		Computers:    slices.Clone(p.Servers),
		BackupPool:   st.Pools[name].BackupPool,
		HostsCMS:     name == st.CMSPool,
		CMSPool:      st.CMSPool,
		FailedOverTo: st.Pools[name].FailedOverTo,
		EdgePools:    edgePoolsOf(t, st, name),
	}
}

// edgePoolsOf lists, in file order, the Edge pools whose next hop is pool (nil when none).
func edgePoolsOf(t *topology, st *mutState, pool string) []string {
	var out []string
	for _, e := range t.edgePools {
		if st.EdgePools[e.FQDN].NextHop == pool {
			out = append(out, e.FQDN)
		}
	}
	return out
}

// resolvePool returns the canonical name of a pool, or an error wrapping lync.ErrNotFound.
func (d *Deployment) resolvePool(fqdn string) (string, error) {
	if name, ok := d.topo.canonical(fqdn); ok {
		if _, ok := d.topo.pool(name); ok {
			return name, nil
		}
		if _, ok := d.topo.edge(name); ok {
			return "", fmt.Errorf("%w: %s is an Edge pool, not a Front End pool", lync.ErrNotFound, name)
		}
		return "", fmt.Errorf("%w: %s is a Front End server, not a pool", lync.ErrNotFound, name)
	}
	return "", fmt.Errorf("%w: pool %q is not in the topology", lync.ErrNotFound, fqdn)
}

// resolveFrontEndPool is resolvePool for a role that only a Front End pool can play (what, in
// messages): a Front End server or an Edge pool is lync.ErrConflict, an unknown name
// lync.ErrNotFound.
func (d *Deployment) resolveFrontEndPool(fqdn, what string) (string, error) {
	name, ok := d.topo.canonical(fqdn)
	if !ok {
		return "", fmt.Errorf("%w: %s %q is not in the topology", lync.ErrNotFound, what, fqdn)
	}
	if _, ok := d.topo.pool(name); ok {
		return name, nil
	}
	kind := "a Front End server"
	if _, ok := d.topo.edge(name); ok {
		kind = "an Edge pool"
	}
	return "", fmt.Errorf("%w: %s %s is %s, not a Front End pool", lync.ErrConflict, what, name, kind)
}

// resolveEdgePool returns the canonical name of an Edge pool: an unknown name is
// lync.ErrNotFound, a Front End pool or server lync.ErrConflict.
func (d *Deployment) resolveEdgePool(fqdn string) (string, error) {
	name, ok := d.topo.canonical(fqdn)
	if !ok {
		return "", fmt.Errorf("%w: Edge pool %q is not in the topology", lync.ErrNotFound, fqdn)
	}
	if _, ok := d.topo.edge(name); ok {
		return name, nil
	}
	kind := "a Front End server"
	if _, ok := d.topo.pool(name); ok {
		kind = "a Front End pool"
	}
	return "", fmt.Errorf("%w: %s is %s, not an Edge pool", lync.ErrConflict, name, kind)
}

// resolveServer returns the canonical name of a server, or an error wrapping lync.ErrNotFound.
func (d *Deployment) resolveServer(fqdn string) (string, error) {
	if name, ok := d.topo.canonical(fqdn); ok {
		if _, ok := d.topo.server(name); ok {
			return name, nil
		}
		if _, ok := d.topo.edge(name); ok {
			return "", fmt.Errorf("%w: %s is an Edge pool, not a Front End server", lync.ErrNotFound, name)
		}
		return "", fmt.Errorf("%w: %s is a pool, not a Front End server", lync.ErrNotFound, name)
	}
	return "", fmt.Errorf("%w: server %q is not in the topology", lync.ErrNotFound, fqdn)
}

// --- Chaos and admin controls. They act at once (no duration) and are not counted. ---

// StopBackupService stops LYNCBACKUP on server, as an administrator or a crash would
// (Stop-CsWindowsService). Stopping a stopped service is not an error.
func (d *Deployment) StopBackupService(server string) error {
	name, err := d.resolveServer(server)
	if err != nil {
		return err
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		sm := st.Servers[name]
		if !sm.BackupService.Installed {
			return fmt.Errorf("%w: LYNCBACKUP is not installed on %s", lync.ErrConflict, name)
		}
		markServiceStopped(sm)
		return nil
	})
}

// Reboot restarts Front End server, as its administrator would (the operator never does). At
// once, and in this order:
//   - a Bootstrapper.exe run in progress on it is cut short: it changes nothing, its caller gets
//     lync.ErrUnavailable and the timeline records it Interrupted (Reboot returns once it has);
//   - every write the server's agent runs through this deployment (PairPools, Unpair, SyncBackup,
//     StartBackupService, RestartBackupService called on the server's Backend) is cut short the
//     same way, and Reboot waits for them to return; a Bootstrap call meanwhile fails with
//     lync.ErrUnavailable. (The agent process itself is simrun's: SimRunner.RebootServer kills and
//     restarts it around this call.)
//   - the boot time becomes now, and a restart a Bootstrapper run asked for is no longer pending;
//   - the Front End service (RTCSRV) runs, whatever its state before (SetFrontEnd);
//   - a failover write the server's agent runs (FailoverCMS, MoveEdgeNextHop, FailoverPool,
//     FailbackPool: cmdlets of the server's PowerShell host, which outlive the agent) is cut short
//     and changes nothing;
//   - LYNCBACKUP, when installed, went down with the machine (the directions it served stop, as
//     after StopBackupService) and starts on its own as an automatic-start service does, whatever
//     its state before: Running, with Started now, serving the partner the server is
//     bootstrapped for now (a stale service is fixed by a reboot); unless the
//     serviceWillNotStart fault is on (then Stopped).
//
// Reads and the other servers are not affected. Rebooting a server that is already restarting is
// lync.ErrConflict.
func (d *Deployment) Reboot(server string) error {
	name, err := d.resolveServer(server)
	if err != nil {
		return err
	}
	d.ctl.Lock()
	h := d.hosts[name]
	if h.rebooting {
		d.ctl.Unlock()
		return fmt.Errorf("%w: %s is already restarting", lync.ErrConflict, name)
	}
	h.rebooting = true
	h.kill(errRestarted) // the machine's processes end; writes that start meanwhile end at once
	run := d.boots[name]
	d.ctl.Unlock()
	defer func() {
		d.ctl.Lock()
		h.life, h.kill = context.WithCancelCause(context.Background())
		h.rebooting = false
		d.ctl.Unlock()
	}()
	if run != nil {
		run.kill(errRestarted)
		<-run.done
	}
	for {
		d.ctl.Lock()
		writes, idle := h.writes, h.idle
		d.ctl.Unlock()
		if writes == 0 {
			break
		}
		<-idle
	}
	return d.mutate(func(st *mutState, now time.Time) error {
		sm := st.Servers[name]
		sm.BootTime = now
		sm.RebootRequested = nil
		sm.FrontEndStopped = false // RTCSRV starts with the machine
		if sm.BackupService.Installed {
			// UNVERIFIED: that LYNCBACKUP's start type is Automatic, as Lync Server's services are.
			// It went down with the machine: the directions it served stop, then resume.
			markServiceStopped(sm)
			settle(st, d.topo, now)
			if !sm.Faults.ServiceWillNotStart {
				markServiceRunning(sm, now)
			}
		}
		return nil
	})
}

// markServiceStopped and markServiceRunning change LYNCBACKUP's state on one server: a service
// that starts loads the partner the server is bootstrapped for, and serves it until it stops.
func markServiceStopped(sm *serverMut) {
	sm.BackupService.Status = protocol.ServiceStopped
	sm.BackupService.Started = nil
	sm.ServiceServes = ""
}

func markServiceRunning(sm *serverMut, now time.Time) {
	sm.BackupService.Status = protocol.ServiceRunning
	sm.BackupService.Started = cloneTime(&now)
	sm.ServiceServes = sm.BootstrappedFor
}

// SetSyncInterval changes the Backup Service's SyncInterval (Set-CsBackupServiceConfiguration
// -SyncInterval), which applies to every pool and is reported in BackupStatus.SyncIntervalSeconds.
// Each direction is first brought up to now under the old interval; a replicating direction's
// next periodic sync is then one new interval from now. Lync accepts 5s to 3h; the sim accepts
// from MinTestSyncInterval (1s) so that tests on the wall clock can be quick. Persisted with the
// state, as Lync's own configuration.
func (d *Deployment) SetSyncInterval(interval time.Duration) error {
	if interval < minRuntimeSyncInterval || interval > maxSyncInterval {
		return fmt.Errorf("%w: syncInterval: %v is outside %v to %v (Lync itself accepts %v to %v)", ErrInvalid, interval, minRuntimeSyncInterval, maxSyncInterval, minSyncInterval, maxSyncInterval)
	}
	return d.mutate(func(st *mutState, now time.Time) error {
		tm := timingOf(st, d.topo)
		for _, pm := range st.Pools {
			dir := pm.Backup.at(now, tm)
			if dir.Active {
				dir.TickOrigin = now
			}
			pm.Backup = dir
		}
		st.SyncInterval = jsonDuration(interval)
		return nil
	})
}

// SyncInterval returns the Backup Service's SyncInterval in force.
func (d *Deployment) SyncInterval() time.Duration {
	var out time.Duration
	d.read(func(st *mutState, _ time.Time) { out = time.Duration(st.SyncInterval) })
	return out
}

// SetUnreachable turns the "unreachable" fault of a pool alias or a server's agent on or off.
func (d *Deployment) SetUnreachable(fqdn string, unreachable bool) error {
	name, ok := d.topo.canonical(fqdn)
	if !ok {
		return fmt.Errorf("%w: %q is neither a pool nor a server of the simulated deployment", lync.ErrNotFound, fqdn)
	}
	if _, ok := d.topo.edge(name); ok {
		return fmt.Errorf("%w: %s is an Edge pool: the sim serves no endpoint for it", lync.ErrNotFound, name)
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		if pm, ok := st.Pools[name]; ok {
			pm.Unreachable = unreachable
		} else {
			st.Servers[name].Faults.Unreachable = unreachable
		}
		return nil
	})
}

// SetPoolUnreachable makes a whole pool stop answering, as in a disaster, or answer again: the
// "unreachable" fault of its alias (when it has one) and of every one of its Front End servers'
// agents. A pool all of whose servers are unreachable does not answer (FailoverPool needs
// -DisasterMode, FailoverCMS -Force for the CMS it hosts).
func (d *Deployment) SetPoolUnreachable(pool string, unreachable bool) error {
	name, err := d.resolvePool(pool)
	if err != nil {
		return err
	}
	p, _ := d.topo.pool(name)
	return d.mutate(func(st *mutState, _ time.Time) error {
		st.Pools[name].Unreachable = unreachable
		for _, s := range p.Servers {
			st.Servers[s].Faults.Unreachable = unreachable
		}
		return nil
	})
}

// SetFrontEnd stops (running false) or starts the Front End service (RTCSRV) on server, as its
// administrator would (Stop-CsWindowsService / Start-CsWindowsService -Name RTCSRV). A pool is
// failed back only while it runs on every Front End server of the pool.
func (d *Deployment) SetFrontEnd(server string, running bool) error {
	name, err := d.resolveServer(server)
	if err != nil {
		return err
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		st.Servers[name].FrontEndStopped = !running
		return nil
	})
}

// SetExportError turns the export ErrorState fault of one module of pool on or off; module ""
// means every module.
func (d *Deployment) SetExportError(pool, module string, on bool) error {
	return d.setModuleFault(pool, module, on, func(pm *poolMut) *[]string { return &pm.ExportError })
}

// SetImportError turns the import ErrorState fault (the pool's import of its partner's data) of
// one module of pool on or off; module "" means every module.
func (d *Deployment) SetImportError(pool, module string, on bool) error {
	return d.setModuleFault(pool, module, on, func(pm *poolMut) *[]string { return &pm.ImportError })
}

func (d *Deployment) setModuleFault(pool, module string, on bool, list func(*poolMut) *[]string) error {
	name, err := d.resolvePool(pool)
	if err != nil {
		return err
	}
	all := modulesFor(d.topo.product)
	targets := all
	if module != "" {
		if !slices.Contains(all, module) {
			return fmt.Errorf("%w: module %q is not one of %v", ErrInvalid, module, all)
		}
		targets = []string{module}
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		l := list(st.Pools[name])
		for _, m := range targets {
			if on {
				*l = append(*l, m)
			} else {
				*l = slices.DeleteFunc(*l, func(x string) bool { return x == m })
			}
		}
		*l = uniqueSorted(*l)
		return nil
	})
}

// SetBackupPool changes pool's backup association out of band, as an administrator in Topology
// Builder could, on that side only (backupPool "" unpairs that side). Unlike PairPools it enforces
// no rule, so tests can build the inconsistent topologies the operator must refuse to "fix".
func (d *Deployment) SetBackupPool(pool, backupPool string) error {
	name, err := d.resolvePool(pool)
	if err != nil {
		return err
	}
	backup := ""
	if backupPool != "" {
		if backup, err = d.resolvePool(backupPool); err != nil {
			return err
		}
		if backup == name {
			return fmt.Errorf("%w: a pool cannot be paired with itself", ErrInvalid)
		}
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		pm := st.Pools[name]
		if pm.BackupPool != backup {
			pm.BackupPool = backup
			st.TopologyVersion++
		}
		return nil
	})
}

// SetFaults replaces a server's faults (the remaining counts included).
func (d *Deployment) SetFaults(server string, f ServerFaults) error {
	name, err := d.resolveServer(server)
	if err != nil {
		return err
	}
	if err := f.validate("faults"); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return d.mutate(func(st *mutState, _ time.Time) error {
		st.Servers[name].Faults = f
		return nil
	})
}

// SetReads changes the read settings at run time (durations.read and readsWaitForWrites in the
// file): latency is how long every read takes; waitForWrites makes a read on a server wait while
// that server's agent runs a write. Reads already waiting see the change. Not persisted: a
// restarted sim process starts from the file's settings again.
func (d *Deployment) SetReads(latency time.Duration, waitForWrites bool) error {
	if latency < 0 {
		return fmt.Errorf("%w: read latency must not be negative", ErrInvalid)
	}
	d.ctl.Lock()
	defer d.ctl.Unlock()
	d.readLatency, d.readsWait = latency, waitForWrites
	close(d.readsChanged)
	d.readsChanged = make(chan struct{})
	return nil
}

// Reads returns the current read settings.
func (d *Deployment) Reads() (latency time.Duration, waitForWrites bool) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	return d.readLatency, d.readsWait
}

// beginWrite marks a write running on server's host until the returned func is called.
func (d *Deployment) beginWrite(server string) (end func()) {
	d.ctl.Lock()
	h := d.hosts[server]
	if h.writes == 0 {
		h.idle = make(chan struct{})
	}
	h.writes++
	d.ctl.Unlock()
	return sync.OnceFunc(func() {
		d.ctl.Lock()
		defer d.ctl.Unlock()
		h.writes--
		if h.writes == 0 {
			close(h.idle)
		}
	})
}

// beforeRead is what every read pays on server: with readsWaitForWrites it waits while the
// server's agent runs a write, then it takes the read latency. Both honour ctx.
func (d *Deployment) beforeRead(ctx context.Context, server string) error {
	for {
		d.ctl.Lock()
		h, wait, changed, latency := d.hosts[server], d.readsWait, d.readsChanged, d.readLatency
		if !wait || h.writes == 0 {
			d.ctl.Unlock()
			return sleep(ctx, d.clock, latency)
		}
		idle := h.idle
		d.ctl.Unlock()
		select {
		case <-idle:
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
