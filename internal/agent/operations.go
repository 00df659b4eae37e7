package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Operation time limits: a step that hangs (a PowerShell host that never answers, a Bootstrapper
// waiting on a dialog) is failed, retryable, instead of blocking its target forever.
var operationTimeouts = map[protocol.OperationKind]time.Duration{
	protocol.KindPairPools:            30 * time.Minute,
	protocol.KindUnpair:               30 * time.Minute,
	protocol.KindBootstrap:            2 * time.Hour,
	protocol.KindStartBackupService:   15 * time.Minute,
	protocol.KindRestartBackupService: 15 * time.Minute,
	protocol.KindSyncBackup:           30 * time.Minute,
	// Failover: Microsoft's targets are 5 minutes for the CMS and 30 for a pool (Lync Server 2013);
	// a failback takes up to 60 minutes for 20,000 users.
	protocol.KindFailoverCMS:     30 * time.Minute,
	protocol.KindMoveEdgeNextHop: 15 * time.Minute,
	protocol.KindFailoverPool:    2 * time.Hour,
	protocol.KindFailbackPool:    2 * time.Hour,
}

// maxMessageBytes bounds an operation's message (Bootstrapper log tails can be long).
const maxMessageBytes = 4096

// stoppedMessage marks an operation cut short because this agent process is stopping.
const stoppedMessage = "interrupted: the agent stopped while it ran"

// unknownOutcome ends the message of a failover operation (not a rehearsal) whose end the agent
// did not see (Operation.OutcomeUnknown): its cmdlet runs in the PowerShell host (the sim's in
// the deployment), not in the agent, and none of them is idempotent: the client reads what the
// step changes before anything runs again.
func unknownOutcome(kind protocol.OperationKind, target string) string {
	var read string
	switch kind {
	case protocol.KindFailoverCMS:
		read = "which pool hosts the Central Management store (cmsPool of " + target + ")"
	case protocol.KindMoveEdgeNextHop:
		read = "the next hop of the Edge pool " + target + " (edgePools of the Front End pools)"
	default:
		read = "whether " + target + " is failed over (failedOverTo of the pool)"
	}
	return "the outcome is unknown: the " + string(kind) + " cmdlet may have run, or may still be running on this server; read " + read +
		" before anything is retried"
}

// isFailoverRun reports whether an operation is a failover step that changes the deployment (a
// rehearsal, whatIf, changes nothing and is retried like any other step).
func isFailoverRun(kind protocol.OperationKind, params any) bool {
	return protocol.IsFailover(kind) && !protocol.WhatIf(params)
}

// liveOp is an operation this process started and has not finished recording.
type liveOp struct {
	rec    record
	params any
	// done is closed when the operation reaches a final state: long-polls wait on it.
	done chan struct{}
}

// startOperation handles POST /v1/operations: validate everything, then create the operation once
// per id and run it in the background.
func (h *Handler) startOperation(w http.ResponseWriter, r *http.Request) {
	req, params, apiErr := decodeOperationRequest(w, r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	canonical, err := canonicalParams(params)
	if err != nil {
		writeError(w, internal("params: "+err.Error()))
		return
	}
	// A repeated request is answered before anything else is asked of the backend, so a retry after
	// a lost answer works even while the backend is unavailable.
	if op, status, apiErr := h.existing(req, canonical); apiErr != nil || op != nil {
		if apiErr != nil {
			writeError(w, apiErr)
		} else {
			writeJSON(w, status, op)
		}
		return
	}
	target, apiErr := h.target(r.Context(), params)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	// Checked again under the lock: a concurrent request with the same id may have created it.
	if op, status, apiErr := h.existingLocked(req, canonical); apiErr != nil || op != nil {
		if apiErr != nil {
			writeError(w, apiErr)
		} else {
			writeJSON(w, status, op)
		}
		return
	}
	if h.closed {
		writeError(w, unavailable("the agent is stopping; retry later"))
		return
	}
	if other := h.collision(req.Kind, target); other != nil {
		e := conflict(fmt.Sprintf("a %s operation on %s is already in flight on this server (id %q, %s); wait for it to finish",
			other.rec.Op.Kind, other.rec.Target, other.rec.Op.ID, other.rec.Op.State))
		active := other.active()
		e.body.Operation = &active
		writeError(w, e)
		return
	}
	rec := record{
		Op:      protocol.Operation{ID: req.ID, Kind: req.Kind, Params: canonical, State: protocol.StatePending},
		Target:  target,
		Created: time.Now().UTC(),
	}
	if err := h.journal.insert(&rec); err != nil {
		writeError(w, internal("journal: "+err.Error()))
		return
	}
	op := &liveOp{rec: rec, params: params, done: make(chan struct{})}
	h.live[req.ID] = op
	h.running.Add(1)
	go h.execute(op)
	writeJSON(w, http.StatusAccepted, rec.Op)
}

// getOperation handles GET /v1/operations/{id}[?wait=30s]. With wait, it answers when the
// operation reaches a final state or the wait (capped at MaxWait) passes, whichever comes first.
func (h *Handler) getOperation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := protocol.ValidateOperationID(id); err != nil {
		writeError(w, invalid(err.Error()))
		return
	}
	var wait time.Duration
	if vals, ok := r.URL.Query()["wait"]; ok {
		if len(vals) != 1 {
			writeError(w, invalid("wait: give it once"))
			return
		}
		d, err := time.ParseDuration(vals[0])
		if err != nil || d < 0 {
			writeError(w, invalid(fmt.Sprintf("wait: %q is not a non-negative duration such as 30s", vals[0])))
			return
		}
		wait = min(d, h.maxWait)
	}
	op, done, err := h.lookup(id)
	if err != nil {
		writeError(w, err)
		return
	}
	if wait > 0 && !op.State.Done() && done != nil {
		t := time.NewTimer(wait)
		select {
		case <-done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		if op, _, err = h.lookup(id); err != nil {
			writeError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, op)
}

// Bounds of GET /v1/operations?limit=.
const (
	defaultListLimit = 50
	maxListLimit     = 500
)

// listOperations handles GET /v1/operations[?limit=50]: the journal's operations, newest first,
// in their current state. A limit above maxListLimit is capped to it.
func (h *Handler) listOperations(w http.ResponseWriter, r *http.Request) {
	limit := defaultListLimit
	if vals, ok := r.URL.Query()["limit"]; ok {
		if len(vals) != 1 {
			writeError(w, invalid("limit: give it once"))
			return
		}
		n, err := strconv.Atoi(vals[0])
		if err != nil || n < 1 {
			writeError(w, invalid(fmt.Sprintf("limit: %q is not a whole number from 1 to %d", vals[0], maxListLimit)))
			return
		}
		limit = min(n, maxListLimit)
	}
	recs, err := h.journal.recent(limit)
	if err != nil {
		writeError(w, internal("journal: "+err.Error()))
		return
	}
	list := protocol.OperationList{Operations: make([]protocol.Operation, 0, len(recs))}
	h.mu.Lock()
	for _, rec := range recs {
		op := rec.Op
		if l, ok := h.live[op.ID]; ok {
			op = l.rec.Op // newer than the journal when a journal write failed
		}
		list.Operations = append(list.Operations, op)
	}
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
}

// collision finds the live operation a new one of kind on target may not run beside: another of
// the same kind on the same target, another start or restart of LYNCBACKUP, or, for a topology
// write, any other topology write (one writer per topology; the operator serializes them too).
// The failover kinds are topology writes: each conflicts with any other of them (a rehearsal
// included) and with PairPools and Unpair. Called with h.mu held.
func (h *Handler) collision(kind protocol.OperationKind, target string) *liveOp {
	for _, other := range h.live {
		if other.rec.Op.State.Done() {
			continue
		}
		k := other.rec.Op.Kind
		if k == kind && other.rec.Target == target || isTopologyWrite(kind) && isTopologyWrite(k) || isServiceControl(kind) && isServiceControl(k) {
			return other
		}
	}
	return nil
}

func isTopologyWrite(kind protocol.OperationKind) bool {
	return kind == protocol.KindPairPools || kind == protocol.KindUnpair || protocol.IsFailover(kind)
}

// isServiceControl: the kinds that start or stop this server's LYNCBACKUP.
func isServiceControl(kind protocol.OperationKind) bool {
	return kind == protocol.KindStartBackupService || kind == protocol.KindRestartBackupService
}

// active describes a live operation for /v1/server and 409 answers.
func (op *liveOp) active() protocol.ActiveOperation {
	return protocol.ActiveOperation{ID: op.rec.Op.ID, Kind: op.rec.Op.Kind, Target: op.rec.Target, State: op.rec.Op.State, Started: op.rec.Op.Started}
}

// activeOperations lists the operations this agent has not finished, oldest first.
func (h *Handler) activeOperations() []protocol.ActiveOperation {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []protocol.ActiveOperation
	for _, op := range h.live {
		if !op.rec.Op.State.Done() {
			out = append(out, op.active())
		}
	}
	slices.SortFunc(out, func(a, b protocol.ActiveOperation) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// lookup returns an operation and, while it is live, the channel closed when it finishes.
func (h *Handler) lookup(id string) (protocol.Operation, <-chan struct{}, *apiError) {
	h.mu.Lock()
	if op, ok := h.live[id]; ok {
		defer h.mu.Unlock()
		return op.rec.Op, op.done, nil
	}
	h.mu.Unlock()
	rec, found, err := h.journal.get(id)
	if err != nil {
		return protocol.Operation{}, nil, internal("journal: " + err.Error())
	}
	if !found {
		return protocol.Operation{}, nil, notFound(fmt.Sprintf("no operation with id %q", id))
	}
	return rec.Op, nil, nil
}

func (h *Handler) existing(req protocol.OperationRequest, canonical json.RawMessage) (*protocol.Operation, int, *apiError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.existingLocked(req, canonical)
}

// existingLocked finds an operation with the request's id: the same request gets it back
// (200 when finished, 202 while in flight); a different request with that id is a conflict.
func (h *Handler) existingLocked(req protocol.OperationRequest, canonical json.RawMessage) (*protocol.Operation, int, *apiError) {
	var op protocol.Operation
	if l, ok := h.live[req.ID]; ok {
		op = l.rec.Op
	} else {
		rec, found, err := h.journal.get(req.ID)
		if err != nil {
			return nil, 0, internal("journal: " + err.Error())
		}
		if !found {
			return nil, 0, nil
		}
		op = rec.Op
	}
	if op.Kind != req.Kind {
		return nil, 0, conflict(fmt.Sprintf("id: operation %q already exists with kind %s, not %s", req.ID, op.Kind, req.Kind))
	}
	if !bytes.Equal(op.Params, canonical) {
		return nil, 0, conflict(fmt.Sprintf("params: operation %q already exists with different parameters %s", req.ID, string(op.Params)))
	}
	if op.State.Done() {
		return &op, http.StatusOK, nil
	}
	return &op, http.StatusAccepted, nil
}

// target names what an operation acts on, for de-duplication and logs. Server-level kinds act on
// the agent's own server.
func (h *Handler) target(ctx context.Context, params any) (string, *apiError) {
	switch p := params.(type) {
	case *protocol.PairPoolsParams:
		return protocol.PairTarget(p.PrimaryFQDN, p.BackupFQDN), nil
	case *protocol.UnpairParams:
		return protocol.PairTarget(p.PrimaryFQDN, p.BackupFQDN), nil
	case *protocol.SyncBackupParams:
		return strings.ToLower(p.PoolFQDN), nil
	case *protocol.FailoverCMSParams:
		return strings.ToLower(strings.TrimSuffix(p.ToPoolFQDN, ".")), nil
	case *protocol.EdgeNextHopParams:
		return strings.ToLower(strings.TrimSuffix(p.EdgePoolFQDN, ".")), nil
	case *protocol.PoolFailoverParams:
		return strings.ToLower(strings.TrimSuffix(p.PoolFQDN, ".")), nil
	}
	id, err := h.backend.Identity(ctx)
	if err != nil {
		return "", backendError(err)
	}
	return strings.ToLower(id.ServerFQDN), nil
}

// execute runs one operation to its end and records every state change.
func (h *Handler) execute(op *liveOp) {
	defer h.running.Done()
	rec := op.rec
	started := time.Now().UTC()
	rec.Op.State, rec.Op.Started = protocol.StateRunning, &started
	h.save(op, rec, false)
	h.log.Info("operation started", "kind", rec.Op.Kind, "id", rec.Op.ID, "target", rec.Target)
	h.complete(op, rec, func(ctx context.Context) (string, *bootstrapOutcome, error) {
		return h.perform(ctx, rec.Op.Kind, op.params)
	})
}

// interrupted records the end of an operation an earlier agent process left unfinished: Failed,
// retryable, its outcome unknown; a failover step's message says what to read before anything is
// tried again (its cmdlet may have run, or may still run).
func interrupted(rec *record) {
	rec.Op.State, rec.Op.Message, rec.Op.Retryable, rec.Op.OutcomeUnknown = protocol.StateFailed, interruptedMessage, true, true
	if failoverRecord(*rec) {
		rec.Op.Message = "interrupted: the agent restarted while it ran, so " + unknownOutcome(rec.Op.Kind, rec.Target)
	}
}

// failoverRecord reports whether rec is a failover step that changes the deployment, from its
// recorded parameters.
func failoverRecord(rec record) bool {
	if !protocol.IsFailover(rec.Op.Kind) {
		return false
	}
	params, err := (&protocol.OperationRequest{ID: rec.Op.ID, Kind: rec.Op.Kind, Params: rec.Op.Params}).DecodeParams()
	if err != nil {
		return true // cannot tell it is a rehearsal: treat it as the real thing
	}
	return isFailoverRun(rec.Op.Kind, params)
}

// complete waits for run within the kind's time limit and records the outcome. A Bootstrapper run
// that is still going on when the agent stops is left Running in the journal: the run is a process
// of its own, and the next agent process resumes tracking it.
func (h *Handler) complete(op *liveOp, rec record, run func(ctx context.Context) (string, *bootstrapOutcome, error)) {
	kind := rec.Op.Kind
	timeout := operationTimeouts[kind]
	ctx, cancel := context.WithTimeout(h.opsCtx, timeout)
	msg, boot, err := run(ctx)
	cancel()
	rec.Bootstrap = boot
	switch {
	case err != nil && kind == protocol.KindBootstrap && h.opsCtx.Err() != nil:
		h.log.Info("agent stopping while Bootstrapper.exe runs; the next agent process tracks it", "id", rec.Op.ID)
		return
	case err != nil:
		rec.Op.State = protocol.StateFailed
		rec.Op.Message, rec.Op.Retryable = h.failure(ctx, timeout, err)
		// Cut short (the agent stops) or timed out: whether the cmdlet took effect is unknown.
		rec.Op.OutcomeUnknown = h.opsCtx.Err() != nil || errors.Is(ctx.Err(), context.DeadlineExceeded)
		if rec.Op.OutcomeUnknown && failoverRecord(rec) {
			rec.Op.Message = h.failoverFailure(ctx, rec, timeout, err)
		}
		if kind == protocol.KindBootstrap && errors.Is(err, lync.ErrConflict) {
			// A Bootstrapper run this agent does not track (started by hand) is in progress: try
			// again once it has ended.
			rec.Op.Retryable = true
		}
	case boot != nil && !boot.Succeeded && !boot.RebootRequired:
		// Bootstrapper ran and failed: another run may well succeed (after a fix).
		rec.Op.State, rec.Op.Message, rec.Op.Retryable = protocol.StateFailed, msg, true
	default:
		rec.Op.State, rec.Op.Message = protocol.StateSucceeded, msg
	}
	h.finish(op, rec, *rec.Op.Started)
}

// bootstrapMessage turns a Bootstrapper result into the operation's message and outcome.
func bootstrapMessage(res lync.BootstrapResult) (string, *bootstrapOutcome) {
	boot := &bootstrapOutcome{ExitCode: res.ExitCode, Succeeded: res.Succeeded, RebootRequired: res.RebootRequired, BackupPool: res.BackupPool, NextSteps: res.NextSteps}
	switch {
	case res.RebootRequired:
		// A run that asks for a restart did what it could: the operation succeeded, and the
		// server is bootstrapped once the administrator has restarted it and a second run succeeds.
		return fmt.Sprintf("Bootstrapper.exe asks for a restart of this server and a second run (exit code %d): %s", res.ExitCode, lastBytes(strings.TrimSpace(res.LogTail), maxMessageBytes-200)), boot
	case !res.Succeeded:
		return fmt.Sprintf("Bootstrapper.exe failed with exit code %d: %s", res.ExitCode, lastBytes(strings.TrimSpace(res.LogTail), maxMessageBytes-100)), boot
	}
	msg := fmt.Sprintf("Bootstrapper.exe succeeded (exit code %d)", res.ExitCode)
	for _, step := range res.NextSteps {
		msg += "; next step for the administrator: " + step
	}
	return msg, boot
}

// perform calls the backend for one operation and says what happened.
func (h *Handler) perform(ctx context.Context, kind protocol.OperationKind, params any) (string, *bootstrapOutcome, error) {
	b := h.backend
	switch kind {
	case protocol.KindPairPools:
		p := params.(*protocol.PairPoolsParams)
		if err := b.PairPools(ctx, *p); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("paired %s and %s as each other's backup pool; topology published and enabled", p.PrimaryFQDN, p.BackupFQDN), nil, nil
	case protocol.KindUnpair:
		p := params.(*protocol.UnpairParams)
		if err := b.Unpair(ctx, *p); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("removed the backup association between %s and %s; topology published", p.PrimaryFQDN, p.BackupFQDN), nil, nil
	case protocol.KindSyncBackup:
		p := params.(*protocol.SyncBackupParams)
		if err := b.SyncBackup(ctx, p.PoolFQDN); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("backup sync of %s to its backup pool invoked", p.PoolFQDN), nil, nil
	case protocol.KindStartBackupService:
		if err := b.StartBackupService(ctx); err != nil {
			return "", nil, err
		}
		return "LYNCBACKUP service started", nil, nil
	case protocol.KindRestartBackupService:
		if err := b.RestartBackupService(ctx); err != nil {
			return "", nil, err
		}
		return "LYNCBACKUP service restarted", nil, nil
	case protocol.KindBootstrap:
		res, err := b.Bootstrap(ctx)
		if err != nil {
			return "", nil, err
		}
		msg, boot := bootstrapMessage(res)
		return msg, boot, nil
	}
	if protocol.IsFailover(kind) {
		msg, err := h.performFailover(ctx, kind, params)
		return msg, nil, err
	}
	return "", nil, fmt.Errorf("unknown operation kind %q", kind)
}

// performFailover runs a failover step.
func (h *Handler) performFailover(ctx context.Context, kind protocol.OperationKind, params any) (string, error) {
	f := h.backend
	switch p := params.(type) {
	case *protocol.FailoverCMSParams:
		return f.FailoverCMS(ctx, p.ToPoolFQDN, p.Disaster, p.WhatIf)
	case *protocol.EdgeNextHopParams:
		return f.MoveEdgeNextHop(ctx, p.EdgePoolFQDN, p.RegistrarFQDN, p.WhatIf)
	case *protocol.PoolFailoverParams:
		if kind == protocol.KindFailbackPool {
			return f.FailbackPool(ctx, p.PoolFQDN, p.WhatIf)
		}
		return f.FailoverPool(ctx, p.PoolFQDN, p.DisasterMode, p.WhatIf)
	}
	return "", fmt.Errorf("%s: unexpected parameters %T", kind, params)
}

// failoverFailure is the message of a failover step (not a rehearsal) whose end the agent did not
// see (it stopped, or the step timed out): the outcome is unknown, and what to read.
func (h *Handler) failoverFailure(ctx context.Context, rec record, timeout time.Duration, err error) string {
	if h.opsCtx.Err() != nil {
		return "interrupted: the agent stopped while it ran, so " + unknownOutcome(rec.Op.Kind, rec.Target)
	}
	return fmt.Sprintf("timed out after %s, so %s: %v", timeout, unknownOutcome(rec.Op.Kind, rec.Target), err)
}

// failure turns a backend error into the operation's message and whether a retry may help.
func (h *Handler) failure(ctx context.Context, timeout time.Duration, err error) (string, bool) {
	switch {
	case h.opsCtx.Err() != nil:
		return stoppedMessage, true
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("timed out after %s: %v", timeout, err), true
	case errors.Is(err, lync.ErrConflict):
		// The operator reads a Bootstrap refused this way by its "conflict: " prefix.
		return prefixed(lync.ErrConflict, err), false
	case errors.Is(err, lync.ErrPermission):
		// The backend's error names the right the step needs (a group, setup permissions, local
		// Administrator).
		return prefixed(lync.ErrPermission, err), false
	case errors.Is(err, lync.ErrNotFound):
		return prefixed(lync.ErrNotFound, err), false
	case errors.Is(err, lync.ErrUnavailable):
		return prefixed(lync.ErrUnavailable, err), true
	}
	// Unknown failures are presumed transient; the operator's capped backoff bounds the retries.
	return err.Error(), true
}

// prefixed starts the message with what kind of failure it is (the sentinel's text: "conflict",
// "permission denied", "not found", "backend unavailable"), once: wherever the backend's error
// already says it (see reason), it is dropped there.
func prefixed(sentinel, err error) string {
	word := sentinel.Error()
	if r := reason(err, sentinel); r != word {
		return word + ": " + r
	}
	return word
}

// finish records the final state, wakes long-polls and logs the outcome.
func (h *Handler) finish(op *liveOp, rec record, since time.Time) {
	now := time.Now().UTC()
	rec.Op.Finished = &now
	rec.Op.Message = firstBytes(rec.Op.Message, maxMessageBytes)
	h.save(op, rec, true)
	msg, log := "operation succeeded", h.log.Info
	if rec.Op.State == protocol.StateFailed {
		msg, log = "operation failed", h.log.Warn
	}
	log(msg, "kind", rec.Op.Kind, "id", rec.Op.ID, "target", rec.Target, "duration", now.Sub(since).Round(time.Millisecond),
		"outcome", rec.Op.State, "retryable", rec.Op.Retryable, "message", rec.Op.Message)
}

// save writes the record to the journal and publishes it to readers. A finished operation stays
// in memory if the journal could not take it, so the agent keeps answering truthfully.
func (h *Handler) save(op *liveOp, rec record, final bool) {
	err := h.journal.update(rec)
	if err != nil {
		h.log.Error("journal write failed", "id", rec.Op.ID, "state", rec.Op.State, "err", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	op.rec = rec
	if final {
		close(op.done)
		if err == nil {
			delete(h.live, rec.Op.ID)
		}
	}
}

// decodeOperationRequest reads and validates a POST body completely before anything runs.
func decodeOperationRequest(w http.ResponseWriter, r *http.Request) (protocol.OperationRequest, any, *apiError) {
	var req protocol.OperationRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, protocol.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, nil, &apiError{http.StatusRequestEntityTooLarge, protocol.Error{Code: protocol.CodeInvalid,
				Message: fmt.Sprintf("body: larger than the limit of %d bytes", protocol.MaxBodyBytes)}}
		}
		return req, nil, invalid("body: " + err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil, invalid("body: empty; expected a JSON operation request {id, kind, params}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, nil, invalid(jsonMessage(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, nil, invalid("body: trailing data after the JSON object")
	}
	params, err := req.DecodeParams()
	if err != nil {
		return req, nil, invalid(err.Error())
	}
	return req, params, nil
}

// jsonMessage names the offending field of a JSON decoding error where it can.
func jsonMessage(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Sprintf("%s: must be a JSON %s, not %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("body: must be a JSON object, not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("body: invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "body: " + strings.TrimPrefix(err.Error(), "json: ") + " (the request takes id, kind and params)"
	}
	return "body: " + err.Error()
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "number"
}

// canonicalParams re-encodes decoded parameters so equal requests compare equal byte for byte.
func canonicalParams(params any) (json.RawMessage, error) {
	if params == nil {
		return nil, nil
	}
	return json.Marshal(params)
}

// lastBytes keeps the end of s (the end of a log says why it failed), at a UTF-8 boundary.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8RuneStart(s[i]) {
		i++
	}
	return "..." + s[i:]
}

// firstBytes keeps the start of s, at a UTF-8 boundary.
func firstBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
