package controllers

import (
	"fmt"
	"strings"
	"time"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Progress reasons (the Reconciling condition, and the Step printer column).
const (
	StepPairingPools          = "PairingPools"
	StepBootstrapping         = "Bootstrapping"
	StepStartingBackupService = "StartingBackupService"
	StepSyncingBackup         = "SyncingBackup"
	StepWaitingForStableSync  = "WaitingForStableSync"
	StepWaitingForAgents      = "WaitingForAgents"
	StepUnpairing             = "Unpairing"
	// StepWaitingForAdministrator: the pairing is the administrator's to publish in Topology Builder.
	StepWaitingForAdministrator = "WaitingForAdministrator"
	// StepWaitingForReboot: Bootstrapper.exe asked for a restart that only the administrator does.
	StepWaitingForReboot        = "WaitingForReboot"
	StepRestartingBackupService = "RestartingBackupService"
)

// advance records the step of the first unmet milestone, as far as agents, parallelism and backoff
// allow; launch sends it once the record is written. Steps run in the runbook's order: pair,
// bootstrap every server, start the backup service, sync both ways.
func (p *pass) advance(m pairing.Milestones) {
	pp, st := p.pp, &p.pp.Status
	pri, bak := &p.obs.Primary, &p.obs.Backup
	switch {
	case !pri.ok() || !bak.ok():
		p.progress(StepWaitingForAgents, "waiting for the pool agents to answer")
		p.wantRequeue(p.r.UnreachableRetry)

	case !m.TopologyPublished && pp.Spec.Topology.PublishedBy == drv1alpha1.TopologyPublishedByAdministrator:
		// The administrator writes the pairing; nothing tells us when: look again regularly.
		p.progress(StepWaitingForAdministrator, administratorPairingSteps(pri.FQDN, bak.FQDN))
		p.wantRequeue(min(durationOr(pp.Spec.Sync.CheckInterval, 5*time.Minute), time.Minute))

	case !m.TopologyPublished:
		msg := fmt.Sprintf("Publishing the pairing of %s and %s in the topology", pri.FQDN, bak.FQDN)
		if st.Operation == nil {
			if on, ok := p.poolServer(pri.FQDN, bak.FQDN); ok {
				p.intend(pairSlot(pp), protocol.KindPairPools, protocol.PairTarget(pri.FQDN, bak.FQDN), on, pairParams(pp), msg)
			} else {
				p.waiting = "no Front End server of either pool answered to run it on"
			}
		}
		p.progress(StepPairingPools, p.orWaiting(msg, st.Operation != nil))

	case !m.Bootstrapped:
		p.advanceServers(protocol.KindBootstrap, StepBootstrapping, "Bootstrapping", "bootstrapped",
			func(s *drv1alpha1.ServerStatus) bool { return s.Bootstrapped }, max(int(pp.Spec.Bootstrap.MaxParallelPerPool), 1))

	case !m.BackupServiceRunning && p.anyStaleService():
		// A LYNCBACKUP that ran before the pairing changed still serves the old partner:
		// Microsoft's procedure stops and starts it. Light, like starting it: every server at once.
		p.advanceServers(protocol.KindRestartBackupService, StepRestartingBackupService, "Restarting LYNCBACKUP on", "serving the current pairing",
			func(s *drv1alpha1.ServerStatus) bool { return !p.staleService[s.FQDN] }, len(st.Servers))

	case !m.BackupServiceRunning:
		// Starting a service is light and safe to repeat: every server at once.
		p.advanceServers(protocol.KindStartBackupService, StepStartingBackupService, "Starting LYNCBACKUP on", "running LYNCBACKUP",
			func(s *drv1alpha1.ServerStatus) bool { return s.BackupService == protocol.ServiceRunning }, len(st.Servers))

	case !m.BackupSynced:
		p.advanceSync()

	default:
		p.wantRequeue(durationOr(pp.Spec.Sync.CheckInterval, 5*time.Minute))
	}
}

// advanceServers runs a per-server step on every server that needs it, at most perPool at once in
// each pool, and reports progress such as
// "Bootstrapping fe02.pool01.contoso.com (1 of 4 servers bootstrapped)".
func (p *pass) advanceServers(kind protocol.OperationKind, step, verb, doneWord string, done func(*drv1alpha1.ServerStatus) bool, perPool int) {
	st := &p.pp.Status
	busy := map[string]int{}
	// mayRun: servers that count as busy without a step in flight here, and may retry their own.
	mayRun := map[string]bool{}
	finished := 0
	for i := range st.Servers {
		s := &st.Servers[i]
		switch {
		case s.Operation != nil && s.Operation.Kind == string(kind):
			busy[s.Pool]++
		case kind == protocol.KindBootstrap && s.RebootRequired:
			// Waiting for the administrator to restart it: taken out of service as much as a
			// server being bootstrapped, so it counts toward the pool's limit.
			busy[s.Pool]++
		case kind == protocol.KindBootstrap && !s.Reachable && !s.Bootstrapped:
			// An agent that does not answer may be running Bootstrapper that no record here
			// knows of (a wiped status): it counts as busy, so the limit holds whatever happens.
			busy[s.Pool]++
		case kind == protocol.KindBootstrap && !s.Bootstrapped && bootstrapMayStillRun(s.LastOperation):
			// Bootstrapper.exe outlives its agent. When the agent lost the operation (its journal is gone), or
			// refused a new run because one it does not track is in progress, a run may still go
			// on there: the server counts as busy, so no other server of its pool starts beside
			// it. Its own retry is what finds out (refused again while the run goes on).
			busy[s.Pool]++
			mayRun[s.FQDN] = true
		}
		if done(s) {
			finished++
		}
	}
	var active, rebootWait []string
	for i := range st.Servers {
		s := &st.Servers[i]
		switch {
		case done(s):
			continue
		case kind == protocol.KindBootstrap && s.RebootRequired:
			rebootWait = append(rebootWait, s.FQDN)
			continue
		case s.Operation != nil:
			if s.Operation.Kind == string(kind) {
				active = append(active, s.FQDN)
			}
			continue
		case !s.Reachable:
			continue
		case mayRun[s.FQDN] && busy[s.Pool]-1 >= perPool, !mayRun[s.FQDN] && busy[s.Pool] >= perPool:
			continue
		}
		note := fmt.Sprintf("%s %s (%d of %d servers %s so far)", verb, s.FQDN, finished, len(st.Servers), doneWord)
		if p.intend(serverSlot(s), kind, s.FQDN, agentServer{FQDN: s.FQDN, Endpoint: p.serverEndpoint(s.FQDN)}, nil, note) {
			busy[s.Pool]++
			active = append(active, s.FQDN)
		}
	}
	msg := fmt.Sprintf("%d of %d servers %s", finished, len(st.Servers), doneWord)
	if len(active) > 0 {
		msg = fmt.Sprintf("%s %s (%s)", verb, strings.Join(active, ", "), msg)
	}
	if len(rebootWait) > 0 {
		// The restart is the administrator's; its agent reports the new boot time, and then the
		// second run starts. Nothing watches for that: look again regularly.
		msg += "; " + rebootMessage(rebootWait)
		p.wantRequeue(p.r.UnreachableRetry)
		if len(active) == 0 {
			p.progress(StepWaitingForReboot, msg)
			return
		}
	}
	p.progress(step, p.orWaiting(msg, len(active) > 0))
}

// rebootMessage asks the administrator to restart servers whose Bootstrapper run asked for it.
func rebootMessage(servers []string) string {
	return fmt.Sprintf("Bootstrapper.exe asked for a restart of %s: restart them (the operator never restarts a server); Bootstrapper.exe runs again on each once it is back", strings.Join(servers, ", "))
}

// anyStaleService reports whether a server's LYNCBACKUP still serves a pairing it ran before.
func (p *pass) anyStaleService() bool {
	for _, stale := range p.staleService {
		if stale {
			return true
		}
	}
	return false
}

// administratorPairingSteps is what the administrator does when the pairing is theirs to publish
// (Microsoft's "Deploy paired Front End pools for disaster recovery", steps 2 to 6).
func administratorPairingSteps(primary, backup string) string {
	return fmt.Sprintf("waiting for the administrator to pair the pools in Topology Builder (spec.topology.publishedBy is Administrator): "+
		"edit the properties of %s, under Resiliency select Associated backup pool %s and Automatic failover and failback for Voice, then publish the topology; "+
		"the operator takes over from Bootstrapper.exe on", primary, backup)
}

// advanceSync forces a backup sync of each unhealthy direction, both at once (each on a Front End
// of the pool it exports from), no more often than spec.sync.checkInterval, and waits for both
// directions to stay healthy for stableFor.
func (p *pass) advanceSync() {
	pp, st := p.pp, &p.pp.Status
	checkInterval := durationOr(pp.Spec.Sync.CheckInterval, 5*time.Minute)
	stableFor := p.stableFor()
	// A forced sync drains within moments on a healthy pair; look again soon, within the interval.
	poll := min(checkInterval, 15*time.Second)
	var unhealthy, syncing []string
	for i := range st.Backup {
		d := &st.Backup[i]
		if d.Healthy {
			if left := d.StableSince.Add(stableFor).Sub(p.now); left > 0 {
				p.wantRequeue(left)
			}
			continue
		}
		unhealthy = append(unhealthy, fmt.Sprintf("%s -> %s: %s", d.From, d.To, d.Message))
		if d.Operation != nil {
			syncing = append(syncing, d.From)
			continue
		}
		if d.LastSyncTime != nil && p.now.Sub(d.LastSyncTime.Time) < checkInterval {
			p.wantRequeue(poll)
			continue
		}
		on, ok := p.poolServer(d.From)
		if !ok {
			p.waiting = fmt.Sprintf("no Front End server of %s answered to force its sync on", d.From)
			continue
		}
		if p.intend(directionSlot(d), protocol.KindSyncBackup, d.From, on, protocol.SyncBackupParams{PoolFQDN: d.From},
			fmt.Sprintf("Forcing a backup sync from %s to %s", d.From, d.To)) {
			syncing = append(syncing, d.From)
		}
	}
	if len(unhealthy) == 0 {
		p.progress(StepWaitingForStableSync, fmt.Sprintf("both directions healthy; waiting until they have been for %s", stableFor))
		return
	}
	if len(syncing) > 0 {
		p.progress(StepSyncingBackup, fmt.Sprintf("Syncing backup from %s (%s)", strings.Join(syncing, " and "), strings.Join(unhealthy, "; ")))
		return
	}
	p.progress(StepSyncingBackup, p.orWaiting("waiting for backup to drain: "+strings.Join(unhealthy, "; "), false))
}

// bootstrapMayStillRun reports whether the last Bootstrap on a server ended without knowing that
// Bootstrapper.exe no longer runs there: its agent lost the operation, or refused to start a run
// because one was in progress (lync.Backend's ErrConflict, reported as "conflict: ...").
func bootstrapMayStillRun(last *drv1alpha1.OperationStatus) bool {
	return last != nil && last.Kind == string(protocol.KindBootstrap) && last.State == string(protocol.StateFailed) &&
		(strings.HasSuffix(last.Message, lostOperation) || strings.HasPrefix(last.Message, "conflict: "))
}

// orWaiting appends why nothing could start, when that is the news.
func (p *pass) orWaiting(msg string, running bool) string {
	if !running && p.waiting != "" {
		return msg + "; " + p.waiting
	}
	return msg
}

func (p *pass) serverEndpoint(fqdn string) string {
	for _, s := range p.obs.Servers {
		if s.FQDN == fqdn {
			return s.Endpoint
		}
	}
	return endpointFor("", fqdn, agentPort(p.pp))
}

// poolServer picks the Front End server a pool-level step runs on: the first, by name, of the
// first of pools whose servers answered this pass as themselves. The choice is stable, so a
// manager that lost its record asks the same server again and is answered with the step it
// already started there.
func (p *pass) poolServer(pools ...string) (agentServer, bool) {
	for _, pool := range pools {
		var best *serverObservation
		for i := range p.obs.Servers {
			s := &p.obs.Servers[i]
			if s.Pool == pool && s.Err == nil && (best == nil || s.FQDN < best.FQDN) {
				best = s
			}
		}
		if best != nil {
			return agentServer{FQDN: best.FQDN, Endpoint: best.Endpoint}, true
		}
	}
	return agentServer{}, false
}

// pairParams are the PairPools parameters. Voice failover is on unless the spec turns it off, as
// Microsoft's procedure selects it, with Lync's default intervals where the spec gives none.
func pairParams(pp *drv1alpha1.PoolPair) protocol.PairPoolsParams {
	v := pp.Spec.VoiceFailover
	if v == nil {
		v = &drv1alpha1.VoiceFailoverSpec{}
	}
	voice := &protocol.VoiceFailover{Enabled: v.Enabled == nil || *v.Enabled}
	if voice.Enabled {
		voice.FailureDetectionIntervalSeconds = int(durationOr(v.FailureDetectionInterval, drv1alpha1.DefaultVoiceFailureDetectionInterval).Seconds())
		voice.FailbackDetectionIntervalSeconds = int(durationOr(v.FailbackDetectionInterval, drv1alpha1.DefaultVoiceFailbackDetectionInterval).Seconds())
	}
	return protocol.PairPoolsParams{PrimaryFQDN: pp.Spec.Primary.FQDN, BackupFQDN: pp.Spec.Backup.FQDN, VoiceFailover: voice}
}
