//go:build unix

// Command demo runs poolpair-operator end to end on this machine, on 127.0.0.1 only: etcd and
// kube-apiserver (bin/k8s/<version>), a simulated pair of Lync Front End pools (bin/lync-agent sim,
// hack/sim/two-pools.yaml), the manager (bin/manager) and, when it is installed, Prometheus with the
// alerts of config/prometheus, then applies config/samples and shows the PoolPair's progress until
// it is synced. It keeps everything running for you to try kubectl and
// simctl until Ctrl-C, then stops every process it started.
//
// Run it from the repository with `make demo`. Everything it writes goes to bin/demo/, recreated on
// every run.
//
// Environment:
//
//	DEMO_EXIT_WHEN_SYNCED=1  exit 0 once the pair is synced (non-zero on failure or timeout)
//	DEMO_TIMEOUT=3m          how long the pair may take to sync
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/localrun"
)

// Fixed loopback ports, so the kubeconfig and the commands the demo prints stay the same from run to
// run. All are below Linux's ephemeral range (32768+), where tests pick their random ports. The sim's
// ports come from hack/sim/two-pools.yaml and the sample.
const (
	etcdPort       = 12379
	etcdPeerPort   = 12380
	apiServerPort  = 16443
	metricsPort    = 18080
	probePort      = 18081
	simAdminPort   = 19440
	prometheusPort = 19090 // only when prometheus is installed
	demoDir        = "bin/demo"
	simDeployment  = "hack/sim/two-pools.yaml"
	sampleDir      = "config/samples"
	sampleFile     = "config/samples/dr_v1alpha1_poolpair.yaml"
	sampleNS       = "default"
	stopGrace      = 10 * time.Second
	startupTimeout = 30 * time.Second
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %v\n", err)
		os.Exit(1)
	}
}

// signalContext ends on the first SIGINT, SIGTERM or SIGHUP (terminal closed), and on SIGPIPE
// (`make demo | head` closed our output), which would otherwise kill the demo on its next write
// before it stops etcd and kube-apiserver. Later signals are absorbed, so a second Ctrl-C cannot
// cut the cleanup short.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		first := true
		for sig := range sigs {
			switch {
			case first:
				fmt.Fprintln(os.Stderr, "\ndemo: stopping (this takes a few seconds)...")
				cancel()
				first = false
			case sig != syscall.SIGPIPE: // every write to a closed pipe raises another one
				fmt.Fprintln(os.Stderr, "demo: still stopping the processes it started, please wait")
			}
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// settings are what the environment tunes.
type settings struct {
	exitWhenSynced bool
	timeout        time.Duration
}

func readSettings() (settings, error) {
	s := settings{exitWhenSynced: os.Getenv("DEMO_EXIT_WHEN_SYNCED") == "1", timeout: 3 * time.Minute}
	if v := os.Getenv("DEMO_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("DEMO_TIMEOUT=%q: want a positive Go duration such as 3m", v)
		}
		s.timeout = d
	}
	return s, nil
}

func run(ctx context.Context, out io.Writer) error {
	s, err := readSettings()
	if err != nil {
		return err
	}
	root, err := localrun.RepoRoot("make demo")
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return fmt.Errorf("changing to the repository: %w", err)
	}
	d := &demo{settings: s, root: root, out: out}
	defer d.stopAll()
	return d.run(ctx)
}

// builtBinaries checks for bin/manager and bin/lync-agent (make demo builds them first).
func builtBinaries() error {
	for _, bin := range []string{"bin/manager", "bin/lync-agent"} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s is not built: run `make demo` (or `make build` first)", bin)
		}
	}
	return nil
}

// stopAll stops what was started, newest first, and checks that no port stayed in use.
func (d *demo) stopAll() {
	if len(d.started) == 0 {
		return
	}
	fmt.Fprintln(d.out, "\n==> stopping")
	for i := len(d.started) - 1; i >= 0; i-- {
		s := d.started[i]
		if err := s.stop(); err != nil {
			fmt.Fprintf(d.out, "    %s: %v\n", s.name, err)
			continue
		}
		fmt.Fprintf(d.out, "    %s stopped\n", s.name)
	}
	d.started = nil
	if err := localrun.CheckPorts(d.ports); err != nil {
		fmt.Fprintf(d.out, "    WARNING: still in use after stopping:\n%s\n", indent(err.Error()))
		return
	}
	fmt.Fprintln(d.out, "    all ports free again")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
