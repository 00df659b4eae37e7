//go:build unix

// Package e2e runs the operator as users do: the built manager and lync-agent binaries as real
// processes, the real kube-apiserver and the built kubectl (apply, wait, get, describe, delete).
// It needs the test control plane (make envtest-assets): without it, it skips, or fails under CI=true.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		if fail, msg := testenv.MissingAssets(err); fail {
			t.Fatal(msg)
		} else {
			t.Skip(msg)
		}
	}
	h := &harness{root: testenv.RepoRoot(), dir: t.TempDir()}
	h.buildBinaries(t)
	h.startControlPlane(t, assets)
	t.Cleanup(func() {
		if t.Failed() && h.mgr != nil {
			t.Logf("the end of %s:\n%s", h.mgr.LogPath, h.mgr.LogTail(40))
		}
	})

	t.Run("config/default passes a server-side dry run", h.testDryRunDefault)
	// Deploy config/default for real (its Deployment never runs: there is no scheduler), so the
	// manager below can run as its service account, under its RBAC.
	h.applyDefault(t)
	h.kube(t, "wait", "--for=condition=Established", "--timeout=30s", "crd/poolpairs.dr.lync.io")
	tlsDir := h.makeCerts(t)
	h.startManager(t, tlsDir, h.serviceAccountKubeconfig(t))

	t.Run("an invalid PoolPair is refused with the field named", h.testInvalidRefused)
	t.Run("pair, inspect with kubectl, delete with Unpair", h.testPairInspectUnpair)
	t.Run("Prometheus fires and clears the backup and agent alerts", h.testAlerts)
	t.Run("sim killed mid-bootstrap and restarted converges", h.testSimKilledMidBootstrap)
	t.Run("the manager was never refused by RBAC", h.testNoRBACDenials)
}

func (h *harness) testDryRunDefault(t *testing.T) {
	// A server-side dry run creates nothing, so the namespaced objects would be refused with
	// "namespaces poolpair-system not found" on an empty cluster: the namespace must exist first.
	h.kube(t, "create", "namespace", operatorNamespace)
	out := h.kube(t, "apply", "--dry-run=server", "-k", "config/default")
	for _, want := range []string{
		"namespace/poolpair-system", "customresourcedefinition.apiextensions.k8s.io/poolpairs.dr.lync.io",
		"serviceaccount/poolpair-manager", "clusterrole.rbac.authorization.k8s.io/poolpair-manager",
		"deployment.apps/poolpair-manager", "service/poolpair-manager-metrics",
		"clusterrole.rbac.authorization.k8s.io/poolpair-metrics-reader", "clusterrolebinding.rbac.authorization.k8s.io/poolpair-metrics-auth",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
}

// applyDefault deploys config/default. Its namespace enforces the restricted Pod Security level, so
// the API server warns right here if the manager's pod template would be refused.
func (h *harness) applyDefault(t *testing.T) {
	t.Helper()
	cmd := h.kubectl.Command(context.Background(), "apply", "-k", "config/default")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("kubectl apply -k config/default: %v\n%s%s", err, out, stderr.String())
	}
	if strings.Contains(stderr.String(), "PodSecurity") {
		t.Errorf("config/default breaks its namespace's Pod Security level:\n%s", stderr.String())
	}
}

func (h *harness) testInvalidRefused(t *testing.T) {
	manifest := h.writeFile(t, "invalid.yaml", `apiVersion: dr.lync.io/v1alpha1
kind: PoolPair
metadata:
  name: e2e-invalid
  namespace: `+testNamespace+`
spec:
  primary: {fqdn: "pool01.contoso.com; Remove-CsPool"}
  backup: {fqdn: pool02.contoso.com}
`)
	_, err := h.kubectl.Run(context.Background(), "apply", "-f", manifest)
	if err == nil {
		t.Fatal("kubectl apply accepted a primary fqdn with a PowerShell command in it")
	}
	if !strings.Contains(err.Error(), "spec.primary.fqdn") {
		t.Errorf("the refusal does not name spec.primary.fqdn: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	if _, err := h.kubectl.Run(context.Background(), "get", "pp", "e2e-invalid", "-n", testNamespace); err == nil {
		t.Error("the invalid PoolPair exists after all")
	}
}

func (h *harness) testPairInspectUnpair(t *testing.T) {
	s := h.startSim(t, "sim-pair", 500*time.Millisecond)
	const name = "e2e-pair"
	h.kube(t, "apply", "-f", h.writeFile(t, name+".yaml", poolPairManifest(name, s.endpoints)))
	start := time.Now()
	// As the README shows it, with the short name.
	h.kube(t, "wait", "--for=condition=Ready", "pp/"+name, "-n", testNamespace, "--timeout=120s")
	t.Logf("%s Ready after %s", name, time.Since(start).Round(100*time.Millisecond))

	get := h.kube(t, "get", "pp", name, "-n", testNamespace)
	expectTable(t, get, []string{"NAME", "PRIMARY", "BACKUP", "PHASE", "READY", "LAST", "SYNC", "AGE"},
		[]string{name, "pool01.contoso.com", "pool02.contoso.com", "Synced", "True"})
	if synced := h.kube(t, "get", "pp", name, "-n", testNamespace, "-o", "jsonpath={.status.lastSyncTime}"); synced == "" {
		t.Errorf("the pair synced, but status.lastSyncTime (the LAST SYNC column) is empty:\n%s", get)
	}
	wide := h.kube(t, "get", "pp", name, "-n", testNamespace, "-o", "wide")
	expectTable(t, wide, []string{"NAME", "PRIMARY", "BACKUP", "PHASE", "READY", "AGE", "STEP", "MESSAGE"},
		[]string{name, "Synced", "True", "back each other up"})

	describe := h.kube(t, "describe", "poolpair", name, "-n", testNamespace)
	for _, event := range []string{"PairPoolsSucceeded", "BootstrapSucceeded", "StartBackupServiceSucceeded", "Synced"} {
		if !regexp.MustCompile(`(?m)^\s+Normal\s+` + event + `\s`).MatchString(describe) {
			t.Errorf("kubectl describe shows no %s event:\n%s", event, describe)
		}
	}
	for _, pool := range h.simState(t, s).Pools {
		if pool.BackupPool == "" {
			t.Errorf("before the delete, the sim has %s unpaired", pool.FQDN)
		}
	}

	// A failover round trip, declared with kubectl: pool01 (which hosts the CMS and is the Edge
	// pool's next hop) to pool02, then back.
	h.kube(t, "patch", "pp", name, "-n", testNamespace, "--type", "merge", "-p",
		`{"spec":{"failover":{"pool":"pool01.contoso.com","mode":"Planned","moveEdgeNextHop":true}}}`)
	h.kube(t, "wait", "--for=jsonpath={.status.phase}=FailedOver", "poolpair/"+name, "-n", testNamespace, "--timeout=120s")
	h.kube(t, "wait", "--for=condition=Ready", "poolpair/"+name, "-n", testNamespace, "--timeout=30s")
	expectTable(t, h.kube(t, "get", "pp", name, "-n", testNamespace), []string{"NAME", "PHASE", "READY", "SERVING"},
		[]string{name, "FailedOver", "True", "pool01.contoso.com users on pool02.contoso.com"})
	h.kube(t, "patch", "pp", name, "-n", testNamespace, "--type", "json", "-p", `[{"op":"remove","path":"/spec/failover"}]`)
	h.kube(t, "wait", "--for=jsonpath={.status.failover.phase}=FailedBack", "poolpair/"+name, "-n", testNamespace, "--timeout=120s")
	h.kube(t, "wait", "--for=condition=Ready", "poolpair/"+name, "-n", testNamespace, "--timeout=120s")
	describe = h.kube(t, "describe", "poolpair", name, "-n", testNamespace)
	for _, event := range []string{"FailoverDeclared", "FailoverCMSSucceeded", "MoveEdgeNextHopSucceeded", "FailoverPoolSucceeded", "FailedOver", "FailbackPoolSucceeded", "FailedBack"} {
		if !regexp.MustCompile(`(?m)^\s+Normal\s+` + event + `\s`).MatchString(describe) {
			t.Errorf("kubectl describe shows no %s event:\n%s", event, describe)
		}
	}

	// deletionPolicy: Unpair. kubectl delete waits until the finalizer is gone.
	h.kube(t, "delete", "pp", name, "-n", testNamespace, "--timeout=60s")
	if _, err := h.kubectl.Run(context.Background(), "get", "pp", name, "-n", testNamespace); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("after kubectl delete, kubectl get pp %s: %v", name, err)
	}
	for _, pool := range h.simState(t, s).Pools {
		if pool.BackupPool != "" {
			t.Errorf("after the delete with deletionPolicy Unpair, %s still names %s as backup pool", pool.FQDN, pool.BackupPool)
		}
	}
}

func (h *harness) testSimKilledMidBootstrap(t *testing.T) {
	// Bootstrap takes long enough here to be caught in the act.
	s := h.startSim(t, "sim-crash", 4*time.Second)
	const name = "e2e-crash"
	h.kube(t, "apply", "-f", h.writeFile(t, name+".yaml", poolPairManifest(name, s.endpoints)))
	waitFor(t, name+" bootstrapping", 60*time.Second, func() (bool, error) {
		out, err := h.kubectl.Run(context.Background(), "get", "pp", name, "-n", testNamespace,
			"-o", `jsonpath={.status.conditions[?(@.type=="Reconciling")].reason}`)
		return err == nil && out == "Bootstrapping", nil
	})
	wide := h.kube(t, "get", "pp", name, "-n", testNamespace, "-o", "wide")
	expectTable(t, wide, []string{"STEP", "MESSAGE"}, []string{name, "Bootstrapping"})

	s.proc.Kill()
	t.Logf("killed the sim (SIGKILL) mid-bootstrap:\n%s", wide)
	// Same ports, --state and --journal: operations cut short come back Failed and retryable.
	if err := s.start(); err != nil {
		t.Fatalf("restarting the sim: %v", err)
	}

	start := time.Now()
	h.kube(t, "wait", "--for=condition=Ready", "poolpair/"+name, "-n", testNamespace, "--timeout=120s")
	t.Logf("%s Ready %s after the restart", name, time.Since(start).Round(100*time.Millisecond))
	// The journal reports the bootstrap the kill cut short as Failed (retryable); the operator
	// retried it. The event shows the kill did land mid-operation.
	describe := h.kube(t, "describe", "poolpair", name, "-n", testNamespace)
	if !regexp.MustCompile(`(?m)^\s+Warning\s+BootstrapFailed\s`).MatchString(describe) {
		t.Errorf("kubectl describe shows no BootstrapFailed event for the bootstrap the kill cut short:\n%s", describe)
	}
	for _, server := range h.simState(t, s).Servers {
		if server.BootstrappedFor == "" || server.BackupService.Status != "Running" {
			t.Errorf("after convergence, the sim has %s bootstrappedFor=%q backup service %+v", server.FQDN, server.BootstrappedFor, server.BackupService)
		}
	}
	h.kube(t, "delete", "pp", name, "-n", testNamespace, "--timeout=60s")
}

// testNoRBACDenials: a denial the manager survives (an event it may not write, say) shows only in
// its log; config/rbac must grant everything the manager does.
func (h *harness) testNoRBACDenials(t *testing.T) {
	b, err := os.ReadFile(h.mgr.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "forbidden") {
			t.Errorf("the manager, running as %s:%s, was refused: %s", operatorNamespace, operatorSA, line)
		}
	}
}

// poolPairManifest is a PoolPair for the sim's two pools, with short sync settings.
func poolPairManifest(name string, endpoints map[string]string) string {
	return fmt.Sprintf(`apiVersion: dr.lync.io/v1alpha1
kind: PoolPair
metadata:
  name: %s
  namespace: %s
spec:
  primary:
    fqdn: pool01.contoso.com
    agentEndpoint: %s
    servers:
    - {fqdn: fe01.pool01.contoso.com, agentEndpoint: "%s"}
    - {fqdn: fe02.pool01.contoso.com, agentEndpoint: "%s"}
  backup:
    fqdn: pool02.contoso.com
    agentEndpoint: %s
    servers:
    - {fqdn: fe01.pool02.contoso.com, agentEndpoint: "%s"}
    - {fqdn: fe02.pool02.contoso.com, agentEndpoint: "%s"}
  sync: {stableFor: 2s, checkInterval: 10s, timeout: 5m}
  deletionPolicy: Unpair
`, name, testNamespace,
		endpoints["pool01.contoso.com"], endpoints["fe01.pool01.contoso.com"], endpoints["fe02.pool01.contoso.com"],
		endpoints["pool02.contoso.com"], endpoints["fe01.pool02.contoso.com"], endpoints["fe02.pool02.contoso.com"])
}

// expectTable checks kubectl's table output: the header's columns and values in the first row.
func expectTable(t *testing.T, table string, columns, values []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 {
		t.Fatalf("want a header and a row, got:\n%s", table)
	}
	header := strings.Fields(lines[0])
	for _, c := range columns {
		if !slices.Contains(header, c) {
			t.Errorf("no column %s in:\n%s", c, table)
		}
	}
	for _, v := range values {
		if !strings.Contains(lines[1], v) {
			t.Errorf("no %q in the row:\n%s", v, table)
		}
	}
}

// writeFile writes a manifest. Not in t.TempDir(): kubectl -f splits paths at commas, which
// subtest names have.
func (h *harness) writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(h.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
