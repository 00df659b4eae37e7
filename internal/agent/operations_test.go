package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestSameIDRunsOnce(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	a.backend.setGate(gate)
	req := pairReq("uid/PairPools/pool01.contoso.com/1/0", "pool01.contoso.com", "pool02.contoso.com")

	// Concurrent first requests: exactly one operation is created.
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, op, raw := a.post(req)
			if op.ID != req.ID {
				t.Errorf("answer %d %s", status, raw)
			}
			statuses <- status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusAccepted {
			t.Errorf("status %d while in flight, want 202", s)
		}
	}
	a.backend.waitStarted(t, "PairPools")
	close(gate)
	if op := a.await(req.ID); op.State != protocol.StateSucceeded {
		t.Fatalf("operation %+v", op)
	}
	// After it finished, the same request answers 200 with the finished operation, still once.
	status, op, raw := a.post(req)
	if status != http.StatusOK || op.State != protocol.StateSucceeded {
		t.Errorf("repeat after finish: %d %s", status, raw)
	}
	// Params written differently but meaning the same are the same request.
	same := req
	same.Params = json.RawMessage(` { "backupFqdn" : "pool02.contoso.com", "primaryFqdn":"pool01.contoso.com" } `)
	if status, _, raw := a.post(same); status != http.StatusOK {
		t.Errorf("reordered params: %d %s", status, raw)
	}
	if n := a.backend.count("PairPools"); n != 1 {
		t.Errorf("PairPools ran %d times, want 1", n)
	}

	// Same id, different params or kind: 409, and nothing runs.
	other := pairReq(req.ID, "pool01.contoso.com", "pool03.contoso.com")
	if status, _, raw := a.post(other); status != http.StatusConflict || !strings.Contains(raw, "params") {
		t.Errorf("same id, different params: %d %s", status, raw)
	}
	if status, _, raw := a.post(protocol.OperationRequest{ID: req.ID, Kind: protocol.KindBootstrap}); status != http.StatusConflict || !strings.Contains(raw, "kind") {
		t.Errorf("same id, different kind: %d %s", status, raw)
	}
	if n := a.backend.writes(); n != 1 {
		t.Errorf("%d writes, want 1", n)
	}
}

func TestSecondOperationOnSameTargetConflicts(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	a.backend.setGate(gate)
	first := protocol.OperationRequest{ID: "uid/Bootstrap/fe01/1/0", Kind: protocol.KindBootstrap}
	if status, _, raw := a.post(first); status != http.StatusAccepted {
		t.Fatalf("%d %s", status, raw)
	}
	a.backend.waitStarted(t, "Bootstrap")
	second := protocol.OperationRequest{ID: "uid/Bootstrap/fe01/1/1", Kind: protocol.KindBootstrap}
	status, _, raw := a.post(second)
	if status != http.StatusConflict || !strings.Contains(raw, first.ID) {
		t.Errorf("second Bootstrap while one runs: %d %s", status, raw)
	}
	// A different kind on the same server is not blocked, nor is a read.
	if status, _, raw := a.post(protocol.OperationRequest{ID: "uid/Start/fe01/1/0", Kind: protocol.KindStartBackupService}); status != http.StatusAccepted {
		t.Errorf("StartBackupService: %d %s", status, raw)
	}
	a.backend.waitStarted(t, "StartBackupService")
	close(gate)
	a.await(first.ID)
	if status, _, raw := a.post(second); status != http.StatusAccepted {
		t.Errorf("second Bootstrap after the first finished: %d %s", status, raw)
	}
	a.await(second.ID)
	if n := a.backend.count("Bootstrap"); n != 2 {
		t.Errorf("Bootstrap ran %d times, want 2", n)
	}
}

func TestOperationOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(f *fakeBackend)
		req       protocol.OperationRequest
		state     protocol.OperationState
		retryable bool
		mention   []string
	}{
		{
			name: "bootstrapper exits non-zero",
			setup: func(f *fakeBackend) {
				f.boot = lync.BootstrapResult{ExitCode: 3, LogTail: strings.Repeat("x", 10000) + "\nERROR: Cannot find the topology\n"}
			},
			req:   protocol.OperationRequest{ID: "b", Kind: protocol.KindBootstrap},
			state: protocol.StateFailed, retryable: true,
			mention: []string{"exit code 3", "Cannot find the topology"},
		},
		{
			name: "bootstrapper asks for a reboot",
			setup: func(f *fakeBackend) {
				f.boot = lync.BootstrapResult{ExitCode: 3010, RebootRequired: true, LogTail: "A restart is required to complete the installation."}
			},
			req:   protocol.OperationRequest{ID: "b", Kind: protocol.KindBootstrap},
			state: protocol.StateSucceeded, mention: []string{"asks for a restart", "exit code 3010", "A restart is required"},
		},
		{
			name: "skype for business asks to re-apply the cumulative update",
			setup: func(f *fakeBackend) {
				f.boot = lync.BootstrapResult{Succeeded: true, BackupPool: "pool02.contoso.com", NextSteps: []string{"re-apply the installed cumulative update on fe01.pool01.contoso.com"}}
			},
			req:   protocol.OperationRequest{ID: "b", Kind: protocol.KindBootstrap},
			state: protocol.StateSucceeded, mention: []string{"next step for the administrator: re-apply the installed cumulative update on fe01.pool01.contoso.com"},
		},
		{
			name:  "restart LYNCBACKUP",
			setup: func(f *fakeBackend) {},
			req:   protocol.OperationRequest{ID: "r", Kind: protocol.KindRestartBackupService},
			state: protocol.StateSucceeded, mention: []string{"restarted"},
		},
		{
			name: "pool already paired with a third pool",
			setup: func(f *fakeBackend) {
				f.setErr("PairPools", fmt.Errorf("pool01 is paired with pool03: %w", lync.ErrConflict))
			},
			req:   pairReq("p", "pool01.contoso.com", "pool02.contoso.com"),
			state: protocol.StateFailed, retryable: false, mention: []string{"pool03"},
		},
		{
			name:  "backend unavailable",
			setup: func(f *fakeBackend) { f.setErr("SyncBackup", fmt.Errorf("WCF timeout: %w", lync.ErrUnavailable)) },
			req:   protocol.OperationRequest{ID: "s", Kind: protocol.KindSyncBackup, Params: json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)},
			state: protocol.StateFailed, retryable: true, mention: []string{"WCF timeout"},
		},
		{
			name: "missing rights",
			setup: func(f *fakeBackend) {
				f.setErr("StartBackupService", fmt.Errorf("Start-CsWindowsService: Access is denied: %w (the account running lync-agent needs membership of RTCUniversalServerAdmins)", lync.ErrPermission))
			},
			req:   protocol.OperationRequest{ID: "s", Kind: protocol.KindStartBackupService},
			state: protocol.StateFailed, retryable: false, mention: []string{"permission denied", "Access is denied", "RTCUniversalServerAdmins"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			tc.setup(f)
			a := startAgent(t, agentOpts{backend: f})
			if status, _, raw := a.post(tc.req); status != http.StatusAccepted {
				t.Fatalf("%d %s", status, raw)
			}
			op := a.await(tc.req.ID)
			if op.State != tc.state || op.Retryable != tc.retryable {
				t.Errorf("state %s retryable %v, want %s %v (%s)", op.State, op.Retryable, tc.state, tc.retryable, op.Message)
			}
			for _, m := range tc.mention {
				if !strings.Contains(op.Message, m) {
					t.Errorf("message %q does not mention %q", op.Message, m)
				}
			}
			if len(op.Message) > maxMessageBytes {
				t.Errorf("message is %d bytes", len(op.Message))
			}
			if tc.req.Kind == protocol.KindBootstrap {
				var srv protocol.Server
				a.do("GET", "/v1/server", "", &srv)
				if srv.LastBootstrap == nil || srv.LastBootstrap.ExitCode != f.boot.ExitCode || srv.LastBootstrap.Succeeded != f.boot.Succeeded || srv.LastBootstrap.RebootRequired != f.boot.RebootRequired || !slices.Equal(srv.LastBootstrap.NextSteps, f.boot.NextSteps) {
					t.Errorf("lastBootstrap %+v after %+v", srv.LastBootstrap, f.boot)
				}
				// The fake server booted an hour ago: a restart it asked for is still pending.
				if srv.RebootPending != f.boot.RebootRequired {
					t.Errorf("rebootPending %v after %+v", srv.RebootPending, f.boot)
				}
			}
		})
	}
}

// TestASecondTopologyWriteIsRefused: while one topology write runs, another (on any pools) is
// refused with 409 naming the one in flight, and never reaches the backend; reads go on, and
// /v1/server lists the write as active.
func TestASecondTopologyWriteIsRefused(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	a.backend.setGate(gate)
	pair := pairReq("pair", "pool01.contoso.com", "pool02.contoso.com")
	unpair := protocol.OperationRequest{ID: "unpair", Kind: protocol.KindUnpair, Params: json.RawMessage(`{"primaryFqdn":"pool03.contoso.com","backupFqdn":"pool04.contoso.com"}`)}
	a.post(pair)
	a.backend.waitStarted(t, "PairPools")

	var refusal protocol.Error
	status, raw := a.do("POST", "/v1/operations", mustJSON(t, unpair), nil)
	_ = json.Unmarshal([]byte(raw), &refusal)
	if status != http.StatusConflict || refusal.Operation == nil || refusal.Operation.ID != "pair" ||
		refusal.Operation.Kind != protocol.KindPairPools || refusal.Operation.Target != "pool01.contoso.com,pool02.contoso.com" {
		t.Fatalf("second topology write: %d %s", status, raw)
	}
	if status, raw := a.do("GET", "/v1/pools/pool01.contoso.com", "", nil); status != 200 {
		t.Errorf("read during a topology write: %d %s", status, raw)
	}
	var srv protocol.Server
	a.do("GET", "/v1/server", "", &srv)
	if len(srv.ActiveOperations) != 1 || srv.ActiveOperations[0].ID != "pair" || srv.ActiveOperations[0].State != protocol.StateRunning {
		t.Errorf("active operations during the write: %+v", srv.ActiveOperations)
	}
	close(gate)
	if op := a.await("pair"); op.State != protocol.StateSucceeded {
		t.Errorf("pair %+v", op)
	}
	if status, _, raw := a.post(unpair); status != http.StatusAccepted {
		t.Fatalf("topology write after the first finished: %d %s", status, raw)
	}
	if op := a.await("unpair"); op.State != protocol.StateSucceeded || a.backend.count("Unpair") != 1 {
		t.Errorf("unpair %+v, %d backend calls", op, a.backend.count("Unpair"))
	}
	srv = protocol.Server{}
	a.do("GET", "/v1/server", "", &srv)
	if len(srv.ActiveOperations) != 0 {
		t.Errorf("active operations after both finished: %+v", srv.ActiveOperations)
	}
}

func TestLongPollReturnsWhenTheOperationFinishes(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	a.backend.setGate(gate)
	id := "uid-9/SyncBackup/pool01.contoso.com/3/1"
	a.post(protocol.OperationRequest{ID: id, Kind: protocol.KindSyncBackup, Params: json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)})
	a.backend.waitStarted(t, "SyncBackup")

	type answer struct {
		op      protocol.Operation
		elapsed time.Duration
	}
	got := make(chan answer, 1)
	start := time.Now()
	go func() {
		var op protocol.Operation
		a.do("GET", "/v1/operations/"+escapeID(id)+"?wait=30s", "", &op)
		got <- answer{op, time.Since(start)}
	}()
	// The poll must still be waiting: the operation is running.
	select {
	case ans := <-got:
		t.Fatalf("long-poll answered before the operation finished: %+v", ans.op)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	select {
	case ans := <-got:
		if ans.op.State != protocol.StateSucceeded {
			t.Errorf("long-poll answered %s", ans.op.State)
		}
		if ans.elapsed > 10*time.Second {
			t.Errorf("long-poll took %s: it returned by timeout, not on completion", ans.elapsed)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll did not return after the operation finished")
	}
}

func TestLongPollReturnsCurrentStateWhenTheWaitPasses(t *testing.T) {
	a := startAgent(t, agentOpts{maxWait: 300 * time.Millisecond})
	gate := make(chan struct{})
	defer close(gate)
	a.backend.setGate(gate)
	a.post(protocol.OperationRequest{ID: "boot", Kind: protocol.KindBootstrap})
	a.backend.waitStarted(t, "Bootstrap")

	for _, wait := range []string{"150ms", "30s"} { // 30s is capped at MaxWait (300ms)
		start := time.Now()
		var op protocol.Operation
		if status, raw := a.do("GET", "/v1/operations/boot?wait="+wait, "", &op); status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		elapsed := time.Since(start)
		if op.State != protocol.StateRunning || op.Started == nil {
			t.Errorf("wait=%s: state %s", wait, op.State)
		}
		if elapsed < 140*time.Millisecond || elapsed > 5*time.Second {
			t.Errorf("wait=%s answered after %s", wait, elapsed)
		}
	}
	// Without wait, and for an unknown id, the answer is immediate.
	if status, _ := a.do("GET", "/v1/operations/boot", "", nil); status != 200 {
		t.Errorf("plain GET: %d", status)
	}
	if status, raw := a.do("GET", "/v1/operations/nope?wait=10s", "", nil); status != 404 {
		t.Errorf("unknown operation: %d %s", status, raw)
	}
}

// TestCloseInterruptsRunningOperations: a stopping agent cuts its cmdlets short (Failed,
// retryable) but leaves a Bootstrapper run Running in the journal: the run is a process of its
// own, and the next agent process tracks it.
func TestCloseInterruptsRunningOperations(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.backend.setGate(make(chan struct{})) // never opened
	a.post(protocol.OperationRequest{ID: "boot", Kind: protocol.KindBootstrap})
	a.backend.waitStarted(t, "Bootstrap")
	a.post(protocol.OperationRequest{ID: "sync", Kind: protocol.KindSyncBackup, Params: json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)})
	a.backend.waitStarted(t, "SyncBackup")
	ctx, cancel := contextWithTimeout(100 * time.Millisecond)
	defer cancel()
	if err := a.handler.Close(ctx); err == nil {
		t.Error("Close returned nil although an operation outlived its context")
	}
	for id, want := range map[string]protocol.OperationState{"sync": protocol.StateFailed, "boot": protocol.StateRunning} {
		rec, found, err := a.journal.get(id)
		if err != nil || !found {
			t.Fatal(found, err)
		}
		if rec.Op.State != want || want == protocol.StateFailed && (!rec.Op.Retryable || !rec.Op.OutcomeUnknown || rec.Op.Message != stoppedMessage) {
			t.Errorf("%s after Close: %+v", id, rec.Op)
		}
	}
	if status, raw := a.do("POST", "/v1/operations", `{"id":"later","kind":"StartBackupService"}`, nil); status != http.StatusServiceUnavailable {
		t.Errorf("new operation after Close: %d %s", status, raw)
	}
}

func TestRebootPending(t *testing.T) {
	finished := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	before, after := finished.Add(-time.Hour), finished.Add(time.Minute)
	asked := &protocol.BootstrapRun{Finished: finished, ExitCode: 3010, RebootRequired: true}
	for _, tc := range []struct {
		name string
		last *protocol.BootstrapRun
		boot *time.Time
		want bool
	}{
		{"no run", nil, &before, false},
		{"a run that did not ask", &protocol.BootstrapRun{Finished: finished, Succeeded: true}, &before, false},
		{"asked, not restarted since", asked, &before, true},
		{"asked, restarted since", asked, &after, false},
		{"asked, boot time unknown", asked, nil, true},
	} {
		if got := rebootPending(tc.last, tc.boot); got != tc.want {
			t.Errorf("%s: rebootPending = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLYNCBACKUPStartAndRestartDoNotOverlap: a start and a restart of the same service never run
// at once; the second is refused naming the first.
func TestLYNCBACKUPStartAndRestartDoNotOverlap(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	a.backend.setGate(gate)
	start := protocol.OperationRequest{ID: "start", Kind: protocol.KindStartBackupService}
	if status, _, raw := a.post(start); status != http.StatusAccepted {
		t.Fatalf("start: %d %s", status, raw)
	}
	a.backend.waitStarted(t, "StartBackupService")
	status, _, raw := a.post(protocol.OperationRequest{ID: "restart", Kind: protocol.KindRestartBackupService})
	if status != http.StatusConflict || !strings.Contains(string(raw), `"id":"start"`) {
		t.Errorf("restart while starting: %d %s", status, raw)
	}
	close(gate)
	a.await("start")
	if n := a.backend.count("RestartBackupService"); n != 0 {
		t.Errorf("RestartBackupService reached the backend %d times", n)
	}
}
