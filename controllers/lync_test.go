package controllers_test

// Lync as Microsoft documents it (issue 9): the reconciler against a simulator that asks for
// reboots, keeps a LYNCBACKUP that predates a pairing on the old partner, reports its sync
// interval, and leaves steps to the administrator.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func poolState(t testing.TB, env *simEnv, fqdn string) sim.PoolState {
	t.Helper()
	for _, p := range env.d.Snapshot().Pools {
		if p.FQDN == fqdn {
			return p
		}
	}
	t.Fatalf("pool %s not in the simulated deployment", fqdn)
	return sim.PoolState{}
}

// TestAdministratorPublishesThePairing: with spec.topology.publishedBy Administrator the operator
// never writes the topology; it says what to do in Topology Builder, and once the administrator
// has published the pairing it takes over from Bootstrapper on.
func TestAdministratorPublishesThePairing(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "by-admin")
	pp.Spec.Topology.PublishedBy = drv1alpha1.TopologyPublishedByAdministrator
	create(t, pp)
	eventually(t, 30*time.Second, "Ready=False WaitingForAdministrator", func() (bool, string) {
		got := getPair(t, ns, "by-admin")
		c := conditionOf(got, drv1alpha1.ConditionReady)
		return c != nil && c.Reason == controllers.StepWaitingForAdministrator &&
			strings.Contains(c.Message, "Associated backup pool pool02.contoso.com") && strings.Contains(c.Message, "publish the topology") &&
			conditionIs(got, drv1alpha1.ConditionTopologyPublished, metav1.ConditionFalse, controllers.StepWaitingForAdministrator), describe(got)
	})
	// The administrator publishes the pairing in Topology Builder: an association names both pools.
	for _, side := range [][2]string{{"pool01.contoso.com", "pool02.contoso.com"}, {"pool02.contoso.com", "pool01.contoso.com"}} {
		if err := env.d.SetBackupPool(side[0], side[1]); err != nil {
			t.Fatal(err)
		}
	}
	poke(t, ns, "by-admin")
	waitReady(t, ns, "by-admin", 60*time.Second)
	counts := env.d.Counts()
	if n := counts["PairPools/pool01.contoso.com"] + counts["PairPools/pool02.contoso.com"]; n != 0 {
		t.Errorf("the operator wrote the topology %d times; the administrator publishes it", n)
	}
	for _, s := range append(append([]string{}, pool01Servers...), pool02Servers...) {
		if n := counts["Bootstrap/"+s]; n != 1 {
			t.Errorf("Bootstrap on %s ran %d times, want 1", s, n)
		}
	}
	assertExactlyOnce(t, env, 1)
}

// TestVoiceFailoverFollowsTheRunbook: left out, voice failover is written enabled with Lync's
// default intervals (the runbook's step 5); enabled: false keeps it off.
func TestVoiceFailoverFollowsTheRunbook(t *testing.T) {
	requireAPIServer(t)
	for _, tc := range []struct {
		name  string
		voice *drv1alpha1.VoiceFailoverSpec
		want  protocol.VoiceFailover
	}{
		{"left-out", nil, protocol.VoiceFailover{Enabled: true, FailureDetectionIntervalSeconds: 120, FailbackDetectionIntervalSeconds: 600}},
		{"interval-only", &drv1alpha1.VoiceFailoverSpec{FailureDetectionInterval: &metav1.Duration{Duration: 5 * time.Minute}},
			protocol.VoiceFailover{Enabled: true, FailureDetectionIntervalSeconds: 300, FailbackDetectionIntervalSeconds: 600}},
		{"off", &drv1alpha1.VoiceFailoverSpec{Enabled: ptr.To(false)}, protocol.VoiceFailover{Enabled: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startSim(t, testDurations, nil)
			stop := startManagerStoppable(t, env.fastReconciler)
			defer stop()
			ns := newNamespace(t)
			pp := env.pair(ns, "voice-"+tc.name)
			pp.Spec.VoiceFailover = tc.voice
			create(t, pp)
			waitReady(t, ns, pp.Name, 60*time.Second)
			got := poolState(t, env, "pool01.contoso.com").VoiceFailover
			if got == nil || *got != tc.want {
				t.Errorf("voice failover written as %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestStableForDefaultsToTwoSyncIntervals: with spec.sync.stableFor left out, the pair is synced
// once both directions have been healthy for two of the sync intervals the agents report.
func TestStableForDefaultsToTwoSyncIntervals(t *testing.T) {
	requireAPIServer(t)
	durations := map[string]string{}
	for k, v := range testDurations {
		durations[k] = v
	}
	durations["syncInterval"] = "5s" // the shortest Lync accepts
	env := startSim(t, durations, nil)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "stable")
	pp.Spec.Sync.StableFor = nil
	create(t, pp)
	got := waitReady(t, ns, "stable", 90*time.Second)
	for _, d := range got.Status.Backup {
		if d.SyncInterval == nil || d.SyncInterval.Duration != 5*time.Second {
			t.Errorf("%s -> %s: syncInterval %v, want 5s as the agent reports it", d.From, d.To, d.SyncInterval)
		}
		if d.StableSince == nil {
			t.Fatalf("%s -> %s: no stableSince", d.From, d.To)
		}
		if held := conditionOf(got, drv1alpha1.ConditionBackupSynced).LastTransitionTime.Sub(d.StableSince.Time); held < 10*time.Second-time.Second {
			// Status times have second precision: allow for one second of truncation.
			t.Errorf("%s -> %s: synced %s after it became healthy; want two 5s intervals", d.From, d.To, held)
		}
	}
	if c := conditionOf(got, drv1alpha1.ConditionBackupSynced); !strings.Contains(c.Message, "for at least 10s") {
		t.Errorf("BackupSynced message %q does not say 10s", c.Message)
	}
}

// TestLYNCBACKUPThatPredatesThePairingIsRestarted: LYNCBACKUP already runs on every server when
// the pairing is adopted; after Bootstrapper it still serves what it loaded at its start, so the
// operator restarts it (it does not start it: it runs) and backup then syncs.
func TestLYNCBACKUPThatPredatesThePairingIsRestarted(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, func(yaml string) string {
		yaml = strings.Replace(yaml, "    # backupPool: pool02.contoso.com   # a pairing already published (one side implies the other)\n",
			"    backupPool: pool02.contoso.com\n", 1)
		for _, s := range append(append([]string{}, pool01Servers...), pool02Servers...) {
			yaml = strings.Replace(yaml, "      - fqdn: "+s+"\n", "      - fqdn: "+s+"\n        backupService: Running\n", 1)
		}
		return yaml
	})
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "restart"))
	got := waitReady(t, ns, "restart", 60*time.Second)
	counts := env.d.Counts()
	for _, s := range append(append([]string{}, pool01Servers...), pool02Servers...) {
		if n := counts["RestartBackupService/"+s]; n != 1 {
			t.Errorf("LYNCBACKUP on %s restarted %d times, want 1", s, n)
		}
		if n := counts["StartBackupService/"+s]; n != 0 {
			t.Errorf("LYNCBACKUP on %s started %d times while it ran", s, n)
		}
	}
	for _, s := range got.Status.Servers {
		if s.BackupServiceStarted == nil || s.LastBootstrapTime == nil || s.BackupServiceStarted.Before(s.LastBootstrapTime) {
			t.Errorf("%s: LYNCBACKUP started %v, last bootstrapped %v", s.FQDN, s.BackupServiceStarted, s.LastBootstrapTime)
		}
	}
	assertExactlyOnce(t, env, 1)
}

// standardSfB is a Skype for Business Server 2019 deployment of two Standard Edition pools (one
// server each); pool01 hosts the Central Management store.
const standardSfB = `product: sfb2019
sites: [Redmond, Dublin]
cms: {pool: pool01.contoso.com}
durations: {pairPools: 100ms, bootstrap: 100ms, startBackupService: 50ms, syncBackup: 100ms, syncInterval: 1h, changeRate: 0, initialBacklog: 500}
pools:
  - fqdn: pool01.contoso.com
    site: Redmond
    edition: Standard
    listen: 127.0.0.1:0
    servers:
      - fqdn: se01.pool01.contoso.com
        listen: 127.0.0.1:0
  - fqdn: pool02.contoso.com
    site: Dublin
    edition: Standard
    listen: 127.0.0.1:0
    servers:
      - fqdn: se01.pool02.contoso.com
        listen: 127.0.0.1:0
`

// TestAdministratorsNextStepsAreReported: what Microsoft's procedures leave to the administrator
// is listed in status.nextSteps, announced once, and never run: re-applying the cumulative update
// after Bootstrapper (Skype for Business Server), and installing the standby Central Management
// database when the Standard Edition pool that hosts it is paired.
func TestAdministratorsNextStepsAreReported(t *testing.T) {
	requireAPIServer(t)
	env := serveSim(t, standardSfB, true)
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	pp := env.pair(ns, "next-steps")
	urls := env.runner.Endpoints()
	pp.Spec.Primary.Servers = []drv1alpha1.ServerSpec{{FQDN: "se01.pool01.contoso.com", AgentEndpoint: urls["se01.pool01.contoso.com"]}}
	pp.Spec.Backup.Servers = []drv1alpha1.ServerSpec{{FQDN: "se01.pool02.contoso.com", AgentEndpoint: urls["se01.pool02.contoso.com"]}}
	create(t, pp)
	got := waitReady(t, ns, "next-steps", 60*time.Second)
	want := []string{"Install-CsDatabase -CentralManagementDatabase -SqlServerFqdn pool02.contoso.com -SqlInstanceName rtc",
		"se01.pool01.contoso.com", "se01.pool02.contoso.com"}
	all := strings.Join(got.Status.NextSteps, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("status.nextSteps does not mention %q:\n%s", w, all)
		}
	}
	if !strings.Contains(strings.ToLower(all), "cumulative update") {
		t.Errorf("status.nextSteps does not ask to re-apply the cumulative update:\n%s", all)
	}
	if c := conditionOf(got, drv1alpha1.ConditionReady); !strings.Contains(c.Message, fmt.Sprintf("%d documented step(s) left for the administrator", len(got.Status.NextSteps))) {
		t.Errorf("Ready message %q does not point at status.nextSteps", c.Message)
	}
	for k := range env.d.Counts() {
		if strings.Contains(k, "Install-CsDatabase") {
			t.Errorf("the operator ran %s", k)
		}
	}
	// Events reach the API server asynchronously: wait for them, then check none came twice.
	var announced []string
	eventually(t, 10*time.Second, "one NextStep event per next step", func() (bool, string) {
		announced = nil
		for _, e := range listEvents(t, ns, "next-steps") {
			if e.Reason == "NextStep" {
				announced = append(announced, e.Note)
			}
		}
		return len(announced) >= len(got.Status.NextSteps), fmt.Sprintf("%q", announced)
	})
	if len(announced) != len(got.Status.NextSteps) {
		t.Errorf("%d NextStep events for %d next steps: %q", len(announced), len(got.Status.NextSteps), announced)
	}
}

// TestBootstrapperAskingForARestartWaitsForTheAdministrator: fe01.pool01's Bootstrapper asks for a
// restart. The operator reports it, never runs Bootstrapper there again before the restart (the
// simulator would count that as a duplicate), keeps the rest of the pool out of service meanwhile,
// and runs the second run once the administrator has restarted the server.
func TestBootstrapperAskingForARestartWaitsForTheAdministrator(t *testing.T) {
	requireAPIServer(t)
	const server = "fe01.pool01.contoso.com"
	env := startSim(t, testDurations, func(yaml string) string {
		return strings.Replace(yaml, "      - fqdn: "+server+"\n", "      - fqdn: "+server+"\n        faults: {rebootRequired: 1}\n", 1)
	})
	startManager(t, env.fastReconciler)
	ns := newNamespace(t)
	create(t, env.pair(ns, "reboot"))
	// The other pool gets on with it; this one waits for the restart.
	eventually(t, 30*time.Second, "Bootstrapped=False WaitingForReboot naming "+server+", pool02 bootstrapped", func() (bool, string) {
		got := getPair(t, ns, "reboot")
		c := conditionOf(got, drv1alpha1.ConditionBootstrapped)
		bootstrapped := 0
		waiting := false
		for _, s := range got.Status.Servers {
			if s.Pool == "pool02.contoso.com" && s.Bootstrapped {
				bootstrapped++
			}
			waiting = waiting || s.FQDN == server && s.RebootRequired
		}
		return c != nil && c.Reason == controllers.StepWaitingForReboot && strings.Contains(c.Message, server) &&
			strings.Contains(c.Message, "never restarts a server") && waiting && bootstrapped == 2, describe(got)
	})
	got := getPair(t, ns, "reboot")
	if c := conditionOf(got, drv1alpha1.ConditionReconciling); c == nil || c.Reason != controllers.StepWaitingForReboot {
		t.Errorf("Reconciling %+v; want WaitingForReboot once only the restart is left", c)
	}
	counts := env.d.Counts()
	if n := counts["Bootstrap/"+server]; n != 1 {
		t.Errorf("Bootstrap on %s ran %d times before the restart, want 1", server, n)
	}
	if n := counts["Bootstrap/fe02.pool01.contoso.com"]; n != 0 {
		t.Errorf("Bootstrap on fe02.pool01 ran %d times while fe01.pool01 waited for its restart (maxParallelPerPool 1)", n)
	}
	if err := env.runner.RebootServer(server); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "reboot", 60*time.Second)
	if n := env.d.Counts()["Bootstrap/"+server]; n != 2 {
		t.Errorf("Bootstrap on %s ran %d times, want 2 (before and after the restart)", server, n)
	}
	assertExactlyOnce(t, env, 1)
}
