package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// TestJournalSurvivesARestart: a new agent process on the same journal answers for finished
// operations, reports one cut short as Failed and retryable, and does not run either again.
func TestJournalSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	first := startAgent(t, agentOpts{dir: dir})
	done := protocol.OperationRequest{ID: "uid/Bootstrap/fe01/1/0", Kind: protocol.KindBootstrap}
	first.post(done)
	if op := first.await(done.ID); op.State != protocol.StateSucceeded {
		t.Fatalf("%+v", op)
	}
	first.backend.waitStarted(t, "Bootstrap")
	// An operation still running when the process "dies": its journal is closed under it.
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	first.backend.setGate(gate)
	cut := pairReq("uid/PairPools/pool01.contoso.com/1/0", "pool01.contoso.com", "pool02.contoso.com")
	first.post(cut)
	first.backend.waitStarted(t, "PairPools")
	if err := first.journal.Close(); err != nil {
		t.Fatal(err)
	}

	second := startAgent(t, agentOpts{dir: dir})
	var op protocol.Operation
	if status, raw := second.do("GET", "/v1/operations/"+escapeID(done.ID), "", &op); status != 200 || op.State != protocol.StateSucceeded {
		t.Errorf("finished operation after restart: %d %s", status, raw)
	}
	if status, raw := second.do("GET", "/v1/operations/"+escapeID(cut.ID)+"?wait=10s", "", &op); status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	if op.State != protocol.StateFailed || !op.Retryable || !op.OutcomeUnknown || op.Message != interruptedMessage || op.Finished == nil {
		t.Errorf("interrupted operation after restart: %+v", op)
	}
	// Repeating either request answers from the journal; nothing runs on the new backend.
	if status, _, raw := second.post(done); status != http.StatusOK {
		t.Errorf("repeat finished: %d %s", status, raw)
	}
	if status, _, raw := second.post(cut); status != http.StatusOK || !strings.Contains(raw, "interrupted") {
		t.Errorf("repeat interrupted: %d %s", status, raw)
	}
	if n := second.backend.total(); n != 0 {
		t.Errorf("new backend called %d times", n)
	}
	var srv protocol.Server
	second.do("GET", "/v1/server", "", &srv)
	if srv.LastBootstrap == nil || srv.LastBootstrap.OperationID != done.ID {
		t.Errorf("lastBootstrap after restart: %+v", srv.LastBootstrap)
	}
}

func TestJournalIsExclusive(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := OpenJournal(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second open: %v", err)
	}
}

func TestJournalPrunesFinishedRecords(t *testing.T) {
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	now := time.Now()
	j.now = func() time.Time { return now }
	j.maxRecords = 20
	finished := func(id string, age time.Duration) {
		at := now.Add(-age)
		r := record{Op: protocol.Operation{ID: id, Kind: protocol.KindBootstrap, State: protocol.StateSucceeded, Finished: &at}}
		if err := j.insert(&r); err != nil {
			t.Fatal(err)
		}
	}
	// One in flight, old enough to be pruned were it finished: it must stay.
	inflight := record{Op: protocol.Operation{ID: "running", Kind: protocol.KindBootstrap, State: protocol.StateRunning}}
	if err := j.insert(&inflight); err != nil {
		t.Fatal(err)
	}
	finished("ancient", JournalRetention+time.Hour)
	for i := range 25 {
		finished(fmt.Sprintf("op-%02d", i), time.Minute)
	}
	if err := j.prune(); err != nil {
		t.Fatal(err)
	}
	has := func(id string) bool {
		_, found, err := j.get(id)
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	if has("ancient") {
		t.Error("a record older than the retention was kept")
	}
	if !has("running") {
		t.Error("an operation in flight was pruned")
	}
	if has("op-00") || !has("op-24") {
		t.Error("pruning did not drop the oldest first")
	}
	if j.count > j.maxRecords {
		t.Errorf("%d records kept, limit %d", j.count, j.maxRecords)
	}
	if err := j.db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketOps).Stats().KeyN; n != j.count {
			t.Errorf("count %d, bucket holds %d", j.count, n)
		}
		if n := tx.Bucket(bucketOrder).Stats().KeyN; n != j.count {
			t.Errorf("count %d, order holds %d", j.count, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBootstrapperThatOutlivedTheAgentIsTrackedNotDoubled: the agent dies while Bootstrapper.exe
// runs; the run goes on. The next agent process reports the journal's operation Running, answers a
// repeat of it and refuses a new Bootstrap naming it, starts no second run, and records the run's
// result when it ends.
func TestBootstrapperThatOutlivedTheAgentIsTrackedNotDoubled(t *testing.T) {
	dir := t.TempDir()
	first := startAgent(t, agentOpts{dir: dir})
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	first.backend.setGate(gate)
	boot := protocol.OperationRequest{ID: "uid/Bootstrap/fe01.pool01.contoso.com/7", Kind: protocol.KindBootstrap}
	first.post(boot)
	first.backend.waitStarted(t, "Bootstrap")
	if err := first.journal.Close(); err != nil { // the process dies; its Bootstrapper does not
		t.Fatal(err)
	}

	orphan := newFake()
	run := make(chan lync.BootstrapResult, 1)
	orphan.orphan = run
	second := startAgent(t, agentOpts{dir: dir, backend: orphan})
	var op protocol.Operation
	if status, raw := second.do("GET", "/v1/operations/"+escapeID(boot.ID), "", &op); status != 200 || op.State != protocol.StateRunning {
		t.Fatalf("the outliving run after the restart: %d %s", status, raw)
	}
	if status, got, raw := second.post(boot); status != http.StatusAccepted || got.State != protocol.StateRunning {
		t.Errorf("repeating the request: %d %s", status, raw)
	}
	var refusal protocol.Error
	other := protocol.OperationRequest{ID: "uid/Bootstrap/fe01.pool01.contoso.com/8", Kind: protocol.KindBootstrap}
	status, raw := second.do("POST", "/v1/operations", mustJSON(t, other), nil)
	_ = json.Unmarshal([]byte(raw), &refusal)
	if status != http.StatusConflict || refusal.Operation == nil || refusal.Operation.ID != boot.ID {
		t.Errorf("a new Bootstrap beside the outliving run: %d %s", status, raw)
	}
	var srv protocol.Server
	second.do("GET", "/v1/server", "", &srv)
	if len(srv.ActiveOperations) != 1 || srv.ActiveOperations[0].ID != boot.ID {
		t.Errorf("active operations: %+v", srv.ActiveOperations)
	}

	run <- lync.BootstrapResult{Succeeded: true, BackupPool: "pool02.contoso.com"}
	if op := second.await(boot.ID); op.State != protocol.StateSucceeded {
		t.Errorf("after the run ended: %+v", op)
	}
	if n := orphan.count("Bootstrap"); n != 0 {
		t.Errorf("the new agent started Bootstrapper %d times", n)
	}
	second.do("GET", "/v1/server", "", &srv)
	if srv.LastBootstrap == nil || srv.LastBootstrap.OperationID != boot.ID || !srv.LastBootstrap.Succeeded {
		t.Errorf("lastBootstrap %+v", srv.LastBootstrap)
	}
}
