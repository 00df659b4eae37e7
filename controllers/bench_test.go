package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// BenchmarkCreateToReady measures the time from creating a PoolPair to Ready against the sim, and
// divides it by the critical path of the sim's step durations: the controller's own overhead.
//
//	make envtest-assets && go test -run '^$' -bench CreateToReady -benchtime 3x ./controllers/
func BenchmarkCreateToReady(b *testing.B) {
	if skipSuite != "" {
		b.Skip(skipSuite)
	}
	const (
		pair      = 500 * time.Millisecond
		bootstrap = 500 * time.Millisecond
		start     = 100 * time.Millisecond
		sync      = 200 * time.Millisecond
	)
	// The runbook's order with maxParallelPerPool 1: pair; each pool's two servers one after the
	// other (the pools side by side); every service at once; one sync per pool, one after the other.
	critical := pair + 2*bootstrap + start + 2*sync
	var total time.Duration
	for i := 0; i < b.N; i++ {
		env := startSim(b, map[string]string{"pairPools": pair.String(), "bootstrap": bootstrap.String(), "startBackupService": start.String(),
			"syncBackup": sync.String(), "syncInterval": "1h", "changeRate": "0", "initialBacklog": "500"}, nil)
		stop := startManagerStoppable(b, env.fastReconciler)
		ns := newNamespace(b)
		pp := env.pair(ns, "bench")
		pp.Spec.Sync.StableFor = &metav1.Duration{}
		began := time.Now()
		if err := k8s.Create(context.Background(), pp); err != nil {
			b.Fatal(err)
		}
		for {
			got := getPair(b, ns, "bench")
			if got.Status.Phase == "Synced" {
				break
			}
			if time.Since(began) > time.Minute {
				b.Fatalf("not Ready after a minute: %s", describe(got))
			}
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(began)
		stop()
		// The next iteration claims the same simulated pools.
		fresh := getPair(b, ns, "bench")
		patch := client.MergeFrom(fresh.DeepCopy())
		fresh.Finalizers = nil
		_ = k8s.Patch(context.Background(), fresh, patch)
		_ = k8s.Delete(context.Background(), fresh)
		waitGone(b, pp)
	}
	mean := total / time.Duration(b.N)
	b.ReportMetric(mean.Seconds(), "s/create-to-ready")
	b.ReportMetric(critical.Seconds(), "s/critical-path")
	b.ReportMetric(float64(mean)/float64(critical), "overhead-ratio")
	fmt.Printf("create-to-ready %v, critical path %v, overhead ratio %.3f\n", mean.Round(time.Millisecond), critical, float64(mean)/float64(critical))
}
