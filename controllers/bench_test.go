package controllers_test

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
)

// BenchmarkCreateToReady measures the time from creating a PoolPair to Ready against the sim, and
// divides it by the critical path of the sim's step durations (the parallel one: what a perfect
// controller would need): the controller's own overhead.
//
//	make envtest-assets && go test -run '^$' -bench CreateToReady -benchtime 3x ./controllers/
func BenchmarkCreateToReady(b *testing.B) {
	suite.Require(b)
	for _, tc := range []struct {
		name                         string
		pair, bootstrap, start, sync time.Duration
	}{
		{"short-steps", 500 * time.Millisecond, 500 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
		// hack/sim/two-pools.yaml's demo durations.
		{"demo-steps", 3 * time.Second, 4 * time.Second, time.Second, 3 * time.Second},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// The dependency graph's critical path with maxParallelPerPool 1: pair; each pool's two
			// servers one after the other (the pools side by side); every service at once; both
			// directions' syncs at once.
			critical := tc.pair + 2*tc.bootstrap + tc.start + tc.sync
			var total time.Duration
			for i := 0; i < b.N; i++ {
				// Setup (a sim, a manager and its caches) is not what is measured.
				b.StopTimer()
				env := startSim(b, map[string]string{"pairPools": tc.pair.String(), "bootstrap": tc.bootstrap.String(),
					"startBackupService": tc.start.String(), "syncBackup": tc.sync.String(), "syncInterval": "1h",
					"changeRate": "0", "initialBacklog": "500"}, nil)
				stop := startManagerStoppable(b, env.fastReconciler)
				warmUp(b)
				ns := newNamespace(b)
				pp := env.pair(ns, "bench")
				pp.Spec.Sync.StableFor = &metav1.Duration{}
				// A watch says when it is Ready: polling the API server would load what is measured.
				ready := watchReady(b, ns, "bench")
				b.StartTimer()
				began := time.Now()
				if err := k8s.Create(context.Background(), pp); err != nil {
					b.Fatal(err)
				}
				select {
				case at := <-ready:
					total += at.Sub(began)
				case <-time.After(5*critical + time.Minute):
					b.Fatalf("not Ready: %s", describe(getPair(b, ns, "bench")))
				}
				b.StopTimer()
				stop()
				release(b, ns, "bench")
			}
			mean := total / time.Duration(b.N)
			ratio := float64(mean) / float64(critical)
			b.ReportMetric(mean.Seconds(), "s/create-to-ready")
			b.ReportMetric(critical.Seconds(), "s/critical-path")
			b.ReportMetric(ratio, "overhead-ratio")
			fmt.Printf("%s: create-to-ready %v, critical path %v, overhead ratio %.3f\n", tc.name, mean.Round(time.Millisecond), critical, ratio)
		})
	}
}

// watchReady watches one PoolPair from now on and sends the time its Ready=True was first seen.
func watchReady(b *testing.B, ns, name string) <-chan time.Time {
	return watchUntil(b, ns, name, func(pp *drv1alpha1.PoolPair) bool {
		return conditions.IsTrue(pp.Status.Conditions, drv1alpha1.ConditionReady)
	})
}

// watchUntil watches one PoolPair from now on and sends the time it was first seen to match.
func watchUntil(b *testing.B, ns, name string, match func(*drv1alpha1.PoolPair) bool) <-chan time.Time {
	b.Helper()
	wc, err := client.NewWithWatch(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, &drv1alpha1.PoolPairList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	ready := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if pp, ok := ev.Object.(*drv1alpha1.PoolPair); ok && match(pp) {
				ready <- time.Now()
				return
			}
		}
	}()
	b.Cleanup(func() { cancel(); w.Stop(); <-done })
	return ready
}

// BenchmarkFailoverRecoveryTime declares a planned failover of pool01 (which hosts the CMS and is
// an Edge pool's next hop) on a synced pair and measures the recovery time, from the spec change
// to the FailedOver phase seen by a watch, against the sum of the three cmdlets' durations (they
// run one after the other, as Microsoft's procedure orders them).
func BenchmarkFailoverRecoveryTime(b *testing.B) {
	suite.Require(b)
	for _, tc := range []struct {
		name            string
		cms, edge, pool time.Duration
	}{
		{"short-steps", 500 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond},
		// hack/sim/two-pools.yaml's demo durations.
		{"demo-steps", 3 * time.Second, 2 * time.Second, 5 * time.Second},
	} {
		b.Run(tc.name, func(b *testing.B) {
			steps := tc.cms + tc.edge + tc.pool
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := maps.Clone(testDurations)
				d["failoverCMS"], d["moveEdgeNextHop"], d["failoverPool"] = tc.cms.String(), tc.edge.String(), tc.pool.String()
				env := startSim(b, d, nil)
				stop := startManagerStoppable(b, env.fastReconciler)
				ns := newNamespace(b)
				create(b, env.pair(ns, "bench-failover"))
				waitReady(b, ns, "bench-failover", time.Minute)
				failedOver := watchUntil(b, ns, "bench-failover", func(pp *drv1alpha1.PoolPair) bool { return pp.Status.Phase == drv1alpha1.PhaseFailedOver })
				b.StartTimer()
				began := time.Now()
				setFailover(b, ns, "bench-failover", &drv1alpha1.FailoverSpec{Pool: pool01, Mode: drv1alpha1.FailoverPlanned, MoveEdgeNextHop: true})
				select {
				case at := <-failedOver:
					total += at.Sub(began)
				case <-time.After(5*steps + time.Minute):
					b.Fatalf("not failed over: %s", failoverDescription(getPair(b, ns, "bench-failover")))
				}
				b.StopTimer()
				stop()
				release(b, ns, "bench-failover")
			}
			mean := total / time.Duration(b.N)
			ratio := float64(mean) / float64(steps)
			b.ReportMetric(mean.Seconds(), "s/recovery")
			b.ReportMetric(steps.Seconds(), "s/steps")
			b.ReportMetric(ratio, "overhead-ratio")
			fmt.Printf("%s: recovery %v, sum of the cmdlets %v, overhead ratio %.3f\n", tc.name, mean.Round(time.Millisecond), steps, ratio)
		})
	}
}

// warmUp waits until a freshly started manager reconciles (its caches and workers are up), so
// the measurement is the controller's work, not the manager's start.
func warmUp(b *testing.B) {
	ns := newNamespace(b)
	pp := newPair(ns, "warm-up", "pool98.contoso.com", "pool99.contoso.com")
	pp.Spec.Suspend = true
	create(b, pp)
	eventually(b, time.Minute, "the warm-up pass", func() (bool, string) {
		return conditions.Get(getPair(b, ns, "warm-up").Status.Conditions, drv1alpha1.ConditionReady) != nil, ""
	})
	release(b, ns, "warm-up")
}

// release deletes a PoolPair without its manager, so the next iteration can claim its pools.
func release(t testing.TB, ns, name string) {
	t.Helper()
	fresh := getPair(t, ns, name)
	patch := client.MergeFrom(fresh.DeepCopy())
	fresh.Finalizers = nil
	_ = k8s.Patch(context.Background(), fresh, patch)
	_ = k8s.Delete(context.Background(), fresh)
	waitGone(t, fresh)
}

// manyPairsYAML is a deployment of n pairs of one-server Enterprise pools.
func manyPairsYAML(n int, step string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "product: lync2013\nsites: [Redmond, Dublin]\ncms: {pool: a0.contoso.com}\n")
	fmt.Fprintf(&b, "durations: {pairPools: %s, bootstrap: %s, startBackupService: %s, syncBackup: %s, syncInterval: 1h, changeRate: 0, initialBacklog: 500}\npools:\n", step, step, step, step)
	for i := 0; i < n; i++ {
		for _, side := range []string{"a", "b"} {
			fmt.Fprintf(&b, "- {fqdn: %s%d.contoso.com, site: Redmond, edition: Enterprise, servers: [{fqdn: fe.%s%d.contoso.com}]}\n", side, i, side, i)
		}
	}
	return b.String()
}

// BenchmarkManyPairs creates n PoolPairs at once against one simulated deployment and reports the
// total time to all Ready, status writes and agent calls per pair, and the peak heap of the test
// process (manager, simulated agents and test client together; the sim-only baseline is reported
// separately).
//
//	go test -run '^$' -bench ManyPairs -benchtime 1x -timeout 30m ./controllers/
func BenchmarkManyPairs(b *testing.B) {
	suite.Require(b)
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runManyPairs(b, n)
			}
		})
	}
}

func runManyPairs(b *testing.B, n int) {
	b.StopTimer()
	defer b.StopTimer()
	// No state file: the sim would rewrite the whole deployment on every change, which measures
	// the sim, not the controller. Each simulated agent still keeps its own journal.
	env := serveSim(b, manyPairsYAML(n, "100ms"), false)
	runtime.GC()
	simHeap := heapInUse()
	counter := &countingAgents{}
	m := startManager(b, env.reconcilerVia(counter))
	warmUp(b)
	ns := newNamespace(b)
	urls := env.runner.Endpoints()

	var peak atomic.Uint64
	sampling, stopSampling := context.WithCancel(context.Background())
	var sampled sync.WaitGroup
	sampled.Go(func() {
		for sampling.Err() == nil {
			if h := heapInUse(); h > peak.Load() {
				peak.Store(h)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	b.StartTimer()
	began := time.Now()
	for i := 0; i < n; i++ {
		pool := func(side string) drv1alpha1.PoolSpec {
			fqdn, fe := fmt.Sprintf("%s%d.contoso.com", side, i), fmt.Sprintf("fe.%s%d.contoso.com", side, i)
			return drv1alpha1.PoolSpec{FQDN: fqdn, AgentEndpoint: urls[fqdn], Servers: []drv1alpha1.ServerSpec{{FQDN: fe, AgentEndpoint: urls[fe]}}}
		}
		pp := &drv1alpha1.PoolPair{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pair-%04d", i)},
			Spec: drv1alpha1.PoolPairSpec{Primary: pool("a"), Backup: pool("b"),
				Sync: drv1alpha1.SyncSpec{StableFor: &metav1.Duration{}, CheckInterval: &metav1.Duration{Duration: time.Hour}}},
		}
		if err := k8s.Create(context.Background(), pp); err != nil {
			b.Fatal(err)
		}
	}
	// The manager's cache says when they are all Synced, without loading the API server with a
	// List of every pair; one List at the end confirms Ready.
	for synced := 0; synced < n; synced = countSynced(b, m.cache, ns) {
		if time.Since(began) > 20*time.Minute {
			b.Fatalf("%d of %d pairs Synced after 20 minutes", synced, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(began)
	b.StopTimer()
	stopSampling()
	sampled.Wait()
	b.Cleanup(func() { releaseAll(b, ns) })
	var list drv1alpha1.PoolPairList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	for _, pp := range list.Items {
		if !conditions.IsTrue(pp.Status.Conditions, drv1alpha1.ConditionReady) {
			b.Fatalf("%s is Synced but not Ready: %s", pp.Name, describe(&pp))
		}
	}

	writes := 0
	for i := 0; i < n; i++ {
		writes += m.counter.StatusWrites(fmt.Sprintf("pair-%04d", i))
	}
	perPairWrites := float64(writes) / float64(n)
	perPairCalls := float64(counter.calls.Load()) / float64(n)
	b.ReportMetric(elapsed.Seconds(), "s/all-ready")
	b.ReportMetric(perPairWrites, "status-writes/pair")
	b.ReportMetric(perPairCalls, "agent-calls/pair")
	b.ReportMetric(float64(peak.Load())/(1<<20), "MiB-peak-heap")
	fmt.Printf("%d pairs: all Ready in %v; %.1f status writes and %.1f agent calls per pair; peak heap %.0f MiB (sim agents alone: %.0f MiB)\n",
		n, elapsed.Round(100*time.Millisecond), perPairWrites, perPairCalls, float64(peak.Load())/(1<<20), float64(simHeap)/(1<<20))
}

// releaseAll deletes every PoolPair of a namespace without waiting for a manager, so the pairs of
// one run do not queue up in the next run's manager.
func releaseAll(t testing.TB, ns string) {
	var list drv1alpha1.PoolPairList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		pp := &list.Items[i]
		patch := client.MergeFrom(pp.DeepCopy())
		pp.Finalizers = nil
		_ = k8s.Patch(context.Background(), pp, patch)
		_ = k8s.Delete(context.Background(), pp)
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func countSynced(b *testing.B, cache client.Reader, ns string) int {
	var list drv1alpha1.PoolPairList
	if err := cache.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	synced := 0
	for _, pp := range list.Items {
		if pp.Status.Phase == drv1alpha1.PhaseSynced {
			synced++
		}
	}
	return synced
}
