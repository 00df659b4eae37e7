package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// pass is one reconcile of one PoolPair: observe, derive, act, report.
type pass struct {
	r  *PoolPairReconciler
	pp *drv1alpha1.PoolPair
	// base is the PoolPair as last written (or read): status patches are computed against it.
	base   *drv1alpha1.PoolPair
	now    time.Time
	conds  conditions.Setter
	before []metav1.Condition

	agents AgentClient
	obs    *observation

	// stalled is the first problem only a human can fix, seen this pass.
	stalled *stallError
	// progressReason and progressMessage say what the pair is doing (the Reconciling condition).
	progressReason, progressMessage string
	// waiting says why a step could not start now (backoff, a busy target, an agent down).
	waiting string
	// requeue is the soonest time the pass wants to look again (0: only on events).
	requeue time.Duration
	// released is set when deletion may remove the finalizer.
	released bool
	// events wait for the status write.
	events []pendingEvent
	// intents are steps recorded this pass whose requests launch sends.
	intents []intent
	// aborted is set when the write-ahead record could not be written: nothing was sent.
	aborted error
	// staleService are the servers whose LYNCBACKUP runs since before their last Bootstrapper
	// run: it still serves the old partner until restarted.
	staleService map[string]bool
	// rebooted are the servers whose last Bootstrapper run asked for a restart that has happened:
	// the second run it asked for is due, not a repeat of a run that showed no effect.
	rebooted map[string]bool

	// specChanged: the spec changed since the last pass (a new generation).
	specChanged bool
	// requestedAt: the requested-at annotation asked for a retry on this pass.
	requestedAt bool
	// rehearsalStuck: a rehearsal step cannot go on; the rehearsal reports what it found.
	rehearsalStuck bool
	// failoverPhase overrides the milestone phase while a failover is carried out.
	failoverPhase drv1alpha1.Phase
}

func conditionsFor(pp *drv1alpha1.PoolPair) conditions.Setter {
	return conditions.Setter{Conditions: &pp.Status.Conditions, Generation: pp.Generation}
}

func (p *pass) key() types.NamespacedName {
	return types.NamespacedName{Namespace: p.pp.Namespace, Name: p.pp.Name}
}

func (p *pass) wantRequeue(d time.Duration) {
	if d > 0 && (p.requeue == 0 || d < p.requeue) {
		p.requeue = d
	}
}

func (p *pass) stall(reason, message string) {
	if p.stalled == nil {
		p.stalled = &stallError{Reason: reason, Message: message}
	}
}

func (p *pass) progress(reason, message string) {
	if p.progressReason == "" {
		p.progressReason, p.progressMessage = reason, message
	}
}

// reconcileNormal drives a live PoolPair.
func (p *pass) reconcileNormal(ctx context.Context) error {
	pp, st := p.pp, &p.pp.Status
	p.before = append([]metav1.Condition(nil), st.Conditions...)
	p.specChanged = st.ObservedGeneration != pp.Generation
	st.ObservedGeneration = pp.Generation
	if st.Phase == "" || st.Phase == drv1alpha1.PhaseDeleting {
		st.Phase = drv1alpha1.PhasePending
	}
	p.handleRequestedAt()

	other, pool, err := p.r.claimedBy(ctx, pp)
	if err != nil {
		return err
	}
	if other != nil {
		p.stall(ReasonPoolAlreadyClaimed, fmt.Sprintf("pool %s is already claimed by PoolPair %s/%s; delete one of the two PoolPairs", pool, other.Namespace, other.Name))
		p.report(nil)
		return nil
	}
	if pp.Spec.Suspend {
		p.conds.Remove(drv1alpha1.ConditionStalled)
		p.conds.Remove(drv1alpha1.ConditionReconciling)
		p.conds.False(drv1alpha1.ConditionReady, ReasonSuspended, "spec.suspend is true: nothing is observed or started")
		return nil
	}
	if !p.connect(ctx) {
		p.report(nil)
		return nil
	}

	// Finished steps first, so the observation that follows sees their effect.
	for _, s := range allSlots(pp) {
		p.track(ctx, s)
	}

	p.obs = observe(ctx, p.agents, pp)
	if len(p.obs.failures()) > 0 {
		p.wantRequeue(p.r.UnreachableRetry)
	}
	p.updateServers()
	m := p.milestones()
	p.updateNextSteps(m)
	p.updateDirections(m.BackupServiceRunning)
	p.adoptRunning()
	m.BackupSynced = p.synced()
	p.settleFailures(m)
	p.checkRules()
	pairingSteps := p.stalled == nil
	if pairingSteps && failoverInPlay(pp) {
		pairingSteps = p.failover(ctx, m.Reached() == 4)
	}
	if pairingSteps {
		p.advance(m)
		p.launch(ctx)
	} else if p.stalled != nil {
		// An administrator fixes these in Topology Builder, which no watch sees: look again at the
		// check interval.
		p.wantRequeue(durationOr(pp.Spec.Sync.CheckInterval, 5*time.Minute))
	}
	p.checkSyncTimeout(m)
	p.report(&m)
	return nil
}

// commit writes the status as it is now, guarded by the resourceVersion read: the write-ahead
// record of a step must be stored before its request is sent. The PoolPair in memory keeps its
// values (pointers into it stay valid); only its resourceVersion moves on.
func (p *pass) commit(ctx context.Context) error {
	written := p.pp.DeepCopy()
	if err := p.r.patchStatus(ctx, p.base, written); err != nil {
		return err
	}
	p.pp.ResourceVersion = written.ResourceVersion
	p.base = p.pp.DeepCopy()
	p.emitEvents()
	p.events = nil
	return nil
}

// adoptRunning records, for every slot that has no operation, the operation its agent reports
// running for it: one started before the status that recorded it was wiped, or by another
// manager. It is tracked to its end and counts toward maxParallelPerPool; nothing is started beside it.
func (p *pass) adoptRunning() {
	pp, st := p.pp, &p.pp.Status
	pairTarget := protocol.PairTarget(pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN)
	for _, o := range p.obs.Servers {
		if o.Err != nil {
			continue
		}
		on := agentServer{FQDN: o.FQDN, Endpoint: o.Endpoint}
		for _, a := range o.Server.ActiveOperations {
			var s *slot
			switch a.Kind {
			case protocol.KindBootstrap, protocol.KindStartBackupService, protocol.KindRestartBackupService:
				for i := range st.Servers {
					if st.Servers[i].FQDN == o.FQDN && protocol.SameFQDN(a.Target, o.FQDN) {
						s = ptr(serverSlot(&st.Servers[i]))
					}
				}
			case protocol.KindPairPools, protocol.KindUnpair:
				if a.Target == pairTarget {
					s = ptr(pairSlot(pp))
				}
			case protocol.KindSyncBackup:
				for i := range st.Backup {
					if protocol.SameFQDN(a.Target, st.Backup[i].From) {
						s = ptr(directionSlot(&st.Backup[i]))
					}
				}
			}
			if s != nil && s.inFlight() == nil {
				p.adopt(*s, a, on, fmt.Sprintf("adopted: %s was already running on %s", a.Kind, o.FQDN))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// settleFailures forgets a slot's failures once the effect of its step is observed.
func (p *pass) settleFailures(m pairing.Milestones) {
	st := &p.pp.Status
	effect := func(s slot, observed func(kind string) bool) {
		if last := *s.lastOperation; *s.operation == nil && *s.failedAttempts > 0 && last != nil && observed(last.Kind) {
			s.resetFailures()
		}
	}
	effect(pairSlot(p.pp), func(kind string) bool { return kind == string(protocol.KindPairPools) && m.TopologyPublished })
	for i := range st.Servers {
		srv := &st.Servers[i]
		effect(serverSlot(srv), func(kind string) bool {
			return kind == string(protocol.KindBootstrap) && srv.Bootstrapped ||
				kind == string(protocol.KindStartBackupService) && srv.BackupService == protocol.ServiceRunning ||
				kind == string(protocol.KindRestartBackupService) && srv.BackupService == protocol.ServiceRunning && !p.staleService[srv.FQDN]
		})
	}
	for i := range st.Backup {
		d := &st.Backup[i]
		effect(directionSlot(d), func(string) bool { return d.Healthy })
	}
}

// connect resolves the agent client, or stalls.
func (p *pass) connect(ctx context.Context) bool {
	material, err := p.r.agentTLS(ctx, p.pp)
	if err == nil {
		p.agents, err = p.r.connect(material)
	}
	if err == nil {
		return true
	}
	if se, ok := err.(*stallError); ok {
		p.stall(se.Reason, se.Message)
		if p.pp.Spec.Agent.TLSSecretRef == nil {
			// Files, not watched: look again for a mounted certificate.
			p.wantRequeue(p.r.UnreachableRetry)
		}
		return false
	}
	p.stall(ReasonAgentTLSSecretInvalid, err.Error())
	p.wantRequeue(p.r.UnreachableRetry)
	return false
}

// handleRequestedAt answers the requested-at annotation: retry now, forgetting past failures.
func (p *pass) handleRequestedAt() {
	st := &p.pp.Status
	v, ok := p.pp.Annotations[drv1alpha1.RequestedAtAnnotation]
	if !ok || v == st.LastHandledReconcileAt {
		return
	}
	st.LastHandledReconcileAt = v
	p.requestedAt = true
	for _, s := range allSlots(p.pp) {
		s.resetFailures()
	}
	for i := range st.Backup {
		st.Backup[i].UnhealthySince = nil
	}
}

// updateServers rebuilds status.servers from the observation. The step memory of each server is
// carried over; what an unreachable agent could not tell is carried over too, marked unreachable.
func (p *pass) updateServers() {
	st := &p.pp.Status
	p.staleService, p.rebooted = map[string]bool{}, map[string]bool{}
	old := map[string]drv1alpha1.ServerStatus{}
	for _, s := range st.Servers {
		old[s.FQDN] = s
	}
	var servers []drv1alpha1.ServerStatus
	for _, pool := range p.obs.pools() {
		listed := false
		for _, o := range p.obs.Servers {
			if o.Pool != pool.FQDN {
				continue
			}
			listed = true
			s := old[o.FQDN]
			s.FQDN, s.Pool = o.FQDN, o.Pool
			s.Reachable = o.Err == nil
			if o.Err == nil {
				s.Bootstrapped = pairing.ServerBootstrapped(o.Server, o.Partner)
				s.BackupService = "NotInstalled"
				if o.Server.BackupService.Installed {
					s.BackupService = o.Server.BackupService.Status
				}
				s.BackupServiceStarted = nil
				if t := o.Server.BackupService.Started; t != nil {
					s.BackupServiceStarted = ptr(stamp(*t))
				}
				s.LastBootstrapTime = nil
				if b := o.Server.LastBootstrap; b != nil {
					s.LastBootstrapTime = ptr(stamp(b.Finished))
					p.rebooted[o.FQDN] = b.RebootRequired && !o.Server.RebootPending
				}
				s.RebootRequired = o.Server.RebootPending
				p.staleService[o.FQDN] = s.Bootstrapped && pairing.BackupServiceStale(o.Server)
			}
			servers = append(servers, s)
		}
		if !listed && !pool.ok() {
			// The pool's agent is down and the spec lists no servers: keep what we knew.
			for _, s := range st.Servers {
				if s.Pool == pool.FQDN {
					s.Reachable = false
					servers = append(servers, s)
				}
			}
		}
	}
	st.Servers = servers
}

// updateNextSteps lists the documented steps that are the administrator's: what Bootstrapper's
// runs for this pairing left to do (re-applying a cumulative update on Skype for Business Server),
// and, when a Standard Edition pool that hosts the Central Management store is paired, installing
// the standby Central Management database on its partner. Kept as they were while a server or
// pool did not answer. Each new step is announced once.
func (p *pass) updateNextSteps(m pairing.Milestones) {
	if len(p.obs.failures()) > 0 {
		return
	}
	// Each step is announced under an action naming where it applies: the events API merges
	// events of the same action and reason into one series, which would drop the later notes.
	where := map[string]string{}
	for _, o := range p.obs.Servers {
		if b := o.Server.LastBootstrap; b != nil && pairing.ServerBootstrapped(o.Server, o.Partner) {
			for i, step := range b.NextSteps {
				where[step] = fmt.Sprintf("%s#%d", o.FQDN, i)
			}
		}
	}
	if m.TopologyPublished {
		for _, pool := range p.obs.pools() {
			if pool.Pool.HostsCMS && pool.Pool.Edition == protocol.EditionStandard {
				where[standbyCMSStep(pool.FQDN, pool.Partner)] = pool.Partner
			}
		}
	}
	steps := slices.Sorted(maps.Keys(where))
	for _, step := range steps {
		if !slices.Contains(p.pp.Status.NextSteps, step) {
			p.event(eventNormal, "NextStep", "NextStep "+where[step], "next step for the administrator: %s", step)
		}
	}
	p.pp.Status.NextSteps = steps
}

// standbyCMSStep: pairing the Standard Edition server that hosts the Central Management store
// gives its partner a standby Central Management store whose database the administrator installs
// (Lync Server 2013 "Central Management Store failover"). The operator never runs it, and cannot
// see whether it was done: the step stays listed while the pairing lasts.
func standbyCMSStep(cmsPool, partner string) string {
	return fmt.Sprintf("%s hosts the Central Management store and is Standard Edition: install the standby Central Management database on %s with "+
		"Install-CsDatabase -CentralManagementDatabase -SqlServerFqdn %s -SqlInstanceName rtc, as Microsoft's \"Central Management Store failover\" page describes",
		cmsPool, partner, partner)
}

// milestones derives the runbook's checkpoints from the observation (BackupSynced comes later,
// from the direction status).
func (p *pass) milestones() pairing.Milestones {
	var m pairing.Milestones
	if p.obs.Primary.ok() && p.obs.Backup.ok() {
		m.TopologyPublished = pairing.Paired(p.obs.Primary.Pool, p.obs.Backup.Pool)
	} else {
		// A pool agent did not answer: what we knew still stands until it does.
		m.TopologyPublished = conditions.IsTrue(p.before, drv1alpha1.ConditionTopologyPublished)
	}
	perPool := map[string]int{}
	m.Bootstrapped, m.BackupServiceRunning = m.TopologyPublished, m.TopologyPublished
	for _, s := range p.pp.Status.Servers {
		perPool[s.Pool]++
		m.Bootstrapped = m.Bootstrapped && s.Bootstrapped
		m.BackupServiceRunning = m.BackupServiceRunning && s.BackupService == protocol.ServiceRunning && !p.staleService[s.FQDN]
	}
	if perPool[p.pp.Spec.Primary.FQDN] == 0 || perPool[p.pp.Spec.Backup.FQDN] == 0 {
		m.Bootstrapped, m.BackupServiceRunning = false, false
	}
	m.BackupServiceRunning = m.BackupServiceRunning && m.Bootstrapped
	return m
}

// updateDirections rebuilds status.backup from the observed backup status of both directions.
// What could not be read this pass is kept as last known: an agent that flaps must not restart
// the sync.timeout clock or forget when the last sync ran.
func (p *pass) updateDirections(serviceRunning bool) {
	st := &p.pp.Status
	if !p.obs.Primary.ok() || !p.obs.Backup.ok() {
		return
	}
	old := map[string]drv1alpha1.BackupDirectionStatus{}
	for _, d := range st.Backup {
		old[d.From] = d
	}
	var dirs []drv1alpha1.BackupDirectionStatus
	for _, o := range p.obs.Directions {
		d := old[o.From]
		if !o.Read {
			// Not paired (any more): the direction goes, unless a sync of it is in flight.
			if d.Operation != nil {
				dirs = append(dirs, d)
			}
			continue
		}
		d.From, d.To = o.From, o.To
		if last := d.LastOperation; last != nil && last.State == string(protocol.StateSucceeded) && last.Finished != nil &&
			(d.LastSyncTime == nil || d.LastSyncTime.Before(last.Finished)) {
			d.LastSyncTime = last.Finished.DeepCopy()
		}
		if o.Err != nil {
			dirs = append(dirs, d) // unknown this pass: keep what we knew
			continue
		}
		if sec := o.Status.SyncIntervalSeconds; sec > 0 {
			d.SyncInterval = &metav1.Duration{Duration: time.Duration(sec) * time.Second}
		}
		healthy, why := pairing.DirectionHealth(o.Status, o.HostsCMS)
		d.Modules = nil
		for _, mod := range o.Status.Modules {
			d.Modules = append(d.Modules, drv1alpha1.BackupModuleStatus{Name: mod.Identity, Export: mod.ExportStatus, Import: mod.ImportStatus})
		}
		now := stamp(p.now)
		if healthy {
			if !d.Healthy || d.StableSince == nil {
				d.StableSince = &now
			}
			d.UnhealthySince, d.Message = nil, ""
		} else {
			d.StableSince, d.Message = nil, why
			if !serviceRunning {
				d.UnhealthySince = nil
			} else if d.Healthy || d.UnhealthySince == nil {
				d.UnhealthySince = &now
			}
		}
		d.Healthy = healthy
		dirs = append(dirs, d)
	}
	st.Backup = dirs
	for _, d := range dirs {
		if d.LastSyncTime != nil && (st.LastSyncTime == nil || st.LastSyncTime.Before(d.LastSyncTime)) {
			st.LastSyncTime = d.LastSyncTime.DeepCopy()
		}
	}
}

// stableFor is how long both directions must stay healthy: spec.sync.stableFor, else two of the
// longest sync interval the agents reported (Lync's default interval when none could be read).
func (p *pass) stableFor() time.Duration {
	if d := p.pp.Spec.Sync.StableFor; d != nil {
		return d.Duration
	}
	interval := time.Duration(0)
	for _, d := range p.pp.Status.Backup {
		if d.SyncInterval != nil {
			interval = max(interval, d.SyncInterval.Duration)
		}
	}
	if interval == 0 {
		interval = defaultSyncInterval
	}
	return 2 * interval
}

// defaultSyncInterval is the Backup Service's default SyncInterval (Get-CsBackupServiceConfiguration).
const defaultSyncInterval = 2 * time.Minute

// synced reports whether both directions have been healthy for spec.sync.stableFor.
func (p *pass) synced() bool {
	st := &p.pp.Status
	if len(st.Backup) != 2 {
		return false
	}
	stableFor := p.stableFor()
	for _, d := range st.Backup {
		if !d.Healthy || d.StableSince == nil {
			return false
		}
		if left := d.StableSince.Add(stableFor).Sub(p.now); left > 0 {
			return false
		}
	}
	return true
}

// checkRules refuses, with a reason, what the Lync tools never enforced. Nothing is overwritten.
func (p *pass) checkRules() {
	pri, bak := &p.obs.Primary, &p.obs.Backup
	for _, pool := range p.obs.pools() {
		if pool.notFound() {
			p.stall(ReasonPoolNotFound, fmt.Sprintf("pool %s is not in the published topology (its agent at %s answered 404); add it in Topology Builder, or pair existing pools with a new PoolPair", pool.FQDN, pool.Endpoint))
		}
	}
	if !pri.ok() || !bak.ok() {
		return
	}
	for _, pool := range p.obs.pools() {
		if third := pairing.PairedElsewhere(pool.Pool, pool.Partner); third != "" {
			p.stall(ReasonPoolPairedElsewhere, fmt.Sprintf("pool %s is paired with %s in the topology; the operator does not overwrite a pairing: remove that association in Topology Builder first, or delete this PoolPair", pool.FQDN, third))
		}
	}
	if pri.Pool.Edition != bak.Pool.Edition {
		p.stall(ReasonEditionMismatch, fmt.Sprintf("pool %s is %s Edition but %s is %s Edition: Lync pairs Enterprise with Enterprise and Standard with Standard", pri.FQDN, pri.Pool.Edition, bak.FQDN, bak.Pool.Edition))
	}
	if pri.Pool.Version != bak.Pool.Version {
		p.stall(ReasonVersionMismatch, fmt.Sprintf("pool %s runs %q but %s runs %q: paired pools must run the same product version", pri.FQDN, pri.Pool.Version, bak.FQDN, bak.Pool.Version))
	}
	for _, spec := range []drv1alpha1.PoolSpec{p.pp.Spec.Primary, p.pp.Spec.Backup} {
		pool := pri
		if spec.FQDN == bak.FQDN {
			pool = bak
		}
		for _, s := range spec.Servers {
			if !containsFQDN(pool.Pool.Computers, s.FQDN) {
				p.stall(ReasonServerNotInPool, fmt.Sprintf("server %s is listed in the spec for pool %s, but the topology's Front End servers of that pool are: %s", s.FQDN, pool.FQDN, strings.Join(pool.Pool.Computers, ", ")))
			}
		}
	}
}

func containsFQDN(list []string, fqdn string) bool {
	for _, s := range list {
		if protocol.SameFQDN(s, fqdn) {
			return true
		}
	}
	return false
}

// checkSyncTimeout stalls a pair whose backup has stayed unhealthy for longer than spec.sync.timeout
// with the service running. Syncs keep being retried; the stall clears once it is healthy.
func (p *pass) checkSyncTimeout(m pairing.Milestones) {
	if !m.BackupServiceRunning {
		return
	}
	timeout := durationOr(p.pp.Spec.Sync.Timeout, 2*time.Hour)
	for _, d := range p.pp.Status.Backup {
		if d.UnhealthySince != nil && p.now.Sub(d.UnhealthySince.Time) > timeout {
			p.stall(ReasonSyncTimeout, fmt.Sprintf("backup from %s to %s has not been healthy for %s (longer than spec.sync.timeout %s): %s; see the \"LS Backup Service\" event log on the Front End servers",
				d.From, d.To, p.now.Sub(d.UnhealthySince.Time).Round(time.Second), timeout, d.Message))
		}
	}
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// stamp makes a status timestamp. Status times are stored with second precision; comparing a
// nanosecond time with one read back would see a change on every pass and write for nothing.
func stamp(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }
