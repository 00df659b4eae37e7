package controllers

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Condition reasons.
const (
	ReasonPending                   = "Pending"
	ReasonSynced                    = "Synced"
	ReasonSuspended                 = "Suspended"
	ReasonPoolAlreadyClaimed        = "PoolAlreadyClaimed"
	ReasonPoolNotFound              = "PoolNotFound"
	ReasonPoolPairedElsewhere       = "PoolPairedElsewhere"
	ReasonEditionMismatch           = "EditionMismatch"
	ReasonVersionMismatch           = "VersionMismatch"
	ReasonServerNotInPool           = "ServerNotInPool"
	ReasonRetriesExhausted          = "RetriesExhausted"
	ReasonStepFailed                = "StepFailed"
	ReasonStepRefused               = "StepRefused"
	ReasonSyncTimeout               = "SyncTimeout"
	ReasonAgentTLSNotConfigured     = "AgentTLSNotConfigured"
	ReasonAgentTLSSecretNotFound    = "AgentTLSSecretNotFound"
	ReasonAgentTLSSecretNotLabelled = "AgentTLSSecretNotLabelled"
	ReasonAgentTLSSecretInvalid     = "AgentTLSSecretInvalid"
	ReasonDefaultAgentTLSNotAllowed = "DefaultAgentTLSNotAllowed"
	ReasonAgentsReachable           = "AgentsReachable"
	ReasonAgentsUnreachable         = "AgentsUnreachable"
	ReasonUnpairBlocked             = "UnpairBlocked"
	ReasonFailoverRefused           = "FailoverRefused"
	ReasonFailoverFailed            = "FailoverStepFailed"
	ReasonFailoverOutcomeUnknown    = "FailoverOutcomeUnknown"
	ReasonFailoverDrifted           = "FailoverDrifted"
	ReasonDeleting                  = "Deleting"
)

const (
	eventNormal  = corev1.EventTypeNormal
	eventWarning = corev1.EventTypeWarning
)

// pendingEvent is emitted once the pass's status is written: a pass that read a stale copy loses
// the optimistic-lock race and must not announce what the winner already announced.
type pendingEvent struct {
	eventType, reason, action, note string
}

func (p *pass) event(eventType, reason, action, format string, args ...any) {
	p.events = append(p.events, pendingEvent{eventType, reason, action, fmt.Sprintf(format, args...)})
}

func (p *pass) emitEvents() {
	if p.r.Recorder == nil {
		return
	}
	for _, e := range p.events {
		p.r.Recorder.Eventf(p.pp, nil, e.eventType, e.reason, e.action, "%s", e.note)
	}
}

// report turns what the pass saw and did into conditions and the phase, and emits one event per
// milestone transition. m is nil when the pass stopped before observing.
func (p *pass) report(m *pairing.Milestones) {
	st := &p.pp.Status
	if m != nil {
		p.checkRetries()
		p.reportMilestones(*m)
		st.Phase = []drv1alpha1.Phase{drv1alpha1.PhasePending, drv1alpha1.PhaseTopologyPublished, drv1alpha1.PhaseBootstrapped,
			drv1alpha1.PhaseBackupServiceStarted, drv1alpha1.PhaseSynced}[m.Reached()]
	}
	p.reportFailover()
	if p.failoverPhase != "" {
		st.Phase = p.failoverPhase
	}
	agentsDown := conditions.Get(st.Conditions, drv1alpha1.ConditionAgentsReachable) != nil && !conditions.IsTrue(st.Conditions, drv1alpha1.ConditionAgentsReachable)
	ready := m != nil && m.Reached() == 4 && p.stalled == nil && !agentsDown && p.failoverPhase == ""
	switch {
	case p.stalled != nil:
		p.conds.True(drv1alpha1.ConditionStalled, p.stalled.Reason, p.stalled.Message)
		p.conds.Remove(drv1alpha1.ConditionReconciling)
		p.conds.False(drv1alpha1.ConditionReady, p.stalled.Reason, p.stalled.Message)
	case p.failoverPhase == drv1alpha1.PhaseFailedOver:
		// Declared and done: the failed pool's agents may well not answer.
		p.conds.Remove(drv1alpha1.ConditionStalled)
		p.conds.Remove(drv1alpha1.ConditionReconciling)
		p.conds.True(drv1alpha1.ConditionReady, ReasonFailedOver, p.failedOverMessage())
	case ready:
		p.conds.Remove(drv1alpha1.ConditionStalled)
		p.conds.Remove(drv1alpha1.ConditionReconciling)
		msg := fmt.Sprintf("%s and %s back each other up; backup is in sync both ways", p.pp.Spec.Primary.FQDN, p.pp.Spec.Backup.FQDN)
		if n := len(st.NextSteps); n > 0 {
			msg += fmt.Sprintf("; %d documented step(s) left for the administrator, listed in status.nextSteps", n)
		}
		p.conds.True(drv1alpha1.ConditionReady, ReasonSynced, msg)
	default:
		reason, msg := p.progressReason, p.progressMessage
		if c := conditions.Get(st.Conditions, drv1alpha1.ConditionAgentsReachable); reason == "" && agentsDown {
			reason, msg = c.Reason, c.Message
		}
		if reason == "" {
			reason, msg = ReasonPending, "waiting for the next observation"
		}
		p.conds.Remove(drv1alpha1.ConditionStalled)
		p.conds.True(drv1alpha1.ConditionReconciling, reason, msg)
		p.conds.False(drv1alpha1.ConditionReady, reason, msg)
	}
	p.announceTransitions()
}

// checkRetries stalls a pair whose step failed too often, or failed in a way no retry fixes; the
// requested-at annotation resets it.
func (p *pass) checkRetries() {
	howTo := fmt.Sprintf("; fix the cause, then retry with: kubectl annotate poolpair -n %s %s %s=\"$(date +%%s)\" --overwrite",
		p.pp.Namespace, p.pp.Name, drv1alpha1.RequestedAtAnnotation)
	for _, s := range allSlots(p.pp) {
		if *s.operation != nil || s.manualRetry {
			continue // a failover step's failure is reported by the failover itself
		}
		last := *s.lastOperation
		if refused := s.refusedForGood(); refused != nil {
			p.stall(ReasonStepFailed, fmt.Sprintf("%s on %s failed, and the agent of %s says trying again will not help: %s%s",
				refused.Kind, refused.Target, refused.Server, refused.Message, howTo))
			continue
		}
		if p.r.Backoff.Exhausted(*s.failedAttempts) && !s.untilSyncTimeout {
			what := "a step"
			if last != nil {
				what = fmt.Sprintf("%s on %s", last.Kind, last.Target)
			}
			msg := fmt.Sprintf("%s failed %d times in a row", what, *s.failedAttempts)
			if last != nil && last.State == string(protocol.StateSucceeded) {
				msg = fmt.Sprintf("%s succeeded %d times in a row without its effect showing", what, *s.failedAttempts)
			}
			if last != nil && last.Message != "" {
				msg += ": " + last.Message
			}
			p.stall(ReasonRetriesExhausted, msg+howTo)
		}
	}
}

func (p *pass) reportMilestones(m pairing.Milestones) {
	st := &p.pp.Status
	pri, bak := p.pp.Spec.Primary.FQDN, p.pp.Spec.Backup.FQDN

	if failures := p.obs.failures(); len(failures) > 0 {
		p.conds.False(drv1alpha1.ConditionAgentsReachable, ReasonAgentsUnreachable, "no answer from "+strings.Join(failures, "; "))
	} else {
		p.conds.True(drv1alpha1.ConditionAgentsReachable, ReasonAgentsReachable, fmt.Sprintf("the agents of both pools and %d servers answered", len(p.obs.Servers)))
	}

	switch {
	case m.TopologyPublished:
		p.conds.True(drv1alpha1.ConditionTopologyPublished, "Paired", fmt.Sprintf("%s and %s name each other as backup pool in the published topology", pri, bak))
	case p.pp.Spec.Topology.PublishedBy == drv1alpha1.TopologyPublishedByAdministrator:
		p.conds.False(drv1alpha1.ConditionTopologyPublished, StepWaitingForAdministrator, p.pairingMessage()+"; "+administratorPairingSteps(pri, bak))
	default:
		p.conds.False(drv1alpha1.ConditionTopologyPublished, "NotPaired", p.pairingMessage())
	}

	var notBootstrapped, rebootWait, notRunning, stale []string
	for _, s := range st.Servers {
		if !s.Bootstrapped {
			notBootstrapped = append(notBootstrapped, s.FQDN)
		}
		if s.RebootRequired {
			rebootWait = append(rebootWait, s.FQDN)
		}
		switch {
		case s.BackupService != protocol.ServiceRunning:
			notRunning = append(notRunning, fmt.Sprintf("%s (%s)", s.FQDN, orUnknown(s.BackupService)))
		case p.staleService[s.FQDN]:
			stale = append(stale, s.FQDN)
		}
	}
	n := len(st.Servers)
	switch {
	case m.Bootstrapped:
		p.conds.True(drv1alpha1.ConditionBootstrapped, "AllServersBootstrapped", fmt.Sprintf("Bootstrapper.exe succeeded on all %d Front End servers after the pairing was published", n))
	case len(rebootWait) > 0:
		p.conds.False(drv1alpha1.ConditionBootstrapped, StepWaitingForReboot, fmt.Sprintf("%d of %d servers bootstrapped since the pairing was published; %s", n-len(notBootstrapped), n, rebootMessage(rebootWait)))
	default:
		p.conds.False(drv1alpha1.ConditionBootstrapped, "NotBootstrapped", fmt.Sprintf("%d of %d servers bootstrapped since the pairing was published; not yet: %s", n-len(notBootstrapped), n, listOrNone(notBootstrapped)))
	}
	switch {
	case m.BackupServiceRunning:
		p.conds.True(drv1alpha1.ConditionBackupServiceRunning, "Running", fmt.Sprintf("LYNCBACKUP runs on all %d Front End servers", n))
	case len(notRunning) == 0 && len(stale) > 0:
		p.conds.False(drv1alpha1.ConditionBackupServiceRunning, "NeedsRestart", fmt.Sprintf("LYNCBACKUP runs on all %d servers, but on %s it started before the server was bootstrapped for this pairing and still serves the old partner until it is restarted", n, strings.Join(stale, ", ")))
	default:
		p.conds.False(drv1alpha1.ConditionBackupServiceRunning, "NotRunning", fmt.Sprintf("LYNCBACKUP runs on %d of %d servers; not on: %s", n-len(notRunning), n, listOrNone(notRunning)))
	}

	switch {
	case m.BackupSynced:
		p.conds.True(drv1alpha1.ConditionBackupSynced, "Synced", fmt.Sprintf("backup healthy in both directions for at least %s", p.stableFor()))
	case len(st.Backup) == 0:
		p.conds.False(drv1alpha1.ConditionBackupSynced, "NotPaired", "no backup relationship yet")
	default:
		var why []string
		for _, d := range st.Backup {
			if d.Healthy {
				why = append(why, fmt.Sprintf("%s -> %s healthy since %s", d.From, d.To, d.StableSince.UTC().Format(time.RFC3339)))
			} else {
				why = append(why, fmt.Sprintf("%s -> %s: %s", d.From, d.To, d.Message))
			}
		}
		p.conds.False(drv1alpha1.ConditionBackupSynced, "NotSynced", strings.Join(why, "; "))
	}
}

func (p *pass) pairingMessage() string {
	var parts []string
	for _, pool := range p.obs.pools() {
		switch {
		case !pool.ok():
			parts = append(parts, fmt.Sprintf("%s: unknown (agent did not answer)", pool.FQDN))
		case pool.Pool.BackupPool == "":
			parts = append(parts, fmt.Sprintf("%s names no backup pool", pool.FQDN))
		default:
			parts = append(parts, fmt.Sprintf("%s names %s as backup pool", pool.FQDN, pool.Pool.BackupPool))
		}
	}
	return strings.Join(parts, "; ")
}

// announceTransitions emits one event per condition that flipped in this pass.
func (p *pass) announceTransitions() {
	type transition struct{ gained, lost string }
	watched := map[string]transition{
		drv1alpha1.ConditionTopologyPublished:    {"TopologyPublished", "PairingLost"},
		drv1alpha1.ConditionBootstrapped:         {"Bootstrapped", "BootstrapLost"},
		drv1alpha1.ConditionBackupServiceRunning: {"BackupServiceRunning", "BackupServiceStopped"},
		drv1alpha1.ConditionBackupSynced:         {"Synced", "BackupSyncLost"},
		drv1alpha1.ConditionAgentsReachable:      {"AgentsReachable", "AgentsUnreachable"},
	}
	for _, t := range []string{drv1alpha1.ConditionTopologyPublished, drv1alpha1.ConditionBootstrapped,
		drv1alpha1.ConditionBackupServiceRunning, drv1alpha1.ConditionBackupSynced, drv1alpha1.ConditionAgentsReachable} {
		now := conditions.Get(p.pp.Status.Conditions, t)
		if now == nil {
			continue
		}
		was := conditions.Get(p.before, t)
		switch {
		case now.Status == metav1.ConditionTrue && (was == nil || was.Status != metav1.ConditionTrue):
			if t != drv1alpha1.ConditionAgentsReachable || was != nil {
				p.event(eventNormal, watched[t].gained, "Observe", "%s", now.Message)
			}
		case now.Status == metav1.ConditionFalse && was != nil && was.Status == metav1.ConditionTrue,
			t == drv1alpha1.ConditionAgentsReachable && now.Status == metav1.ConditionFalse && was == nil:
			p.event(eventWarning, watched[t].lost, "Observe", "%s", now.Message)
		}
	}
	stalled := conditions.Get(p.pp.Status.Conditions, drv1alpha1.ConditionStalled)
	if was := conditions.Get(p.before, drv1alpha1.ConditionStalled); stalled != nil && (was == nil || was.Reason != stalled.Reason) {
		p.event(eventWarning, stalled.Reason, "Stall", "%s", stalled.Message)
	}
}

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
