package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// phaseRecorder watches one PoolPair and records every phase and kstatus result it goes through.
type phaseRecorder struct {
	mu       sync.Mutex
	phases   []drv1alpha1.Phase
	kstatus  []status.Status
	stop     func()
	finished chan struct{}
}

// seen returns a copy of the phases recorded so far.
func (rec *phaseRecorder) seen() []drv1alpha1.Phase {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.phases)
}

func recordPhases(t testing.TB, ns, name string) *phaseRecorder {
	t.Helper()
	wc, err := client.NewWithWatch(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, &drv1alpha1.PoolPairList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rec := &phaseRecorder{finished: make(chan struct{})}
	rec.stop = func() { cancel(); w.Stop(); <-rec.finished }
	go func() {
		defer close(rec.finished)
		for ev := range w.ResultChan() {
			pp, ok := ev.Object.(*drv1alpha1.PoolPair)
			if !ok || pp.Name != name {
				continue
			}
			rec.mu.Lock()
			if n := len(rec.phases); pp.Status.Phase != "" && (n == 0 || rec.phases[n-1] != pp.Status.Phase) {
				rec.phases = append(rec.phases, pp.Status.Phase)
			}
			if res, err := kstatusOf(pp); err == nil {
				if n := len(rec.kstatus); n == 0 || rec.kstatus[n-1] != res {
					rec.kstatus = append(rec.kstatus, res)
				}
			}
			rec.mu.Unlock()
		}
	}()
	t.Cleanup(rec.stop)
	return rec
}

func kstatusOf(pp *drv1alpha1.PoolPair) (status.Status, error) {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pp)
	if err != nil {
		return "", err
	}
	u := &unstructured.Unstructured{Object: raw}
	u.SetAPIVersion(drv1alpha1.GroupVersion.String())
	u.SetKind("PoolPair")
	res, err := status.Compute(u)
	if err != nil {
		return "", err
	}
	return res.Status, nil
}

func waitReady(t testing.TB, ns, name string, timeout time.Duration) *drv1alpha1.PoolPair {
	t.Helper()
	var got *drv1alpha1.PoolPair
	eventually(t, timeout, "Ready=True", func() (bool, string) {
		got = getPair(t, ns, name)
		return conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionReady), describe(got)
	})
	return got
}

// describe is a short status summary for failure messages.
func describe(pp *drv1alpha1.PoolPair) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s", pp.Status.Phase)
	for _, c := range pp.Status.Conditions {
		fmt.Fprintf(&b, " | %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func eventReasons(t testing.TB, ns, name string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}

func countReason(events []string, reason string) int {
	n := 0
	for _, e := range events {
		if strings.HasPrefix(e, reason+":") {
			n++
		}
	}
	return n
}

func TestHappyPathPendingToSynced(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	rec := recordPhases(t, ns, "emea-dr")
	pp := env.pair(ns, "emea-dr")
	create(t, pp)
	got := waitReady(t, ns, "emea-dr", 60*time.Second)
	// The watch delivers the write that made it Ready a moment after a Get can read it.
	eventually(t, 10*time.Second, "the watch to deliver the Synced phase", func() (bool, string) {
		phases := rec.seen()
		return len(phases) > 0 && phases[len(phases)-1] == drv1alpha1.PhaseSynced, fmt.Sprint(phases)
	})
	rec.stop()

	want := []drv1alpha1.Phase{drv1alpha1.PhasePending, drv1alpha1.PhaseTopologyPublished, drv1alpha1.PhaseBootstrapped,
		drv1alpha1.PhaseBackupServiceStarted, drv1alpha1.PhaseSynced}
	if !slices.Equal(rec.phases, want) {
		t.Fatalf("phases seen %v, want %v in order", rec.phases, want)
	}
	if rec.kstatus[len(rec.kstatus)-1] != status.CurrentStatus || !slices.Contains(rec.kstatus, status.InProgressStatus) {
		t.Fatalf("kstatus went %v: want InProgress before Ready and Current at the end", rec.kstatus)
	}
	if res, _ := kstatusOf(got); res != status.CurrentStatus {
		t.Fatalf("kstatus of the ready PoolPair is %s", res)
	}

	if len(got.Status.Servers) != 4 {
		t.Fatalf("want 4 servers in status, got %+v", got.Status.Servers)
	}
	for _, s := range got.Status.Servers {
		if !s.Reachable || !s.Bootstrapped || s.BackupService != "Running" || s.LastBootstrapTime == nil ||
			s.LastOperation == nil || s.LastOperation.State != "Succeeded" || s.Operation != nil {
			t.Errorf("server status not filled: %+v", s)
		}
	}
	if len(got.Status.Backup) != 2 {
		t.Fatalf("want both backup directions, got %+v", got.Status.Backup)
	}
	for _, d := range got.Status.Backup {
		if !d.Healthy || d.StableSince == nil || len(d.Modules) == 0 {
			t.Errorf("direction not healthy: %+v", d)
		}
	}
	for _, c := range []string{drv1alpha1.ConditionTopologyPublished, drv1alpha1.ConditionBootstrapped, drv1alpha1.ConditionBackupServiceRunning,
		drv1alpha1.ConditionBackupSynced, drv1alpha1.ConditionAgentsReachable} {
		if !conditions.IsTrue(got.Status.Conditions, c) {
			t.Errorf("condition %s not True: %s", c, describe(got))
		}
	}
	for _, c := range []string{drv1alpha1.ConditionReconciling, drv1alpha1.ConditionStalled} {
		if conditions.Get(got.Status.Conditions, c) != nil {
			t.Errorf("condition %s must be absent when Ready: %s", c, describe(got))
		}
	}

	var events []string
	eventually(t, 10*time.Second, "the step events", func() (bool, string) {
		events = eventReasons(t, ns, "emea-dr")
		return countReason(events, "BootstrapSucceeded") == 4 && countReason(events, "Synced") == 1, strings.Join(events, "\n")
	})
	for reason, n := range map[string]int{"PairPoolsStarted": 1, "PairPoolsSucceeded": 1, "BootstrapStarted": 4, "StartBackupServiceStarted": 4,
		"StartBackupServiceSucceeded": 4, "TopologyPublished": 1, "Bootstrapped": 1, "BackupServiceRunning": 1} {
		if got := countReason(events, reason); got != n {
			t.Errorf("want %d %s events, got %d:\n%s", n, reason, got, strings.Join(events, "\n"))
		}
	}
	if !slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, "fe02.pool01.contoso.com") }) {
		t.Errorf("events do not name the servers:\n%s", strings.Join(events, "\n"))
	}

	// The manager's metrics saw the steps and the agent requests (the state metrics are scraped in
	// TestMetricsEndpointIsProtectedAndFeedsEveryAlert).
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetHistogram() != nil:
				seen[f.GetName()+labels] += float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				seen[f.GetName()+labels] += m.GetGauge().GetValue()
			}
		}
	}
	for _, key := range []string{
		"poolpair_step_duration_seconds,outcome=succeeded,step=Bootstrap",
		"poolpair_agent_request_duration_seconds,code=200,method=GET,route=/v1/server",
	} {
		if seen[key] < 1 {
			t.Errorf("metric %s not recorded", key)
		}
	}

	// Every step ran exactly once.
	counts := env.d.Counts()
	for key, n := range counts {
		if n != 1 && !strings.HasPrefix(key, "SyncBackup/") {
			t.Errorf("%s ran %d times", key, n)
		}
	}
	if counts["PairPools/pool01.contoso.com"] != 1 || counts["Bootstrap/fe02.pool02.contoso.com"] != 1 {
		t.Errorf("steps missing from the sim's counts: %v", counts)
	}
}

// withThirdServers adds a third Front End to each pool of the sim, so that a limit of 2 at once
// is a limit.
func withThirdServers(yaml string) string {
	for _, pool := range []string{"pool01", "pool02"} {
		fe02 := "      - fqdn: fe02." + pool + ".contoso.com\n"
		i := strings.Index(yaml, fe02)
		if i < 0 {
			panic("no fe02 in " + pool)
		}
		end := i + len(fe02) + strings.Index(yaml[i+len(fe02):], "\n") + 1 // its listen line
		yaml = yaml[:end] + "      - fqdn: fe03." + pool + ".contoso.com\n" + yaml[end:]
	}
	return yaml
}

// TestBootstrapParallelismIsBounded: with maxParallelPerPool 1 and 2, the sim's own timeline (when
// each Bootstrapper run started and ended on each server) shows no more runs at once in a pool
// than the limit, the limit reached, and the two pools bootstrapping side by side.
func TestBootstrapParallelismIsBounded(t *testing.T) {
	requireAPIServer(t)
	for _, maxParallel := range []int32{1, 2} {
		t.Run(fmt.Sprintf("maxParallelPerPool=%d", maxParallel), func(t *testing.T) {
			env := startSim(t, map[string]string{"pairPools": "0s", "bootstrap": "400ms", "startBackupService": "0s", "syncBackup": "0s",
				"syncInterval": "1h", "changeRate": "0", "initialBacklog": "0"}, withThirdServers)
			startManager(t, env.fastReconciler)
			ns := newNamespace(t)
			pp := env.pair(ns, "parallel")
			urls := env.runner.Endpoints()
			for _, pool := range []*drv1alpha1.PoolSpec{&pp.Spec.Primary, &pp.Spec.Backup} {
				fe03 := "fe03." + pool.FQDN
				pool.Servers = append(pool.Servers, drv1alpha1.ServerSpec{FQDN: fe03, AgentEndpoint: urls[fe03]})
			}
			pp.Spec.Bootstrap.MaxParallelPerPool = maxParallel
			create(t, pp)
			waitReady(t, ns, "parallel", 60*time.Second)

			tl := env.d.Timeline()
			runs := map[string][]sim.Execution{}
			for _, x := range tl {
				if x.Kind == string(protocol.KindBootstrap) {
					pool := x.Server[strings.Index(x.Server, ".")+1:]
					runs[pool] = append(runs[pool], x)
				}
			}
			for _, pool := range []string{"pool01.contoso.com", "pool02.contoso.com"} {
				servers := []string{"fe01." + pool, "fe02." + pool, "fe03." + pool}
				if n := len(runs[pool]); n != 3 {
					t.Errorf("%d Bootstrapper runs in %s, want one per server: %+v", n, pool, runs[pool])
				}
				if n := sim.MaxConcurrent(tl, string(protocol.KindBootstrap), servers); n != int(maxParallel) {
					t.Errorf("at most %d Bootstrapper runs at once in %s with maxParallelPerPool %d; want the limit, never more", n, pool, maxParallel)
				}
			}
			// Both pools bootstrap side by side: a run of one overlaps a run of the other.
			overlap := false
			for _, a := range runs["pool01.contoso.com"] {
				for _, b := range runs["pool02.contoso.com"] {
					if a.Finished != nil && b.Finished != nil && a.Started.Before(*b.Finished) && b.Started.Before(*a.Finished) {
						overlap = true
					}
				}
			}
			if !overlap {
				t.Errorf("the pools bootstrapped one after the other: %+v", runs)
			}
			for _, d := range sim.Duplicates(tl) {
				t.Errorf("duplicate: %s", d)
			}
			if t.Failed() {
				for _, x := range tl {
					t.Logf("timeline: %+v", x)
				}
			}
		})
	}
}

func listEvents(t testing.TB, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}
