package controllers_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/agent/simrun"
	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

// simEnv is a simulated Lync deployment served by in-process agents over real mutual TLS.
type simEnv struct {
	runner *simrun.SimRunner
	d      *sim.Deployment
	// clientDir holds the manager's client certificate (tls.crt, tls.key, ca.crt).
	clientDir string
	// journalDir holds each agent's journal, in a directory named after its server.
	journalDir string
	certs      *devcerts.Bundle
}

// fastDurations replaces the demo's step durations with short ones.
func fastDurations(yaml string, d map[string]string) string {
	for key, value := range d {
		lines := strings.Split(yaml, "\n")
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), key+":") {
				indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
				lines[i] = indent + key + ": " + value
			}
		}
		yaml = strings.Join(lines, "\n")
	}
	return yaml
}

// testDurations are short, non-zero step durations: long enough that steps are seen in flight.
var testDurations = map[string]string{
	"pairPools": "150ms", "bootstrap": "150ms", "startBackupService": "50ms", "syncBackup": "100ms",
	"syncInterval": "1h", "changeRate": "0", "initialBacklog": "500",
}

// startSim serves hack/sim/two-pools.yaml (with the given duration overrides and per-server
// faults) on loopback ports until the test ends.
func startSim(t testing.TB, durations map[string]string, edit func(yaml string) string) *simEnv {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "sim", "two-pools.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := fastDurations(string(raw), durations)
	if edit != nil {
		yaml = edit(yaml)
	}
	return serveSim(t, yaml, true)
}

// serveSim serves a simulated deployment on loopback ports until the test ends, with its journals
// (and, when persist is set, its state file) in a directory of its own.
func serveSim(t testing.TB, yaml string, persist bool) *simEnv {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), "sim")
	if err != nil {
		t.Fatal(err)
	}
	var opts []sim.Option
	if persist {
		opts = append(opts, sim.WithStateFile(filepath.Join(dir, "state.json")))
	}
	d, err := sim.Parse([]byte(yaml), opts...)
	if err != nil {
		t.Fatalf("loading the simulated deployment: %v", err)
	}
	certs, err := devcerts.Generate([]string{"127.0.0.1", "localhost"}, "poolpair-operator")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	journalDir := filepath.Join(dir, "journal")
	runner, err := simrun.StartSim(ctx, d, simrun.TLS{CAPEM: certs.CACertPEM, CertPEM: certs.ServerCertPEM, KeyPEM: certs.ServerKeyPEM},
		journalDir, func(sim.Endpoint) string { return "127.0.0.1:0" },
		simrun.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		cancel()
		t.Fatalf("starting the simulated agents: %v", err)
	}
	t.Cleanup(func() { runner.Stop(); cancel() })
	clientDir := filepath.Join(dir, "client")
	if err := os.MkdirAll(clientDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": certs.ClientCertPEM, "tls.key": certs.ClientKeyPEM, "ca.crt": certs.CACertPEM} {
		if err := os.WriteFile(filepath.Join(clientDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &simEnv{runner: runner, d: d, clientDir: clientDir, journalDir: journalDir, certs: certs}
}

// pair is a PoolPair for the simulated pools, with every agent endpoint given.
func (e *simEnv) pair(ns, name string) *drv1alpha1.PoolPair {
	urls := e.runner.Endpoints()
	pool := func(fqdn string, servers ...string) drv1alpha1.PoolSpec {
		p := drv1alpha1.PoolSpec{FQDN: fqdn, AgentEndpoint: urls[fqdn]}
		for _, s := range servers {
			p.Servers = append(p.Servers, drv1alpha1.ServerSpec{FQDN: s, AgentEndpoint: urls[s]})
		}
		return p
	}
	return &drv1alpha1.PoolPair{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: drv1alpha1.PoolPairSpec{
			Primary: pool("pool01.contoso.com", "fe01.pool01.contoso.com", "fe02.pool01.contoso.com"),
			Backup:  pool("pool02.contoso.com", "fe01.pool02.contoso.com", "fe02.pool02.contoso.com"),
			Sync: drv1alpha1.SyncSpec{
				StableFor:     &metav1.Duration{Duration: 300 * time.Millisecond},
				CheckInterval: &metav1.Duration{Duration: 10 * time.Second},
				Timeout:       &metav1.Duration{Duration: time.Hour},
			},
		},
	}
}

// testBackoff is fastReconciler's retry backoff: 0.5 s, 1 s, 2 s, 4 s (each plus up to 20%
// jitter), stalled after 4 failures in a row.
var testBackoff = pairing.Backoff{Base: 500 * time.Millisecond, Cap: 4 * time.Second, Limit: 4}

// fastReconciler points the controller at the sim with test-sized timings.
func (e *simEnv) fastReconciler(r *controllers.PoolPairReconciler) {
	r.AgentTLSDir = e.clientDir
	r.DefaultTLSNamespaces = []string{"*"} // every test has its own namespace
	r.AgentTimeout = 2 * time.Second
	r.Backoff = testBackoff
	r.OperationPollInterval = 5 * time.Second
	r.UnreachableRetry = 300 * time.Millisecond
	r.MaxConcurrentReconciles = 4
}

// create creates pp and removes it when the test ends (finalizer and all), so the next test can
// claim the same simulated pools.
func create(t testing.TB, pp *drv1alpha1.PoolPair) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, pp); err != nil {
		t.Fatalf("creating PoolPair: %v", err)
	}
	t.Cleanup(func() {
		got := &drv1alpha1.PoolPair{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pp), got); err != nil {
			return
		}
		patch := client.MergeFrom(got.DeepCopy())
		got.Finalizers = nil
		_ = k8s.Patch(ctx, got, patch)
		_ = k8s.Delete(ctx, got)
	})
}
