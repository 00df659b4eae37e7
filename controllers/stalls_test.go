package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

// The sim's faults, injected into a running pairing: each ends in the stall or condition the
// README promises for it, and the pair converges once the fault is gone.

// requestRetry sets the requested-at annotation, as the README tells an administrator to.
func requestRetry(t testing.TB, ns, name, value string) {
	t.Helper()
	got := getPair(t, ns, name)
	patch := client.MergeFrom(got.DeepCopy())
	if got.Annotations == nil {
		got.Annotations = map[string]string{}
	}
	got.Annotations[drv1alpha1.RequestedAtAnnotation] = value
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
}

// waitPasses waits until the manager has started n more passes of the PoolPair than it had when
// called (passes of one PoolPair run one at a time: when pass k+1 starts, pass k has ended).
func waitPasses(t testing.TB, m *manager, name string, n int) {
	t.Helper()
	want := m.counter.Gets(name) + n
	eventually(t, 30*time.Second, fmt.Sprintf("%d more passes", n), func() (bool, string) {
		return m.counter.Gets(name) >= want, fmt.Sprintf("%d passes, want %d", m.counter.Gets(name), want)
	})
}

// pokeAndWait triggers a pass with an unrelated annotation and waits until it has started; the
// pass before it has then ended.
func pokeAndWait(t testing.TB, m *manager, ns, name string) {
	t.Helper()
	want := m.counter.Gets(name) + 1
	poke(t, ns, name)
	eventually(t, 30*time.Second, "the poke's pass", func() (bool, string) {
		return m.counter.Gets(name) >= want, fmt.Sprintf("%d passes, want %d", m.counter.Gets(name), want)
	})
}

func executions(env *simEnv, kind protocol.OperationKind, target string) []sim.Execution {
	var out []sim.Execution
	for _, x := range env.d.Timeline() {
		if x.Kind == string(kind) && (target == "" || x.Target == target) {
			out = append(out, x)
		}
	}
	return out
}

// TestBackupServiceThatWillNotStartStallsThenRecovers: LYNCBACKUP will not start on one server
// (ServiceWillNotStart): each failed start is retried as the backoff allows, BackupServiceRunning
// names the server, and at the retry limit the pair stalls with the service's error. Fixed, the
// requested-at annotation starts it again and the pair converges.
func TestBackupServiceThatWillNotStartStallsThenRecovers(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	const broken = "fe02.pool02.contoso.com"
	if err := env.d.SetFaults(broken, sim.ServerFaults{ServiceWillNotStart: true}); err != nil {
		t.Fatal(err)
	}
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "no-service"))
	got := waitStalled(t, ns, "no-service", controllers.ReasonRetriesExhausted, broken)
	if msg := conditionOf(got, drv1alpha1.ConditionStalled).Message; !strings.Contains(msg, "did not start") || !strings.Contains(msg, string(protocol.KindStartBackupService)) {
		t.Errorf("the stall must carry the service's error: %s", msg)
	}
	if c := conditionOf(got, drv1alpha1.ConditionBackupServiceRunning); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, broken) {
		t.Errorf("BackupServiceRunning must be False naming %s: %s", broken, describe(got))
	}
	if got.Status.Phase != drv1alpha1.PhaseBootstrapped || !conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionBootstrapped) {
		t.Errorf("every server was bootstrapped: %s", describe(got))
	}
	starts := executions(env, protocol.KindStartBackupService, broken)
	if len(starts) != int(testBackoff.Limit) {
		t.Errorf("LYNCBACKUP start tried %d times on %s, want the retry limit %d: %+v", len(starts), broken, testBackoff.Limit, starts)
	}
	for _, x := range starts {
		if x.Outcome != sim.OutcomeFailed {
			t.Errorf("a start of the broken service did not fail: %+v", x)
		}
	}

	if err := env.d.SetFaults(broken, sim.ServerFaults{}); err != nil {
		t.Fatal(err)
	}
	requestRetry(t, ns, "no-service", "2026-12-03T09:00:00Z")
	waitReady(t, ns, "no-service", 30*time.Second)
	if n := len(executions(env, protocol.KindStartBackupService, broken)); n != int(testBackoff.Limit)+1 {
		t.Errorf("LYNCBACKUP start tried %d times in all on %s, want %d", n, broken, testBackoff.Limit+1)
	}
	assertExactlyOnce(t, env, 1)
}

// TestUnreachablePoolIsWaitedForNotStalled: every agent of the backup pool is down (and its DNS
// name leads only to them). That is no stall: AgentsReachable names them, the pair waits, nothing
// runs on the other pool meanwhile, and it converges once they answer.
func TestUnreachablePoolIsWaitedForNotStalled(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	for _, s := range pool02Servers {
		if err := env.runner.StopEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	m := startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "dark"))
	eventually(t, 30*time.Second, "AgentsReachable=False naming pool02 and its servers", func() (bool, string) {
		got := getPair(t, ns, "dark")
		c := conditionOf(got, drv1alpha1.ConditionAgentsReachable)
		ok := c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "pool02.contoso.com (")
		for _, s := range pool02Servers {
			ok = ok && c != nil && strings.Contains(c.Message, s)
		}
		return ok, describe(got)
	})
	// Several passes come and go (the unreachable retry is 300 ms): none stalls, none acts.
	waitPasses(t, m, "dark", 3)
	got := getPair(t, ns, "dark")
	if c := conditionOf(got, drv1alpha1.ConditionStalled); c != nil {
		t.Errorf("an unreachable pool is not a stall: %s", describe(got))
	}
	if !conditionIs(got, drv1alpha1.ConditionReconciling, metav1.ConditionTrue, controllers.StepWaitingForAgents) ||
		!conditionIs(got, drv1alpha1.ConditionReady, metav1.ConditionFalse, "") {
		t.Errorf("want Reconciling=True WaitingForAgents and Ready=False: %s", describe(got))
	}
	if counts := env.d.Counts(); len(counts) != 0 {
		t.Errorf("steps ran while a pool could not be read: %v", counts)
	}

	for _, s := range pool02Servers {
		if err := env.runner.StartEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	got = waitReady(t, ns, "dark", 60*time.Second)
	if !conditionIs(got, drv1alpha1.ConditionAgentsReachable, metav1.ConditionTrue, "") {
		t.Errorf("agents still reported unreachable: %s", describe(got))
	}
	assertExactlyOnce(t, env, 1)
}

// TestAgentSlowerThanTheRequestTimeout: while a Bootstrapper run is in flight, every read starts
// taking longer than the manager's request timeout. The pools and servers are reported
// unreachable (not stalled), the runs in flight are followed to their end (the operation reads
// are not slow), nothing new starts while the pools cannot be read, and the pair converges once
// reads are fast again.
func TestAgentSlowerThanTheRequestTimeout(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, map[string]string{"pairPools": "100ms", "bootstrap": "1200ms", "startBackupService": "50ms", "syncBackup": "100ms",
		"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500"}, nil)
	// A short request timeout keeps the passes short: a pool that does not answer in time is
	// tried through each of its servers and its DNS name, one after the other.
	const agentTimeout = 500 * time.Millisecond
	m := startManager(t, func(r *controllers.PoolPairReconciler) {
		env.fastReconciler(r)
		r.AgentTimeout = agentTimeout
	})
	ns := newNamespace(t)
	create(t, env.pair(ns, "slow"))
	eventually(t, 30*time.Second, "a Bootstrapper run in the sim", func() (bool, string) {
		return len(executions(env, protocol.KindBootstrap, "")) > 0, fmt.Sprint(env.d.Timeline())
	})
	if err := env.d.SetReads(agentTimeout+time.Second, false); err != nil {
		t.Fatal(err)
	}
	// A pass that read before the change may still start a step; once a later pass (the poke's)
	// has started, it has ended.
	pokeAndWait(t, m, ns, "slow")
	slowFrom := len(env.d.Timeline())
	inFlight := 0
	for _, x := range env.d.Timeline() {
		if x.Finished == nil {
			inFlight++
		}
	}
	if inFlight == 0 {
		t.Fatalf("no step in flight when reads became slow: %+v", env.d.Timeline())
	}
	eventually(t, 30*time.Second, "the servers reported unreachable", func() (bool, string) {
		got := getPair(t, ns, "slow")
		c := conditionOf(got, drv1alpha1.ConditionAgentsReachable)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "fe01.pool01.contoso.com"), describe(got)
	})
	// The runs in flight end in the sim; then at least one whole pass runs with slow reads.
	eventually(t, 30*time.Second, "the Bootstrapper runs in flight to end", func() (bool, string) {
		tl := env.d.Timeline()
		for _, x := range tl {
			if x.Finished == nil {
				return false, fmt.Sprintf("%+v", x)
			}
		}
		return true, ""
	})
	waitPasses(t, m, "slow", 2)
	got := getPair(t, ns, "slow")
	if c := conditionOf(got, drv1alpha1.ConditionStalled); c != nil {
		t.Errorf("slow agents are not a stall: %s", describe(got))
	}
	for _, s := range got.Status.Servers {
		if s.Operation != nil {
			t.Errorf("%s: the run that ended is still recorded in flight: %+v", s.FQDN, s.Operation)
		}
	}
	if tl := env.d.Timeline(); len(tl) != slowFrom {
		t.Errorf("steps started while no pool could be read in time: %+v", tl[slowFrom:])
	}
	if events := eventReasons(t, ns, "slow"); countReason(events, "BootstrapSucceeded") < inFlight {
		t.Errorf("the %d runs in flight were not followed to their end:\n%s", inFlight, strings.Join(events, "\n"))
	}
	if err := env.d.SetReads(0, false); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "slow", 60*time.Second)
	assertExactlyOnce(t, env, 1)
}

// jumpClock is the reconciler's clock: real time, plus however far the test moved it on.
type jumpClock struct{ offset atomic.Int64 }

func (c *jumpClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *jumpClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *jumpClock) jump(d time.Duration)            { c.offset.Add(int64(d)) }

// TestBackupUnhealthyPastSyncTimeoutStallsAndClears: a direction's export (or import) is in
// ErrorState from the start. Forced syncs keep being tried (paced, never given up on for the
// retry limit: sync.timeout is their limit); once the direction has been unhealthy for longer
// than spec.sync.timeout (the reconciler's clock is moved on past the schema's minimum, 1m), the
// pair stalls with SyncTimeout, syncs still go on, and the stall clears once the fault is gone.
func TestBackupUnhealthyPastSyncTimeoutStallsAndClears(t *testing.T) {
	requireAPIServer(t)
	for _, tc := range []struct {
		name string
		// from is the direction that goes unhealthy (it is read from that pool).
		from  string
		fault func(d *sim.Deployment, on bool) error
		// syncsFail: the forced syncs fail (an export error) rather than succeed without effect.
		syncsFail bool
	}{
		{"export error", "pool02.contoso.com", func(d *sim.Deployment, on bool) error { return d.SetExportError("pool02.contoso.com", "", on) }, true},
		{"import error", "pool01.contoso.com", func(d *sim.Deployment, on bool) error { return d.SetImportError("pool01.contoso.com", "", on) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startSim(t, testDurations, nil)
			if err := tc.fault(env.d, true); err != nil {
				t.Fatal(err)
			}
			clock := &jumpClock{}
			// A quick backoff, so that more syncs than its retry limit fail within moments.
			backoff := pairing.Backoff{Base: 100 * time.Millisecond, Cap: 400 * time.Millisecond, Limit: 4}
			startManager(t, func(r *controllers.PoolPairReconciler) {
				env.fastReconciler(r)
				r.Clock = clock
				r.Backoff = backoff
			})
			ns := newNamespace(t)
			pp := env.pair(ns, "timeout")
			const timeout = time.Minute // the schema's minimum
			pp.Spec.Sync.Timeout = &metav1.Duration{Duration: timeout}
			create(t, pp)

			syncs := func() int { return len(executions(env, protocol.KindSyncBackup, tc.from)) }
			wantSyncs := 1
			if tc.syncsFail {
				wantSyncs = int(backoff.Limit) + 1
			}
			eventually(t, 30*time.Second, fmt.Sprintf("%d forced syncs of the unhealthy direction", wantSyncs), func() (bool, string) {
				got := getPair(t, ns, "timeout")
				if c := conditionOf(got, drv1alpha1.ConditionStalled); c != nil {
					t.Fatalf("stalled before sync.timeout: %s", describe(got))
				}
				unhealthy := false
				for _, d := range got.Status.Backup {
					unhealthy = unhealthy || d.From == tc.from && !d.Healthy && d.UnhealthySince != nil && strings.Contains(d.Message, "ErrorState")
				}
				return unhealthy && got.Status.Phase == drv1alpha1.PhaseBackupServiceStarted && syncs() >= wantSyncs,
					fmt.Sprintf("%d syncs; %s", syncs(), describe(got))
			})

			clock.jump(timeout + time.Second)
			poke(t, ns, "timeout")
			got := waitStalled(t, ns, "timeout", controllers.ReasonSyncTimeout, tc.from)
			msg := conditionOf(got, drv1alpha1.ConditionStalled).Message
			if !strings.Contains(msg, "spec.sync.timeout") || !strings.Contains(msg, "LS Backup Service") || !strings.Contains(msg, "ErrorState") {
				t.Errorf("the stall must say what timed out, what is wrong and where to look: %s", msg)
			}
			if !conditionIs(got, drv1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonSyncTimeout) ||
				!conditionIs(got, drv1alpha1.ConditionBackupSynced, metav1.ConditionFalse, "") || conditionOf(got, drv1alpha1.ConditionReconciling) != nil {
				t.Errorf("want Ready=False SyncTimeout, BackupSynced=False, no Reconciling: %s", describe(got))
			}
			// Syncs keep being retried while stalled.
			n := syncs()
			eventually(t, 30*time.Second, "another forced sync while stalled", func() (bool, string) {
				return syncs() > n, fmt.Sprintf("%d syncs", syncs())
			})

			if err := tc.fault(env.d, false); err != nil {
				t.Fatal(err)
			}
			got = waitReady(t, ns, "timeout", 30*time.Second)
			if c := conditionOf(got, drv1alpha1.ConditionStalled); c != nil {
				t.Errorf("the stall must clear once healthy: %s", describe(got))
			}
			// Forced syncs repeat by design here; every other step ran once.
			for _, d := range sim.Duplicates(env.d.Timeline()) {
				if !strings.HasPrefix(d, string(protocol.KindSyncBackup)+" ") {
					t.Errorf("duplicate: %s", d)
				}
			}
		})
	}
}

// TestAgentThatLostItsJournalMidBootstrap: a Front End's agent is reinstalled while its
// Bootstrapper runs (stopped, its journal deleted, started): the run goes on, and the new agent
// knows neither the operation nor that the server was bootstrapped. The manager finds its
// operation gone and tries again; it never runs Bootstrapper beside the run it lost, nor more
// servers of the pool at once than maxParallelPerPool, and the pair converges.
func TestAgentThatLostItsJournalMidBootstrap(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, slowBootstrap, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "amnesia"))
	// Bootstrapper runs in the sim (not only accepted by the agent).
	var server string
	eventually(t, 30*time.Second, "Bootstrapper running on a server of pool01", func() (bool, string) {
		for _, x := range executions(env, protocol.KindBootstrap, "") {
			if x.Finished == nil && slices.Contains(pool01Servers, x.Server) {
				server = x.Server
				return true, ""
			}
		}
		return false, fmt.Sprint(env.d.Timeline())
	})
	if err := env.runner.StopEndpoint(server); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(env.journalDir, server)
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the agent's journal is not where the test looks: %v", err)
	}
	if err := os.RemoveAll(journal); err != nil {
		t.Fatal(err)
	}
	if err := env.runner.StartEndpoint(server); err != nil {
		t.Fatal(err)
	}
	// A pass while the lost run still goes on (in production the operation poll comes within
	// 30 s, and Bootstrapper runs for minutes).
	poke(t, ns, "amnesia")
	waitReady(t, ns, "amnesia", 60*time.Second)

	tl := env.d.Timeline()
	for _, servers := range [][]string{pool01Servers, pool02Servers} {
		if n := sim.MaxConcurrent(tl, string(protocol.KindBootstrap), servers); n > 1 {
			t.Errorf("%d Bootstrapper runs at once on %v; maxParallelPerPool is 1", n, servers)
		}
	}
	// The new agent cannot tell the server was bootstrapped, so Bootstrapper runs once more, after
	// the lost run ended: the only repeat allowed.
	runs := executions(env, protocol.KindBootstrap, server)
	if len(runs) != 2 || runs[0].Finished == nil || runs[1].Started.Before(*runs[0].Finished) {
		t.Errorf("Bootstrapper runs on %s: %+v; want the lost run, then one more after it ended", server, runs)
	}
	for _, d := range sim.Duplicates(tl) {
		if !strings.HasPrefix(d, string(protocol.KindBootstrap)+" "+server+" ") || !strings.Contains(d, "succeeded at") {
			t.Errorf("duplicate: %s", d)
		}
	}
	if events := eventReasons(t, ns, "amnesia"); !slices.ContainsFunc(events, func(e string) bool {
		return strings.HasPrefix(e, "BootstrapFailed:") && strings.Contains(e, "no longer knows this operation")
	}) {
		t.Errorf("no event says the agent lost the operation:\n%s", strings.Join(events, "\n"))
	}
	if t.Failed() {
		for _, x := range tl {
			t.Logf("timeline: %+v", x)
		}
		for _, e := range listEvents(t, ns, "amnesia") {
			t.Logf("event: %s %s %s", e.EventTime.Format(time.StampMicro), e.Reason, e.Note)
		}
	}
}

// skewedAgents sends every request of one kind with a parameter the agents do not know (a newer
// manager talking to older agents), while skewed is set: the agent refuses it with 400.
type skewedAgents struct {
	controllers.AgentClient
	kind   protocol.OperationKind
	skewed atomic.Bool
	sent   atomic.Int64
}

func (s *skewedAgents) setAgents(a controllers.AgentClient) { s.AgentClient = a }

func (s *skewedAgents) StartOperation(ctx context.Context, e string, r protocol.OperationRequest) (protocol.Operation, error) {
	if r.Kind == s.kind && s.skewed.Load() {
		params := map[string]any{}
		if len(r.Params) > 0 {
			if err := json.Unmarshal(r.Params, &params); err != nil {
				return protocol.Operation{}, err
			}
		}
		params["maintenanceWindow"] = "Sat 02:00"
		raw, err := json.Marshal(params)
		if err != nil {
			return protocol.Operation{}, err
		}
		r.Params = raw
		s.sent.Add(1)
	}
	return s.AgentClient.StartOperation(ctx, e, r)
}

// TestRefusedParameterStallsWithStepRefused: the agent answers 400 to a step's parameters. The
// request never ran anything, so nothing is kept in flight: the pair stalls with StepRefused and
// the agent's reason, until the cause is fixed and a retry is requested.
func TestRefusedParameterStallsWithStepRefused(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	agents := &skewedAgents{kind: protocol.KindPairPools}
	agents.skewed.Store(true)
	startManager(t, env.reconcilerVia(agents))
	ns := newNamespace(t)
	create(t, env.pair(ns, "refused"))
	got := waitStalled(t, ns, "refused", controllers.ReasonStepRefused, "maintenanceWindow")
	msg := conditionOf(got, drv1alpha1.ConditionStalled).Message
	if !strings.Contains(msg, string(protocol.KindPairPools)) || !strings.Contains(msg, "fe01.pool01.contoso.com") || !strings.Contains(msg, "400") {
		t.Errorf("the stall must name the step, the server and the agent's answer: %s", msg)
	}
	if got.Status.Operation != nil {
		t.Errorf("a refused request is not in flight: %+v", got.Status.Operation)
	}
	if conditionOf(got, drv1alpha1.ConditionReconciling) != nil || conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionReady) {
		t.Errorf("want Stalled only: %s", describe(got))
	}
	if agents.sent.Load() == 0 || len(env.d.Counts()) != 0 {
		t.Errorf("sent %d refused requests; the sim ran %v", agents.sent.Load(), env.d.Counts())
	}

	agents.skewed.Store(false) // the agents were upgraded
	requestRetry(t, ns, "refused", "2026-12-03T10:00:00Z")
	waitReady(t, ns, "refused", 60*time.Second)
	assertExactlyOnce(t, env, 1)
}

// TestAgentTLSFromASecret: a PoolPair with spec.agent.tlsSecretRef, on a manager that has no
// client certificate of its own. The Secret missing, unlabelled, incomplete and unparseable each
// stall with their AgentTLS* reason and say what to do; a good labelled Secret (seen through the
// Secret watch, with no poke) converges. A PoolPair without the reference stalls with
// AgentTLSNotConfigured.
func TestAgentTLSFromASecret(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, func(r *controllers.PoolPairReconciler) {
		env.fastReconciler(r)
		r.AgentTLSDir = "" // only the Secret can reach the agents
	})
	ctx := context.Background()

	// Without a reference and without --agent-tls-dir there is no certificate at all.
	nsNone := newNamespace(t)
	none := newPair(nsNone, "no-tls", "pool51.contoso.com", "pool52.contoso.com")
	create(t, none)
	waitStalled(t, nsNone, "no-tls", controllers.ReasonAgentTLSNotConfigured, "--agent-tls-dir")

	ns := newNamespace(t)
	pp := env.pair(ns, "tls")
	pp.Spec.Agent.TLSSecretRef = &drv1alpha1.SecretReference{Name: "agent-client"}
	create(t, pp)
	waitStalled(t, ns, "tls", controllers.ReasonAgentTLSSecretNotFound, ns+"/agent-client")

	// Created without the label: the manager does not cache it, and says so.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-client"},
		Data:       map[string][]byte{"tls.crt": env.certs.ClientCertPEM, "tls.key": env.certs.ClientKeyPEM},
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "tls") // an unlabelled Secret wakes nothing
	got := waitStalled(t, ns, "tls", controllers.ReasonAgentTLSSecretNotLabelled, "kubectl label secret")
	if msg := conditionOf(got, drv1alpha1.ConditionStalled).Message; !strings.Contains(msg, drv1alpha1.AgentTLSSecretLabel) {
		t.Errorf("the stall must name the label: %s", msg)
	}

	// Labelled, but without ca.crt: the watch wakes the pair.
	patch := client.MergeFrom(secret.DeepCopy())
	secret.Labels = map[string]string{drv1alpha1.AgentTLSSecretLabel: "true"}
	if err := k8s.Patch(ctx, secret, patch); err != nil {
		t.Fatal(err)
	}
	waitStalled(t, ns, "tls", controllers.ReasonAgentTLSSecretInvalid, "ca.crt")

	// Complete, but the certificate is not one.
	patch = client.MergeFrom(secret.DeepCopy())
	secret.Data["ca.crt"] = env.certs.CACertPEM
	secret.Data["tls.crt"] = []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
	if err := k8s.Patch(ctx, secret, patch); err != nil {
		t.Fatal(err)
	}
	waitStalled(t, ns, "tls", controllers.ReasonAgentTLSSecretInvalid, "agent client certificate")
	if n := len(env.d.Counts()); n != 0 {
		t.Errorf("steps ran without a usable certificate: %v", env.d.Counts())
	}

	// Fixed: the pair converges through the Secret's certificate.
	patch = client.MergeFrom(secret.DeepCopy())
	secret.Data["tls.crt"] = env.certs.ClientCertPEM
	if err := k8s.Patch(ctx, secret, patch); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "tls", 60*time.Second)
	assertExactlyOnce(t, env, 1)
}

// TestEveryStalledReasonIsAsserted: every reason of the README's "Stalled reason" table is a
// reason the controller sets, and some test of this package waits for it.
func TestEveryStalledReasonIsAsserted(t *testing.T) {
	root := testenv.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(filepath.Join(root, "controllers", "report.go"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]string{} // reason -> its constant's name
	for _, m := range regexp.MustCompile(`(?m)^\s*(Reason\w+)\s*=\s*"(\w+)"`).FindAllSubmatch(report, -1) {
		defined[string(m[2])] = string(m[1])
	}
	text := string(readme)
	start := strings.Index(text, "| Stalled reason |")
	if start < 0 {
		t.Fatal(`README.md has no "| Stalled reason |" table`)
	}
	table := text[start:]
	if end := strings.Index(table, "\n\n"); end >= 0 {
		table = table[:end]
	}
	var reasons []string
	for _, line := range strings.Split(table, "\n")[2:] {
		cell := strings.SplitN(strings.TrimPrefix(line, "|"), "|", 2)[0]
		for _, m := range regexp.MustCompile("`([A-Za-z*]+)`").FindAllStringSubmatch(cell, -1) {
			name := m[1]
			if prefix, ok := strings.CutSuffix(name, "*"); ok {
				// A family such as AgentTLS*: every defined reason of it.
				n := 0
				for r := range defined {
					if strings.HasPrefix(r, prefix) {
						reasons = append(reasons, r)
						n++
					}
				}
				if n == 0 {
					t.Errorf("README promises %s, but the controller defines no such reason", name)
				}
				continue
			}
			if _, ok := defined[name]; !ok {
				t.Errorf("README promises Stalled reason %s, but the controller defines no such reason", name)
			}
			reasons = append(reasons, name)
		}
	}
	if len(reasons) < 10 {
		t.Fatalf("read only %d reasons from the README's table: %v", len(reasons), reasons)
	}
	files, err := filepath.Glob(filepath.Join(root, "controllers", "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	var tests strings.Builder
	for _, f := range files {
		if filepath.Base(f) == "stalls_test.go" {
			// This file's tests count, but not this function's own words.
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := string(data)
			if i := strings.Index(s, "func TestEveryStalledReasonIsAsserted"); i >= 0 {
				s = s[:i]
			}
			tests.WriteString(s)
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests.Write(data)
	}
	all := tests.String()
	slices.Sort(reasons)
	for _, r := range slices.Compact(reasons) {
		if !strings.Contains(all, `"`+r+`"`) && !strings.Contains(all, "controllers."+defined[r]) {
			t.Errorf("no controller test asserts the Stalled reason %s the README promises", r)
		}
	}
}
