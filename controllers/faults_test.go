package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// countingAgents counts every agent request the controller makes, and keeps when each was made.
type countingAgents struct {
	controllers.AgentClient
	calls atomic.Int64
	mu    sync.Mutex
	times []time.Time
	what  []string
}

func (c *countingAgents) setAgents(a controllers.AgentClient) { c.AgentClient = a }

func (c *countingAgents) count(what string) {
	c.calls.Add(1)
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.what = append(c.what, what)
	c.mu.Unlock()
}

// describeSince lists the requests made after t, for failure messages.
func (c *countingAgents) describeSince(t time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for i, at := range c.times {
		if at.After(t) {
			fmt.Fprintf(&b, "\n%s %s", at.Format("15:04:05.000"), c.what[i])
		}
	}
	return b.String()
}

// since returns the times of the requests made after t, in order.
func (c *countingAgents) since(t time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, at := range c.times {
		if at.After(t) {
			out = append(out, at)
		}
	}
	return out
}

// lastBefore returns the time of the last request made before t (zero when there is none).
func (c *countingAgents) lastBefore(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last time.Time
	for _, at := range c.times {
		if !at.After(t) && at.After(last) {
			last = at
		}
	}
	return last
}

func (c *countingAgents) Info(ctx context.Context, e string) (protocol.Info, error) {
	c.count("Info " + e)
	return c.AgentClient.Info(ctx, e)
}
func (c *countingAgents) Pool(ctx context.Context, e, f string) (protocol.Pool, error) {
	c.count("Pool " + f + " at " + e)
	return c.AgentClient.Pool(ctx, e, f)
}
func (c *countingAgents) BackupStatus(ctx context.Context, e, f string) (protocol.BackupStatus, error) {
	c.count("BackupStatus " + f + " at " + e)
	return c.AgentClient.BackupStatus(ctx, e, f)
}
func (c *countingAgents) Server(ctx context.Context, e string) (protocol.Server, error) {
	c.count("Server " + e)
	return c.AgentClient.Server(ctx, e)
}
func (c *countingAgents) StartOperation(ctx context.Context, e string, r protocol.OperationRequest) (protocol.Operation, error) {
	c.count("StartOperation " + r.ID)
	return c.AgentClient.StartOperation(ctx, e, r)
}
func (c *countingAgents) Operation(ctx context.Context, e, id string) (protocol.Operation, error) {
	c.count("Operation " + id)
	return c.AgentClient.Operation(ctx, e, id)
}

func conditionIs(pp *drv1alpha1.PoolPair, t string, status metav1.ConditionStatus, reason string) bool {
	c := conditions.Get(pp.Status.Conditions, t)
	return c != nil && c.Status == status && (reason == "" || c.Reason == reason)
}

func TestAgentDownThenBackConverges(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	// The agent of one backup Front End is down from the start.
	if err := env.runner.StopEndpoint("fe02.pool02.contoso.com"); err != nil {
		t.Fatal(err)
	}
	create(t, env.pair(ns, "agent-down"))
	eventually(t, 30*time.Second, "AgentsReachable=False naming the server", func() (bool, string) {
		got := getPair(t, ns, "agent-down")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionAgentsReachable)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "fe02.pool02.contoso.com") &&
			conditionIs(got, drv1alpha1.ConditionTopologyPublished, metav1.ConditionTrue, ""), describe(got)
	})
	got := getPair(t, ns, "agent-down")
	if conditionIs(got, drv1alpha1.ConditionReady, metav1.ConditionTrue, "") {
		t.Fatal("Ready while an agent is down")
	}
	if err := env.runner.StartEndpoint("fe02.pool02.contoso.com"); err != nil {
		t.Fatal(err)
	}
	got = waitReady(t, ns, "agent-down", 60*time.Second)
	if !conditionIs(got, drv1alpha1.ConditionAgentsReachable, metav1.ConditionTrue, "") {
		t.Fatalf("agents still reported unreachable: %s", describe(got))
	}
}

func TestBootstrapFailsTwiceThenSucceeds(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	if err := env.d.SetFaults("fe01.pool01.contoso.com", sim.ServerFaults{BootstrapFailures: 2}); err != nil {
		t.Fatal(err)
	}
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "flaky"))
	got := waitReady(t, ns, "flaky", 60*time.Second)

	if n := env.d.Counts()["Bootstrap/fe01.pool01.contoso.com"]; n != 3 {
		t.Fatalf("Bootstrapper ran %d times on the flaky server, want 3 (two failures, one success)", n)
	}
	events := eventReasons(t, ns, "flaky")
	if countReason(events, "BootstrapFailed") < 1 {
		t.Fatalf("no BootstrapFailed event:\n%s", strings.Join(events, "\n"))
	}
	for _, s := range got.Status.Servers {
		if s.FQDN == "fe01.pool01.contoso.com" && (s.FailedAttempts != 0 || s.LastFailureTime != nil) {
			t.Fatalf("after success the failure counter must reset: %+v", s)
		}
	}
	for _, e := range listEvents(t, ns, "flaky") {
		if e.Series != nil {
			t.Fatalf("step events must not be merged into a series: %+v", e)
		}
	}
	// The sim's own timeline: three runs one after the other, each retry waiting at least the
	// backoff's delay after the failure before it (0.5 s, then 1 s, plus up to 20% jitter), so the
	// delay grew.
	var runs []sim.Execution
	for _, x := range env.d.Timeline() {
		if x.Kind == string(protocol.KindBootstrap) && x.Target == "fe01.pool01.contoso.com" {
			runs = append(runs, x)
		}
	}
	if len(runs) != 3 || runs[0].Outcome != sim.OutcomeFailed || runs[1].Outcome != sim.OutcomeFailed || runs[2].Outcome != sim.OutcomeSucceeded {
		t.Fatalf("Bootstrapper runs on the flaky server: %+v", runs)
	}
	backoff := testBackoff
	g1, g2 := runs[1].Started.Sub(*runs[0].Finished), runs[2].Started.Sub(*runs[1].Finished)
	if g1 < backoff.Base || g2 < 2*backoff.Base {
		t.Errorf("retried sooner than the backoff allows: %v after the first failure, %v after the second", g1, g2)
	}
	if g2 <= g1 {
		t.Errorf("retry delay did not grow: %v then %v", g1, g2)
	}
	assertExactlyOnce(t, env, 1)
}

func TestRetriesExhaustedStallsAndRequestedAtRecovers(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	// More failures than the test backoff's limit of 4 (testBackoff).
	if err := env.d.SetFaults("fe02.pool01.contoso.com", sim.ServerFaults{BootstrapFailures: 5}); err != nil {
		t.Fatal(err)
	}
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "stuck"))
	eventually(t, 60*time.Second, "Stalled=RetriesExhausted", func() (bool, string) {
		got := getPair(t, ns, "stuck")
		return conditionIs(got, drv1alpha1.ConditionStalled, metav1.ConditionTrue, "RetriesExhausted"), describe(got)
	})
	got := getPair(t, ns, "stuck")
	stalled := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
	if !strings.Contains(stalled.Message, "fe02.pool01.contoso.com") || !strings.Contains(stalled.Message, drv1alpha1.RequestedAtAnnotation) {
		t.Fatalf("the stall must name the server and how to retry: %s", stalled.Message)
	}
	if conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReconciling) != nil {
		t.Fatal("Reconciling must be absent while Stalled")
	}
	ran := env.d.Counts()["Bootstrap/fe02.pool01.contoso.com"]
	if ran != 4 {
		t.Fatalf("Bootstrapper ran %d times before the stall, want the limit (4)", ran)
	}
	// Stalled means stopped: nothing more runs, over a window longer than the longest delay the
	// test's backoff could give a fifth attempt (its cap, 4 s, plus up to 20% jitter), counted from
	// the last failure.
	var lastFailure time.Time
	for _, s := range got.Status.Servers {
		if s.FQDN == "fe02.pool01.contoso.com" && s.LastFailureTime != nil {
			lastFailure = s.LastFailureTime.Time
		}
	}
	if lastFailure.IsZero() {
		t.Fatalf("no last failure time recorded for the stuck server: %+v", got.Status.Servers)
	}
	time.Sleep(time.Until(lastFailure.Add(testBackoff.Cap*12/10 + 500*time.Millisecond)))
	if n := env.d.Counts()["Bootstrap/fe02.pool01.contoso.com"]; n != ran {
		t.Fatalf("a stalled pair kept retrying: %d runs", n)
	}

	// The administrator fixed the server (one failure left) and asks for a retry.
	patch := client.MergeFrom(got.DeepCopy())
	got.Annotations = map[string]string{drv1alpha1.RequestedAtAnnotation: "2026-11-29T10:00:00Z"}
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	got = waitReady(t, ns, "stuck", 60*time.Second)
	if got.Status.LastHandledReconcileAt != "2026-11-29T10:00:00Z" {
		t.Fatalf("lastHandledReconcileAt = %q", got.Status.LastHandledReconcileAt)
	}
}

func TestManagerRestartMidStepRunsNothingTwice(t *testing.T) {
	requireAPIServer(t)
	durations := map[string]string{"pairPools": "100ms", "bootstrap": "1s", "startBackupService": "50ms", "syncBackup": "100ms",
		"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500"}
	env := startSim(t, durations, nil)
	ns := newNamespace(t)
	first := startManagerStoppable(t, env.fastReconciler)
	create(t, env.pair(ns, "restart"))
	eventually(t, 30*time.Second, "a bootstrap in flight", func() (bool, string) {
		got := getPair(t, ns, "restart")
		for _, s := range got.Status.Servers {
			if s.Operation != nil && s.Operation.Kind == "Bootstrap" {
				return true, ""
			}
		}
		return false, describe(got)
	})
	first()
	startManager(t, env.fastReconciler)
	waitReady(t, ns, "restart", 60*time.Second)
	for key, n := range env.d.Counts() {
		if n != 1 && !strings.HasPrefix(key, "SyncBackup/") {
			t.Errorf("%s ran %d times across the manager restart", key, n)
		}
	}
}

func TestStatusWipedIsRebuiltWithoutRerunningSteps(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "wiped"))
	waitReady(t, ns, "wiped", 60*time.Second)
	before := env.d.Counts()

	wipeStatus(t, ns, "wiped")
	// A wiped status triggers nothing by itself (status writes are filtered); the next pass does.
	poke(t, ns, "wiped")
	got := waitReady(t, ns, "wiped", 30*time.Second)
	if got.Status.Phase != drv1alpha1.PhaseSynced || len(got.Status.Servers) != 4 {
		t.Fatalf("status not rebuilt: %s", describe(got))
	}
	after := env.d.Counts()
	for key, n := range after {
		if n != before[key] {
			t.Errorf("%s ran again after the status was wiped (%d -> %d)", key, before[key], n)
		}
	}
}

// wipeStatus empties the pair's status, as a restore without status would. The manager may be
// writing status at the same moment, so a conflict is retried.
func wipeStatus(t testing.TB, ns, name string) {
	t.Helper()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := getPair(t, ns, name)
		got.Status = drv1alpha1.PoolPairStatus{}
		return k8s.Status().Update(context.Background(), got)
	}); err != nil {
		t.Fatalf("wiping the status of %s/%s: %v", ns, name, err)
	}
}

// poke changes an unrelated annotation to trigger a pass.
func poke(t testing.TB, ns, name string) {
	t.Helper()
	got := getPair(t, ns, name)
	patch := client.MergeFrom(got.DeepCopy())
	if got.Annotations == nil {
		got.Annotations = map[string]string{}
	}
	got.Annotations["example.com/poke"] = fmt.Sprint(time.Now().UnixNano())
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
}

// scriptedAgents answers StartOperation for one kind on one agent itself, with what answer says,
// instead of asking the agent; everything else goes through.
type scriptedAgents struct {
	controllers.AgentClient
	kind     protocol.OperationKind
	endpoint string
	answer   atomic.Pointer[protocol.Operation]
	mu       sync.Mutex
	ids      map[string]bool
}

// starts counts the distinct requests answered (a request re-sent with the same id is the same).
func (s *scriptedAgents) setAgents(a controllers.AgentClient) { s.AgentClient = a }

func (s *scriptedAgents) starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func (s *scriptedAgents) StartOperation(ctx context.Context, e string, r protocol.OperationRequest) (protocol.Operation, error) {
	if r.Kind != s.kind || e != s.endpoint {
		return s.AgentClient.StartOperation(ctx, e, r)
	}
	if a := s.answer.Load(); a != nil {
		s.mu.Lock()
		if s.ids == nil {
			s.ids = map[string]bool{}
		}
		s.ids[r.ID] = true
		s.mu.Unlock()
		op := *a
		op.ID, op.Kind = r.ID, r.Kind
		now := time.Now()
		op.Started, op.Finished = &now, &now
		return op, nil
	}
	return s.AgentClient.StartOperation(ctx, e, r)
}

// TestFailureNoRetryFixesStallsAtOnce: an agent reports a failure that retrying cannot fix
// (permission denied): the pair stalls at once with the agent's reason and does not retry; once
// fixed, the requested-at annotation runs it again.
func TestFailureNoRetryFixesStallsAtOnce(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	agents := &scriptedAgents{kind: protocol.KindStartBackupService, endpoint: env.runner.Endpoints()["fe01.pool01.contoso.com"]}
	agents.answer.Store(&protocol.Operation{State: protocol.StateFailed, Retryable: false,
		Message: "permission denied: Start-CsWindowsService: Access is denied (the account running lync-agent needs membership of RTCUniversalServerAdmins)"})
	m := startManager(t, env.reconcilerVia(agents))
	ns := newNamespace(t)
	create(t, env.pair(ns, "denied"))
	eventually(t, 60*time.Second, "Stalled=StepFailed", func() (bool, string) {
		got := getPair(t, ns, "denied")
		return conditionIs(got, drv1alpha1.ConditionStalled, metav1.ConditionTrue, controllers.ReasonStepFailed), describe(got)
	})
	got := getPair(t, ns, "denied")
	if msg := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled).Message; !strings.Contains(msg, "Access is denied") ||
		!strings.Contains(msg, "fe01.pool01.contoso.com") || !strings.Contains(msg, drv1alpha1.RequestedAtAnnotation) {
		t.Fatalf("the stall must carry the agent's reason, the server and how to retry: %s", msg)
	}
	// Passes come and go (each poke is one, and the next poke's pass starts after it ended); none
	// retries.
	for i := 0; i < 4; i++ {
		pokeAndWait(t, m, ns, "denied")
	}
	if got := getPair(t, ns, "denied"); !conditionIs(got, drv1alpha1.ConditionStalled, metav1.ConditionTrue, controllers.ReasonStepFailed) {
		t.Fatalf("the stall did not hold: %s", describe(got))
	}
	if n := agents.starts(); n != 1 {
		t.Fatalf("a failure no retry fixes was tried %d times", n)
	}

	agents.answer.Store(nil) // the administrator granted the rights
	got = getPair(t, ns, "denied")
	patch := client.MergeFrom(got.DeepCopy())
	got.Annotations[drv1alpha1.RequestedAtAnnotation] = "2026-12-02T11:00:00Z"
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "denied", 60*time.Second)
}

// TestStepThatSucceedsWithoutEffectIsPacedThenStalls: an agent says LYNCBACKUP started, but the
// service never shows Running. Each such success counts as a failure for the backoff: the step is
// asked again only as the backoff allows, and the pair stalls at the retry limit.
func TestStepThatSucceedsWithoutEffectIsPacedThenStalls(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	agents := &scriptedAgents{kind: protocol.KindStartBackupService, endpoint: env.runner.Endpoints()["fe01.pool01.contoso.com"]}
	agents.answer.Store(&protocol.Operation{State: protocol.StateSucceeded, Message: "LYNCBACKUP service started"})
	startManager(t, env.reconcilerVia(agents))
	ns := newNamespace(t)
	create(t, env.pair(ns, "no-effect"))
	eventually(t, 60*time.Second, "Stalled=RetriesExhausted", func() (bool, string) {
		got := getPair(t, ns, "no-effect")
		return conditionIs(got, drv1alpha1.ConditionStalled, metav1.ConditionTrue, controllers.ReasonRetriesExhausted), describe(got)
	})
	got := getPair(t, ns, "no-effect")
	if msg := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled).Message; !strings.Contains(msg, "without its effect showing") {
		t.Fatalf("stall message: %s", msg)
	}
	// The test backoff's limit is 4: the first success and three paced retries.
	if n := agents.starts(); n != 4 {
		t.Fatalf("StartBackupService asked %d times, want 4", n)
	}
}
