package metrics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

// The PoolPair state metrics, kube-state-metrics style: derived at scrape time from each PoolPair's
// status as the manager's cache holds it, so a deleted PoolPair's series go with it. Their labels
// are bounded: the object's namespace and name, pool and server FQDNs from its spec and status,
// and enumerations; never a free-text message.
var (
	pairLabels      = []string{"namespace", "name"}
	directionLabels = []string{"namespace", "name", "from", "to"}

	infoDesc = prometheus.NewDesc("poolpair_info",
		"Each PoolPair, with the two pools it pairs; always 1.",
		append(pairLabels, "primary", "backup"), nil)
	phaseDesc = prometheus.NewDesc("poolpair_phase",
		"The PoolPair's phase: 1 for the current one, 0 for the others.",
		append(pairLabels, "phase"), nil)
	conditionDesc = prometheus.NewDesc("poolpair_condition",
		"The PoolPair's conditions: 1 on the series of the condition's status (true, false or unknown), 0 on the others. Reconciling and Stalled are false when absent.",
		append(pairLabels, "type", "status"), nil)
	suspendedDesc = prometheus.NewDesc("poolpair_suspended",
		"1 when spec.suspend is true: nothing is observed or started for the PoolPair.",
		pairLabels, nil)
	directionHealthyDesc = prometheus.NewDesc("poolpair_backup_direction_healthy",
		"1 when the backup direction from one pool to the other was healthy at the last observation: every module exports FinalState or SteadyState and imports NormalState.",
		directionLabels, nil)
	directionUnhealthySinceDesc = prometheus.NewDesc("poolpair_backup_direction_unhealthy_since_timestamp_seconds",
		"When the backup direction became unhealthy while the backup service ran (Unix time); time() minus it is how long it has been unhealthy. Absent while healthy.",
		directionLabels, nil)
	directionLastForcedSyncDesc = prometheus.NewDesc("poolpair_backup_direction_last_forced_sync_timestamp_seconds",
		"When the operator's last forced sync (Invoke-CsBackupServiceSync) of the direction finished (Unix time).",
		directionLabels, nil)
	dataLossWindowDesc = prometheus.NewDesc("poolpair_backup_data_loss_window_seconds",
		"How long ago both backup directions were last healthy together: the user data a failover now could lose. 0 while both are healthy; absent when unknown (the backup service does not run, or the pair never synced).",
		pairLabels, nil)
	agentUpDesc = prometheus.NewDesc("poolpair_agent_up",
		"1 when the lync-agent of a Front End server answered on the PoolPair's last pass, 0 when it did not.",
		append(pairLabels, "pool", "server"), nil)
	pairsDesc = prometheus.NewDesc("poolpair_pairs",
		"PoolPairs by phase.",
		[]string{"phase"}, nil)
)

// Phases are every phase poolpair_phase enumerates.
var Phases = []drv1alpha1.Phase{
	drv1alpha1.PhasePending, drv1alpha1.PhaseTopologyPublished, drv1alpha1.PhaseBootstrapped,
	drv1alpha1.PhaseBackupServiceStarted, drv1alpha1.PhaseSynced, drv1alpha1.PhaseFailingOver,
	drv1alpha1.PhaseFailedOver, drv1alpha1.PhaseFailingBack, drv1alpha1.PhaseDeleting,
}

// absentMeansFalse are the condition types that are only present while True (kstatus).
var absentMeansFalse = []string{drv1alpha1.ConditionReconciling, drv1alpha1.ConditionStalled}

// PoolPairCollector exports the PoolPair state metrics.
type PoolPairCollector struct {
	// Reader lists the PoolPairs; the manager's cache.
	Reader client.Reader
	// Elected is closed once this replica leads: only the leader exports, so that two replicas
	// do not fire every alert twice. Nil: always.
	Elected <-chan struct{}
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Describe implements prometheus.Collector.
func (c *PoolPairCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{infoDesc, phaseDesc, conditionDesc, suspendedDesc, directionHealthyDesc,
		directionUnhealthySinceDesc, directionLastForcedSyncDesc, dataLossWindowDesc, agentUpDesc, pairsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolPairCollector) Collect(ch chan<- prometheus.Metric) {
	if c.Elected != nil {
		select {
		case <-c.Elected:
		default:
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var list drv1alpha1.PoolPairList
	if err := c.Reader.List(ctx, &list); err != nil {
		// The scrape fails and says why, rather than report no PoolPairs.
		ch <- prometheus.NewInvalidMetric(infoDesc, fmt.Errorf("listing PoolPairs: %w", err))
		return
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	perPhase := map[drv1alpha1.Phase]float64{}
	for i := range list.Items {
		pp := &list.Items[i]
		collectPair(ch, pp, now())
		if pp.Status.Phase != "" {
			perPhase[pp.Status.Phase]++
		}
	}
	for _, phase := range Phases {
		ch <- prometheus.MustNewConstMetric(pairsDesc, prometheus.GaugeValue, perPhase[phase], string(phase))
	}
}

func collectPair(ch chan<- prometheus.Metric, pp *drv1alpha1.PoolPair, now time.Time) {
	ns, name, st := pp.Namespace, pp.Name, &pp.Status
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ns, name}, labels...)...)
	}
	gauge(infoDesc, 1, pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN)
	gauge(suspendedDesc, boolValue(pp.Spec.Suspend))
	if st.Phase != "" {
		for _, phase := range Phases {
			gauge(phaseDesc, boolValue(phase == st.Phase), string(phase))
		}
	}
	seen := map[string]bool{}
	for _, c := range st.Conditions {
		seen[c.Type] = true
		for _, s := range []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown} {
			gauge(conditionDesc, boolValue(c.Status == s), c.Type, strings.ToLower(string(s)))
		}
	}
	if len(st.Conditions) > 0 {
		for _, t := range absentMeansFalse {
			if !seen[t] {
				gauge(conditionDesc, 0, t, "true")
				gauge(conditionDesc, 1, t, "false")
				gauge(conditionDesc, 0, t, "unknown")
			}
		}
	}
	for _, d := range st.Backup {
		gauge(directionHealthyDesc, boolValue(d.Healthy), d.From, d.To)
		if !d.Healthy && d.UnhealthySince != nil {
			gauge(directionUnhealthySinceDesc, unixSeconds(d.UnhealthySince.Time), d.From, d.To)
		}
		if d.LastSyncTime != nil {
			gauge(directionLastForcedSyncDesc, unixSeconds(d.LastSyncTime.Time), d.From, d.To)
		}
	}
	if w, ok := DataLossWindow(st, now); ok {
		gauge(dataLossWindowDesc, w.Seconds())
	}
	for _, s := range st.Servers {
		gauge(agentUpDesc, boolValue(s.Reachable), s.Pool, s.FQDN)
	}
}

// DataLossWindow is how long ago both backup directions were last known healthy together: zero
// while both are healthy and their pools' agents answer; else the time since the first
// observation of a direction turning unhealthy, or of a pool's agents no longer answering (its
// backup state can no longer be read). Either may be up to one check interval late, so the window is a
// lower bound. Unknown (false) before both directions were observed, and while a direction is
// unhealthy without the backup service running everywhere (not yet synced, or LYNCBACKUP
// stopped: the pair is not Ready then, which has its own alert).
func DataLossWindow(st *drv1alpha1.PoolPairStatus, now time.Time) (time.Duration, bool) {
	if len(st.Backup) < 2 {
		return 0, false
	}
	var since *time.Time
	earliest := func(t time.Time) {
		if since == nil || t.Before(*since) {
			since = &t
		}
	}
	for _, d := range st.Backup {
		switch {
		case d.Healthy:
		case d.UnhealthySince != nil:
			earliest(d.UnhealthySince.Time)
		default:
			return 0, false
		}
	}
	for _, c := range st.Conditions {
		if c.Type == drv1alpha1.ConditionAgentsReachable && c.Status == metav1.ConditionFalse && poolUnread(st) {
			earliest(c.LastTransitionTime.Time)
		}
	}
	if since == nil {
		return 0, true
	}
	return max(now.Sub(*since), 0), true
}

// poolUnread: no Front End server of one of the pools answers, so its backup state could not be
// read (one server down does not stop the reads: any Front End of the pool answers for it).
func poolUnread(st *drv1alpha1.PoolPairStatus) bool {
	answering := map[string]bool{}
	for _, s := range st.Servers {
		answering[s.Pool] = answering[s.Pool] || s.Reachable
	}
	for _, ok := range answering {
		if !ok {
			return true
		}
	}
	return false
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }
