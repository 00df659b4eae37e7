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

// slot is where one target's step lives in status: the pool-level fields for PairPools, SyncBackup
// and Unpair, a servers[] entry for Bootstrap and StartBackupService. The operation in flight and
// the retry counters are the only memory the controller keeps: observation cannot tell them.
type slot struct {
	target          string
	operation       **drv1alpha1.OperationStatus
	lastOperation   **drv1alpha1.OperationStatus
	failedAttempts  *int32
	lastFailureTime **metav1.MicroTime
}

func poolSlot(pp *drv1alpha1.PoolPair) slot {
	st := &pp.Status
	return slot{target: "pool", operation: &st.Operation, lastOperation: &st.LastOperation, failedAttempts: &st.FailedAttempts, lastFailureTime: &st.LastFailureTime}
}

func serverSlot(s *drv1alpha1.ServerStatus) slot {
	return slot{target: s.FQDN, operation: &s.Operation, lastOperation: &s.LastOperation, failedAttempts: &s.FailedAttempts, lastFailureTime: &s.LastFailureTime}
}

func (s slot) inFlight() *drv1alpha1.OperationStatus { return *s.operation }

// retryAt is when the slot may start its next step, and whether its retries are exhausted.
func (p *pass) retryAt(s slot) (time.Time, bool) {
	failures := *s.failedAttempts
	if failures == 0 || *s.lastFailureTime == nil {
		return time.Time{}, false
	}
	if p.r.Backoff.Exhausted(failures) {
		return time.Time{}, true
	}
	return (*s.lastFailureTime).Add(p.r.Backoff.Delay(failures, string(p.pp.UID)+"/"+s.target)), false
}

// track reads the operation in flight in s without waiting and, when it has finished, records the
// outcome. It reports whether an operation is still in flight.
func (p *pass) track(ctx context.Context, s slot) bool {
	op := s.inFlight()
	if op == nil {
		return false
	}
	got, err := p.agents.Operation(ctx, op.Endpoint, op.ID)
	switch {
	case errors.Is(err, agentclient.ErrNotFound):
		// The agent lost its journal (reinstalled): the step's fate is unknown, so try again.
		p.finish(s, protocol.Operation{ID: op.ID, Kind: protocol.OperationKind(op.Kind), State: protocol.StateFailed,
			Message: "the agent no longer knows this operation", Retryable: true}, true)
		return false
	case err != nil:
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
// announce is false for an operation adopted from before a restart or a wiped status, which
// already had its events.
func (p *pass) finish(s slot, got protocol.Operation, announce bool) {
	op := s.inFlight()
	if op == nil {
		op = &drv1alpha1.OperationStatus{ID: got.ID, Kind: string(got.Kind)}
	}
	done := op.DeepCopy()
	done.State = string(got.State)
	done.Message = got.Message
	finished := stamp(p.now)
	if got.Finished != nil {
		finished = stamp(*got.Finished)
	}
	done.Finished = &finished
	*s.operation = nil
	*s.lastOperation = done
	if got.State == protocol.StateSucceeded {
		*s.failedAttempts = 0
		*s.lastFailureTime = nil
	} else if announce {
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

// start starts kind on target through the agent at endpoint, unless backoff says wait. It reports
// whether the step is now in flight.
func (p *pass) start(ctx context.Context, s slot, kind protocol.OperationKind, target, endpoint string, params any, note string) bool {
	if at, exhausted := p.retryAt(s); exhausted {
		return false
	} else if p.now.Before(at) {
		p.wantRequeue(at.Sub(p.now))
		p.waiting = fmt.Sprintf("retrying %s on %s at %s after %d failed attempts", kind, target, at.UTC().Format(time.RFC3339), *s.failedAttempts)
		return false
	}
	var attempt int32
	if last := *s.lastOperation; last != nil && last.Kind == string(kind) && last.Target == target {
		attempt = last.Attempt + 1
	}
	id := pairing.OperationID(string(p.pp.UID), string(kind), target, p.pp.Generation, attempt)
	req := protocol.OperationRequest{ID: id, Kind: kind}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			p.stall(ReasonStepRefused, fmt.Sprintf("encoding %s parameters: %v", kind, err))
			return false
		}
		req.Params = raw
	}
	got, err := p.agents.StartOperation(ctx, endpoint, req)
	switch {
	case errors.Is(err, agentclient.ErrConflict):
		// Another operation of this kind runs on the target (one from an older generation, or
		// started by hand): let it finish.
		p.waiting = fmt.Sprintf("%s on %s waits for another operation on it to finish: %s", kind, target, shortError(err))
		p.wantRequeue(p.r.OperationPollInterval)
		return false
	case errors.Is(err, agentclient.ErrInvalid):
		p.stall(ReasonStepRefused, fmt.Sprintf("the agent at %s refused %s: %s", endpoint, kind, shortError(err)))
		return false
	case err != nil:
		p.wantRequeue(p.r.UnreachableRetry)
		p.waiting = fmt.Sprintf("could not start %s on %s: %s", kind, target, shortError(err))
		return false
	}
	started := stamp(p.now)
	if got.Started != nil {
		started = stamp(*got.Started)
	}
	*s.operation = &drv1alpha1.OperationStatus{
		Kind: string(kind), ID: id, Target: target, Endpoint: endpoint,
		State: string(got.State), Attempt: attempt, Started: &started, Message: got.Message,
	}
	if got.State.Done() {
		// The agent already had this operation: started before a restart or a wiped status. Adopt
		// its outcome quietly; the next attempt gets a new key if it is needed.
		p.finish(s, got, false)
		p.wantRequeue(time.Millisecond)
		return false
	}
	p.event(eventNormal, string(kind)+"Started", stepAction(string(kind), target), "%s", note)
	p.r.watcher.watch(p.key(), p.agents, endpoint, id)
	p.wantRequeue(p.r.OperationPollInterval)
	return true
}

// stepAction names the step and its target: the events API merges events with the same action and
// reason into one series, and each server's step is its own event.
func stepAction(kind, target string) string { return kind + " " + target }
