//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/lync-dr/poolpair-operator/internal/localrun"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
)

// What config/default deploys: the manager's namespace and service account. The manager runs here
// as that service account, so the test also proves config/rbac grants what the manager does.
const (
	operatorNamespace = "poolpair-system"
	operatorSA        = "poolpair-manager"
	testNamespace     = "default"
	stopGrace         = 10 * time.Second
)

// harness is the control plane, the built binaries and the manager, shared by the scenarios.
type harness struct {
	root    string
	dir     string
	manager string // path of the built manager
	agent   string // path of the built lync-agent
	cp      *localrun.ControlPlane
	kubectl localrun.Kubectl
	certs   string // lync-agent certs output: the sim's server side and simctl's client side
	mgr     *localrun.Proc
	metrics string // the manager's metrics endpoint (HTTPS), host:port
}

// buildBinaries builds the manager and lync-agent as CI and users do (static, CGO_ENABLED=0).
func (h *harness) buildBinaries(t *testing.T) {
	t.Helper()
	out := filepath.Join(h.dir, "bin")
	start := time.Now()
	// One go build for both: the packages they share are compiled once.
	cmd := exec.Command("go", "build", "-o", out+string(filepath.Separator), ".", "./cmd/lync-agent")
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the manager and lync-agent: %v\n%s", err, b)
	}
	// go build names a directory's binary after the last element of its import path.
	h.manager, h.agent = filepath.Join(out, "poolpair-operator"), filepath.Join(out, "lync-agent")
	t.Logf("built the manager and lync-agent in %s", time.Since(start).Round(100*time.Millisecond))
}

func (h *harness) startControlPlane(t *testing.T, assets string) {
	t.Helper()
	cp, err := localrun.StartControlPlane(localrun.ControlPlaneOptions{AssetsDir: assets, Dir: filepath.Join(h.dir, "cp")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	h.cp = cp
	h.kubectl = cp.Kubectl
	h.kubectl.Dir = h.root
	h.kubectl.CacheDir = filepath.Join(h.dir, "kube-cache")
}

// makeCerts runs `lync-agent certs` and returns the manager's --agent-tls-dir.
func (h *harness) makeCerts(t *testing.T) string {
	t.Helper()
	h.certs = filepath.Join(h.dir, "certs")
	h.run(t, h.agent, "certs", "--out", h.certs, "--hosts", "127.0.0.1,localhost")
	clientDir := filepath.Join(h.dir, "manager-tls")
	if err := os.MkdirAll(clientDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for dst, src := range map[string]string{"tls.crt": "client.crt", "tls.key": "client.key", "ca.crt": "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(h.certs, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clientDir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return clientDir
}

// serviceAccountKubeconfig writes a kubeconfig that acts as the manager's service account, by
// impersonation from the admin user: the manager then has exactly the rights config/rbac grants.
func (h *harness) serviceAccountKubeconfig(t *testing.T) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(h.cp.Kubeconfig)
	if err != nil {
		t.Fatalf("reading the admin kubeconfig: %v", err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = "system:serviceaccount:" + operatorNamespace + ":" + operatorSA
	}
	path := filepath.Join(h.dir, "manager.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("writing the manager's kubeconfig: %v", err)
	}
	return path
}

// startManager runs the manager as the Deployment in config/manager does (leader election on), on
// free loopback ports, and waits for its readiness probe.
func (h *harness) startManager(t *testing.T, tlsDir, kubeconfig string) {
	t.Helper()
	retryOnPortClash(t, "the manager", func(attempt int) error {
		ports, err := localrun.FreePorts(2)
		if err != nil {
			return err
		}
		p, err := localrun.Start(localrun.Spec{
			Name: "manager", Path: h.manager, LogPath: filepath.Join(h.dir, fmt.Sprintf("manager-%d.log", attempt)),
			Env: []string{"KUBECONFIG=" + kubeconfig},
			Args: []string{"--agent-tls-dir", tlsDir, "--default-tls-namespaces", testNamespace,
				"--leader-elect", "--leader-election-namespace", operatorNamespace,
				"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(ports[0]),
				"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(ports[1])},
		})
		if err != nil {
			return err
		}
		t.Cleanup(func() { p.Stop(stopGrace) })
		h.mgr, h.metrics = p, "127.0.0.1:"+strconv.Itoa(ports[0])
		return waitUntil(30*time.Second, func() (bool, error) {
			select {
			case <-p.Done():
				return false, fmt.Errorf("%w:\n%s", p.ExitError(), p.LogTail(30))
			default:
			}
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]))
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
	})
}

// retryOnPortClash runs start up to three times while it fails because a port found free was
// taken before it could be bound (other test packages pick ports the same way, in parallel).
func retryOnPortClash(t *testing.T, what string, start func(attempt int) error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := start(attempt)
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("starting %s: %v", what, err)
		}
		t.Logf("starting %s: a port was taken meanwhile, trying other ports: %v", what, err)
	}
}

// run runs a built binary to completion and returns its stdout; a failure fails the test.
func (h *harness) run(t *testing.T, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command(path, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// kube runs kubectl and returns its stdout; a failure fails the test.
func (h *harness) kube(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := h.kubectl.Run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// simRun is one `lync-agent sim` process serving a copy of hack/sim/two-pools.yaml on free ports.
type simRun struct {
	spec      localrun.Spec
	proc      *localrun.Proc
	admin     string            // the admin API's URL
	endpoints map[string]string // agent URL by pool or server FQDN
}

// startSim writes a copy of hack/sim/two-pools.yaml with free ports and short steps (bootstrap
// taking the given time), starts a sim on it, and stops it when the test ends.
func (h *harness) startSim(t *testing.T, name string, bootstrap time.Duration) *simRun {
	t.Helper()
	var s *simRun
	retryOnPortClash(t, name, func(attempt int) error {
		// A directory per attempt: a failed attempt's journals and state must not carry over.
		dir := filepath.Join(h.dir, fmt.Sprintf("%s-%d", name, attempt))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		deployment := filepath.Join(dir, "deployment.yaml")
		endpoints, adminPort, err := writeSimDeployment(filepath.Join(h.root, "hack", "sim", "two-pools.yaml"), deployment, bootstrap)
		if err != nil {
			return err
		}
		s = &simRun{
			admin:     fmt.Sprintf("https://127.0.0.1:%d", adminPort),
			endpoints: endpoints,
			spec: localrun.Spec{
				Name: name, Path: h.agent, LogPath: filepath.Join(dir, "sim.log"), ReadyLine: "ready",
				Args: []string{"sim", "--deployment", deployment, "--tls-dir", h.certs,
					"--journal", filepath.Join(dir, "journal"), "--state", filepath.Join(dir, "state.json"),
					"--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort)},
			},
		}
		return s.start()
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the end of %s:\n%s", s.spec.LogPath, localrun.FileTail(s.spec.LogPath, 30))
		}
		s.proc.Stop(stopGrace)
	})
	return s
}

// start starts (or restarts, with the same state and journals) the sim and waits for "ready".
func (s *simRun) start() error {
	p, err := localrun.Start(s.spec)
	if err != nil {
		return err
	}
	s.proc = p
	if err := p.WaitReady(context.Background(), 30*time.Second); err != nil {
		p.Stop(stopGrace)
		return err
	}
	return nil
}

// state is the simulated deployment as `lync-agent simctl state` prints it.
func (h *harness) simState(t *testing.T, s *simRun) sim.State {
	t.Helper()
	out := h.run(t, h.agent, "simctl", "--admin", s.admin, "--tls-dir", h.certs, "state")
	var st sim.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("simctl state: %v\n%s", err, out)
	}
	return st
}

// writeSimDeployment copies the demo deployment with every listen address on a free port and steps
// short enough for a test; it returns the agent URL of each pool and server, and the admin port.
func writeSimDeployment(src, dst string, bootstrap time.Duration) (map[string]string, int, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, 0, err
	}
	var dep map[string]any
	if err := yaml.Unmarshal(b, &dep); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", src, err)
	}
	dep["durations"] = map[string]any{
		"pairPools": "500ms", "bootstrap": bootstrap.String(), "startBackupService": "200ms", "syncBackup": "500ms",
		"syncInterval": "5s", "changeRate": 0.2, "batchCapacity": 100, "initialBacklog": 300,
	}
	var listeners []map[string]any
	for _, pool := range dep["pools"].([]any) {
		p := pool.(map[string]any)
		listeners = append(listeners, p)
		for _, server := range p["servers"].([]any) {
			listeners = append(listeners, server.(map[string]any))
		}
	}
	ports, err := localrun.FreePorts(len(listeners) + 1)
	if err != nil {
		return nil, 0, err
	}
	endpoints := map[string]string{}
	for i, l := range listeners {
		l["listen"] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		endpoints[l["fqdn"].(string)] = fmt.Sprintf("https://127.0.0.1:%d", ports[i])
	}
	out, err := yaml.Marshal(dep)
	if err != nil {
		return nil, 0, err
	}
	return endpoints, ports[len(ports)-1], os.WriteFile(dst, out, 0o644)
}

// waitFor polls cond every 200ms until it holds; it fails the test if cond fails or time runs out.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	if err := waitUntil(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitUntil polls cond every 200ms until it holds, fails or the timeout passes.
func waitUntil(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
