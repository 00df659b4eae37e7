package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/metrics"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// slot is where one target's step lives in status: the pair-level fields for the topology writes
// (PairPools, Unpair), a servers[] entry for Bootstrap and StartBackupService, a backup[] entry for
// the forced sync of that direction. The operation in flight and the retry counters are the only
// memory the controller keeps: observation cannot tell them.
type slot struct {
	name            string
	operation       **drv1alpha1.OperationStatus
	lastOperation   **drv1alpha1.OperationStatus
	failedAttempts  *int32
	lastFailureTime **metav1.MicroTime
	// untilSyncTimeout: the slot's failures are paced by the backoff but never exhaust it; a
	// forced sync is retried until the direction is healthy, and spec.sync.timeout stalls it.
	untilSyncTimeout bool
	// manualRetry: a failure is never retried on its own; the requested-at annotation retries
	// it. The failover cmdlets are not idempotent.
	manualRetry bool
}

func pairSlot(pp *drv1alpha1.PoolPair) slot {
	st := &pp.Status
	return slot{name: "pair", operation: &st.Operation, lastOperation: &st.LastOperation, failedAttempts: &st.FailedAttempts, lastFailureTime: &st.LastFailureTime}
}

func serverSlot(s *drv1alpha1.ServerStatus) slot {
	return slot{name: s.FQDN, operation: &s.Operation, lastOperation: &s.LastOperation, failedAttempts: &s.FailedAttempts, lastFailureTime: &s.LastFailureTime}
}

func directionSlot(d *drv1alpha1.BackupDirectionStatus) slot {
	// A failing forced sync (an export in ErrorState, LS Backup Service event 4069) is retried
	// until the direction is healthy; spec.sync.timeout, not the retry limit, stalls it.
	return slot{name: "sync " + d.From, operation: &d.Operation, lastOperation: &d.LastOperation, failedAttempts: &d.FailedAttempts, lastFailureTime: &d.LastFailureTime,
		untilSyncTimeout: true}
}

// allSlots lists every slot of the PoolPair's status.
func allSlots(pp *drv1alpha1.PoolPair) []slot {
	st := &pp.Status
	slots := []slot{pairSlot(pp)}
	for i := range st.Servers {
		slots = append(slots, serverSlot(&st.Servers[i]))
	}
	for i := range st.Backup {
		slots = append(slots, directionSlot(&st.Backup[i]))
	}
	if st.Failover != nil {
		slots = append(slots, failoverSlot(st.Failover))
	}
	return slots
}

func (s slot) inFlight() *drv1alpha1.OperationStatus { return *s.operation }

// sequence is the last sequence the slot used.
func (s slot) sequence() int64 {
	var seq int64
	for _, op := range []*drv1alpha1.OperationStatus{*s.operation, *s.lastOperation} {
		if op != nil {
			seq = max(seq, op.Sequence)
		}
	}
	return seq
}

// resetFailures forgets the slot's failures: its step's effect was observed.
func (s slot) resetFailures() {
	*s.failedAttempts, *s.lastFailureTime = 0, nil
}

// refusedForGood is the last failure of the slot when the agent said a retry cannot help.
func (s slot) refusedForGood() *drv1alpha1.OperationStatus {
	last := *s.lastOperation
	if *s.failedAttempts > 0 && *s.operation == nil && last != nil && last.State == string(protocol.StateFailed) && !last.Retryable {
		return last
	}
	return nil
}

// agentServer is the Front End server whose agent runs a step.
type agentServer struct {
	FQDN, Endpoint string
}

// intent is a step recorded in status (Starting) whose request is sent once the record is written.
type intent struct {
	s    slot
	op   *drv1alpha1.OperationStatus
	note string
	// release gives back the topology writer slot if the step does not start after all.
	release func()
}

// retryAt is when the slot may start its next step, and whether it may not start at all until a
// human steps in (retries exhausted, or a failure no retry fixes).
func (p *pass) retryAt(s slot) (time.Time, bool) {
	failures := *s.failedAttempts
	if failures == 0 || *s.lastFailureTime == nil {
		return time.Time{}, false
	}
	if s.manualRetry || p.r.Backoff.Exhausted(failures) && !s.untilSyncTimeout || s.refusedForGood() != nil {
		return time.Time{}, true
	}
	return (*s.lastFailureTime).Add(p.r.Backoff.Delay(failures, string(p.pp.UID)+"/"+s.name)), false
}

// countIneffective counts a step that succeeded but whose effect did not follow as a failure, so
// that asking again is paced by the backoff instead of running in a hot loop. Each such success
// counts once.
func (p *pass) countIneffective(s slot, kind protocol.OperationKind, target string) {
	if kind == protocol.KindBootstrap && p.rebooted[target] {
		// The run asked for a restart and a second run: this is that run, not a repeat.
		return
	}
	last := *s.lastOperation
	if last == nil || last.Kind != string(kind) || last.Target != target || last.State != string(protocol.StateSucceeded) || last.EffectNotObserved {
		return
	}
	last.EffectNotObserved = true
	*s.failedAttempts++
	now := metav1.NewMicroTime(p.now.Truncate(time.Microsecond))
	*s.lastFailureTime = &now
}

// intend records kind on target, to run on server, as the slot's operation in state Starting,
// unless backoff says wait. The request is sent by launch, after the record is written. It
// reports whether the step is now in flight.
func (p *pass) intend(s slot, kind protocol.OperationKind, target string, on agentServer, params any, note string) bool {
	if kind != protocol.KindSyncBackup && !s.manualRetry {
		// Forced syncs are paced by spec.sync.checkInterval and stalled by spec.sync.timeout; a
		// failover step is never repeated on its own.
		p.countIneffective(s, kind, target)
	}
	if at, blocked := p.retryAt(s); blocked {
		return false
	} else if p.now.Before(at) {
		p.wantRequeue(at.Sub(p.now))
		p.waiting = fmt.Sprintf("retrying %s on %s at %s after %d failed attempts", kind, target, at.UTC().Format(time.RFC3339), *s.failedAttempts)
		return false
	}
	var raw []byte
	if params != nil {
		var err error
		if raw, err = json.Marshal(params); err != nil {
			p.stall(ReasonStepRefused, fmt.Sprintf("encoding %s parameters: %v", kind, err))
			return false
		}
	}
	var release func()
	var cms string
	if isTopologyChange(kind) {
		cms = p.cmsPool()
		if _, ok := p.r.writers.acquire(cms, p.key()); !ok {
			// Not naming the holder keeps the message, and so the status, unchanged while the
			// queue moves: a waiting PoolPair costs no writes. It is woken when its turn comes.
			p.waiting = fmt.Sprintf("%s waits for another PoolPair's topology write to finish (one at a time per Central Management Store; this deployment's is on %s)", kind, orUnknown(cms))
			p.wantRequeue(p.r.OperationPollInterval)
			return false
		}
		release = func() { p.r.writers.release(cms, p.key()) }
	}
	seq := pairing.NextSequence(s.sequence(), p.now)
	started := stamp(p.now)
	op := &drv1alpha1.OperationStatus{
		Kind: string(kind), ID: pairing.OperationID(string(p.pp.UID), string(kind), target, seq), Target: target,
		Server: on.FQDN, Endpoint: on.Endpoint, Sequence: seq, Params: string(raw), CMSPool: cms,
		State: drv1alpha1.OperationStateStarting, Attempt: *s.failedAttempts, Started: &started,
	}
	*s.operation = op
	p.intents = append(p.intents, intent{s: s, op: op, note: note, release: release})
	return true
}

// launch writes the Starting records, then sends their requests. When the write loses the
// optimistic-lock race nothing is sent: another pass wrote first, and the next pass decides
// afresh from what it wrote.
func (p *pass) launch(ctx context.Context) {
	if len(p.intents) == 0 {
		return
	}
	intents := p.intents
	p.intents = nil
	if err := p.commit(ctx); err != nil {
		for _, in := range intents {
			if in.release != nil {
				in.release()
			}
		}
		p.aborted = err
		return
	}
	for _, in := range intents {
		p.send(ctx, in.s, in.note, true)
	}
}

// send sends the request of the slot's Starting operation, to the server it was recorded for,
// once that server's agent has said it is that server. fresh is true in the pass that recorded it:
// then a refusal means the request never reached any agent, and the record is dropped.
func (p *pass) send(ctx context.Context, s slot, note string, fresh bool) {
	op := s.inFlight()
	drop := func() {
		*s.operation = nil
		if op.CMSPool != "" {
			p.r.writers.release(op.CMSPool, p.key())
		}
	}
	if err := p.confirmServer(ctx, op.Server, op.Endpoint, fresh); err != nil {
		p.waiting = fmt.Sprintf("could not start %s on %s: %s", op.Kind, op.Target, shortError(err))
		p.wantRequeue(p.r.UnreachableRetry)
		if fresh {
			drop()
		}
		return
	}
	req := protocol.OperationRequest{ID: op.ID, Kind: protocol.OperationKind(op.Kind)}
	if op.Params != "" {
		req.Params = json.RawMessage(op.Params)
	}
	got, err := p.agents.StartOperation(ctx, op.Endpoint, req)
	if running := agentclient.InFlight(err); running != nil && running.Kind == req.Kind && protocol.SameFQDN(running.Target, op.Target) {
		// The agent already runs this step under another id (started before a wipe, by another
		// manager, or by hand): track that one instead of starting a second.
		p.adopt(s, *running, agentServer{FQDN: op.Server, Endpoint: op.Endpoint}, "adopted: "+shortError(err))
		return
	}
	switch {
	case errors.Is(err, agentclient.ErrConflict):
		// Something else holds the target (another topology write on that server): our request
		// was not taken. Wait for it.
		drop()
		p.waiting = fmt.Sprintf("%s on %s waits for another operation on %s to finish: %s", op.Kind, op.Target, op.Server, shortError(err))
		p.wantRequeue(p.r.UnreachableRetry)
		return
	case errors.Is(err, agentclient.ErrInvalid):
		drop()
		p.stall(ReasonStepRefused, fmt.Sprintf("the agent of %s at %s refused %s: %s", op.Server, op.Endpoint, op.Kind, shortError(err)))
		return
	case err != nil:
		// Unknown whether the agent took it: keep the record and send the same request again.
		p.wantRequeue(p.r.UnreachableRetry)
		p.waiting = fmt.Sprintf("could not start %s on %s: %s", op.Kind, op.Target, shortError(err))
		return
	}
	op.State, op.Message = string(got.State), got.Message
	if got.Started != nil {
		started := stamp(*got.Started)
		op.Started = &started
	}
	if got.State.Done() {
		// The agent finished it before this pass learnt it had started (a restart between the
		// request and its answer): record the outcome.
		p.finish(s, got, true)
		p.wantRequeue(time.Millisecond)
		return
	}
	if note != "" {
		p.event(eventNormal, op.Kind+"Started", stepAction(op.Kind, op.Target), "%s", note)
	}
	p.r.watcher.watch(p.key(), p.agents, op.Endpoint, op.ID)
	p.wantRequeue(p.r.OperationPollInterval)
}

// confirmServer makes sure the agent at endpoint runs on server before a request goes there. In the
// pass that recorded the step, this pass's observation already heard the agent at that endpoint
// name itself (GET /v1/server): asking again would only cost a round trip.
func (p *pass) confirmServer(ctx context.Context, server, endpoint string, fresh bool) error {
	if fresh && p.obs != nil {
		for _, o := range p.obs.Servers {
			if o.Err == nil && o.Endpoint == endpoint && protocol.SameFQDN(o.FQDN, server) {
				return nil
			}
		}
	}
	return p.checkIdentity(ctx, server, endpoint)
}

// checkIdentity makes sure the agent at endpoint runs on server: a DNS name or load balancer that
// hands the connection to another server is detected, never trusted with an operation.
func (p *pass) checkIdentity(ctx context.Context, server, endpoint string) error {
	info, err := p.agents.Info(ctx, endpoint)
	if err != nil {
		return err
	}
	if !protocol.SameFQDN(info.ServerFQDN, server) {
		return fmt.Errorf("the agent at %s answered as server %q, not %s", endpoint, info.ServerFQDN, server)
	}
	return nil
}

// adopt records an operation the agent on server is already running as the slot's operation.
func (p *pass) adopt(s slot, a protocol.ActiveOperation, on agentServer, message string) {
	prev := s.inFlight()
	if prev != nil && prev.ID == a.ID {
		return
	}
	op := &drv1alpha1.OperationStatus{
		Kind: string(a.Kind), ID: a.ID, Target: a.Target, Server: on.FQDN, Endpoint: on.Endpoint,
		State: string(a.State), Attempt: *s.failedAttempts, Message: message,
	}
	switch {
	case prev != nil:
		// Keep our sequence so the slot's next id is still above it; our record was not taken.
		op.Sequence, op.CMSPool, op.Params = prev.Sequence, prev.CMSPool, prev.Params
	case a.Kind == protocol.KindPairPools || a.Kind == protocol.KindUnpair:
		// A topology write found running holds its deployment's writer slot until it ends.
		op.CMSPool = p.cmsPool()
		p.r.writers.acquire(op.CMSPool, p.key())
	}
	started := stamp(p.now)
	if a.Started != nil {
		started = stamp(*a.Started)
	}
	op.Started = &started
	*s.operation = op
	p.r.watcher.watch(p.key(), p.agents, on.Endpoint, a.ID)
	p.wantRequeue(p.r.OperationPollInterval)
}

// track follows the slot's operation: a Starting one is sent (again), an accepted one is read
// without waiting and, when it has finished, its outcome recorded. It reports whether an operation
// is still in flight.
func (p *pass) track(ctx context.Context, s slot) bool {
	op := s.inFlight()
	if op == nil {
		return false
	}
	if op.State == drv1alpha1.OperationStateStarting {
		// Recorded, but perhaps never sent (the manager stopped in between): send the same
		// request; the agent answers with the operation if it already has it.
		p.send(ctx, s, "", false)
		return s.inFlight() != nil
	}
	got, err := p.agents.Operation(ctx, op.Endpoint, op.ID)
	if errors.Is(err, agentclient.ErrNotFound) {
		// A record without a server comes from a manager that sent pool-level steps to a pool's
		// address: whichever server answers there may not be the one that has it.
		if idErr := p.checkIdentity(ctx, op.Server, op.Endpoint); idErr != nil && op.Server != "" {
			// Another server answered at that address: ours is unknown from here.
			err = idErr
		} else {
			// The server's own agent lost its journal (reinstalled): the step's fate is
			// unknown, so try again.
			p.finish(s, protocol.Operation{ID: op.ID, Kind: protocol.OperationKind(op.Kind), State: protocol.StateFailed,
				Message: "the agent of " + op.Server + " " + lostOperation, Retryable: true, OutcomeUnknown: true}, true)
			return false
		}
	}
	if err != nil {
		// Unreachable: it keeps running (or not) over there; the observation reports the agent.
		p.wantRequeue(p.r.UnreachableRetry)
		return true
	}
	if !got.State.Done() {
		op.State = string(got.State)
		op.Message = got.Message
		p.r.watcher.watch(p.key(), p.agents, op.Endpoint, op.ID)
		p.wantRequeue(p.r.OperationPollInterval)
		return true
	}
	p.finish(s, got, true)
	return false
}

// finish records a finished operation: the last operation, the retry counters, one event, metrics.
// Failures reset only when the step's effect is observed (see settleFailures).
func (p *pass) finish(s slot, got protocol.Operation, announce bool) {
	op := s.inFlight()
	if op == nil {
		op = &drv1alpha1.OperationStatus{ID: got.ID, Kind: string(got.Kind)}
	}
	if op.CMSPool != "" {
		p.r.writers.release(op.CMSPool, p.key())
	}
	done := op.DeepCopy()
	done.State = string(got.State)
	done.Message = got.Message
	done.Retryable = got.Retryable
	done.OutcomeUnknown = got.OutcomeUnknown
	finished := stamp(p.now)
	if got.Finished != nil {
		finished = stamp(*got.Finished)
	}
	done.Finished = &finished
	*s.operation = nil
	*s.lastOperation = done
	if got.State != protocol.StateSucceeded {
		*s.failedAttempts++
		// Microseconds, not seconds: the backoff is computed from it after it is read back.
		now := metav1.NewMicroTime(p.now.Truncate(time.Microsecond))
		*s.lastFailureTime = &now
	}
	if !announce {
		return
	}
	outcome := "succeeded"
	if got.State != protocol.StateSucceeded {
		outcome = "failed"
		reason := "Failed"
		if got.Retryable {
			reason = "Retryable"
		}
		metrics.StepFailures.WithLabelValues(done.Kind, reason).Inc()
	}
	if done.Started != nil {
		metrics.StepDuration.WithLabelValues(done.Kind, outcome).Observe(finished.Sub(done.Started.Time).Seconds())
	}
	if got.State == protocol.StateSucceeded {
		p.event(eventNormal, done.Kind+"Succeeded", stepAction(done.Kind, done.Target), "%s on %s succeeded", done.Kind, done.Target)
	} else {
		p.event(eventWarning, done.Kind+"Failed", stepAction(done.Kind, done.Target), "%s on %s failed (attempt %d): %s", done.Kind, done.Target, done.Attempt+1, got.Message)
	}
}

// lostOperation ends the message of a step whose agent no longer knows it (its journal is gone):
// whether it still runs over there is unknown.
const lostOperation = "no longer knows this operation"

// isTopologyChange: the step changes the deployment as a whole (the topology, the Central
// Management store, who serves a pool's users). Those of one deployment run one at a time.
func isTopologyChange(kind protocol.OperationKind) bool {
	switch kind {
	case protocol.KindPairPools, protocol.KindUnpair, protocol.KindFailoverCMS, protocol.KindMoveEdgeNextHop, protocol.KindFailoverPool, protocol.KindFailbackPool:
		return true
	}
	return false
}

// stepAction names the step and its target: the events API merges events with the same action and
// reason into one series, and each server's step is its own event.
func stepAction(kind, target string) string { return kind + " " + target }
