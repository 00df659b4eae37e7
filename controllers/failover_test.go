package controllers_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const (
	pool01 = "pool01.contoso.com"
	pool02 = "pool02.contoso.com"
)

// failoverDurations make each failover cmdlet take long enough to be seen in flight.
var failoverDurations = map[string]string{
	"pairPools": "150ms", "bootstrap": "150ms", "startBackupService": "50ms", "syncBackup": "100ms",
	"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500",
	"failoverCMS": "200ms", "failoverPool": "300ms", "failbackPool": "300ms", "moveEdgeNextHop": "100ms",
}

// simPool reads a pool as the sim's topology has it, through a Front End of pool02 (which the
// tests never take down).
func simPool(t testing.TB, env *simEnv, fqdn string) protocol.Pool {
	t.Helper()
	b, err := env.d.Backend("fe01.pool02.contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.Pool(context.Background(), fqdn)
	if err != nil {
		t.Fatalf("reading %s from the sim: %v", fqdn, err)
	}
	return p
}

// setFailover writes spec.failover (nil removes it).
func setFailover(t testing.TB, ns, name string, f *drv1alpha1.FailoverSpec) {
	t.Helper()
	eventually(t, 10*time.Second, "spec.failover written", func() (bool, string) {
		pp := getPair(t, ns, name)
		patch := client.MergeFromWithOptions(pp.DeepCopy(), client.MergeFromWithOptimisticLock{})
		pp.Spec.Failover = f
		err := k8s.Patch(context.Background(), pp, patch)
		return err == nil, fmt.Sprint(err)
	})
}

// waitFailoverPhase waits for status.failover.phase.
func waitFailoverPhase(t testing.TB, ns, name string, phase drv1alpha1.FailoverPhase, timeout time.Duration) *drv1alpha1.PoolPair {
	t.Helper()
	var got *drv1alpha1.PoolPair
	eventually(t, timeout, "status.failover.phase "+string(phase), func() (bool, string) {
		got = getPair(t, ns, name)
		f := got.Status.Failover
		return f != nil && f.Phase == phase, describe(got) + failoverDescription(got)
	})
	return got
}

func failoverDescription(pp *drv1alpha1.PoolPair) string {
	f := pp.Status.Failover
	if f == nil {
		return "; no status.failover"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "; failover %s %s phase %s serving %q cms %q", f.Pool, f.Mode, f.Phase, f.Serving, f.CMSPool)
	for _, s := range f.Steps {
		fmt.Fprintf(&b, "; %s=%s (%s)", s.Name, s.State, s.Message)
	}
	if c := conditions.Get(pp.Status.Conditions, drv1alpha1.ConditionStalled); c != nil {
		fmt.Fprintf(&b, "; Stalled %s: %s", c.Reason, c.Message)
	}
	return b.String()
}

// failoverCounts are the sim's executions of the failover cmdlets, real and -WhatIf.
func failoverCounts(env *simEnv) map[string]int {
	out := map[string]int{}
	for k, v := range env.d.Counts() {
		for _, kind := range []protocol.OperationKind{protocol.KindFailoverCMS, protocol.KindMoveEdgeNextHop, protocol.KindFailoverPool, protocol.KindFailbackPool} {
			if strings.HasPrefix(k, string(kind)+"/") || strings.HasPrefix(k, string(kind)+"(WhatIf)/") {
				out[k] = v
			}
		}
	}
	return out
}

func TestRehearsalMovesNothingAndSaysWhatAFailoverWouldDo(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "rehearse"))
	waitReady(t, ns, "rehearse", 60*time.Second)
	before := []protocol.Pool{simPool(t, env, pool01), simPool(t, env, pool02)}

	setFailover(t, ns, "rehearse", &drv1alpha1.FailoverSpec{Pool: pool01, Mode: drv1alpha1.FailoverRehearsal, MoveEdgeNextHop: true})
	got := waitFailoverPhase(t, ns, "rehearse", drv1alpha1.FailoverPhaseRehearsed, 30*time.Second)

	after := []protocol.Pool{simPool(t, env, pool01), simPool(t, env, pool02)}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a rehearsal changed the deployment:\nbefore %+v\nafter  %+v", before, after)
	}
	counts := failoverCounts(env)
	for k, n := range counts {
		if !strings.Contains(k, "(WhatIf)") && n > 0 {
			t.Errorf("a rehearsal ran %s %d times for real", k, n)
		}
	}
	// pool01 hosts the CMS and is edge01's next hop: the rehearsal runs the CMS failover and the
	// Edge move with -WhatIf, and says why Invoke-CsPoolFailOver -WhatIf would only be refused.
	for _, k := range []string{"FailoverCMS(WhatIf)/" + pool02, "MoveEdgeNextHop(WhatIf)/edge01.contoso.com"} {
		if counts[k] != 1 {
			t.Errorf("%s ran %d times, want once; counts %v", k, counts[k], counts)
		}
	}
	if pool := got.Status.Failover.Steps[2]; pool.State != "Skipped" || !strings.Contains(pool.Message, "Invoke-CsPoolFailOver -PoolFqdn "+pool01) {
		t.Errorf("pool step of the rehearsal: %+v", pool)
	}
	f := got.Status.Failover
	if f.RecoveryTime == nil || f.Serving != "" || got.Status.Phase != drv1alpha1.PhaseSynced {
		t.Errorf("rehearsal status: %s", failoverDescription(got))
	}
	c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionFailedOver)
	if c == nil || c.Reason != "Rehearsed" || !strings.Contains(c.Message, "nothing moved") {
		t.Errorf("FailedOver condition after a rehearsal: %+v", c)
	}
	if !conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionReady) {
		t.Errorf("a rehearsal took the pair out of Ready: %s", describe(got))
	}

	// Removing it ends the rehearsal; the pair goes on as before.
	setFailover(t, ns, "rehearse", nil)
	eventually(t, 10*time.Second, "the FailedOver condition gone", func() (bool, string) {
		got = getPair(t, ns, "rehearse")
		return conditions.Get(got.Status.Conditions, drv1alpha1.ConditionFailedOver) == nil, describe(got)
	})

	// pool02 neither hosts the CMS nor is a next hop: Invoke-CsPoolFailOver -WhatIf runs.
	setFailover(t, ns, "rehearse", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverRehearsal})
	eventually(t, 30*time.Second, "a rehearsal of pool02", func() (bool, string) {
		got = getPair(t, ns, "rehearse")
		f := got.Status.Failover
		return f != nil && f.Pool == pool02 && f.Phase == drv1alpha1.FailoverPhaseRehearsed, failoverDescription(got)
	})
	if n := failoverCounts(env)["FailoverPool(WhatIf)/"+pool02]; n != 1 || got.Status.Failover.Message != "" {
		t.Errorf("FailoverPool(WhatIf)/%s ran %d times, want once; %s", pool02, n, failoverDescription(got))
	}
	if after := []protocol.Pool{simPool(t, env, pool01), simPool(t, env, pool02)}; !reflect.DeepEqual(before, after) {
		t.Errorf("the second rehearsal changed the deployment:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestPlannedFailoverAndFailbackRoundTrip(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "planned"))
	waitReady(t, ns, "planned", 60*time.Second)

	// Planned, pool01 (which hosts the CMS, and is an Edge pool's next hop) to pool02.
	setFailover(t, ns, "planned", &drv1alpha1.FailoverSpec{Pool: pool01, Mode: drv1alpha1.FailoverPlanned, MoveEdgeNextHop: true})
	got := waitFailoverPhase(t, ns, "planned", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	p1, p2 := simPool(t, env, pool01), simPool(t, env, pool02)
	if !protocol.SameFQDN(p1.FailedOverTo, pool02) || !protocol.SameFQDN(p2.CMSPool, pool02) || len(p1.EdgePools) != 0 {
		t.Errorf("after the failover the sim has pool01 %+v, pool02 %+v", p1, p2)
	}
	if got.Status.Phase != drv1alpha1.PhaseFailedOver || !conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionReady) ||
		got.Status.Failover.Serving != pool01+" users on "+pool02 || got.Status.Failover.RecoveryTime == nil ||
		got.Status.Failover.DataLossWindow == nil || got.Status.Failover.DataLossWindow.Duration != 0 {
		t.Errorf("status after the failover: %s%s", describe(got), failoverDescription(got))
	}
	for _, s := range got.Status.Failover.Steps {
		if s.State != "Succeeded" || s.Started == nil || s.Finished == nil {
			t.Errorf("step %s: %+v", s.Name, s)
		}
	}

	// Remove it: the users fail back; the CMS stays on pool02.
	setFailover(t, ns, "planned", nil)
	got = waitFailoverPhase(t, ns, "planned", drv1alpha1.FailoverPhaseFailedBack, 30*time.Second)
	p1, p2 = simPool(t, env, pool01), simPool(t, env, pool02)
	if p1.FailedOverTo != "" || !protocol.SameFQDN(p2.CMSPool, pool02) {
		t.Errorf("after the failback the sim has pool01 %+v, pool02 %+v", p1, p2)
	}
	waitReady(t, ns, "planned", 60*time.Second)
	counts := failoverCounts(env)
	want := map[string]int{"FailoverCMS/" + pool02: 1, "MoveEdgeNextHop/edge01.contoso.com": 1, "FailoverPool/" + pool01: 1, "FailbackPool/" + pool01: 1}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s ran %d times, want %d (counts %v)", k, counts[k], n, counts)
		}
	}
	assertExactlyOnce(t, env, 1)
}

func TestFailoverGuardsRefuseWithTheFix(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "guards"))
	waitReady(t, ns, "guards", 60*time.Second)

	// pool02 goes down: a planned failover of it is refused, naming Disaster.
	for _, s := range pool02Servers {
		if err := env.runner.StopEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	setFailover(t, ns, "guards", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverPlanned})
	got := waitFailoverPhase(t, ns, "guards", drv1alpha1.FailoverPhaseRefused, 30*time.Second)
	c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
	if c == nil || c.Reason != "FailoverRefused" || !strings.Contains(c.Message, "declare mode: Disaster") {
		t.Fatalf("Stalled after a planned failover of an unreachable pool: %+v", c)
	}
	if n := len(failoverCounts(env)); n != 0 {
		t.Fatalf("a refused failover ran cmdlets: %v", failoverCounts(env))
	}

	// Declared as a disaster, it goes through; pool02 does not host the CMS, so that stays.
	setFailover(t, ns, "guards", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverDisaster})
	got = waitFailoverPhase(t, ns, "guards", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	if p := simPool(t, env, pool02); !protocol.SameFQDN(p.FailedOverTo, pool01) {
		t.Errorf("pool02 after the disaster failover: %+v", p)
	}
	counts := failoverCounts(env)
	if counts["FailoverPool/"+pool02] != 1 || counts["FailoverCMS/"+pool01] != 0 {
		t.Errorf("disaster failover counts %v: want one FailoverPool and no CMS failover", counts)
	}
	if cms := got.Status.Failover.Steps[0]; cms.State != "Skipped" {
		t.Errorf("CMS step of a pool without the CMS: %+v", cms)
	}
	// pool02's backup status could not be read: how much data the failover lost is not known.
	if w := got.Status.Failover.DataLossWindow; w != nil {
		t.Errorf("data-loss window of a disaster failover with the pool down: %v, want unknown", w.Duration)
	}
	if c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReady); c == nil || !strings.Contains(c.Message, "data-loss window at the failover: unknown") {
		t.Errorf("Ready after a disaster failover: %+v", c)
	}

	// Failing back waits until pool02 answers again.
	setFailover(t, ns, "guards", nil)
	got = waitFailoverPhase(t, ns, "guards", drv1alpha1.FailoverPhaseFailingBack, 30*time.Second)
	if r := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReconciling); r == nil || r.Reason != "WaitingForFailedPool" {
		t.Errorf("failing back while pool02 is down: %+v", r)
	}
	if failoverCounts(env)["FailbackPool/"+pool02] != 0 {
		t.Fatal("failed back while the pool was down")
	}
	for _, s := range pool02Servers {
		if err := env.runner.StartEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	waitFailoverPhase(t, ns, "guards", drv1alpha1.FailoverPhaseFailedBack, 30*time.Second)
	if n := failoverCounts(env)["FailbackPool/"+pool02]; n != 1 {
		t.Errorf("FailbackPool ran %d times", n)
	}
}

// TestManagerStoppedDuringEachFailoverStepRunsItOnce: the manager is stopped while each failover
// cmdlet runs (the CMS failover, the Edge move, Invoke-CsPoolFailOver, Invoke-CsPoolFailBack) and a
// new one takes over: every cmdlet ran exactly once, counted by the sim.
func TestManagerStoppedDuringEachFailoverStepRunsItOnce(t *testing.T) {
	requireAPIServer(t)
	slow := maps.Clone(failoverDurations)
	for _, k := range []string{"failoverCMS", "failoverPool", "failbackPool", "moveEdgeNextHop"} {
		slow[k] = "1500ms"
	}
	env := startSim(t, slow, nil)
	stop := startManagerStoppable(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "killed"))
	waitReady(t, ns, "killed", 60*time.Second)

	// stopWhileRunning waits until kind runs on target, stops the manager, starts another.
	stopWhileRunning := func(kind protocol.OperationKind, target string) {
		t.Helper()
		eventually(t, 30*time.Second, string(kind)+" running on "+target, func() (bool, string) {
			for _, x := range env.d.Timeline() {
				if x.Kind == string(kind) && x.Target == target && x.Finished == nil {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%v", failoverCounts(env))
		})
		stop()
		stop = startManagerStoppable(t, env.fastReconciler)
	}
	setFailover(t, ns, "killed", &drv1alpha1.FailoverSpec{Pool: pool01, Mode: drv1alpha1.FailoverPlanned, MoveEdgeNextHop: true})
	stopWhileRunning(protocol.KindFailoverCMS, pool02)
	stopWhileRunning(protocol.KindMoveEdgeNextHop, "edge01.contoso.com")
	stopWhileRunning(protocol.KindFailoverPool, pool01)
	waitFailoverPhase(t, ns, "killed", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	setFailover(t, ns, "killed", nil)
	stopWhileRunning(protocol.KindFailbackPool, pool01)
	waitFailoverPhase(t, ns, "killed", drv1alpha1.FailoverPhaseFailedBack, 30*time.Second)

	want := map[string]int{"FailoverCMS/" + pool02: 1, "MoveEdgeNextHop/edge01.contoso.com": 1, "FailoverPool/" + pool01: 1, "FailbackPool/" + pool01: 1}
	if got := failoverCounts(env); !reflect.DeepEqual(got, want) {
		t.Errorf("failover cmdlets ran %v, want each once: %v", got, want)
	}
}

// TestFailoverCmdletCutShortWaitsForTheAdministrator: the server running Invoke-CsPoolFailOver
// restarts mid-cmdlet, so whether it ran is unknown to the manager: the pair stalls with
// FailoverOutcomeUnknown and sends nothing again until the requested-at annotation; then it reads
// the pool's state and runs only what is not done.
func TestFailoverCmdletCutShortWaitsForTheAdministrator(t *testing.T) {
	requireAPIServer(t)
	slow := maps.Clone(failoverDurations)
	slow["failoverPool"] = "1500ms"
	env := startSim(t, slow, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "cut"))
	waitReady(t, ns, "cut", 60*time.Second)

	// pool02 neither hosts the CMS nor is a next hop: its failover is the one cmdlet.
	setFailover(t, ns, "cut", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverPlanned})
	var server string
	eventually(t, 30*time.Second, "FailoverPool running", func() (bool, string) {
		for _, x := range env.d.Timeline() {
			if x.Kind == string(protocol.KindFailoverPool) && x.Finished == nil {
				server = x.Server
				return true, ""
			}
		}
		return false, fmt.Sprint(failoverCounts(env))
	})
	if err := env.runner.RebootServer(server); err != nil {
		t.Fatal(err)
	}
	got := waitFailoverPhase(t, ns, "cut", drv1alpha1.FailoverPhaseOutcomeUnknown, 30*time.Second)
	c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
	if c == nil || c.Reason != "FailoverOutcomeUnknown" || !strings.Contains(c.Message, "is not sent again on its own") {
		t.Fatalf("Stalled after a cut-short failover: %+v", c)
	}
	ran := failoverCounts(env)["FailoverPool/"+pool02]
	// Nothing is sent again on its own: look for longer than the backoff's whole schedule.
	time.Sleep(2 * testBackoff.Cap)
	if n := failoverCounts(env)["FailoverPool/"+pool02]; n != ran {
		t.Fatalf("FailoverPool ran again on its own: %d times, %d before", n, ran)
	}
	requestRetry(t, ns, "cut", "after-the-reboot")
	waitFailoverPhase(t, ns, "cut", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	if p := simPool(t, env, pool02); !protocol.SameFQDN(p.FailedOverTo, pool01) {
		t.Errorf("pool02 after the retry: %+v", p)
	}
	// The sim counts the run the reboot cut short (it changed nothing) and the one asked for.
	if n := failoverCounts(env)["FailoverPool/"+pool02]; n != ran+1 {
		t.Errorf("FailoverPool ran %d times, want %d", n, ran+1)
	}
}

// TestFailbackOutsideTheOperatorIsReportedNotUndone: after a declared failover, someone fails the
// pool back by hand. The operator reports the drift and moves nobody; the requested-at annotation
// fails over again.
func TestFailbackOutsideTheOperatorIsReportedNotUndone(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "drift"))
	waitReady(t, ns, "drift", 60*time.Second)
	setFailover(t, ns, "drift", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverPlanned})
	waitFailoverPhase(t, ns, "drift", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)

	b, err := env.d.Backend("fe01.pool01.contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.FailbackPool(context.Background(), pool02, false); err != nil {
		t.Fatalf("failing back by hand: %v", err)
	}
	poke(t, ns, "drift")
	var got *drv1alpha1.PoolPair
	eventually(t, 30*time.Second, "FailoverDrifted", func() (bool, string) {
		got = getPair(t, ns, "drift")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
		return c != nil && c.Reason == "FailoverDrifted", failoverDescription(got)
	})
	before := failoverCounts(env)
	time.Sleep(2 * testBackoff.Cap)
	if after := failoverCounts(env); !reflect.DeepEqual(before, after) {
		t.Fatalf("the operator acted on a drift: %v, then %v", before, after)
	}
	requestRetry(t, ns, "drift", "fail-over-again")
	eventually(t, 30*time.Second, "failed over again", func() (bool, string) {
		got = getPair(t, ns, "drift")
		return protocol.SameFQDN(simPool(t, env, pool02).FailedOverTo, pool01) && got.Status.Failover.Phase == drv1alpha1.FailoverPhaseFailedOver,
			failoverDescription(got)
	})
	if n := failoverCounts(env)["FailoverPool/"+pool02]; n != 2 {
		t.Errorf("FailoverPool ran %d times, want 2 (declared, then asked again)", n)
	}
}

// TestFailoverStepRefusedStallsUntilAsked: the agent refuses the pool failover (its account lacks
// a right); the pair stalls with FailoverStepFailed and the agent's reason, and tries again only
// when asked.
func TestFailoverStepRefusedStallsUntilAsked(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	// The surviving pool01's first Front End runs the steps.
	agents := &scriptedAgents{kind: protocol.KindFailoverPool, endpoint: env.runner.Endpoints()["fe01.pool01.contoso.com"]}
	agents.answer.Store(&protocol.Operation{State: protocol.StateFailed,
		Message: "permission denied: Invoke-CsPoolFailOver: Access is denied (the account running lync-agent needs membership of RTCUniversalServerAdmins)"})
	startManager(t, env.reconcilerVia(agents))
	ns := newNamespace(t)
	create(t, env.pair(ns, "refused"))
	waitReady(t, ns, "refused", 60*time.Second)
	setFailover(t, ns, "refused", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverPlanned})
	var got *drv1alpha1.PoolPair
	eventually(t, 30*time.Second, "FailoverStepFailed", func() (bool, string) {
		got = getPair(t, ns, "refused")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
		return c != nil && c.Reason == "FailoverStepFailed" && strings.Contains(c.Message, "RTCUniversalServerAdmins"), failoverDescription(got)
	})
	time.Sleep(2 * testBackoff.Cap)
	if n := agents.starts(); n != 1 {
		t.Fatalf("a refused failover step was sent %d times on its own, want once", n)
	}
	agents.answer.Store(nil)
	requestRetry(t, ns, "refused", "rights-granted")
	waitFailoverPhase(t, ns, "refused", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	if n := failoverCounts(env)["FailoverPool/"+pool02]; n != 1 {
		t.Errorf("FailoverPool ran %d times in the sim, want once", n)
	}
}

// TestEdgeNextHopLeftToTheAdministrator: without moveEdgeNextHop, the failover of an Edge pool's
// next hop names the command and waits until the topology shows it done.
func TestEdgeNextHopLeftToTheAdministrator(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "edge"))
	waitReady(t, ns, "edge", 60*time.Second)
	setFailover(t, ns, "edge", &drv1alpha1.FailoverSpec{Pool: pool01, Mode: drv1alpha1.FailoverPlanned})
	const command = "Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:" + pool02
	var got *drv1alpha1.PoolPair
	eventually(t, 30*time.Second, "WaitingForEdgeNextHop", func() (bool, string) {
		got = getPair(t, ns, "edge")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReconciling)
		return c != nil && c.Reason == "WaitingForEdgeNextHop" && strings.Contains(c.Message, command), failoverDescription(got)
	})
	if f := got.Status.Failover; len(f.EdgeCommands) != 1 || f.EdgeCommands[0] != command || f.Steps[0].State != "Succeeded" {
		t.Errorf("status while waiting for the Edge pool: %s", failoverDescription(got))
	}
	if counts := failoverCounts(env); counts["FailoverPool/"+pool01] != 0 || counts["MoveEdgeNextHop/edge01.contoso.com"] != 0 {
		t.Fatalf("ran past the Edge pool, or moved it itself: %v", counts)
	}
	// The administrator runs the command.
	b, err := env.d.Backend("fe01.pool02.contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.MoveEdgeNextHop(context.Background(), "edge01.contoso.com", pool02, false); err != nil {
		t.Fatal(err)
	}
	got = waitFailoverPhase(t, ns, "edge", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	if edge := got.Status.Failover.Steps[1]; edge.State != "Succeeded" {
		t.Errorf("Edge step after the administrator moved it: %+v", edge)
	}
}

// TestUnpairWaitsWhileFailedOver: deleting with deletionPolicy Unpair while the users are failed
// over would take away the pairing they sign in through: it is blocked, with what to do.
func TestUnpairWaitsWhileFailedOver(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, failoverDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "unpair-failed-over")
	pp.Spec.DeletionPolicy = drv1alpha1.DeletionPolicyUnpair
	create(t, pp)
	waitReady(t, ns, "unpair-failed-over", 60*time.Second)
	setFailover(t, ns, "unpair-failed-over", &drv1alpha1.FailoverSpec{Pool: pool02, Mode: drv1alpha1.FailoverPlanned})
	waitFailoverPhase(t, ns, "unpair-failed-over", drv1alpha1.FailoverPhaseFailedOver, 30*time.Second)
	if err := k8s.Delete(context.Background(), getPair(t, ns, "unpair-failed-over")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "UnpairBlocked", func() (bool, string) {
		got := getPair(t, ns, "unpair-failed-over")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
		return c != nil && c.Reason == "UnpairBlocked" && strings.Contains(c.Message, "fail them back first (Invoke-CsPoolFailBack -PoolFqdn "+pool02+")"), describe(got)
	})
	if n := env.d.Counts()["Unpair/"+pool01]; n != 0 {
		t.Fatalf("Unpair ran %d times while the users were failed over", n)
	}
}
