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
	var active []string
	for i := range st.Servers {
		s := &st.Servers[i]
		switch {
		case done(s):
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
	p.progress(step, p.orWaiting(msg, len(active) > 0))
}

// advanceSync forces a backup sync of each unhealthy direction, both at once (each on a Front End
// of the pool it exports from), no more often than spec.sync.checkInterval, and waits for both
// directions to stay healthy for stableFor.
func (p *pass) advanceSync() {
	pp, st := p.pp, &p.pp.Status
	checkInterval := durationOr(pp.Spec.Sync.CheckInterval, 5*time.Minute)
	stableFor := durationOr(pp.Spec.Sync.StableFor, 2*time.Minute)
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

func pairParams(pp *drv1alpha1.PoolPair) protocol.PairPoolsParams {
	params := protocol.PairPoolsParams{PrimaryFQDN: pp.Spec.Primary.FQDN, BackupFQDN: pp.Spec.Backup.FQDN}
	if v := pp.Spec.VoiceFailover; v != nil {
		params.VoiceFailover = &protocol.VoiceFailover{Enabled: v.Enabled}
		if v.FailureDetectionInterval != nil {
			params.VoiceFailover.FailureDetectionIntervalSeconds = int(v.FailureDetectionInterval.Seconds())
		}
		if v.FailbackDetectionInterval != nil {
			params.VoiceFailover.FailbackDetectionIntervalSeconds = int(v.FailbackDetectionInterval.Seconds())
		}
	}
	return params
}
