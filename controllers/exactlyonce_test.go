package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

var pool01Servers = []string{"fe01.pool01.contoso.com", "fe02.pool01.contoso.com"}
var pool02Servers = []string{"fe01.pool02.contoso.com", "fe02.pool02.contoso.com"}

// assertExactlyOnce fails the test for every step the sim ran more than once (a second run of a
// step beside or after a successful one), and for more Bootstrapper runs at once in a pool than
// maxParallel.
func assertExactlyOnce(t testing.TB, env *simEnv, maxParallel int) {
	t.Helper()
	tl := env.d.Timeline()
	for _, d := range sim.Duplicates(tl) {
		t.Errorf("duplicate: %s", d)
	}
	for _, servers := range [][]string{pool01Servers, pool02Servers} {
		if n := sim.MaxConcurrent(tl, string(protocol.KindBootstrap), servers); n > maxParallel {
			t.Errorf("%d Bootstrapper runs at once on %v; maxParallelPerPool is %d", n, servers, maxParallel)
		}
	}
	if t.Failed() {
		for _, e := range tl {
			t.Logf("timeline: %+v", e)
		}
	}
}

// agentWrapper stands between the reconciler and the sim's agents: it embeds the real client,
// which reconcilerVia sets on first use.
type agentWrapper interface {
	controllers.AgentClient
	setAgents(controllers.AgentClient)
}

// reconcilerVia points the controller at the sim with test-sized timings, through w.
func (e *simEnv) reconcilerVia(w agentWrapper) func(*controllers.PoolPairReconciler) {
	return func(r *controllers.PoolPairReconciler) {
		e.fastReconciler(r)
		var once sync.Once
		var err error
		r.Connect = func(m controllers.TLSMaterial) (controllers.AgentClient, error) {
			once.Do(func() {
				var c *agentclient.Client
				c, err = agentclient.New(agentclient.Config{CertPEM: m.CertPEM, KeyPEM: m.KeyPEM, CAPEM: m.CAPEM, Timeout: r.AgentTimeout})
				w.setAgents(c)
			})
			return w, err
		}
	}
}

// crashPoint is where the first manager stops in the start path of a step.
type crashPoint string

const (
	beforeRecord  crashPoint = "before the write-ahead record"
	beforeRequest crashPoint = "after the record before the request"
	beforeAnswer  crashPoint = "after the request before its answer"
)

// crashingAgents stops the start path of the first step of kind at the point: it blocks there
// until the manager stops (its context ends), as if the process died.
type crashingAgents struct {
	controllers.AgentClient
	kind  protocol.OperationKind
	point crashPoint
	once  sync.Once
	hit   chan struct{}
}

func (c *crashingAgents) setAgents(a controllers.AgentClient) { c.AgentClient = a }

func (c *crashingAgents) StartOperation(ctx context.Context, e string, r protocol.OperationRequest) (protocol.Operation, error) {
	if r.Kind != c.kind || (c.point != beforeRequest && c.point != beforeAnswer) {
		return c.AgentClient.StartOperation(ctx, e, r)
	}
	crash := false
	c.once.Do(func() { crash = true })
	if !crash {
		return c.AgentClient.StartOperation(ctx, e, r)
	}
	if c.point == beforeAnswer {
		if _, err := c.AgentClient.StartOperation(ctx, e, r); err != nil {
			return protocol.Operation{}, err
		}
	}
	close(c.hit)
	<-ctx.Done()
	return protocol.Operation{}, ctx.Err()
}

// recordsKind reports whether a status patch records a step of kind in state Starting.
func recordsKind(patch client.Patch, obj client.Object, kind protocol.OperationKind) bool {
	raw, err := patch.Data(obj)
	return err == nil && strings.Contains(string(raw), `"kind":"`+string(kind)+`"`) && strings.Contains(string(raw), drv1alpha1.OperationStateStarting)
}

// TestManagerStoppedAnywhereInTheStartPathRunsEachStepOnce: the manager dies before the
// write-ahead record, between the record and the request, and between the request and its
// answer, for a topology write and for Bootstrapper. A new manager finishes the pairing, and the
// sim's own timeline shows every step ran once.
func TestManagerStoppedAnywhereInTheStartPathRunsEachStepOnce(t *testing.T) {
	requireAPIServer(t)
	for _, kind := range []protocol.OperationKind{protocol.KindPairPools, protocol.KindBootstrap} {
		for _, point := range []crashPoint{beforeRecord, beforeRequest, beforeAnswer} {
			t.Run(string(kind)+" "+string(point), func(t *testing.T) {
				env := startSim(t, testDurations, nil)
				ns := newNamespace(t)
				crasher := &crashingAgents{kind: kind, point: point, hit: make(chan struct{})}
				var recordOnce sync.Once
				stop := startManagerStoppable(t, func(r *controllers.PoolPairReconciler) {
					env.reconcilerVia(crasher)(r)
					if point == beforeRecord {
						r.Client = interceptor.NewClient(mgrClientWithWatch{r.Client}, interceptor.Funcs{
							SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
								crash := false
								if recordsKind(patch, obj, kind) {
									recordOnce.Do(func() { crash = true })
								}
								if crash {
									close(crasher.hit)
									<-ctx.Done()
									return ctx.Err()
								}
								return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
							},
						})
					}
				})
				create(t, env.pair(ns, "crash"))
				select {
				case <-crasher.hit:
				case <-time.After(30 * time.Second):
					t.Fatalf("the manager never reached %s of %s: %s", point, kind, describe(getPair(t, ns, "crash")))
				}
				stop()

				// What the dead manager left behind.
				got := getPair(t, ns, "crash")
				var recorded *drv1alpha1.OperationStatus
				if kind == protocol.KindPairPools {
					recorded = got.Status.Operation
				} else {
					for _, s := range got.Status.Servers {
						if s.Operation != nil && s.Operation.Kind == string(kind) {
							recorded = s.Operation
						}
					}
				}
				if (point == beforeRecord) != (recorded == nil) {
					t.Fatalf("crash %s: recorded operation %+v", point, recorded)
				}
				if recorded != nil && recorded.State != drv1alpha1.OperationStateStarting {
					t.Fatalf("crash %s: recorded operation in state %q, want Starting", point, recorded.State)
				}

				startManager(t, env.fastReconciler)
				waitReady(t, ns, "crash", 60*time.Second)
				assertExactlyOnce(t, env, 1)
				if n := env.d.Counts()["PairPools/pool01.contoso.com"]; n != 1 {
					t.Errorf("PairPools ran %d times", n)
				}
			})
		}
	}
}

// bootstrapRuns lists the Bootstrapper runs on server, oldest first.
func bootstrapRuns(env *simEnv, server string) []sim.Execution {
	var runs []sim.Execution
	for _, e := range env.d.Timeline() {
		if e.Kind == string(protocol.KindBootstrap) && e.Target == server {
			runs = append(runs, e)
		}
	}
	return runs
}

// slowBootstrap makes Bootstrapper runs long enough to act while one runs.
var slowBootstrap = map[string]string{
	"pairPools": "100ms", "bootstrap": "1500ms", "startBackupService": "50ms", "syncBackup": "100ms",
	"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500",
}

// waitBootstrapRunning waits until Bootstrapper runs, for the run-th time, on one of servers (all
// when none are named), and returns that server. It watches the deployment itself, not the
// status: a poll of the API server can miss a 1.5 s run on a loaded machine.
func waitBootstrapRunning(t testing.TB, env *simEnv, run int, servers ...string) string {
	t.Helper()
	if len(servers) == 0 {
		servers = append(append([]string{}, pool01Servers...), pool02Servers...)
	}
	var running string
	eventually(t, 30*time.Second, fmt.Sprintf("Bootstrapper run %d on one of %v", run, servers), func() (bool, string) {
		for _, s := range servers {
			if runs := bootstrapRuns(env, s); len(runs) == run && runs[run-1].Finished == nil {
				running = s
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", env.d.Timeline())
	})
	return running
}

// TestSpecEditMidStepStartsNothingTwice: a generation bump while Bootstrapper runs neither starts
// a second run on that server nor another server of its pool beyond maxParallelPerPool.
func TestSpecEditMidStepStartsNothingTwice(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, slowBootstrap, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "edit"))
	waitBootstrapRunning(t, env, 1)
	got := getPair(t, ns, "edit")
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Sync.StableFor = &metav1.Duration{Duration: 400 * time.Millisecond}
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	if g := getPair(t, ns, "edit"); g.Generation < 2 {
		t.Fatalf("generation %d after the edit", g.Generation)
	}
	waitReady(t, ns, "edit", 60*time.Second)
	assertExactlyOnce(t, env, 1)
}

// TestStatusWipedMidRetryAdoptsTheRunningStep: fe01's first Bootstrapper run fails; while the
// retry (attempt 1) runs, the status is wiped. The manager adopts the run it finds on the agent
// instead of starting another, and never runs more than maxParallelPerPool at once.
func TestStatusWipedMidRetryAdoptsTheRunningStep(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, slowBootstrap, func(yaml string) string {
		return strings.Replace(yaml, "      - fqdn: fe01.pool01.contoso.com\n", "      - fqdn: fe01.pool01.contoso.com\n        faults: {bootstrapFailures: 1}\n", 1)
	})
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "wipe"))
	server := waitBootstrapRunning(t, env, 2, "fe01.pool01.contoso.com")
	wipeStatus(t, ns, "wipe")
	wiped := time.Now()
	poke(t, ns, "wipe")
	waitReady(t, ns, "wipe", 60*time.Second)
	assertExactlyOnce(t, env, 1)
	if runs := bootstrapRuns(env, server); len(runs) < 2 || runs[1].Finished == nil || runs[1].Finished.Before(wiped) {
		t.Errorf("the status was wiped at %s, not while the retry ran: %+v", wiped.Format(time.RFC3339Nano), runs)
	}
	if n := env.d.Counts()["Bootstrap/fe01.pool01.contoso.com"]; n != 2 {
		t.Errorf("Bootstrap on fe01.pool01 ran %d times; want 2 (the failure and its retry)", n)
	}
}

// TestAgentRestartMidBootstrapTracksTheRunToItsEnd: fe01's agent crashes and restarts while its
// Bootstrapper runs; the run goes on, the new agent reports it, and it is not started again.
func TestAgentRestartMidBootstrapTracksTheRunToItsEnd(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, slowBootstrap, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "agent-restart"))
	if err := env.runner.RestartAgent(waitBootstrapRunning(t, env, 1)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "agent-restart", 60*time.Second)
	assertExactlyOnce(t, env, 1)
	for _, s := range append(append([]string{}, pool01Servers...), pool02Servers...) {
		if n := env.d.Counts()["Bootstrap/"+s]; n != 1 {
			t.Errorf("Bootstrap on %s ran %d times", s, n)
		}
	}
}

// TestOperationsRunOnTheServerTheyWereRecordedFor: every step is recorded with the Front End that
// runs it, and a server endpoint that answers as another server (a wrong DNS record) is reported,
// never sent an operation.
func TestOperationsRunOnTheServerTheyWereRecordedFor(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "identity")
	urls := env.runner.Endpoints()
	// fe02.pool02's name resolves to fe01.pool02.
	pp.Spec.Backup.Servers[1].AgentEndpoint = urls["fe01.pool02.contoso.com"]
	create(t, pp)
	eventually(t, 30*time.Second, "fe02.pool02 reported as answering for another server", func() (bool, string) {
		got := getPair(t, ns, "identity")
		c := conditionOf(got, drv1alpha1.ConditionAgentsReachable)
		return c != nil && strings.Contains(c.Message, "answered as server") && strings.Contains(c.Message, "fe02.pool02.contoso.com"), describe(got)
	})
	// Fixed: the pair converges, and fe02.pool02 was only ever driven through its own agent.
	got := getPair(t, ns, "identity")
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Backup.Servers[1].AgentEndpoint = urls["fe02.pool02.contoso.com"]
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	got = waitReady(t, ns, "identity", 60*time.Second)
	for _, s := range got.Status.Servers {
		if last := s.LastOperation; last == nil || last.Server != s.FQDN || last.Endpoint != urls[s.FQDN] {
			t.Errorf("%s: last operation %+v not run on its own agent %s", s.FQDN, last, urls[s.FQDN])
		}
	}
	if last := got.Status.LastOperation; last == nil || last.Kind != string(protocol.KindPairPools) || last.Endpoint != urls[last.Server] {
		t.Errorf("PairPools recorded as %+v", last)
	}
	for _, e := range env.d.Timeline() {
		if e.Kind == string(protocol.KindBootstrap) && e.Target != e.Server {
			t.Errorf("Bootstrap of %s ran on %s", e.Target, e.Server)
		}
	}
	assertExactlyOnce(t, env, 1)
}

// TestBothDirectionsSyncAtOnce: each pool's forced sync runs on its own Front End, at the same
// time (the sim's timeline shows the two runs overlapping).
func TestBothDirectionsSyncAtOnce(t *testing.T) {
	requireAPIServer(t)
	durations := map[string]string{"pairPools": "50ms", "bootstrap": "50ms", "startBackupService": "50ms", "syncBackup": "1s",
		"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500"}
	env := startSim(t, durations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "both-ways"))
	waitReady(t, ns, "both-ways", 60*time.Second)
	var syncs []sim.Execution
	for _, e := range env.d.Timeline() {
		if e.Kind == string(protocol.KindSyncBackup) {
			syncs = append(syncs, e)
		}
	}
	if len(syncs) != 2 || syncs[0].Finished == nil || syncs[1].Finished == nil {
		t.Fatalf("forced syncs: %+v", syncs)
	}
	if !syncs[1].Started.Before(*syncs[0].Finished) || !syncs[0].Started.Before(*syncs[1].Finished) {
		t.Errorf("the two directions synced one after the other: %+v", syncs)
	}
	assertExactlyOnce(t, env, 1)
}

// TestUnreachablePoolKeepsTheBackupHistory: while a pool's agents do not answer, status.backup keeps
// what was last known (when each direction became healthy, when it last synced).
func TestUnreachablePoolKeepsTheBackupHistory(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "flap"))
	waitReady(t, ns, "flap", 60*time.Second)
	// Ready can come while a forced sync's record is still being closed: start from a settled
	// history.
	var before []drv1alpha1.BackupDirectionStatus
	eventually(t, 30*time.Second, "no forced sync in flight", func() (bool, string) {
		got := getPair(t, ns, "flap")
		before = got.Status.Backup
		for _, d := range before {
			if d.Operation != nil {
				return false, describe(got)
			}
		}
		return len(before) == 2, describe(got)
	})
	for _, s := range pool02Servers {
		if err := env.d.SetUnreachable(s, true); err != nil {
			t.Fatal(err)
		}
	}
	poke(t, ns, "flap")
	var got *drv1alpha1.PoolPair
	eventually(t, 30*time.Second, "pool02 reported unreachable", func() (bool, string) {
		got = getPair(t, ns, "flap")
		return conditionIs(got, drv1alpha1.ConditionAgentsReachable, metav1.ConditionFalse, ""), describe(got)
	})
	if len(got.Status.Backup) != 2 {
		t.Fatalf("backup history lost while pool02 is unreachable: %+v", got.Status.Backup)
	}
	for i, d := range got.Status.Backup {
		b := before[i]
		if d.From != b.From || !d.StableSince.Equal(b.StableSince) || !d.LastSyncTime.Equal(b.LastSyncTime) || d.UnhealthySince != nil {
			t.Errorf("direction from %s changed while unreadable: before %+v, now %+v", b.From, b, d)
		}
	}
}

func conditionOf(pp *drv1alpha1.PoolPair, t string) *metav1.Condition {
	for i := range pp.Status.Conditions {
		if pp.Status.Conditions[i].Type == t {
			return &pp.Status.Conditions[i]
		}
	}
	return nil
}

// TestTopologyWriteWhoseServerVanishedIsNotStartedElsewhere: the manager dies after sending
// PairPools to fe01.pool01 and before the answer; then fe01.pool01 stops answering. The new
// manager knows from the write-ahead record where the write runs: it waits for that server
// instead of starting the write again on another Front End.
func TestTopologyWriteWhoseServerVanishedIsNotStartedElsewhere(t *testing.T) {
	requireAPIServer(t)
	durations := map[string]string{"pairPools": "3s", "bootstrap": "100ms", "startBackupService": "50ms", "syncBackup": "100ms",
		"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500"}
	env := startSim(t, durations, nil)
	ns := newNamespace(t)
	crasher := &crashingAgents{kind: protocol.KindPairPools, point: beforeAnswer, hit: make(chan struct{})}
	stop := startManagerStoppable(t, env.reconcilerVia(crasher))
	create(t, env.pair(ns, "vanished"))
	select {
	case <-crasher.hit:
	case <-time.After(30 * time.Second):
		t.Fatalf("PairPools never sent: %s", describe(getPair(t, ns, "vanished")))
	}
	stop()
	if err := env.d.SetUnreachable("fe01.pool01.contoso.com", true); err != nil {
		t.Fatal(err)
	}
	startManager(t, env.fastReconciler)
	eventually(t, 30*time.Second, "the new manager to see fe01.pool01 unreachable", func() (bool, string) {
		got := getPair(t, ns, "vanished")
		c := conditionOf(got, drv1alpha1.ConditionAgentsReachable)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "fe01.pool01.contoso.com"), describe(got)
	})
	got := getPair(t, ns, "vanished")
	if op := got.Status.Operation; op == nil || op.Kind != string(protocol.KindPairPools) || op.Server != "fe01.pool01.contoso.com" {
		t.Errorf("the recorded topology write: %+v", op)
	}
	if n := env.d.Counts()["PairPools/pool01.contoso.com"]; n != 1 {
		t.Errorf("PairPools started %d times while its server did not answer", n)
	}
	if err := env.d.SetUnreachable("fe01.pool01.contoso.com", false); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "vanished", 60*time.Second)
	assertExactlyOnce(t, env, 1)
}

// TestTopologyWritesOfOneDeploymentRunOneAtATime: two PoolPairs of one Lync deployment (one
// Central Management Store) are created at once; their topology writes never overlap.
func TestTopologyWritesOfOneDeploymentRunOneAtATime(t *testing.T) {
	requireAPIServer(t)
	env := serveSim(t, manyPairsYAML(2, "500ms"), false)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	urls := env.runner.Endpoints()
	for i := 0; i < 2; i++ {
		pool := func(side string) drv1alpha1.PoolSpec {
			fqdn, fe := fmt.Sprintf("%s%d.contoso.com", side, i), fmt.Sprintf("fe.%s%d.contoso.com", side, i)
			return drv1alpha1.PoolSpec{FQDN: fqdn, AgentEndpoint: urls[fqdn], Servers: []drv1alpha1.ServerSpec{{FQDN: fe, AgentEndpoint: urls[fe]}}}
		}
		create(t, &drv1alpha1.PoolPair{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pair-%d", i)},
			Spec: drv1alpha1.PoolPairSpec{Primary: pool("a"), Backup: pool("b"),
				Sync: drv1alpha1.SyncSpec{StableFor: &metav1.Duration{}, CheckInterval: &metav1.Duration{Duration: time.Hour}}},
		})
	}
	waitReady(t, ns, "pair-0", 60*time.Second)
	waitReady(t, ns, "pair-1", 60*time.Second)
	var writes []sim.Execution
	for _, e := range env.d.Timeline() {
		if e.Kind == string(protocol.KindPairPools) {
			writes = append(writes, e)
		}
	}
	if len(writes) != 2 {
		t.Fatalf("topology writes: %+v", writes)
	}
	first, second := writes[0], writes[1]
	if second.Started.Before(first.Started) {
		first, second = second, first
	}
	if first.Finished == nil || second.Started.Before(*first.Finished) {
		t.Errorf("the two topology writes overlapped: %+v and %+v", first, second)
	}
	assertExactlyOnce(t, env, 1)
}

// TestSlowReadsAndReadsBehindWritesStillConverge: every read takes 300 ms, and an agent answers no
// read while it runs a write (the single PowerShell host of old agents): the server running the
// 6 s topology write looks unreachable to the manager's 2 s reads for as long as it runs. The
// pool is read through its other server, nothing runs twice, and the pair converges.
func TestSlowReadsAndReadsBehindWritesStillConverge(t *testing.T) {
	requireAPIServer(t)
	durations := map[string]string{"pairPools": "6s", "bootstrap": "150ms", "startBackupService": "50ms", "syncBackup": "1s",
		"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500", "read": "300ms"}
	env := startSim(t, durations, func(yaml string) string {
		return strings.Replace(yaml, "readsWaitForWrites: false", "readsWaitForWrites: true", 1)
	})
	if latency, wait := env.d.Reads(); latency != 300*time.Millisecond || !wait {
		t.Fatalf("sim reads: latency %v, wait for writes %v", latency, wait)
	}
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "slow"))
	eventually(t, 30*time.Second, "the topology write running", func() (bool, string) {
		got := getPair(t, ns, "slow")
		op := got.Status.Operation
		return op != nil && op.Kind == string(protocol.KindPairPools) && op.State != drv1alpha1.OperationStateStarting, describe(got)
	})
	poke(t, ns, "slow") // a pass while the write runs
	waitReady(t, ns, "slow", 90*time.Second)
	// The fault was felt: the writing server's reads timed out on some pass.
	if events := eventReasons(t, ns, "slow"); countReason(events, "AgentsUnreachable") == 0 {
		t.Errorf("no pass saw the writing server's reads wait:\n%s", strings.Join(events, "\n"))
	}
	assertExactlyOnce(t, env, 1)
}
