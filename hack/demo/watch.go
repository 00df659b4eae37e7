//go:build unix

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/localrun"
	"github.com/lync-dr/poolpair-operator/test/prometheus"
)

const pollInterval = 500 * time.Millisecond

// watch prints one line per change of the PoolPair until it is synced, then describes it and, unless
// DEMO_EXIT_WHEN_SYNCED=1, prints what to try and keeps watching until Ctrl-C.
func (d *demo) watch(ctx context.Context) error {
	d.step("watching poolpair %s (time since kubectl apply)", d.pair)
	start := time.Now()
	deadline := time.NewTimer(d.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last string
	var lastPP *drv1alpha1.PoolPair
	synced := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.sim.Done():
			return d.failure(lastPP, d.sim.ExitError())
		case <-d.manager.Done():
			return d.failure(lastPP, d.manager.ExitError())
		case <-deadline.C:
			err := fmt.Errorf("poolpair %s was not synced within %s (DEMO_TIMEOUT)", d.pair, d.timeout)
			if d.exitWhenSynced {
				return d.failure(lastPP, err)
			}
			// Interactive: say so, then keep everything running for the user to investigate.
			d.report(lastPP, err)
			fmt.Fprintln(d.out, "The demo keeps running so you can look (see the commands above and bin/demo/*.log); Ctrl-C stops it.")
		case <-tick.C:
		}
		pp, line := d.observe(ctx)
		if pp != nil {
			lastPP = pp
		}
		if line != last {
			fmt.Fprintf(d.out, "[%4ds] %s\n", int(time.Since(start).Seconds()), line)
			last = line
		}
		if synced || pp == nil || !localrun.ProgressOf(pp).Synced() {
			continue
		}
		synced = true
		deadline.Stop()
		d.describe(ctx)
		if err := d.checkPrometheus(ctx); err != nil {
			if d.exitWhenSynced {
				return d.failure(lastPP, err)
			}
			fmt.Fprintf(d.out, "WARNING: %v\n", err)
		}
		if d.exitWhenSynced {
			fmt.Fprintf(d.out, "\nSynced in %s (DEMO_EXIT_WHEN_SYNCED=1: stopping).\n", time.Since(start).Round(time.Second))
			return nil
		}
		d.tips()
	}
}

// observe reads the PoolPair and renders it as one progress line.
func (d *demo) observe(ctx context.Context) (*drv1alpha1.PoolPair, string) {
	var pp drv1alpha1.PoolPair
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.client.Get(rctx, d.pair, &pp); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("poolpair %s is gone", d.pair)
		}
		if ctx.Err() != nil {
			return nil, ""
		}
		return nil, fmt.Sprintf("(cannot read poolpair %s: %v)", d.pair, err)
	}
	if pp.DeletionTimestamp != nil && pp.Status.Phase != drv1alpha1.PhaseDeleting {
		return &pp, "being deleted; " + localrun.ProgressOf(&pp).String()
	}
	return &pp, localrun.ProgressOf(&pp).String()
}

func (d *demo) describe(ctx context.Context) {
	d.step("kubectl describe poolpair %s -n %s", d.pair.Name, d.pair.Namespace)
	out, err := d.kubectl.Run(ctx, "describe", "poolpair", d.pair.Name, "-n", d.pair.Namespace)
	if err != nil {
		fmt.Fprintf(d.out, "    %v\n", err)
		return
	}
	fmt.Fprint(d.out, out)
}

// tips prints the commands to try while the demo runs.
func (d *demo) tips() {
	abs := func(p string) string { return filepath.Join(d.root, p) }
	simctl := fmt.Sprintf("bin/lync-agent simctl --admin https://127.0.0.1:%d --tls-dir %s/certs", simAdminPort, demoDir)
	server := d.sample.Spec.Primary.Servers[0].FQDN
	primary, backup := d.sample.Spec.Primary.FQDN, d.sample.Spec.Backup.FQDN
	backupServer := server
	if len(d.sample.Spec.Backup.Servers) > 0 {
		backupServer = d.sample.Spec.Backup.Servers[0].FQDN
	}
	alerts := "  # Prometheus's alerts page: " + d.promAlerts
	if d.prom == nil {
		alerts = "  # Prometheus is not installed (" + prometheus.InstallHint + "); the metrics the alerts read:\n" +
			fmt.Sprintf("  curl -s http://127.0.0.1:%d/metrics | grep '^poolpair_'", metricsPort)
	}
	lines := []string{
		"",
		"The pools are paired and backed up both ways. The demo keeps running until Ctrl-C;",
		"in another terminal, from " + d.root + ":",
		"",
		"  export KUBECONFIG=" + abs(filepath.Join(demoDir, "kubeconfig")),
		"  export PATH=" + filepath.Dir(d.kubectl.Path) + ":$PATH    # the kubectl built for the tests",
		"",
		"  kubectl get pp -o wide                  # PRIMARY BACKUP PHASE READY AGE STEP MESSAGE",
		"  kubectl describe pp " + d.pair.Name + "             # conditions, servers, backup per direction, events",
		"",
		"  # stop the backup service on one server, then watch the operator heal it:",
		"  " + simctl + " stop-service " + server,
		"  kubectl get pp -w",
		"",
		"  # fire the alerts of config/prometheus, then clear them (the manager looks every " + checkInterval(d.sample) + ",",
		"  # sync.checkInterval of the sample, sooner while something is wrong):",
		"  " + simctl + " export-error " + primary + " on     # PoolPairBackupUnhealthy, PoolPairDataLossWindowAboveTarget",
		"  " + simctl + " export-error " + primary + " off",
		"  " + simctl + " unreachable " + backupServer + " true   # PoolPairAgentUnreachable",
		"  " + simctl + " unreachable " + backupServer + " false",
		alerts,
		"",
		"  # rehearse a failover of " + primary + " (nothing moves; status.failover says what a failover would do):",
		"  kubectl patch pp " + d.pair.Name + " --type merge -p '{\"spec\":{\"failover\":{\"pool\":\"" + primary + "\",\"mode\":\"Rehearsal\",\"moveEdgeNextHop\":true}}}'",
		"  kubectl get pp " + d.pair.Name + " -o jsonpath='{.status.failover}'; echo",
		"  kubectl patch pp " + d.pair.Name + " --type json -p '[{\"op\":\"remove\",\"path\":\"/spec/failover\"}]'",
		"",
		"  # fail " + primary + " over for real (planned: CMS first, the Edge pool's next hop, then its users), then back:",
		"  kubectl patch pp " + d.pair.Name + " --type merge -p '{\"spec\":{\"failover\":{\"pool\":\"" + primary + "\",\"mode\":\"Planned\",\"moveEdgeNextHop\":true}}}'",
		"  kubectl get pp -w                      # PHASE FailingOver, FailedOver; SERVING " + primary + " users on " + backup,
		"  kubectl patch pp " + d.pair.Name + " --type json -p '[{\"op\":\"remove\",\"path\":\"/spec/failover\"}]'   # fail back",
		"",
		"  # a disaster: " + backup + " stops answering, and only mode Disaster is accepted:",
		"  " + simctl + " pool-unreachable " + backup + " true",
		"  kubectl patch pp " + d.pair.Name + " --type merge -p '{\"spec\":{\"failover\":{\"pool\":\"" + backup + "\",\"mode\":\"Disaster\",\"moveEdgeNextHop\":true}}}'",
		"  kubectl describe pp " + d.pair.Name + "             # FailedOver, recovery time, data-loss window",
		"  " + simctl + " failover-state      # who serves whom, where the CMS is, the Edge pool's next hop",
		"  " + simctl + " pool-unreachable " + backup + " false",
		"  kubectl patch pp " + d.pair.Name + " --type json -p '[{\"op\":\"remove\",\"path\":\"/spec/failover\"}]'   # fail back once it answers",
		"",
		"  # delete the pair: deletionPolicy Unpair removes the pairing from the topology first",
		"  kubectl delete pp " + d.pair.Name,
		"  " + simctl + " state    # no backupPool on either pool",
		"",
		"Logs: " + demoDir + "/manager.log, sim.log, kube-apiserver.log, etcd.log" + promLog(d.prom) + ". Changes keep showing below.",
		"",
	}
	fmt.Fprintln(d.out, strings.Join(lines, "\n"))
}

// failure reports the last status and the end of the logs, and returns the reason.
func (d *demo) failure(pp *drv1alpha1.PoolPair, reason error) error {
	d.report(pp, reason)
	return reason
}

func (d *demo) report(pp *drv1alpha1.PoolPair, reason error) {
	fmt.Fprintf(d.out, "\n%v\n", reason)
	if pp != nil {
		fmt.Fprintf(d.out, "last status of poolpair %s: %s\n%s", d.pair, localrun.ProgressOf(pp), localrun.Conditions(pp))
	} else {
		fmt.Fprintf(d.out, "poolpair %s was never read\n", d.pair)
	}
	for _, p := range []*localrun.Proc{d.manager, d.sim} {
		fmt.Fprintf(d.out, "the end of %s:\n%s\n", p.LogPath, p.LogTail(25))
	}
}

// checkInterval is the sample's spec.sync.checkInterval, or the default.
func checkInterval(pp *drv1alpha1.PoolPair) string {
	if pp.Spec.Sync.CheckInterval != nil {
		return pp.Spec.Sync.CheckInterval.Duration.String()
	}
	return "5m (the default)"
}

func promLog(p *localrun.Proc) string {
	if p == nil {
		return ""
	}
	return ", " + filepath.Base(p.LogPath)
}
