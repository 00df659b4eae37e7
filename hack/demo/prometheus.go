//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/localrun"
	"github.com/lync-dr/poolpair-operator/test/prometheus"
)

// The demo's Prometheus loads the rules of config/prometheus with the durations of the end-to-end
// test's overlay: seconds where the shipped rules wait 10 minutes to 2 hours, so that an alert
// shows within a minute of a fault made with simctl.
const (
	promRulesOverlay = "test/e2e/testdata/prometheus"
	promJob          = "poolpair-manager-metrics" // as a ServiceMonitor names it: the Service's name
)

func promURL() string { return fmt.Sprintf("http://127.0.0.1:%d", prometheusPort) }

// startPrometheus runs prometheus, when it is installed, scraping the manager's plain-HTTP metrics
// on loopback every 2 seconds and evaluating the alerts every 2 seconds.
func (d *demo) startPrometheus(ctx context.Context) error {
	if d.promPath == "" {
		d.step("Prometheus is not installed, so the demo shows no alerts (to see them: %s, then make demo again)", prometheus.InstallHint)
		return nil
	}
	dir := filepath.Join(demoDir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	manifests, err := d.kubectl.Run(ctx, "kustomize", promRulesOverlay)
	if err != nil {
		return err
	}
	_, rules, err := prometheus.ExtractRuleFile([]byte(manifests))
	if err != nil {
		return fmt.Errorf("kubectl kustomize %s: %w", promRulesOverlay, err)
	}
	rulesFile, configFile := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(rulesFile, rules, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", rulesFile, err)
	}
	config := fmt.Sprintf(`# Written by make demo: the manager's metrics (plain HTTP on loopback, --metrics-secure=false)
# and the alerts of config/prometheus with the durations of %s.
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
rule_files: [rules.yaml]
scrape_configs:
- job_name: %s
  honor_labels: true
  static_configs:
  - targets: ["127.0.0.1:%d"]
`, promRulesOverlay, promJob, metricsPort)
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", configFile, err)
	}
	args := []string{"--config.file=" + configFile, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", prometheusPort)}
	d.step("starting Prometheus: %s %s", d.promPath, strings.Join(args, " "))
	p, err := localrun.Start(localrun.Spec{Name: "prometheus", Path: d.promPath, Args: args,
		LogPath: filepath.Join(demoDir, "prometheus.log")})
	if err != nil {
		return err
	}
	d.prom = p
	d.started = append(d.started, stopper{"prometheus", func() error { p.Stop(stopGrace); return nil }})
	if err := waitHTTP(ctx, p, promURL()+"/-/ready"); err != nil {
		return err
	}
	d.promAlerts = alertsPage()
	d.note(fmt.Sprintf("alerts: %s (log: %s)\n"+
		"rules: config/prometheus/rules.yaml with the durations of %s: seconds instead of the shipped\n"+
		"10 minutes to 2 hours, so that the alerts show quickly here", d.promAlerts, p.LogPath, promRulesOverlay))
	return nil
}

// alertsPage is the address of Prometheus's alerts page: /alerts, or /classic/alerts where the
// build has only the classic web UI (Debian's package: /alerts answers 404 there).
func alertsPage() string {
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, path := range []string{"/alerts", "/classic/alerts"} {
		resp, err := hc.Get(promURL() + path)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return promURL() + path
		}
	}
	return promURL() + "/alerts"
}

// checkPrometheus waits until Prometheus has scraped the manager, then says so with the number of
// alerting rules it evaluates.
func (d *demo) checkPrometheus(ctx context.Context) error {
	if d.prom == nil {
		return nil
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	get := func(path string, data any) error { return prometheus.APIGet(hc, promURL(), path, data) }
	var health, lastErr string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var targets struct {
			ActiveTargets []struct {
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		err := get("/api/v1/targets?state=active", &targets)
		switch {
		case err != nil:
			lastErr = err.Error()
		case len(targets.ActiveTargets) != 1:
			lastErr = fmt.Sprintf("%d targets", len(targets.ActiveTargets))
		default:
			health, lastErr = targets.ActiveTargets[0].Health, targets.ActiveTargets[0].LastError
		}
		if health == "up" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus does not scrape the manager's metrics at 127.0.0.1:%d (health %q: %s); see %s", metricsPort, health, lastErr, d.prom.LogPath)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	var rules struct {
		Groups []struct {
			Rules []json.RawMessage `json:"rules"`
		} `json:"groups"`
	}
	if err := get("/api/v1/rules?type=alert", &rules); err != nil {
		return err
	}
	n := 0
	for _, g := range rules.Groups {
		n += len(g.Rules)
	}
	if n == 0 {
		return fmt.Errorf("prometheus loaded no alerting rule from %s; see %s", filepath.Join(demoDir, "prometheus", "rules.yaml"), d.prom.LogPath)
	}
	d.step("Prometheus scrapes the manager (job %s, target up) and evaluates %d alerting rules: %s", promJob, n, d.promAlerts)
	return nil
}
