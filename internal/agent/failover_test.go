package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func failoverCMSReq(id, to string, whatIf bool) protocol.OperationRequest {
	p, _ := json.Marshal(protocol.FailoverCMSParams{ToPoolFQDN: to, WhatIf: whatIf})
	return protocol.OperationRequest{ID: id, Kind: protocol.KindFailoverCMS, Params: p}
}

func edgeReq(id, edge, to string, whatIf bool) protocol.OperationRequest {
	p, _ := json.Marshal(protocol.EdgeNextHopParams{EdgePoolFQDN: edge, RegistrarFQDN: to, WhatIf: whatIf})
	return protocol.OperationRequest{ID: id, Kind: protocol.KindMoveEdgeNextHop, Params: p}
}

func poolReq(id string, kind protocol.OperationKind, pool string, disaster, whatIf bool) protocol.OperationRequest {
	p, _ := json.Marshal(protocol.PoolFailoverParams{PoolFQDN: pool, DisasterMode: disaster, WhatIf: whatIf})
	return protocol.OperationRequest{ID: id, Kind: kind, Params: p}
}

// TestFailoverStepsAreTopologyWrites: while one failover step runs, every other failover step (a
// rehearsal included), PairPools and Unpair are refused with 409 naming it; and while PairPools
// runs, a failover step is refused naming PairPools. Each step's target is the pool (or Edge
// pool) it acts on.
func TestFailoverStepsAreTopologyWrites(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	a.backend.setGate(gate)
	first := failoverCMSReq("uid/FailoverCMS/pool02/1", "POOL02.contoso.com", false)
	if status, _, raw := a.post(first); status != http.StatusAccepted {
		t.Fatalf("FailoverCMS: %d %s", status, raw)
	}
	a.backend.waitStarted(t, "FailoverCMS")
	others := []protocol.OperationRequest{
		failoverCMSReq("cms-whatif", "pool02.contoso.com", true),
		edgeReq("edge", "edge01.contoso.com", "pool02.contoso.com", false),
		edgeReq("edge-whatif", "edge01.contoso.com", "pool02.contoso.com", true),
		poolReq("over", protocol.KindFailoverPool, "pool01.contoso.com", true, false),
		poolReq("over-whatif", protocol.KindFailoverPool, "pool01.contoso.com", false, true),
		poolReq("back", protocol.KindFailbackPool, "pool01.contoso.com", false, false),
		pairReq("pair", "pool03.contoso.com", "pool04.contoso.com"),
		{ID: "unpair", Kind: protocol.KindUnpair, Params: json.RawMessage(`{"primaryFqdn":"pool01.contoso.com","backupFqdn":"pool02.contoso.com"}`)},
	}
	for _, req := range others {
		var refusal protocol.Error
		status, raw := a.do("POST", "/v1/operations", mustJSON(t, req), nil)
		_ = json.Unmarshal([]byte(raw), &refusal)
		if status != http.StatusConflict || refusal.Operation == nil || refusal.Operation.ID != first.ID ||
			refusal.Operation.Kind != protocol.KindFailoverCMS || refusal.Operation.Target != "pool02.contoso.com" ||
			!strings.Contains(refusal.Message, "a FailoverCMS operation on pool02.contoso.com is already in flight") {
			t.Errorf("%s during FailoverCMS: %d %s", req.ID, status, raw)
		}
	}
	// Server-level steps are not topology writes: a sync goes on beside it.
	if status, _, raw := a.post(protocol.OperationRequest{ID: "sync", Kind: protocol.KindSyncBackup, Params: json.RawMessage(`{"poolFqdn":"pool02.contoso.com"}`)}); status != http.StatusAccepted {
		t.Errorf("SyncBackup during FailoverCMS: %d %s", status, raw)
	}
	a.backend.waitStarted(t, "SyncBackup")
	close(gate)
	if op := a.await(first.ID); op.State != protocol.StateSucceeded || op.Message != "the Central Management store moved to POOL02.contoso.com" {
		t.Errorf("FailoverCMS: %+v", op)
	}
	a.await("sync")
	if n := a.backend.total(); n != 2+a.backend.count("Identity")+a.backend.count("Pool") {
		t.Errorf("refused requests reached the backend: %v", a.backend.calls)
	}

	// The other way round: PairPools in flight refuses a failover step.
	gate2 := make(chan struct{})
	a.backend.setGate(gate2)
	a.post(pairReq("pair2", "pool03.contoso.com", "pool04.contoso.com"))
	a.backend.waitStarted(t, "PairPools")
	var refusal protocol.Error
	status, raw := a.do("POST", "/v1/operations", mustJSON(t, poolReq("over2", protocol.KindFailoverPool, "pool01.contoso.com", false, false)), nil)
	_ = json.Unmarshal([]byte(raw), &refusal)
	if status != http.StatusConflict || refusal.Operation == nil || refusal.Operation.ID != "pair2" {
		t.Errorf("FailoverPool during PairPools: %d %s", status, raw)
	}
	close(gate2)
	a.await("pair2")

	// Targets, as /v1/server lists them.
	gate3 := make(chan struct{})
	a.backend.setGate(gate3)
	for _, c := range []struct {
		req    protocol.OperationRequest
		method string
		target string
	}{
		{edgeReq("t-edge", "Edge01.contoso.com", "pool02.contoso.com", false), "MoveEdgeNextHop", "edge01.contoso.com"},
		{poolReq("t-back", protocol.KindFailbackPool, "Pool01.contoso.com", false, true), "FailbackPool(WhatIf)", "pool01.contoso.com"},
	} {
		if status, _, raw := a.post(c.req); status != http.StatusAccepted {
			t.Fatalf("%s: %d %s", c.req.ID, status, raw)
		}
		a.backend.waitStarted(t, c.method)
		var srv protocol.Server
		a.do("GET", "/v1/server", "", &srv)
		if len(srv.ActiveOperations) != 1 || srv.ActiveOperations[0].Target != c.target || srv.ActiveOperations[0].Kind != c.req.Kind {
			t.Errorf("%s: active operations %+v, want target %s", c.req.ID, srv.ActiveOperations, c.target)
		}
		gate3 <- struct{}{}
		a.await(c.req.ID)
	}
	close(gate3)
}

// TestFailoverRunsOncePerID: a repeated request answers from the journal and runs nothing; a
// rehearsal and the real step on the same pool are two operations, each run once; the same id
// with whatIf changed is a conflict.
func TestFailoverRunsOncePerID(t *testing.T) {
	a := startAgent(t, agentOpts{})
	rehearsal := poolReq("uid/FailoverPool/pool01/1/whatif", protocol.KindFailoverPool, "pool01.contoso.com", true, true)
	real := poolReq("uid/FailoverPool/pool01/1", protocol.KindFailoverPool, "pool01.contoso.com", true, false)
	for _, req := range []protocol.OperationRequest{rehearsal, real} {
		if status, _, raw := a.post(req); status != http.StatusAccepted {
			t.Fatalf("%s: %d %s", req.ID, status, raw)
		}
		if op := a.await(req.ID); op.State != protocol.StateSucceeded {
			t.Fatalf("%s: %+v", req.ID, op)
		}
	}
	for i := 0; i < 3; i++ {
		for _, req := range []protocol.OperationRequest{rehearsal, real} {
			if status, op, raw := a.post(req); status != http.StatusOK || op.State != protocol.StateSucceeded {
				t.Errorf("repeat %s: %d %s", req.ID, status, raw)
			}
		}
	}
	if a.backend.count("FailoverPool") != 1 || a.backend.count("FailoverPool(WhatIf)") != 1 {
		t.Errorf("backend calls: %v", a.backend.calls)
	}
	changed := poolReq(real.ID, protocol.KindFailoverPool, "pool01.contoso.com", true, true)
	if status, raw := a.do("POST", "/v1/operations", mustJSON(t, changed), nil); status != http.StatusConflict || !strings.Contains(raw, "different parameters") {
		t.Errorf("same id, whatIf changed: %d %s", status, raw)
	}
	if status, raw := a.do("POST", "/v1/operations", mustJSON(t, poolReq(real.ID, protocol.KindFailbackPool, "pool01.contoso.com", false, false)), nil); status != http.StatusConflict {
		t.Errorf("same id, another kind: %d %s", status, raw)
	}
	if a.backend.count("FailoverPool") != 1 || a.backend.count("FailbackPool") != 0 {
		t.Errorf("backend calls: %v", a.backend.calls)
	}
}

// TestFailoverOutcomes: a refusal is reported as such, with the usual rules for retrying; the
// outcome is known (the step ended and said how).
func TestFailoverOutcomes(t *testing.T) {
	a := startAgent(t, agentOpts{})
	cases := []struct {
		req       protocol.OperationRequest
		method    string
		err       error
		message   string
		retryable bool
	}{
		{poolReq("refused", protocol.KindFailoverPool, "pool01.contoso.com", false, false), "FailoverPool",
			fmt.Errorf("%w: pool01.contoso.com hosts the active Central Management store", lync.ErrConflict),
			"conflict: pool01.contoso.com hosts the active Central Management store", false},
		{poolReq("unavailable", protocol.KindFailbackPool, "pool01.contoso.com", false, false), "FailbackPool",
			fmt.Errorf("%w: pool02.contoso.com does not answer", lync.ErrUnavailable),
			"backend unavailable: pool02.contoso.com does not answer", true},
		{poolReq("unavailable-whatif", protocol.KindFailbackPool, "pool01.contoso.com", false, true), "FailbackPool(WhatIf)",
			fmt.Errorf("%w: pool02.contoso.com does not answer", lync.ErrUnavailable),
			"backend unavailable: pool02.contoso.com does not answer", true},
		{failoverCMSReq("unknown", "pool02.contoso.com", false), "FailoverCMS",
			errors.New("powershell FailoverCMS: the PowerShell host exited during the call"),
			"powershell FailoverCMS: the PowerShell host exited during the call", true},
	}
	for _, c := range cases {
		a.backend.setErr(c.method, c.err)
		a.post(c.req)
		op := a.await(c.req.ID)
		if op.State != protocol.StateFailed || op.Message != c.message || op.Retryable != c.retryable || op.OutcomeUnknown {
			t.Errorf("%s: %+v; want message %q, retryable %v", c.req.ID, op, c.message, c.retryable)
		}
	}
	var srv protocol.Server
	a.do("GET", "/v1/server", "", &srv)
	if srv.FrontEnd != protocol.ServiceRunning {
		t.Errorf("server's Front End = %q", srv.FrontEnd)
	}
}

// TestFailoverInterruptedByARestart: an operation cut short by the agent's restart or stop is
// Failed, retryable and its outcome unknown; a failover step's message says so and what to read
// before anything is tried again; a rehearsal's is the usual one.
func TestFailoverInterruptedByARestart(t *testing.T) {
	dir := t.TempDir()
	first := startAgent(t, agentOpts{dir: dir})
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	first.backend.setGate(gate)
	cut := map[string]protocol.OperationRequest{
		"FailoverPool":         poolReq("uid/FailoverPool/pool01/1", protocol.KindFailoverPool, "pool01.contoso.com", true, false),
		"FailoverCMS(WhatIf)":  failoverCMSReq("uid/FailoverCMS/pool02/1/whatif", "pool02.contoso.com", true),
		"MoveEdgeNextHop":      edgeReq("uid/MoveEdgeNextHop/edge01/1", "edge01.contoso.com", "pool02.contoso.com", false),
		"FailbackPool(WhatIf)": poolReq("uid/FailbackPool/pool01/1", protocol.KindFailbackPool, "pool01.contoso.com", false, true),
	}
	// One at a time (they collide), each left running in a journal that is then copied: the
	// second agent sees them all unfinished.
	for _, method := range []string{"FailoverPool"} {
		first.post(cut[method])
		first.backend.waitStarted(t, method)
	}
	// The others are recorded unfinished by hand, as if earlier processes had left them.
	for _, method := range []string{"FailoverCMS(WhatIf)", "MoveEdgeNextHop", "FailbackPool(WhatIf)"} {
		req := cut[method]
		params, err := req.DecodeParams()
		if err != nil {
			t.Fatal(err)
		}
		canonical, _ := canonicalParams(params)
		target, _ := first.handler.target(context.Background(), params)
		started := time.Now().UTC()
		rec := record{Op: protocol.Operation{ID: req.ID, Kind: req.Kind, Params: canonical, State: protocol.StateRunning, Started: &started}, Target: target, Created: started}
		if err := first.journal.insert(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.journal.Close(); err != nil {
		t.Fatal(err)
	}

	second := startAgent(t, agentOpts{dir: dir})
	want := map[string]struct {
		message   string
		retryable bool
	}{
		"FailoverPool": {"interrupted: the agent restarted while it ran, so the outcome is unknown: the FailoverPool cmdlet may have run, or may still be running on this server; " +
			"read whether pool01.contoso.com is failed over (failedOverTo of the pool) before anything is retried", true},
		"MoveEdgeNextHop": {"interrupted: the agent restarted while it ran, so the outcome is unknown: the MoveEdgeNextHop cmdlet may have run, or may still be running on this server; " +
			"read the next hop of the Edge pool edge01.contoso.com (edgePools of the Front End pools) before anything is retried", true},
		"FailoverCMS(WhatIf)":  {interruptedMessage, true},
		"FailbackPool(WhatIf)": {interruptedMessage, true},
	}
	for method, req := range cut {
		var op protocol.Operation
		if status, raw := second.do("GET", "/v1/operations/"+escapeID(req.ID), "", &op); status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		w := want[method]
		if op.State != protocol.StateFailed || op.Message != w.message || op.Retryable != w.retryable || !op.OutcomeUnknown {
			t.Errorf("%s after a restart: %+v\nwant %q, retryable %v", method, op, w.message, w.retryable)
		}
		// Repeating the request answers from the journal: nothing runs again.
		if status, _, raw := second.post(req); status != http.StatusOK {
			t.Errorf("repeat %s: %d %s", method, status, raw)
		}
	}
	if n := second.backend.total(); n != 0 {
		t.Errorf("the new backend was called %d times: %v", n, second.backend.calls)
	}

	// A stopping agent says the same of a step it cuts short.
	gate2 := make(chan struct{})
	t.Cleanup(func() { close(gate2) })
	second.backend.setGate(gate2)
	stop := failoverCMSReq("uid/FailoverCMS/pool02/2", "pool02.contoso.com", false)
	second.post(stop)
	second.backend.waitStarted(t, "FailoverCMS")
	ctx, cancel := contextWithTimeout(100 * time.Millisecond)
	defer cancel()
	_ = second.handler.Close(ctx)
	rec, _, err := second.journal.get(stop.ID)
	if err != nil {
		t.Fatal(err)
	}
	if wantMsg := "interrupted: the agent stopped while it ran, so the outcome is unknown: the FailoverCMS cmdlet may have run, or may still be running on this server; " +
		"read which pool hosts the Central Management store (cmsPool of pool02.contoso.com) before anything is retried"; rec.Op.Message != wantMsg || !rec.Op.Retryable || !rec.Op.OutcomeUnknown {
		t.Errorf("FailoverCMS cut short by a stop: %+v", rec.Op)
	}
}

// TestFailoverTimeout: a failover step that outlives its time limit is Failed with its outcome
// unknown: the cmdlet may still be running.
func TestFailoverTimeout(t *testing.T) {
	defer func(d time.Duration) { operationTimeouts[protocol.KindFailbackPool] = d }(operationTimeouts[protocol.KindFailbackPool])
	operationTimeouts[protocol.KindFailbackPool] = 100 * time.Millisecond
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	a.backend.setGate(gate)
	req := poolReq("back-slow", protocol.KindFailbackPool, "pool01.contoso.com", false, false)
	a.post(req)
	op := a.await(req.ID)
	want := "timed out after 100ms, so the outcome is unknown: the FailbackPool cmdlet may have run, or may still be running on this server; " +
		"read whether pool01.contoso.com is failed over (failedOverTo of the pool) before anything is retried: context deadline exceeded"
	if op.State != protocol.StateFailed || !op.OutcomeUnknown || !op.Retryable || op.Message != want {
		t.Errorf("FailbackPool past its time limit: %+v\nwant %q", op, want)
	}
}
