//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/localrun"
)

// harness is what every run shares: the control plane, the certificates and the sim template.
type harness struct {
	settings
	root    string
	cp      *localrun.ControlPlane
	client  client.Client
	certs   string // ca.crt, server.crt, client.crt, ... from lync-agent certs (the sim's --tls-dir)
	mgrTLS  string // the manager's --agent-tls-dir: tls.crt, tls.key, ca.crt
	tmpl    simTemplateFile
	restart restarter // how an agent is restarted: simctl or the admin API
}

// simTemplateFile is hack/sim/two-pools.yaml, parsed loosely so that every run writes a copy with
// its own ports and short durations, keeping whatever else the file says.
type simTemplateFile struct {
	doc   map[string]any
	pools []poolInfo
}

type poolInfo struct {
	fqdn    string
	servers []string
}

func (h *harness) setup(ctx context.Context) error {
	for _, bin := range []string{"bin/manager", "bin/lync-agent"} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s is not built: run `make chaos` (or `make build` first)", bin)
		}
	}
	assets, err := localrun.AssetsDir()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(chaosDir); err != nil {
		return fmt.Errorf("removing the last run's %s: %w", chaosDir, err)
	}
	if err := os.MkdirAll(chaosDir, 0o755); err != nil {
		return err
	}
	if h.tmpl, err = loadSimTemplate(); err != nil {
		return err
	}
	ports, err := localrun.FreePorts(3)
	if err != nil {
		return err
	}
	cp, err := localrun.StartControlPlane(localrun.ControlPlaneOptions{
		AssetsDir: assets, Dir: filepath.Join(h.root, chaosDir, "control-plane"),
		EtcdPort: ports[0], EtcdPeerPort: ports[1], APIServerPort: ports[2],
	})
	if err != nil {
		return err
	}
	h.cp = cp
	h.cp.Kubectl.Dir = h.root
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := drv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if h.client, err = client.New(cp.Config, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	if _, err := cp.Kubectl.Run(ctx, "apply", "-k", "config/crd"); err != nil {
		return err
	}
	if _, err := cp.Kubectl.Run(ctx, "wait", "--for=condition=Established", "--timeout=30s", "crd/poolpairs.dr.lync.io"); err != nil {
		return err
	}
	if err := h.makeCerts(ctx); err != nil {
		return err
	}
	h.restart = newRestarter(ctx, h.certs)
	fmt.Printf("chaos: control plane %s; agent restarts via %s\n", cp.APIServerURL, h.restart.how())
	return nil
}

// makeCerts makes the development CA and certificates once, and lays out the client certificate
// as the manager's --agent-tls-dir, as hack/demo does.
func (h *harness) makeCerts(ctx context.Context) error {
	h.certs = filepath.Join(chaosDir, "certs")
	h.mgrTLS = filepath.Join(chaosDir, "manager-tls")
	cmd := exec.CommandContext(ctx, "bin/lync-agent", "certs", "--out", h.certs, "--hosts", "127.0.0.1,localhost")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bin/lync-agent certs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.MkdirAll(h.mgrTLS, 0o700); err != nil {
		return err
	}
	for dst, src := range map[string]string{"tls.crt": "client.crt", "tls.key": "client.key", "ca.crt": "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(h.certs, src))
		if err != nil {
			return fmt.Errorf("reading the client certificate: %w", err)
		}
		if err := os.WriteFile(filepath.Join(h.mgrTLS, dst), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// stopAll stops the control plane (each run stops its own processes).
func (h *harness) stopAll() {
	if h.cp != nil {
		if err := h.cp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		}
		h.cp = nil
	}
}

func loadSimTemplate() (simTemplateFile, error) {
	var t simTemplateFile
	b, err := os.ReadFile(simTemplate)
	if err != nil {
		return t, err
	}
	if err := yaml.Unmarshal(b, &t.doc); err != nil {
		return t, fmt.Errorf("%s: %w", simTemplate, err)
	}
	for _, p := range list(t.doc["pools"]) {
		pi := poolInfo{fqdn: str(p["fqdn"])}
		for _, s := range list(p["servers"]) {
			pi.servers = append(pi.servers, str(s["fqdn"]))
		}
		t.pools = append(t.pools, pi)
	}
	if len(t.pools) != 2 {
		return t, fmt.Errorf("%s: want two pools, found %d", simTemplate, len(t.pools))
	}
	return t, nil
}

// chaosDurations are the step durations of the chaos deployment: short, so that a run takes
// seconds, and no background changes, so that one forced sync per direction is all a pair needs.
var chaosDurations = map[string]any{
	"pairPools":          "1s",
	"bootstrap":          "1500ms",
	"startBackupService": "200ms",
	"syncBackup":         "1s",
	"failoverCMS":        "1s",
	"moveEdgeNextHop":    "500ms",
	"failoverPool":       "1500ms",
	"failbackPool":       "1500ms",
	"syncInterval":       "1h",
	"changeRate":         0,
	"initialBacklog":     500,
}

// deployment writes the run's copy of the template: chaos durations and the listen addresses
// given (fqdn -> host:port), and returns it as YAML.
func (t simTemplateFile) deployment(listen map[string]string) ([]byte, error) {
	b, err := yaml.Marshal(t.doc)
	if err != nil {
		return nil, err
	}
	var doc map[string]any // a deep copy: the template stays as read
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	durations, _ := doc["durations"].(map[string]any)
	if durations == nil {
		durations = map[string]any{}
	}
	for k, v := range chaosDurations {
		durations[k] = v
	}
	doc["durations"] = durations
	for _, p := range list(doc["pools"]) {
		p["listen"] = listen[str(p["fqdn"])]
		for _, s := range list(p["servers"]) {
			s["listen"] = listen[str(s["fqdn"])]
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by hack/chaos from "+simTemplate+".\n"), out...), nil
}

func list(v any) []map[string]any {
	items, _ := v.([]any)
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
