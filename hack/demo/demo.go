//go:build unix

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/localrun"
)

// demo is one run: what it started (to stop it again) and how to reach it.
type demo struct {
	settings
	root string
	out  io.Writer

	ports   []localrun.Port
	started []stopper
	cp      *localrun.ControlPlane
	kubectl localrun.Kubectl
	client  client.Client
	sim     *localrun.Proc
	manager *localrun.Proc
	sample  *drv1alpha1.PoolPair
	pair    client.ObjectKey

	// promPath is the prometheus binary on the PATH ("" when it is not installed); prom runs it,
	// with its alerts page at promAlerts.
	promPath   string
	prom       *localrun.Proc
	promAlerts string
}

// stopper is something started that must be stopped on the way out.
type stopper struct {
	name string
	stop func() error
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "==> "+format+"\n", args...)
}

func (d *demo) note(text string) {
	if text = strings.TrimRight(text, "\n"); text != "" {
		fmt.Fprintln(d.out, indent(text))
	}
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintln(d.out, "poolpair-operator demo: the manager and two simulated Lync pools, all on 127.0.0.1")
	if err := builtBinaries(); err != nil {
		return err
	}
	assets, err := localrun.AssetsDir()
	if err != nil {
		return err
	}
	d.promPath, _ = exec.LookPath("prometheus")
	setup := []func(context.Context) error{
		d.checkPorts,
		d.freshDir,
		func(ctx context.Context) error { return d.startControlPlane(ctx, assets) },
		d.installCRD,
		d.makeCerts,
		d.startSim,
		d.startManager,
		d.startPrometheus,
		d.applySample,
	}
	for _, f := range setup {
		err := f(ctx)
		if ctx.Err() != nil {
			return nil // Ctrl-C during setup: stop quietly, whatever the step made of it
		}
		if err != nil {
			return err
		}
	}
	return d.watch(ctx)
}

func (d *demo) checkPorts(context.Context) error {
	ports, err := demoPorts(d.promPath != "")
	if err != nil {
		return err
	}
	d.ports = ports
	var list []string
	for _, p := range ports {
		list = append(list, strconv.Itoa(p.Port))
	}
	d.step("checking loopback ports %s", strings.Join(list, " "))
	busy := localrun.BusyPorts(ports)
	if len(busy) == 0 {
		return nil
	}
	var msgs []string
	var leftovers []string
	for _, b := range busy {
		msgs = append(msgs, b.String())
		// An earlier demo killed before it could clean up leaves processes that use bin/demo.
		if b.PID != 0 && strings.Contains(b.Command, filepath.Join(d.root, demoDir)) && !slices.Contains(leftovers, strconv.Itoa(b.PID)) {
			leftovers = append(leftovers, strconv.Itoa(b.PID))
		}
	}
	hint := "stop what holds them and run the demo again"
	if len(leftovers) > 0 {
		hint = "an earlier demo was killed before it could stop them; stop them with: kill " + strings.Join(leftovers, " ")
	}
	return fmt.Errorf("the demo needs these ports on 127.0.0.1:\n%s\n%s", indent(strings.Join(msgs, "\n")), hint)
}

// freshDir recreates bin/demo: certificates, sim state and journals start over on every run, so a
// run never depends on what an earlier, possibly interrupted, one left.
func (d *demo) freshDir(context.Context) error {
	if err := os.RemoveAll(demoDir); err != nil {
		return fmt.Errorf("removing the last run's %s: %w", demoDir, err)
	}
	if err := os.MkdirAll(demoDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", demoDir, err)
	}
	return nil
}

func (d *demo) startControlPlane(_ context.Context, assets string) error {
	d.step("starting etcd and kube-apiserver from %s", rel(d.root, assets))
	start := time.Now()
	cp, err := localrun.StartControlPlane(localrun.ControlPlaneOptions{
		AssetsDir: assets, Dir: filepath.Join(d.root, demoDir),
		EtcdPort: etcdPort, EtcdPeerPort: etcdPeerPort, APIServerPort: apiServerPort,
	})
	if err != nil {
		return err
	}
	d.cp = cp
	d.started = append(d.started, stopper{"kube-apiserver and etcd", cp.Stop})
	d.kubectl = cp.Kubectl
	d.kubectl.Dir = d.root
	d.note(fmt.Sprintf("API server %s, up in %s; kubeconfig %s", cp.APIServerURL, time.Since(start).Round(100*time.Millisecond), filepath.Join(demoDir, "kubeconfig")))
	return d.newClient()
}

func (d *demo) newClient() error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("client scheme: %w", err)
	}
	if err := drv1alpha1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("client scheme: %w", err)
	}
	c, err := client.New(d.cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	d.client = c
	return nil
}

func (d *demo) installCRD(ctx context.Context) error {
	d.step("installing the PoolPair CRD: kubectl apply -k config/crd")
	out, err := d.kubectl.Run(ctx, "apply", "-k", "config/crd")
	if err != nil {
		return err
	}
	d.note(out)
	// Applying the sample before the CRD is served would fail with "no matches for kind".
	return waitEstablished(ctx, d.kubectl.Run)
}

// waitEstablished waits for the CRD to be served. kubectl wait fails at once ("accessor error")
// when it reads the CRD between its creation and its first status conditions: that is asked again.
func waitEstablished(ctx context.Context, kubectl func(context.Context, ...string) (string, error)) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := kubectl(ctx, "wait", "--for=condition=Established", "--timeout=30s", "crd/poolpairs.dr.lync.io")
		if err == nil || !strings.Contains(err.Error(), "accessor error") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// makeCerts makes the development CA, the agents' server certificate and the manager's client
// certificate, then lays the client one out as the manager's --agent-tls-dir and as a Secret.
func (d *demo) makeCerts(ctx context.Context) error {
	certs := filepath.Join(demoDir, "certs")
	d.step("development certificates: bin/lync-agent certs --out %s --hosts 127.0.0.1,localhost", certs)
	out, err := runTool(ctx, "bin/lync-agent", "certs", "--out", certs, "--hosts", "127.0.0.1,localhost")
	if err != nil {
		return err
	}
	d.note(out)
	files := map[string][]byte{}
	for dst, src := range map[string]string{"tls.crt": "client.crt", "tls.key": "client.key", "ca.crt": "ca.crt"} {
		if files[dst], err = os.ReadFile(filepath.Join(certs, src)); err != nil {
			return fmt.Errorf("reading the client certificate: %w", err)
		}
	}
	if err := writeDir(filepath.Join(demoDir, "manager-tls"), files); err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "lync-agent-client", Namespace: sampleNS,
			Labels: map[string]string{drv1alpha1.AgentTLSSecretLabel: "true"}},
		Type: corev1.SecretTypeTLS, Data: files,
	}
	if err := d.client.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	d.note(fmt.Sprintf("the manager's client certificate: %s/manager-tls (--agent-tls-dir) and Secret %s/%s (for spec.agent.tlsSecretRef)",
		demoDir, sampleNS, secret.Name))
	return nil
}

func writeDir(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}

func (d *demo) startSim(ctx context.Context) error {
	args := []string{"sim", "--deployment", simDeployment, "--tls-dir", filepath.Join(demoDir, "certs"),
		"--journal", filepath.Join(demoDir, "journal"), "--state", filepath.Join(demoDir, "sim-state.json"),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", simAdminPort)}
	d.step("starting the simulated agents: bin/lync-agent %s", strings.Join(args, " "))
	p, err := localrun.Start(localrun.Spec{Name: "sim", Path: "bin/lync-agent", Args: args,
		LogPath: filepath.Join(demoDir, "sim.log"), ReadyLine: "ready"})
	if err != nil {
		return err
	}
	d.sim = p
	d.started = append(d.started, stopper{"sim", func() error { p.Stop(stopGrace); return nil }})
	if err := p.WaitReady(ctx, startupTimeout); err != nil {
		return err
	}
	d.note(endpointLines(p.LogPath) + "\n(log: " + p.LogPath + ")")
	return nil
}

// endpointLines picks the sim's endpoint list out of its log (its own log lines are there too).
func endpointLines(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, prefix := range []string{"pool ", "server ", "admin "} {
			if strings.HasPrefix(sc.Text(), prefix) {
				lines = append(lines, sc.Text())
			}
		}
	}
	return strings.Join(lines, "\n")
}

func (d *demo) startManager(ctx context.Context) error {
	args := []string{"--agent-tls-dir", filepath.Join(demoDir, "manager-tls"), "--default-tls-namespaces", sampleNS,
		// Plain HTTP on loopback: the demo has no Prometheus service account to authorize.
		"--metrics-secure=false", "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort)}
	d.step("starting the manager: KUBECONFIG=%s bin/manager %s", filepath.Join(demoDir, "kubeconfig"), strings.Join(args, " "))
	p, err := localrun.Start(localrun.Spec{Name: "manager", Path: "bin/manager", Args: args,
		Env: []string{"KUBECONFIG=" + d.cp.Kubeconfig}, LogPath: filepath.Join(demoDir, "manager.log")})
	if err != nil {
		return err
	}
	d.manager = p
	d.started = append(d.started, stopper{"manager", func() error { p.Stop(stopGrace); return nil }})
	if err := waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)); err != nil {
		return err
	}
	d.note("ready (log: " + p.LogPath + ")")
	return nil
}

// waitHTTP polls url until it answers 200, failing at once if p exits first.
func waitHTTP(ctx context.Context, p *localrun.Proc, url string) error {
	deadline := time.Now().Add(startupTimeout)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%w; the end of %s:\n%s", p.ExitError(), p.LogPath, p.LogTail(20))
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer %s within %s; the end of %s:\n%s", p.Name, url, startupTimeout, p.LogPath, p.LogTail(20))
}

func (d *demo) applySample(ctx context.Context) error {
	d.step("kubectl apply -k %s -n %s", sampleDir, sampleNS)
	out, err := d.kubectl.Run(ctx, "apply", "-k", sampleDir, "-n", sampleNS)
	if err != nil {
		return err
	}
	d.note(out)
	sample, err := loadSample()
	if err != nil {
		return err
	}
	d.sample = sample
	d.pair = client.ObjectKey{Namespace: sampleNS, Name: sample.Name}
	return nil
}

// runTool runs one of the built binaries to completion and returns its output.
func runTool(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}
