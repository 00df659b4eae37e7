package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
)

func waitStalled(t testing.TB, ns, name, reason, mentions string) *drv1alpha1.PoolPair {
	t.Helper()
	var got *drv1alpha1.PoolPair
	eventually(t, 30*time.Second, "Stalled="+reason, func() (bool, string) {
		got = getPair(t, ns, name)
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason && strings.Contains(c.Message, mentions), describe(got)
	})
	return got
}

func TestRulesStallWithoutWriting(t *testing.T) {
	requireAPIServer(t)
	cases := []struct {
		name     string
		edit     func(yaml string) string
		mutate   func(*drv1alpha1.PoolPair)
		reason   string
		mentions string
	}{
		{"pool missing from the topology", nil, func(pp *drv1alpha1.PoolPair) { pp.Spec.Backup.FQDN = "pool09.contoso.com" }, "PoolNotFound", "pool09.contoso.com"},
		{"pool paired with a third pool", func(y string) string {
			return strings.Replace(y, "    listen: 127.0.0.1:19442\n", "    listen: 127.0.0.1:19442\n    backupPool: pool03.contoso.com\n", 1) + thirdPool
		}, nil, "PoolPairedElsewhere", "pool03.contoso.com"},
		{"edition mismatch", func(y string) string {
			y = strings.Replace(y, "    edition: Enterprise\n    version: Lync Server 2013\n    listen: 127.0.0.1:19442", "    edition: Standard\n    version: Lync Server 2013\n    listen: 127.0.0.1:19442", 1)
			return strings.Replace(y, "      - fqdn: fe02.pool02.contoso.com\n        listen: 127.0.0.1:19454\n", "", 1)
		}, func(pp *drv1alpha1.PoolPair) { pp.Spec.Backup.Servers = pp.Spec.Backup.Servers[:1] }, "EditionMismatch", "Standard"},
		{"version mismatch", func(y string) string {
			return strings.Replace(y, "    version: Lync Server 2013\n    listen: 127.0.0.1:19442", "    version: Skype for Business Server 2015\n    listen: 127.0.0.1:19442", 1)
		}, nil, "VersionMismatch", "Skype for Business Server 2015"},
		{"server not in the pool", nil, func(pp *drv1alpha1.PoolPair) {
			// A third Front End that pool01 does not have in the topology (its agent does not answer
			// either: a typo, or a server not yet added in Topology Builder).
			pp.Spec.Primary.Servers = append(pp.Spec.Primary.Servers, drv1alpha1.ServerSpec{FQDN: "fe03.pool01.contoso.com", AgentEndpoint: "https://127.0.0.1:1"})
		}, "ServerNotInPool", "fe03.pool01.contoso.com is listed in the spec for pool pool01.contoso.com, but the topology's Front End servers of that pool are: fe01.pool01.contoso.com, fe02.pool01.contoso.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := startSim(t, testDurations, tc.edit)
			m := startManager(t, env.fastReconciler)
			ns := newNamespace(t)
			pp := env.pair(ns, "rules")
			if tc.mutate != nil {
				tc.mutate(pp)
			}
			create(t, pp)
			got := waitStalled(t, ns, "rules", tc.reason, tc.mentions)
			if conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionReady) || conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReconciling) != nil {
				t.Fatalf("a stalled pair must be not Ready and not Reconciling: %s", describe(got))
			}
			// A later pass (two pokes: once the second's pass started, the first's ended) acts no more.
			pokeAndWait(t, m, ns, "rules")
			pokeAndWait(t, m, ns, "rules")
			for key, n := range env.d.Counts() {
				t.Errorf("%s ran %d times although the pair is refused", key, n)
			}
		})
	}
}

// thirdPool is appended to the sim's pools list.
const thirdPool = `
  - fqdn: pool03.contoso.com
    site: Dublin
    edition: Enterprise
    version: Lync Server 2013
    backupPool: pool02.contoso.com
    servers:
      - fqdn: fe01.pool03.contoso.com
`

func TestDriftOutOfBandPairingIsReportedNotOverwritten(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, func(y string) string {
		return y + strings.Replace(thirdPool, "    backupPool: pool02.contoso.com\n", "", 1)
	})
	m := startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "drift"))
	waitReady(t, ns, "drift", 60*time.Second)
	before := env.d.Counts()["PairPools/pool01.contoso.com"]

	// The backup service stops on one server: the pair goes back and heals.
	if err := env.d.StopBackupService("fe01.pool02.contoso.com"); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "drift")
	eventually(t, 30*time.Second, "the drop to Bootstrapped", func() (bool, string) {
		got := getPair(t, ns, "drift")
		return got.Status.Phase == drv1alpha1.PhaseBootstrapped || env.d.Counts()["StartBackupService/fe01.pool02.contoso.com"] == 2, describe(got)
	})
	waitReady(t, ns, "drift", 30*time.Second)
	if n := env.d.Counts()["StartBackupService/fe01.pool02.contoso.com"]; n != 2 {
		t.Fatalf("the stopped service was started %d times in all, want 2", n)
	}

	// An administrator pairs pool02 with pool03 out of band: reported, never overwritten.
	if err := env.d.SetBackupPool("pool02.contoso.com", "pool03.contoso.com"); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "drift")
	waitStalled(t, ns, "drift", "PoolPairedElsewhere", "pool03.contoso.com")
	pokeAndWait(t, m, ns, "drift")
	pokeAndWait(t, m, ns, "drift")
	if n := env.d.Counts()["PairPools/pool01.contoso.com"]; n != before {
		t.Fatalf("the operator re-paired over an administrator's change (%d PairPools runs, was %d)", n, before)
	}
	var lost int
	for _, e := range eventReasons(t, ns, "drift") {
		if strings.HasPrefix(e, "PairingLost:") || strings.HasPrefix(e, "PoolPairedElsewhere:") {
			lost++
		}
	}
	if lost < 2 {
		t.Fatalf("want PairingLost and PoolPairedElsewhere events, got:\n%s", strings.Join(eventReasons(t, ns, "drift"), "\n"))
	}

	// The administrator undoes the change: seen at the next check interval, with no watch and no
	// poke, and the stall clears.
	if err := env.d.SetBackupPool("pool02.contoso.com", "pool01.contoso.com"); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "drift", 30*time.Second)
	if n := env.d.Counts()["PairPools/pool01.contoso.com"]; n != before {
		t.Fatalf("PairPools ran again (%d, was %d)", n, before)
	}
}

func TestSuspendPausesAndResumes(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	m := startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "suspended")
	pp.Spec.Suspend = true
	create(t, pp)
	eventually(t, 10*time.Second, "Ready=False Suspended", func() (bool, string) {
		got := getPair(t, ns, "suspended")
		return conditionIs(got, drv1alpha1.ConditionReady, metav1.ConditionFalse, "Suspended"), describe(got)
	})
	pokeAndWait(t, m, ns, "suspended")
	pokeAndWait(t, m, ns, "suspended")
	if len(env.d.Counts()) != 0 {
		t.Fatalf("a suspended pair ran steps: %v", env.d.Counts())
	}
	got := getPair(t, ns, "suspended")
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Suspend = false
	if err := k8s.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "suspended", 60*time.Second)
}

func TestDeleteRetainLeavesThePairing(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "retain")
	create(t, pp)
	waitReady(t, ns, "retain", 60*time.Second)
	if err := k8s.Delete(context.Background(), pp); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pp)
	if env.d.Counts()["Unpair/pool01.contoso.com"] != 0 || env.d.Snapshot().Pools[0].BackupPool != "pool02.contoso.com" {
		t.Fatalf("Retain must leave the pools paired: counts %v", env.d.Counts())
	}
}

func TestDeleteUnpairWaitsForTheAgentThenUnpairs(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "unpair")
	pp.Spec.DeletionPolicy = drv1alpha1.DeletionPolicyUnpair
	create(t, pp)
	waitReady(t, ns, "unpair", 60*time.Second)

	// Every agent of the primary pool is down: the finalizer stays and says how to let go.
	for _, s := range pool01Servers {
		if err := env.runner.StopEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8s.Delete(context.Background(), pp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "UnpairBlocked", func() (bool, string) {
		got := getPair(t, ns, "unpair")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
		return got.Status.Phase == drv1alpha1.PhaseDeleting && c != nil && c.Reason == "UnpairBlocked" && strings.Contains(c.Message, "deletionPolicy"), describe(got)
	})
	for _, s := range pool01Servers {
		if err := env.runner.StartEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	waitGone(t, pp)
	snap := env.d.Snapshot()
	for _, p := range snap.Pools {
		if p.BackupPool != "" {
			t.Fatalf("pool %s still paired with %s after Unpair", p.FQDN, p.BackupPool)
		}
	}
	if n := env.d.Counts()["Unpair/pool01.contoso.com"]; n != 1 {
		t.Fatalf("Unpair ran %d times", n)
	}
	// LYNCBACKUP ran through the Unpair: Microsoft's procedure restarts it, once on every server.
	for _, s := range append(append([]string{}, pool01Servers...), pool02Servers...) {
		if n := env.d.Counts()["RestartBackupService/"+s]; n != 1 {
			t.Errorf("LYNCBACKUP on %s restarted %d times after Unpair, want 1", s, n)
		}
	}
	for _, p := range snap.Pools {
		if len(p.BackupDataOf) > 0 {
			t.Errorf("pool %s still holds backup data of %v after Unpair", p.FQDN, p.BackupDataOf)
		}
	}
	assertExactlyOnce(t, env, 1)
}

func waitGone(t testing.TB, pp *drv1alpha1.PoolPair) {
	t.Helper()
	eventually(t, 30*time.Second, "the PoolPair to be gone", func() (bool, string) {
		got := &drv1alpha1.PoolPair{}
		err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pp), got)
		return apierrors.IsNotFound(err), fmt.Sprint(err, " ", describe(got))
	})
}

// TestSteadyStateIsQuiet: once Ready, the pair is looked at once per check interval (8 reads:
// 2 pools, 4 servers, 2 backup directions), and a look that finds nothing new writes nothing.
func TestSteadyStateIsQuiet(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	counter := &countingAgents{}
	m := startManager(t, env.reconcilerVia(counter))
	ns := newNamespace(t)
	pp := env.pair(ns, "quiet")
	// The schema's shortest check interval: the window below must hold a periodic pass.
	const checkInterval = 10 * time.Second
	const readsPerPass = 8
	pp.Spec.Sync.CheckInterval = &metav1.Duration{Duration: checkInterval}
	create(t, pp)
	waitReady(t, ns, "quiet", 60*time.Second)
	// Passes that events of the last steps asked for (a long-poll's wake-up landing after the
	// pass that made it Ready) may trail Ready by milliseconds: start once the agents have been
	// quiet for a second, far below the interval under test and far above those trailing passes.
	var readyAt time.Time
	eventually(t, 30*time.Second, "a second without agent requests after Ready", func() (bool, string) {
		readyAt = time.Now()
		last := counter.lastBefore(readyAt)
		return readyAt.Sub(last) >= time.Second, fmt.Sprintf("last request %v ago", readyAt.Sub(last))
	})
	writes := m.counter.StatusWrites("quiet")
	// The last request of the pass that made the pair Ready (or of any pass after it).
	lastBefore := counter.lastBefore(readyAt)

	// The next pass is the periodic check: wait for its reads.
	var calls []time.Time
	eventually(t, 3*checkInterval, "the periodic pass's reads", func() (bool, string) {
		calls = counter.since(readyAt)
		return len(calls) >= readsPerPass, fmt.Sprintf("%d agent requests since Ready", len(calls))
	})
	if gap := calls[0].Sub(lastBefore); gap < checkInterval {
		t.Fatalf("the first pass after Ready came %v after the one before it; the check interval is %v:%s", gap, checkInterval, counter.describeSince(lastBefore.Add(-time.Second)))
	}
	// Passes of one PoolPair run one at a time: once a poke's pass has started, the periodic pass
	// has ended, and any status write it made is counted.
	gets := m.counter.Gets("quiet")
	// The window ends before the poke: its pass may start before the patch's answer is back.
	endAt := time.Now()
	poke(t, ns, "quiet")
	eventually(t, 10*time.Second, "the poke's pass", func() (bool, string) {
		return m.counter.Gets("quiet") > gets, fmt.Sprintf("%d passes", m.counter.Gets("quiet"))
	})
	if w := m.counter.StatusWrites("quiet") - writes; w != 0 {
		t.Fatalf("%d status writes in steady state (the periodic pass, and perhaps the poke's)", w)
	}
	// Bound the reads by the passes the interval allows in the window.
	window := endAt.Sub(lastBefore)
	allowed := int(window / checkInterval)
	n := len(counter.since(readyAt)) - len(counter.since(endAt))
	t.Logf("agent requests in %v of steady state: %d (at most %d passes of %d)", window.Round(time.Millisecond), n, allowed, readsPerPass)
	if n > allowed*readsPerPass {
		t.Fatalf("%d agent requests in %v of steady state; a check interval of %v allows %d passes of %d:%s", n, window, checkInterval, allowed, readsPerPass, counter.describeSince(lastBefore.Add(-time.Second)))
	}
}
