package controllers

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// reconcileDelete carries out the deletion policy. Retain touches nothing. Unpair removes the
// backup association (only between these two pools, never a third pool's) and keeps the finalizer
// until the topology shows it gone; while an agent cannot be reached, a condition says why and how
// to let go.
func (p *pass) reconcileDelete(ctx context.Context) error {
	pp, st := p.pp, &p.pp.Status
	p.before = append(p.before[:0], st.Conditions...)
	st.Phase = drv1alpha1.PhaseDeleting
	if pp.Spec.DeletionPolicy != drv1alpha1.DeletionPolicyUnpair {
		p.released = true
		return nil
	}
	// A PoolPair that never held its pools must not unpair them from under their owner.
	if other, _, err := p.r.claimedBy(ctx, pp); err != nil {
		return err
	} else if other != nil {
		p.released = true
		return nil
	}
	letGo := fmt.Sprintf("to delete without unpairing: kubectl patch poolpair -n %s %s --type merge -p '{\"spec\":{\"deletionPolicy\":\"Retain\"}}'", pp.Namespace, pp.Name)
	if !p.connect(ctx) {
		p.blocked(fmt.Sprintf("cannot unpair: %s; %s", p.stalled.Message, letGo))
		return nil
	}
	if p.track(ctx, pairSlot(pp)) {
		p.deleting(StepUnpairing, fmt.Sprintf("Unpairing %s and %s", pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN))
		return nil
	}
	// Finished server steps first, so the observation that follows sees their effect.
	for i := range st.Servers {
		p.track(ctx, serverSlot(&st.Servers[i]))
	}

	obs := observe(ctx, p.agents, pp)
	p.obs = obs
	p.updateServers()
	for _, pool := range obs.pools() {
		if !pool.ok() && !pool.notFound() {
			p.wantRequeue(p.r.UnreachableRetry)
			p.blocked(fmt.Sprintf("cannot unpair: the agent of pool %s at %s does not answer (%s); the finalizer stays until it does; %s",
				pool.FQDN, pool.Endpoint, shortError(pool.Err), letGo))
			return nil
		}
	}
	pairedWithUs := func(pool *poolObservation) bool {
		return pool.ok() && protocol.SameFQDN(pool.Pool.BackupPool, pool.Partner)
	}
	if !pairedWithUs(&obs.Primary) && !pairedWithUs(&obs.Backup) {
		p.released = !p.restartAfterUnpair(ctx, letGo)
		return nil
	}
	if f := st.Failover; f != nil && usersMayHaveMoved(f) && st.Operation == nil {
		// Unpairing would take away the backup pool the failed-over users sign in to.
		p.blocked(fmt.Sprintf("%s's users are failed over to %s: Unpair would remove the pairing they depend on; fail them back first (Invoke-CsPoolFailBack -PoolFqdn %s), or %s",
			f.Pool, f.SurvivingPool, f.Pool, letGo))
		return nil
	}
	msg := fmt.Sprintf("Unpairing %s and %s", pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN)
	if st.Operation == nil {
		if on, ok := p.poolServer(pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN); ok {
			p.intend(pairSlot(pp), protocol.KindUnpair, protocol.PairTarget(pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN), on,
				protocol.UnpairParams{PrimaryFQDN: pp.Spec.Primary.FQDN, BackupFQDN: pp.Spec.Backup.FQDN}, msg)
			p.launch(ctx)
		} else {
			p.waiting = "no Front End server of either pool answered to run it on"
			p.wantRequeue(p.r.UnreachableRetry)
		}
	}
	if p.r.Backoff.Exhausted(st.FailedAttempts) || pairSlot(pp).refusedForGood() != nil {
		p.blocked(fmt.Sprintf("Unpair failed %d times: %s; retry with the %s annotation, or %s", st.FailedAttempts, lastMessage(st.LastOperation), drv1alpha1.RequestedAtAnnotation, letGo))
		return nil
	}
	p.deleting(StepUnpairing, p.orWaiting(msg, st.Operation != nil))
	return nil
}

// restartAfterUnpair restarts LYNCBACKUP on every server where it has run since before the Unpair
// this PoolPair carried out: a running service keeps the partner it loaded at its start, and
// Microsoft's procedure stops and starts it after a pairing is removed (Lync Server 2013 "Front
// End pool ABC failover procedure", step 24). It reports whether that is still under way.
func (p *pass) restartAfterUnpair(ctx context.Context, letGo string) bool {
	st := &p.pp.Status
	unpaired := st.LastOperation
	if unpaired == nil || unpaired.Kind != string(protocol.KindUnpair) || unpaired.State != string(protocol.StateSucceeded) || unpaired.Finished == nil {
		// Not unpaired by this PoolPair (out of band, or never paired): nothing of ours to restart.
		return false
	}
	var restarting, unreachable []string
	for i := range st.Servers {
		s := &st.Servers[i]
		switch {
		case s.Operation != nil:
			restarting = append(restarting, s.FQDN)
		case !s.Reachable:
			unreachable = append(unreachable, s.FQDN)
		case s.BackupService != protocol.ServiceRunning || s.BackupServiceStarted == nil || s.BackupServiceStarted.After(unpaired.Finished.Time),
			restartedSince(s, unpaired.Finished):
			// Not running, started after the Unpair finished, or restarted by us since. Status
			// times have second precision: a start in the Unpair's last second is taken as before
			// it, and our own restart's record is what keeps it from running twice.
		case p.r.Backoff.Exhausted(s.FailedAttempts) || serverSlot(s).refusedForGood() != nil:
			p.blocked(fmt.Sprintf("restarting LYNCBACKUP on %s after unpairing failed %d times: %s; restart it by hand (Stop-CsWindowsService -Name LYNCBACKUP; Start-CsWindowsService -Name LYNCBACKUP), then retry with the %s annotation, or %s",
				s.FQDN, s.FailedAttempts, lastMessage(s.LastOperation), drv1alpha1.RequestedAtAnnotation, letGo))
			return true
		case p.intend(serverSlot(s), protocol.KindRestartBackupService, s.FQDN, agentServer{FQDN: s.FQDN, Endpoint: p.serverEndpoint(s.FQDN)}, nil,
			fmt.Sprintf("Restarting LYNCBACKUP on %s: it still serves the pairing removed by Unpair", s.FQDN)):
			restarting = append(restarting, s.FQDN)
		default:
			restarting = append(restarting, s.FQDN) // waits for its backoff
		}
	}
	p.launch(ctx)
	if len(unreachable) > 0 {
		p.wantRequeue(p.r.UnreachableRetry)
		p.blocked(fmt.Sprintf("unpaired; cannot tell whether LYNCBACKUP must be restarted on %s: the agent does not answer; the finalizer stays until it does (or restart LYNCBACKUP there by hand); %s",
			strings.Join(unreachable, ", "), letGo))
		return true
	}
	if len(restarting) == 0 {
		return false
	}
	p.wantRequeue(p.r.UnreachableRetry)
	p.deleting(StepRestartingBackupService, p.orWaiting(fmt.Sprintf("unpaired; restarting LYNCBACKUP on %s, as Microsoft's procedure does after a pairing is removed", strings.Join(restarting, ", ")), false))
	return true
}

// restartedSince says whether the server's last operation is a RestartBackupService that
// succeeded and was started at t or later.
func restartedSince(s *drv1alpha1.ServerStatus, t *metav1.Time) bool {
	op := s.LastOperation
	return op != nil && op.Kind == string(protocol.KindRestartBackupService) && op.State == string(protocol.StateSucceeded) &&
		op.Started != nil && !op.Started.Before(t)
}

func (p *pass) deleting(reason, msg string) {
	p.conds.Remove(drv1alpha1.ConditionStalled)
	p.conds.True(drv1alpha1.ConditionReconciling, reason, msg)
	p.conds.False(drv1alpha1.ConditionReady, ReasonDeleting, msg)
}

func (p *pass) blocked(msg string) {
	p.conds.Remove(drv1alpha1.ConditionReconciling)
	p.conds.True(drv1alpha1.ConditionStalled, ReasonUnpairBlocked, msg)
	p.conds.False(drv1alpha1.ConditionReady, ReasonUnpairBlocked, msg)
	if was := p.before; was == nil || !hasReason(was, drv1alpha1.ConditionStalled, ReasonUnpairBlocked) {
		p.event(eventWarning, ReasonUnpairBlocked, "Unpair", "%s", msg)
	}
}

func hasReason(conds []metav1.Condition, t, reason string) bool {
	for _, c := range conds {
		if c.Type == t && c.Reason == reason {
			return true
		}
	}
	return false
}

func lastMessage(op *drv1alpha1.OperationStatus) string {
	if op == nil {
		return "no message"
	}
	return op.Message
}
