package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
)

// phaseRecorder watches one PoolPair and records every phase and kstatus result it goes through.
type phaseRecorder struct {
	phases   []drv1alpha1.Phase
	kstatus  []status.Status
	stop     func()
	finished chan struct{}
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
			if n := len(rec.phases); pp.Status.Phase != "" && (n == 0 || rec.phases[n-1] != pp.Status.Phase) {
				rec.phases = append(rec.phases, pp.Status.Phase)
			}
			if res, err := kstatusOf(pp); err == nil {
				if n := len(rec.kstatus); n == 0 || rec.kstatus[n-1] != res {
					rec.kstatus = append(rec.kstatus, res)
				}
			}
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

	// The manager's metrics saw the steps, the phase and the agent requests.
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
		"poolpair_pairs,phase=Synced",
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

func TestBootstrapParallelismIsBounded(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, map[string]string{"pairPools": "0s", "bootstrap": "400ms", "startBackupService": "0s", "syncBackup": "0s",
		"syncInterval": "1h", "changeRate": "0", "initialBacklog": "0"}, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "parallel")
	create(t, pp)
	maxPerPool := 0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got := getPair(t, ns, "parallel")
		perPool := map[string]int{}
		for _, s := range got.Status.Servers {
			if s.Operation != nil && s.Operation.Kind == "Bootstrap" {
				perPool[s.Pool]++
			}
		}
		for _, n := range perPool {
			maxPerPool = max(maxPerPool, n)
		}
		if conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionBootstrapped) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if maxPerPool != 1 {
		t.Fatalf("with maxParallelPerPool 1, saw %d servers of one pool bootstrapping at once; %s", maxPerPool, describe(getPair(t, ns, "parallel")))
	}
	// Both pools bootstrap in parallel: the two pools' first runs start together.
	var first []time.Time
	eventually(t, 10*time.Second, "both pools' first BootstrapStarted events", func() (bool, string) {
		first = nil
		for _, e := range listEvents(t, ns, "parallel") {
			if e.Reason == "BootstrapStarted" && strings.HasPrefix(e.Note, "Bootstrapping fe01.") {
				first = append(first, e.EventTime.Time)
			}
		}
		return len(first) == 2, fmt.Sprint(first)
	})
	if len(first) != 2 || absDuration(first[0].Sub(first[1])) > 300*time.Millisecond {
		t.Fatalf("the pools' first bootstraps did not run side by side: %v", first)
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
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

func sortTimes(ts []time.Time) { slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) }) }
