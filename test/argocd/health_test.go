// Package argocd_test runs config/argocd/health.lua, the Argo CD health check for PoolPair, the
// way Argo CD runs a health check from argocd-cm: in gopher-lua with only the package, base and
// table libraries open (no string library), obj set from the resource as Argo CD reads it
// (unstructured: integers int64, other numbers float64), and the table the script returns read
// as {status, message}.
package argocd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

const (
	healthScript = "../../config/argocd/health.lua"
	configMap    = "../../config/argocd/argocd-cm.yaml"
	crd          = "../../config/crd/bases/dr.lync.io_poolpairs.yaml"

	primary = "pool01.contoso.com"
	backup  = "pool02.contoso.com"
	waiting = "Waiting for the operator to observe the PoolPair"
)

// Argo CD's health status codes (gitops-engine pkg/health); any other value shows as Unknown.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

var since = metav1.NewTime(time.Date(2026, 3, 2, 9, 15, 0, 0, time.UTC))

// pair is a PoolPair the operator has reconciled at generation 3, with the conditions given.
func pair(phase drv1alpha1.Phase, conds ...metav1.Condition) *drv1alpha1.PoolPair {
	pp := &drv1alpha1.PoolPair{
		TypeMeta: metav1.TypeMeta{APIVersion: drv1alpha1.GroupVersion.String(), Kind: "PoolPair"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "emea-dr", Namespace: "lync", Generation: 3, UID: "6f1c2a4e-0d0b-4a57-9a43-3d1b4f0e8c21",
			CreationTimestamp: since, Finalizers: []string{drv1alpha1.Finalizer},
		},
		Spec: drv1alpha1.PoolPairSpec{
			Primary:        drv1alpha1.PoolSpec{FQDN: primary},
			Backup:         drv1alpha1.PoolSpec{FQDN: backup},
			Topology:       drv1alpha1.TopologySpec{PublishedBy: drv1alpha1.TopologyPublishedByOperator},
			DeletionPolicy: drv1alpha1.DeletionPolicyRetain,
		},
		Status: drv1alpha1.PoolPairStatus{ObservedGeneration: 3, Phase: phase},
	}
	for _, c := range conds {
		c.ObservedGeneration, c.LastTransitionTime = 3, since
		pp.Status.Conditions = append(pp.Status.Conditions, c)
	}
	return pp
}

func cond(t string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

// working is what the operator writes while it works on a step: Reconciling True and Ready False,
// both with the step's reason and message.
func working(reason, msg string) []metav1.Condition {
	return []metav1.Condition{
		cond(drv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg),
		cond(drv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, msg),
	}
}

// stalled is what the operator writes when it stops: Stalled True and Ready False.
func stalled(reason, msg string) []metav1.Condition {
	return []metav1.Condition{
		cond(drv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg),
		cond(drv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg),
	}
}

func with(conds []metav1.Condition, more ...metav1.Condition) []metav1.Condition {
	return append(append([]metav1.Condition(nil), conds...), more...)
}

func milestones(n int) []metav1.Condition {
	all := []metav1.Condition{
		cond(drv1alpha1.ConditionTopologyPublished, metav1.ConditionTrue, "Published", primary+" and "+backup+" name each other as backup pool"),
		cond(drv1alpha1.ConditionBootstrapped, metav1.ConditionTrue, "Bootstrapped", "4 of 4 servers bootstrapped"),
		cond(drv1alpha1.ConditionBackupServiceRunning, metav1.ConditionTrue, "Running", "LYNCBACKUP runs on 4 of 4 servers"),
		cond(drv1alpha1.ConditionBackupSynced, metav1.ConditionTrue, "Synced", "both directions healthy"),
	}
	return append(all[:n:n], cond(drv1alpha1.ConditionAgentsReachable, metav1.ConditionTrue, "AgentsReachable", "every agent answered"))
}

const (
	syncedMsg     = primary + " and " + backup + " back each other up; backup is in sync both ways"
	failedOverMsg = primary + "'s users are served by " + backup + " since 2026-03-02T10:02:11Z; recovery took 11m4s (target: Lync Server 2013: 30m); data-loss window at the failover: 3m12s; remove spec.failover to fail back"
	failingOver   = "failing " + primary + " over to " + backup + " (Planned)"
	retryHint     = "; fix the cause, then retry with: kubectl annotate poolpair -n lync emea-dr dr.lync.io/requested-at=\"$(date +%s)\" --overwrite"
)

type healthCase struct {
	name   string
	pp     *drv1alpha1.PoolPair
	status string
	// message parts the health message must contain: the condition message it reports, and the
	// Stalled reason for Degraded.
	contains []string
}

func cases() []healthCase {
	var cs []healthCase
	add := func(name string, pp *drv1alpha1.PoolPair, status string, contains ...string) {
		cs = append(cs, healthCase{name, pp, status, contains})
	}

	// Created: the API server set generation 1, the operator has not written a status yet.
	fresh := pair("")
	fresh.Generation, fresh.Finalizers, fresh.Status = 1, nil, drv1alpha1.PoolPairStatus{}
	add("created, no status yet", fresh, "Progressing", waiting)

	// Finalizer added, status written without conditions (not something the operator leaves, but
	// conditions are what the script needs).
	noConds := pair(drv1alpha1.PhasePending)
	add("status without conditions", noConds, "Progressing", waiting)

	// Pending.
	msg := "waiting for the pool agents to answer"
	add("Pending: WaitingForAgents", pair(drv1alpha1.PhasePending, with(working("WaitingForAgents", msg),
		cond(drv1alpha1.ConditionAgentsReachable, metav1.ConditionFalse, "AgentsUnreachable", "no answer from https://pool02.contoso.com:9443: dial tcp 10.0.2.10:9443: i/o timeout"))...),
		"Progressing", msg)
	msg = "Publishing the pairing of " + primary + " and " + backup + " in the topology"
	add("Pending: PairingPools", pair(drv1alpha1.PhasePending, with(working("PairingPools", msg), milestones(0)...)...), "Progressing", msg)
	msg = "waiting for the administrator to pair the pools in Topology Builder (spec.topology.publishedBy is Administrator): edit the properties of " + primary +
		", under Resiliency select Associated backup pool " + backup + " and Automatic failover and failback for Voice, then publish the topology; the operator takes over from Bootstrapper.exe on"
	add("Pending: WaitingForAdministrator", pair(drv1alpha1.PhasePending, with(working("WaitingForAdministrator", msg), milestones(0)...)...), "Progressing", msg)

	// Each milestone while Reconciling.
	msg = "Bootstrapping fe02.pool01.contoso.com (1 of 4 servers bootstrapped)"
	add("TopologyPublished: Bootstrapping", pair(drv1alpha1.PhaseTopologyPublished, with(working("Bootstrapping", msg), milestones(1)...)...), "Progressing", msg)
	msg = "2 of 4 servers bootstrapped; Bootstrapper.exe asked for a restart of fe01.pool02.contoso.com: restart them (the operator never restarts a server); Bootstrapper.exe runs again on each once it is back"
	add("TopologyPublished: WaitingForReboot", pair(drv1alpha1.PhaseTopologyPublished, with(working("WaitingForReboot", msg), milestones(1)...)...), "Progressing", msg)
	msg = "Starting LYNCBACKUP on fe01.pool01.contoso.com, fe01.pool02.contoso.com (2 of 4 servers running)"
	add("Bootstrapped: StartingBackupService", pair(drv1alpha1.PhaseBootstrapped, with(working("StartingBackupService", msg), milestones(2)...)...), "Progressing", msg)
	msg = "Syncing backup from " + primary + " and " + backup + " (UserServices.PresenceFocus exports NonSteadyState)"
	add("BackupServiceStarted: SyncingBackup", pair(drv1alpha1.PhaseBackupServiceStarted, with(working("SyncingBackup", msg), milestones(3)...)...), "Progressing", msg)
	msg = "both directions healthy; waiting until they have been for 4m0s"
	add("BackupServiceStarted: WaitingForStableSync", pair(drv1alpha1.PhaseBackupServiceStarted, with(working("WaitingForStableSync", msg), milestones(3)...)...), "Progressing", msg)

	// Synced.
	add("Synced", pair(drv1alpha1.PhaseSynced, with([]metav1.Condition{cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "Synced", syncedMsg)}, milestones(4)...)...),
		"Healthy", syncedMsg)
	msg = syncedMsg + "; 1 documented step(s) left for the administrator, listed in status.nextSteps"
	add("Synced, next steps for the administrator", pair(drv1alpha1.PhaseSynced, with([]metav1.Condition{cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "Synced", msg)}, milestones(4)...)...),
		"Healthy", msg)
	msg = "no answer from https://fe02.pool02.contoso.com:9443: connection refused"
	add("Synced, an agent unreachable", pair(drv1alpha1.PhaseSynced, with(with(working("AgentsUnreachable", msg), milestones(4)[:4]...),
		cond(drv1alpha1.ConditionAgentsReachable, metav1.ConditionFalse, "AgentsUnreachable", msg))...), "Progressing", msg)
	msg = "rehearsing a failover of " + primary + ": Invoke-CsPoolFailOver -WhatIf on fe01.pool02.contoso.com is running"
	add("Synced, rehearsing a failover", pair(drv1alpha1.PhaseSynced, with(working("Rehearsing", msg), milestones(4)...)...), "Progressing", msg)

	// Stalled, with several reasons and phases.
	msg = "pool " + backup + " is already paired with pool03.contoso.com in the published topology; the operator never overwrites a pairing: remove that association in Topology Builder first"
	add("Pending: Stalled PoolPairedElsewhere", pair(drv1alpha1.PhasePending, with(stalled("PoolPairedElsewhere", msg), milestones(0)...)...), "Degraded", "PoolPairedElsewhere", msg)
	msg = "Bootstrap on fe02.pool01.contoso.com failed 6 times in a row: Bootstrapper.exe exited with 1 (log tail: Error: Cannot find the SQL Server instance)" + retryHint
	add("TopologyPublished: Stalled RetriesExhausted", pair(drv1alpha1.PhaseTopologyPublished, with(stalled("RetriesExhausted", msg), milestones(1)...)...), "Degraded", "RetriesExhausted", msg)
	msg = "StartBackupService on fe01.pool02.contoso.com failed, and the agent of fe01.pool02.contoso.com says trying again will not help: access denied" + retryHint
	add("Bootstrapped: Stalled StepFailed", pair(drv1alpha1.PhaseBootstrapped, with(stalled("StepFailed", msg), milestones(2)...)...), "Degraded", "StepFailed", msg)
	msg = "backup from " + primary + " to " + backup + " has not been healthy for 2h0m0s (UserServices.PresenceFocus imports ErrorState)"
	add("BackupServiceStarted: Stalled SyncTimeout", pair(drv1alpha1.PhaseBackupServiceStarted, with(stalled("SyncTimeout", msg), milestones(3)...)...), "Degraded", "SyncTimeout", msg)
	msg = "Secret poolpair-system/lync-agent-client not found: create it with tls.crt, tls.key and ca.crt, labelled dr.lync.io/agent-tls=true"
	add("Pending: Stalled AgentTLSSecretNotFound", pair(drv1alpha1.PhasePending, stalled("AgentTLSSecretNotFound", msg)...), "Degraded", "AgentTLSSecretNotFound", msg)

	// Suspended, also before the operator has seen the edit.
	sus := pair(drv1alpha1.PhaseBootstrapped, with([]metav1.Condition{cond(drv1alpha1.ConditionReady, metav1.ConditionFalse, "Suspended", "spec.suspend is true: nothing is observed or started")}, milestones(2)...)...)
	sus.Spec.Suspend = true
	add("suspended", sus, "Suspended", "spec.suspend is true")
	susNew := pair(drv1alpha1.PhaseSynced, with([]metav1.Condition{cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "Synced", syncedMsg)}, milestones(4)...)...)
	susNew.Spec.Suspend, susNew.Generation = true, 4
	add("suspended, not yet observed", susNew, "Suspended", "spec.suspend is true")

	// Failover and failback.
	fo := func(phase drv1alpha1.Phase, conds ...metav1.Condition) *drv1alpha1.PoolPair {
		pp := pair(phase, with(conds, milestones(4)...)...)
		pp.Spec.Failover = &drv1alpha1.FailoverSpec{Pool: primary, Mode: drv1alpha1.FailoverPlanned}
		return pp
	}
	msg = failingOver + ": Invoke-CsPoolFailOver on fe01.pool02.contoso.com is running"
	add("FailingOver", fo(drv1alpha1.PhaseFailingOver, with(working("FailingOver", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionFalse, "FailingOver", failingOver))...), "Progressing", msg)
	msg = "edge.contoso.com's next hop is " + primary + ": run Set-CsEdgeServer -Identity EdgeServer:edge.contoso.com -Registrar Registrar:" + backup + " (listed in status.failover.edgeCommands)"
	add("FailingOver: WaitingForEdgeNextHop", fo(drv1alpha1.PhaseFailingOver, with(working("WaitingForEdgeNextHop", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionFalse, "FailingOver", failingOver))...), "Progressing", msg)
	msg = failingOver + ": Invoke-CsPoolFailOver on fe01.pool02.contoso.com failed: the pool is not ready for failover" + retryHint
	add("FailingOver: Stalled FailoverStepFailed", fo(drv1alpha1.PhaseFailingOver, with(stalled("FailoverStepFailed", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionFalse, "FailingOver", failingOver))...), "Degraded", "FailoverStepFailed", msg)
	msg = "the pair is not Synced (phase Bootstrapped): a planned failover needs both backup directions healthy; wait for Synced, or declare mode: Disaster"
	add("Bootstrapped: Stalled FailoverRefused", fo(drv1alpha1.PhaseBootstrapped, with(stalled("FailoverRefused", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionFalse, "FailoverRefused", msg))...), "Degraded", "FailoverRefused", msg)
	add("FailedOver", fo(drv1alpha1.PhaseFailedOver, cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "FailedOver", failedOverMsg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionTrue, "FailedOver", failedOverMsg)), "Healthy", failedOverMsg)
	msg = primary + "'s users are no longer served by " + backup + " as declared (failed back outside the operator): remove spec.failover, or set the requested-at annotation to fail over again"
	add("FailedOver: Stalled FailoverDrifted", fo(drv1alpha1.PhaseFailedOver, with(stalled("FailoverDrifted", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionTrue, "FailedOver", failedOverMsg))...), "Degraded", "FailoverDrifted", msg)
	back := func(conds ...metav1.Condition) *drv1alpha1.PoolPair { // spec.failover removed: the users fail back
		return pair(drv1alpha1.PhaseFailingBack, with(conds, milestones(4)...)...)
	}
	msg = "failing " + primary + " back: Invoke-CsPoolFailBack on fe01.pool01.contoso.com is running"
	add("FailingBack", back(with(working("FailingBack", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionTrue, "FailingBack", "failing "+primary+" back: "+primary+" users on "+backup))...), "Progressing", msg)
	msg = "failing " + primary + "'s users back waits until its Front End servers answer and run the Front End service (RTCSRV) again"
	add("FailingBack: WaitingForFailedPool", back(with(working("WaitingForFailedPool", msg),
		cond(drv1alpha1.ConditionFailedOver, metav1.ConditionTrue, "FailingBack", "failing "+primary+" back: "+primary+" users on "+backup))...), "Progressing", msg)

	// Deleting: the API server set deletionTimestamp and bumped the generation; the operator does
	// not move observedGeneration while it carries out the deletion policy.
	deleting := func(phase drv1alpha1.Phase, conds ...metav1.Condition) *drv1alpha1.PoolPair {
		pp := pair(phase, with(conds, milestones(4)...)...)
		now := metav1.NewTime(since.Add(48 * time.Hour))
		pp.DeletionTimestamp, pp.Generation, pp.Spec.DeletionPolicy = &now, 4, drv1alpha1.DeletionPolicyUnpair
		return pp
	}
	msg = "Unpairing " + primary + " and " + backup
	add("Deleting: Unpairing", deleting(drv1alpha1.PhaseDeleting,
		cond(drv1alpha1.ConditionReady, metav1.ConditionFalse, "Deleting", msg), cond(drv1alpha1.ConditionReconciling, metav1.ConditionTrue, "Unpairing", msg)),
		"Progressing", "Deleting", msg)
	msg = "unpaired; restarting LYNCBACKUP on fe01.pool01.contoso.com, fe02.pool01.contoso.com, as Microsoft's procedure does after a pairing is removed"
	add("Deleting: RestartingBackupService", deleting(drv1alpha1.PhaseDeleting,
		cond(drv1alpha1.ConditionReady, metav1.ConditionFalse, "Deleting", msg), cond(drv1alpha1.ConditionReconciling, metav1.ConditionTrue, "RestartingBackupService", msg)),
		"Progressing", "Deleting", msg)
	msg = "cannot unpair: no answer from https://pool01.contoso.com:9443; to delete without unpairing: kubectl patch poolpair -n lync emea-dr --type merge -p '{\"spec\":{\"deletionPolicy\":\"Retain\"}}'"
	add("Deleting: Stalled UnpairBlocked", deleting(drv1alpha1.PhaseDeleting, stalled("UnpairBlocked", msg)...), "Progressing", "Deleting", "UnpairBlocked", msg)
	add("Deleting, not yet seen by the operator", deleting(drv1alpha1.PhaseSynced, cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "Synced", syncedMsg)),
		"Progressing", "Deleting", "deletionPolicy")

	// The status describes an older spec: whatever it says, wait for the operator.
	old := pair(drv1alpha1.PhaseSynced, with([]metav1.Condition{cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "Synced", syncedMsg)}, milestones(4)...)...)
	old.Generation = 4
	add("Synced, observedGeneration behind", old, "Progressing", waiting, "generation 4", "generation 3")
	msg = "server fe09.pool01.contoso.com is not a Front End of " + primary + " in the topology"
	oldStall := pair(drv1alpha1.PhaseTopologyPublished, with(stalled("ServerNotInPool", msg), milestones(1)...)...)
	oldStall.Generation = 4 // the spec was edited to fix the server list
	add("Stalled, observedGeneration behind", oldStall, "Progressing", waiting)

	// Ready False with neither Reconciling nor Stalled: Ready's message.
	msg = "waiting for the next observation"
	add("Ready False alone", pair(drv1alpha1.PhasePending, cond(drv1alpha1.ConditionReady, metav1.ConditionFalse, "Pending", msg)), "Progressing", msg)

	return cs
}

// toUnstructured gives the object as Argo CD holds it: JSON from the API server, decoded into
// unstructured content (integers as int64).
func toUnstructured(t *testing.T, pp *drv1alpha1.PoolPair) *unstructured.Unstructured {
	t.Helper()
	data, err := json.Marshal(pp)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}

// decodeValue converts unstructured content to Lua values as Argo CD's util/lua decodeValue does:
// maps to tables, arrays to sequences (1-based), numbers to LNumber, null to nil.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// runHealth runs script as Argo CD runs a health check from argocd-cm (useOpenLibs false).
func runHealth(t *testing.T, script string, obj *unstructured.Unstructured) (status, message string) {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatalf("opening %s: %v", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health script failed: %v", err)
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health script returned %s, want a table", l.Get(-1).Type())
	}
	get := func(key string) string {
		v, ok := hs.RawGetString(key).(lua.LString)
		if !ok {
			t.Fatalf("hs.%s is %s, want a string", key, hs.RawGetString(key).Type())
		}
		return string(v)
	}
	status, message = get("status"), get("message")
	if !validStatuses[status] {
		t.Fatalf("hs.status %q is not an Argo CD health status: Argo CD would show Unknown", status)
	}
	return status, message
}

func readScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(healthScript)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHealth(t *testing.T) {
	script := readScript(t)
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			status, message := runHealth(t, script, toUnstructured(t, tc.pp))
			t.Logf("%s: %s", status, message)
			if status != tc.status {
				t.Errorf("status = %s, want %s (message %q)", status, tc.status, message)
			}
			for _, part := range tc.contains {
				if !strings.Contains(message, part) {
					t.Errorf("message %q does not contain %q", message, part)
				}
			}
		})
	}
}

// TestEveryPhaseCovered makes a new phase in the CRD need a case here.
func TestEveryPhaseCovered(t *testing.T) {
	b, err := os.ReadFile(crd)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema struct {
						Properties map[string]struct {
							Properties map[string]struct {
								Enum []string `json:"enum"`
							} `json:"properties"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, v := range doc.Spec.Versions {
		if v.Name == drv1alpha1.GroupVersion.Version {
			phases = v.Schema.OpenAPIV3Schema.Properties["status"].Properties["phase"].Enum
		}
	}
	if len(phases) == 0 {
		t.Fatalf("no status.phase enum for %s in %s", drv1alpha1.GroupVersion.Version, crd)
	}
	covered := map[string]bool{}
	for _, tc := range cases() {
		covered[string(tc.pp.Status.Phase)] = true
	}
	for _, ph := range phases {
		if !covered[ph] {
			t.Errorf("no case for phase %s", ph)
		}
	}
}

// TestConfigMap checks the argocd-cm patch: the ConfigMap Argo CD reads, the key Argo CD looks up
// for dr.lync.io/PoolPair, and health.lua byte for byte, so the two never drift.
func TestConfigMap(t *testing.T) {
	b, err := os.ReadFile(configMap)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatalf("%s: %v", configMap, err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" || cm.Namespace != "argocd" {
		t.Errorf("%s is %s %s %s/%s, want v1 ConfigMap argocd/argocd-cm", configMap, cm.APIVersion, cm.Kind, cm.Namespace, cm.Name)
	}
	if got := cm.Labels["app.kubernetes.io/part-of"]; got != "argocd" {
		t.Errorf("label app.kubernetes.io/part-of = %q, want argocd", got)
	}
	// Argo CD: resource.customizations.health.<group>_<kind>.
	key := fmt.Sprintf("resource.customizations.health.%s_%s", drv1alpha1.GroupVersion.Group, "PoolPair")
	if len(cm.Data) != 1 {
		t.Errorf("data has %d keys, want only %s", len(cm.Data), key)
	}
	script, ok := cm.Data[key]
	if !ok {
		t.Fatalf("data has no key %s", key)
	}
	if want := readScript(t); script != want {
		t.Errorf("the script in %s differs from %s: regenerate it with\n  sed '/./s/^/    /' %s\nunder the key", configMap, filepath.Base(healthScript), healthScript)
	}
	// And it runs: Synced is Healthy.
	pp := pair(drv1alpha1.PhaseSynced, cond(drv1alpha1.ConditionReady, metav1.ConditionTrue, "Synced", syncedMsg))
	if status, _ := runHealth(t, script, toUnstructured(t, pp)); status != "Healthy" {
		t.Errorf("the ConfigMap's script says %s for a Synced pair, want Healthy", status)
	}
}
