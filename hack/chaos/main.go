//go:build unix

// Command chaos checks that poolpair-operator starts every step exactly once when it is killed at
// random moments. For each of N runs it starts a fresh simulated deployment (bin/lync-agent sim,
// hack/sim/two-pools.yaml with short step durations and free ports) and the manager (bin/manager),
// applies a PoolPair, and while the pair goes from Pending to Synced kills the manager with SIGKILL
// and starts it again at once (in agents mode it also restarts random Front End agents). Then it
// lets the pair converge, reads the sim's timeline and counts the steps started more than once
// (sim.Duplicates) and the moments where more Front Ends of a pool ran Bootstrapper than
// maxParallelPerPool (1) allows (sim.MaxConcurrent). One control plane (etcd, kube-apiserver) serves
// every run; each run has its own namespace.
//
// Run it from the repository with `make chaos`. Everything it writes goes to bin/chaos/, recreated
// on every run. The last line it prints is
//
//	chaos: converged X/N, steps started more than once: D
//
// and it exits 0 only when X = N and D = 0.
//
// Environment:
//
//	CHAOS_RUNS=10          how many runs
//	CHAOS_MODE=manager     manager: kill the manager; agents: also restart Front End agents;
//	                       failover: once Synced, fail pool01 over (planned: CMS, Edge next hop,
//	                       pool) and back, killing the manager throughout; every failover cmdlet
//	                       must run exactly once
//	CHAOS_SEED=<number>    the random seed (default: time-based, printed so a run can be repeated)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/localrun"
)

const (
	chaosDir    = "bin/chaos"
	simTemplate = "hack/sim/two-pools.yaml"
	// maxKills and maxRestarts bound the faults of one run; faults stop earlier once Synced.
	maxKills    = 12
	maxRestarts = 12
	// faultMin and faultMax bound the time between two faults.
	faultMin        = 100 * time.Millisecond
	faultMax        = 1200 * time.Millisecond
	convergeTimeout = 2 * time.Minute
	startupTimeout  = 30 * time.Second
	stopGrace       = 5 * time.Second
)

type settings struct {
	runs int
	mode string // "manager", "agents" or "failover"
	seed uint64
}

func main() {
	ctx, stop := signalContext()
	defer stop()
	s, err := readSettings()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		os.Exit(2)
	}
	converged, dups, err := runAll(ctx, s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: FAILED: %v\n", err)
	}
	if ctx.Err() != nil {
		fmt.Println("chaos: interrupted")
	}
	fmt.Printf("chaos: converged %d/%d, steps started more than once: %d\n", converged, s.runs, dups)
	if err != nil || converged != s.runs || dups != 0 {
		os.Exit(1)
	}
}

func readSettings() (settings, error) {
	s := settings{runs: 10, mode: "manager", seed: uint64(time.Now().UnixNano())}
	if v := os.Getenv("CHAOS_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, fmt.Errorf("CHAOS_RUNS=%q: want a positive number", v)
		}
		s.runs = n
	}
	if v := os.Getenv("CHAOS_MODE"); v != "" {
		if v != "manager" && v != "agents" && v != "failover" {
			return s, fmt.Errorf("CHAOS_MODE=%q: want manager, agents or failover", v)
		}
		s.mode = v
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("CHAOS_SEED=%q: want a non-negative number", v)
		}
		s.seed = n
	}
	return s, nil
}

// runAll sets up what every run shares, then runs them one by one. It returns how many converged and
// the sum of the duplicates.
func runAll(ctx context.Context, s settings) (converged, dups int, err error) {
	root, err := localrun.RepoRoot("make chaos")
	if err != nil {
		return 0, 0, err
	}
	if err := os.Chdir(root); err != nil {
		return 0, 0, fmt.Errorf("changing to the repository: %w", err)
	}
	fmt.Printf("chaos: %d runs, mode %s, seed %d (CHAOS_SEED=%d repeats the fault schedule); logs in %s/\n",
		s.runs, s.mode, s.seed, s.seed, chaosDir)
	h := &harness{settings: s, root: root}
	defer h.stopAll()
	if err := h.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return 0, 0, nil
		}
		return 0, 0, err
	}
	for i := 1; i <= s.runs && ctx.Err() == nil; i++ {
		res := h.runOnce(ctx, i)
		if ctx.Err() != nil {
			break // an interrupted run counts for nothing
		}
		fmt.Println(res.String(i, s.runs))
		if res.converged {
			converged++
		}
		dups += res.duplicates()
	}
	return converged, dups, nil
}

// signalContext ends on the first SIGINT, SIGTERM or SIGHUP; later ones are absorbed so that a
// second Ctrl-C cannot cut the cleanup short.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		first := true
		for range sigs {
			if first {
				fmt.Fprintln(os.Stderr, "\nchaos: stopping (this takes a few seconds)...")
				cancel()
				first = false
			}
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
