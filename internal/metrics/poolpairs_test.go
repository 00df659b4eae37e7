package metrics

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func at(ago time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-ago)); return &t }

func direction(from, to string, healthy bool, unhealthySince *metav1.Time) drv1alpha1.BackupDirectionStatus {
	return drv1alpha1.BackupDirectionStatus{From: from, To: to, Healthy: healthy, UnhealthySince: unhealthySince}
}

func servers(reachable ...bool) []drv1alpha1.ServerStatus {
	var out []drv1alpha1.ServerStatus
	for i, r := range reachable {
		pool := "pool01.contoso.com"
		if i >= len(reachable)/2 {
			pool = "pool02.contoso.com"
		}
		out = append(out, drv1alpha1.ServerStatus{FQDN: "fe" + string(rune('1'+i)) + "." + pool, Pool: pool, Reachable: r})
	}
	return out
}

func agentsUnreachableSince(ago time.Duration) []metav1.Condition {
	return []metav1.Condition{{Type: drv1alpha1.ConditionAgentsReachable, Status: metav1.ConditionFalse, LastTransitionTime: *at(ago)}}
}

func TestDataLossWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status drv1alpha1.PoolPairStatus
		want   time.Duration
		known  bool
	}{
		{name: "never observed", known: false},
		{name: "both healthy", known: true, want: 0, status: drv1alpha1.PoolPairStatus{
			Backup:  []drv1alpha1.BackupDirectionStatus{direction("a", "b", true, nil), direction("b", "a", true, nil)},
			Servers: servers(true, true)}},
		{name: "one unhealthy for 10m", known: true, want: 10 * time.Minute, status: drv1alpha1.PoolPairStatus{
			Backup:  []drv1alpha1.BackupDirectionStatus{direction("a", "b", false, at(10*time.Minute)), direction("b", "a", true, nil)},
			Servers: servers(true, true)}},
		{name: "both unhealthy: the earlier counts", known: true, want: 40 * time.Minute, status: drv1alpha1.PoolPairStatus{
			Backup:  []drv1alpha1.BackupDirectionStatus{direction("a", "b", false, at(10*time.Minute)), direction("b", "a", false, at(40*time.Minute))},
			Servers: servers(true, true)}},
		{name: "unhealthy while the backup service does not run", known: false, status: drv1alpha1.PoolPairStatus{
			Backup:  []drv1alpha1.BackupDirectionStatus{direction("a", "b", false, nil), direction("b", "a", true, nil)},
			Servers: servers(true, true)}},
		{name: "a pool with no answering agent: since they stopped answering", known: true, want: 7 * time.Minute, status: drv1alpha1.PoolPairStatus{
			Backup:     []drv1alpha1.BackupDirectionStatus{direction("a", "b", true, nil), direction("b", "a", true, nil)},
			Servers:    servers(true, true, false, false),
			Conditions: agentsUnreachableSince(7 * time.Minute)}},
		{name: "one Front End down: the pool is still read", known: true, want: 0, status: drv1alpha1.PoolPairStatus{
			Backup:     []drv1alpha1.BackupDirectionStatus{direction("a", "b", true, nil), direction("b", "a", true, nil)},
			Servers:    servers(true, true, true, false),
			Conditions: agentsUnreachableSince(7 * time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, known := DataLossWindow(&tc.status, now)
			if known != tc.known || got != tc.want {
				t.Errorf("DataLossWindow = %v, %v; want %v, %v", got, known, tc.want, tc.known)
			}
		})
	}
}

func newCollector(t *testing.T, elected <-chan struct{}, pairs ...*drv1alpha1.PoolPair) *PoolPairCollector {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := drv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme)
	for _, pp := range pairs {
		b = b.WithObjects(pp)
	}
	return &PoolPairCollector{Reader: b.Build(), Elected: elected, Now: func() time.Time { return now }}
}

func TestCollectorExportsEachPairsState(t *testing.T) {
	pp := &drv1alpha1.PoolPair{
		ObjectMeta: metav1.ObjectMeta{Namespace: "lync", Name: "emea-dr"},
		Spec:       drv1alpha1.PoolPairSpec{Primary: drv1alpha1.PoolSpec{FQDN: "pool01.contoso.com"}, Backup: drv1alpha1.PoolSpec{FQDN: "pool02.contoso.com"}},
		Status: drv1alpha1.PoolPairStatus{
			Phase: drv1alpha1.PhaseBackupServiceStarted,
			Conditions: []metav1.Condition{
				{Type: drv1alpha1.ConditionReady, Status: metav1.ConditionFalse},
				{Type: drv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue},
			},
			Backup: []drv1alpha1.BackupDirectionStatus{
				direction("pool01.contoso.com", "pool02.contoso.com", false, at(90*time.Second)),
				{From: "pool02.contoso.com", To: "pool01.contoso.com", Healthy: true, LastSyncTime: at(time.Hour)},
			},
			Servers: servers(true, false),
		},
	}
	c := newCollector(t, nil, pp)
	want := `
# HELP poolpair_backup_data_loss_window_seconds How long ago both backup directions were last healthy together: the user data a failover now could lose. 0 while both are healthy; absent when unknown (the backup service does not run, or the pair never synced).
# TYPE poolpair_backup_data_loss_window_seconds gauge
poolpair_backup_data_loss_window_seconds{name="emea-dr",namespace="lync"} 90
# HELP poolpair_backup_direction_healthy 1 when the backup direction from one pool to the other was healthy at the last observation: every module exports FinalState or SteadyState and imports NormalState.
# TYPE poolpair_backup_direction_healthy gauge
poolpair_backup_direction_healthy{from="pool01.contoso.com",name="emea-dr",namespace="lync",to="pool02.contoso.com"} 0
poolpair_backup_direction_healthy{from="pool02.contoso.com",name="emea-dr",namespace="lync",to="pool01.contoso.com"} 1
# HELP poolpair_backup_direction_unhealthy_since_timestamp_seconds When the backup direction became unhealthy while the backup service ran (Unix time); time() minus it is how long it has been unhealthy. Absent while healthy.
# TYPE poolpair_backup_direction_unhealthy_since_timestamp_seconds gauge
poolpair_backup_direction_unhealthy_since_timestamp_seconds{from="pool01.contoso.com",name="emea-dr",namespace="lync",to="pool02.contoso.com"} ` + strconv.FormatFloat(float64(at(90*time.Second).Unix()), 'g', -1, 64) + `
# HELP poolpair_agent_up 1 when the lync-agent of a Front End server answered on the PoolPair's last pass, 0 when it did not.
# TYPE poolpair_agent_up gauge
poolpair_agent_up{name="emea-dr",namespace="lync",pool="pool01.contoso.com",server="fe1.pool01.contoso.com"} 1
poolpair_agent_up{name="emea-dr",namespace="lync",pool="pool02.contoso.com",server="fe2.pool02.contoso.com"} 0
# HELP poolpair_condition The PoolPair's conditions: 1 on the series of the condition's status (true, false or unknown), 0 on the others. Reconciling and Stalled are false when absent.
# TYPE poolpair_condition gauge
poolpair_condition{name="emea-dr",namespace="lync",status="false",type="Ready"} 1
poolpair_condition{name="emea-dr",namespace="lync",status="false",type="Reconciling"} 0
poolpair_condition{name="emea-dr",namespace="lync",status="false",type="Stalled"} 1
poolpair_condition{name="emea-dr",namespace="lync",status="true",type="Ready"} 0
poolpair_condition{name="emea-dr",namespace="lync",status="true",type="Reconciling"} 1
poolpair_condition{name="emea-dr",namespace="lync",status="true",type="Stalled"} 0
poolpair_condition{name="emea-dr",namespace="lync",status="unknown",type="Ready"} 0
poolpair_condition{name="emea-dr",namespace="lync",status="unknown",type="Reconciling"} 0
poolpair_condition{name="emea-dr",namespace="lync",status="unknown",type="Stalled"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "poolpair_backup_data_loss_window_seconds", "poolpair_backup_direction_healthy",
		"poolpair_backup_direction_unhealthy_since_timestamp_seconds", "poolpair_agent_up", "poolpair_condition"); err != nil {
		t.Error(err)
	}
	if got := gathered(t, c, "poolpair_backup_direction_last_forced_sync_timestamp_seconds"); len(got) != 1 || got[0].GetGauge().GetValue() != float64(at(time.Hour).Unix()) {
		t.Errorf("last forced sync %v, want one series of %v (only pool02 -> pool01 has one)", got, at(time.Hour).Unix())
	}
	// 9 phases, one of them current.
	if n := testutil.CollectAndCount(c, "poolpair_phase"); n != len(Phases) {
		t.Errorf("%d poolpair_phase series, want %d", n, len(Phases))
	}
	if lint, err := testutil.CollectAndLint(c); err != nil || len(lint) > 0 {
		t.Errorf("promlint: %v %v", lint, err)
	}
}

// gathered is every series of name c exports.
func gathered(t *testing.T, c prometheus.Collector, name string) []*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func TestCollectorExportsNothingUntilElected(t *testing.T) {
	pp := &drv1alpha1.PoolPair{ObjectMeta: metav1.ObjectMeta{Namespace: "lync", Name: "emea-dr"}}
	elected := make(chan struct{})
	c := newCollector(t, elected, pp)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("a replica that does not lead exported %d series", n)
	}
	close(elected)
	if n := testutil.CollectAndCount(c, "poolpair_info"); n != 1 {
		t.Errorf("the leader exported %d poolpair_info series, want 1", n)
	}
}
