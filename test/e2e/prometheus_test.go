//go:build unix

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/localrun"
	"github.com/lync-dr/poolpair-operator/test/prometheus"
)

const (
	// Prometheus's service account, as a Prometheus in the cluster would have, bound to the
	// metrics-reader ClusterRole with the README's command.
	monitoringNamespace = "monitoring"
	prometheusSA        = "prometheus"
	// The job label a ServiceMonitor gives the targets of a Service: the Service's name.
	metricsJob = "poolpair-manager-metrics"
	// The overlay of config/prometheus with durations of seconds.
	rulesOverlay = "test/e2e/testdata/prometheus"
	// The longest `for` of the overlay's rules.
	overlayMaxFor = 10 * time.Second
)

// testAlerts runs a real Prometheus (Debian's prometheus, as CI installs it) scraping the manager
// the way config/prometheus's ServiceMonitor makes prometheus-operator scrape it: HTTPS with the
// bearer token of a service account bound to poolpair-metrics-reader, the self-signed certificate
// not verified, honor_labels, the job named after the Service and the target labelled with the
// Service's namespace. It loads the rules of config/prometheus with the overlay's short durations,
// then breaks a backup direction and an agent with simctl and measures how long each alert takes to
// fire, and to clear once the fault is undone.
func (h *harness) testAlerts(t *testing.T) {
	promBin := prometheus.LookPath(t, "prometheus")
	token := h.metricsReaderToken(t)
	h.checkMetricsAuth(t, token)
	rules := h.overlayRules(t)
	prom := h.startPrometheus(t, promBin, token, rules)

	s := h.startSim(t, "sim-alerts", 500*time.Millisecond)
	const name = "e2e-alerts"
	h.kube(t, "apply", "-f", h.writeFile(t, name+".yaml", poolPairManifest(name, s.endpoints)))
	// Before the sim stops (cleanups run last first): Unpair needs its agents, and the next
	// scenario's PoolPair claims the same pools.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if _, err := h.kubectl.Run(ctx, "delete", "pp", name, "-n", testNamespace, "--ignore-not-found", "--timeout=60s"); err != nil {
			t.Error(err)
		}
	})
	h.kube(t, "wait", "--for=condition=Ready", "poolpair/"+name, "-n", testNamespace, "--timeout=120s")

	pair := map[string]string{"namespace": testNamespace, "name": name}
	// Scraped, under the PoolPair's own namespace (not the target's: honor_labels), both
	// directions healthy, and nothing firing yet.
	prom.waitQuery(t, fmt.Sprintf(`up{job=%q} == 1`, metricsJob), 1)
	prom.waitQuery(t, fmt.Sprintf(`poolpair_backup_direction_healthy{namespace=%q, name=%q} == 1`, testNamespace, name), 2)
	prom.waitQuery(t, fmt.Sprintf(`poolpair_agent_up{namespace=%q, name=%q} == 1`, testNamespace, name), 4)
	// (The first sync of a new pair may have fired the data-loss alert; rules run a second behind.)
	for _, alert := range []string{"PoolPairBackupUnhealthy", "PoolPairAgentUnreachable", "PoolPairDataLossWindowAboveTarget", "PoolPairStalled", "PoolPairOperatorDown"} {
		prom.waitNoAlert(t, alert, nil)
	}

	simctl := func(args ...string) {
		t.Helper()
		h.run(t, h.agent, append([]string{"simctl", "--admin", s.admin, "--tls-dir", h.certs}, args...)...)
	}
	faults := []struct {
		alert        string
		labels       map[string]string
		fault, clear []string
		also         []string // alerts the same fault fires
	}{
		{
			alert:  "PoolPairBackupUnhealthy",
			labels: map[string]string{"from": "pool01.contoso.com", "to": "pool02.contoso.com"},
			fault:  []string{"export-error", "pool01.contoso.com", "on"},
			clear:  []string{"export-error", "pool01.contoso.com", "off"},
			also:   []string{"PoolPairDataLossWindowAboveTarget"},
		},
		{
			alert:  "PoolPairAgentUnreachable",
			labels: map[string]string{"pool": "pool02.contoso.com", "server": "fe01.pool02.contoso.com"},
			fault:  []string{"unreachable", "fe01.pool02.contoso.com", "true"},
			clear:  []string{"unreachable", "fe01.pool02.contoso.com", "false"},
		},
	}
	for _, f := range faults {
		labels := maps.Clone(pair)
		maps.Copy(labels, f.labels)
		simctl(f.fault...)
		faultAt := time.Now()
		a := prom.waitAlert(t, f.alert, labels, "firing")
		fired := time.Since(faultAt)
		t.Logf("%s fired %.1fs after simctl %s (pending %.1fs after it; for: %s in the overlay): %s",
			f.alert, fired.Seconds(), strings.Join(f.fault, " "), a.ActiveAt.Sub(faultAt).Seconds(), rules.forOf(f.alert), a.Annotations["description"])
		if want := testNamespace + "/" + name; !strings.Contains(a.Annotations["description"], want) {
			t.Errorf("%s: the description does not name %s: %q", f.alert, want, a.Annotations["description"])
		}
		for _, also := range f.also {
			b := prom.waitAlert(t, also, pair, "firing")
			t.Logf("%s fired too, %.1fs after the fault: %s", also, time.Since(faultAt).Seconds(), b.Annotations["description"])
		}

		simctl(f.clear...)
		clearedAt := time.Now()
		prom.waitNoAlert(t, f.alert, labels)
		t.Logf("%s cleared %.1fs after simctl %s", f.alert, time.Since(clearedAt).Seconds(), strings.Join(f.clear, " "))
		for _, also := range f.also {
			prom.waitNoAlert(t, also, pair)
			t.Logf("%s cleared too, %.1fs after it", also, time.Since(clearedAt).Seconds())
		}
	}
	if a := prom.alert(t, "PoolPairOperatorDown", nil); a != nil {
		t.Errorf("PoolPairOperatorDown is %s while the manager is scraped: %+v", a.State, a)
	}
}

// metricsReaderToken creates Prometheus's service account, binds poolpair-metrics-reader to it as
// the README says, and mints a token for it (TokenRequest).
func (h *harness) metricsReaderToken(t *testing.T) string {
	t.Helper()
	h.kube(t, "create", "namespace", monitoringNamespace)
	h.kube(t, "create", "serviceaccount", prometheusSA, "-n", monitoringNamespace)
	h.kube(t, "create", "clusterrolebinding", "poolpair-metrics-reader-prometheus",
		"--clusterrole=poolpair-metrics-reader", "--serviceaccount="+monitoringNamespace+":"+prometheusSA)
	return h.token(t, prometheusSA)
}

func (h *harness) token(t *testing.T, serviceAccount string) string {
	t.Helper()
	token := strings.TrimSpace(h.kube(t, "create", "token", serviceAccount, "-n", monitoringNamespace, "--duration=1h"))
	if token == "" {
		t.Fatalf("kubectl create token %s printed nothing", serviceAccount)
	}
	return token
}

// checkMetricsAuth: the metrics endpoint answers the bound service account's token, refuses a
// request without a token (401) and the token of a service account not bound to the role (403).
func (h *harness) checkMetricsAuth(t *testing.T, token string) {
	t.Helper()
	h.kube(t, "create", "serviceaccount", "unbound", "-n", monitoringNamespace)
	unbound := h.token(t, "unbound")
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The manager's self-signed certificate, as the ServiceMonitor's insecureSkipVerify.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
	defer hc.CloseIdleConnections()
	get := func(token string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+h.metrics+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	waitFor(t, "the metrics endpoint to answer Prometheus's token with the PoolPair metrics", 30*time.Second, func() (bool, error) {
		code, body, err := get(token)
		return err == nil && code == http.StatusOK && strings.Contains(body, "poolpair_pairs{"), nil
	})
	for _, c := range []struct {
		who   string
		token string
		want  int
	}{{"no token", "", http.StatusUnauthorized}, {"the token of a service account without poolpair-metrics-reader", unbound, http.StatusForbidden}} {
		code, body, err := get(c.token)
		if err != nil {
			t.Fatalf("GET /metrics with %s: %v", c.who, err)
		}
		if code != c.want {
			t.Errorf("GET /metrics with %s: %d, want %d: %.200s", c.who, code, c.want, body)
		}
	}
}

// overlayRules renders the overlay with the built kubectl, as a user would, and returns its rules.
func (h *harness) overlayRules(t *testing.T) promRules {
	t.Helper()
	rf, file, err := prometheus.ExtractRuleFile([]byte(h.kube(t, "kustomize", rulesOverlay)))
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", rulesOverlay, err)
	}
	shipped, _, err := prometheus.ExtractRuleFile(mustRead(t, filepath.Join(h.root, "config", "prometheus", "rules.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	names := func(rf prometheus.RuleFile) []string {
		var out []string
		for _, r := range rf.Alerts() {
			out = append(out, r.Alert)
		}
		return out
	}
	if !slices.Equal(names(rf), names(shipped)) {
		t.Fatalf("%s has the alerts %v, config/prometheus %v", rulesOverlay, names(rf), names(shipped))
	}
	for _, r := range rf.Alerts() {
		if r.For == "" {
			continue
		}
		if d, err := time.ParseDuration(r.For); err != nil || d > overlayMaxFor {
			t.Errorf("%s: %s has for: %s, want at most %s", rulesOverlay, r.Alert, r.For, overlayMaxFor)
		}
	}
	return promRules{RuleFile: rf, file: file}
}

type promRules struct {
	prometheus.RuleFile
	file []byte
}

func (r promRules) forOf(alert string) string {
	for _, a := range r.Alerts() {
		if a.Alert == alert {
			return a.For
		}
	}
	return ""
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// promRun is a running Prometheus and its HTTP API.
type promRun struct {
	url  string
	proc *localrun.Proc
	hc   *http.Client
}

// startPrometheus runs prometheus on a free loopback port with a data directory of its own,
// scraping and evaluating every second, and waits until it is ready.
func (h *harness) startPrometheus(t *testing.T, bin, token string, rules promRules) *promRun {
	t.Helper()
	dir := filepath.Join(h.dir, "prometheus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile, rulesFile, configFile := filepath.Join(dir, "token"), filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rulesFile, rules.file, 0o644); err != nil {
		t.Fatal(err)
	}
	// What prometheus-operator generates from config/prometheus/monitor.yaml, less the Kubernetes
	// service discovery: job = the Service's name, the target labelled with the Service's namespace
	// (which honor_labels must keep off the PoolPairs' own namespace label).
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
- job_name: %s
  scheme: https
  metrics_path: /metrics
  honor_labels: true
  authorization: {credentials_file: %q}
  tls_config: {insecure_skip_verify: true}
  static_configs:
  - targets: [%q]
    labels: {namespace: %s, service: %s}
`, rulesFile, metricsJob, tokenFile, h.metrics, operatorNamespace, metricsJob)
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var prom *promRun
	retryOnPortClash(t, "prometheus", func(attempt int) error {
		ports, err := localrun.FreePorts(1)
		if err != nil {
			return err
		}
		p, err := localrun.Start(localrun.Spec{
			Name: "prometheus", Path: bin, LogPath: filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt)),
			Args: []string{"--config.file=" + configFile, "--storage.tsdb.path=" + filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
				"--web.listen-address=127.0.0.1:" + strconv.Itoa(ports[0])},
		})
		if err != nil {
			return err
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the end of %s:\n%s", p.LogPath, p.LogTail(20))
			}
			p.Stop(stopGrace)
		})
		prom = &promRun{url: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), proc: p, hc: &http.Client{Timeout: 5 * time.Second}}
		return waitUntil(30*time.Second, func() (bool, error) {
			select {
			case <-p.Done():
				return false, fmt.Errorf("%w:\n%s", p.ExitError(), p.LogTail(20))
			default:
			}
			resp, err := prom.hc.Get(prom.url + "/-/ready")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
	})
	t.Logf("prometheus on %s (%s), scraping https://%s/metrics", prom.url, filepath.Base(bin), h.metrics)
	return prom
}

// get decodes the data of a Prometheus API answer.
func (p *promRun) get(path string, data any) error { return prometheus.APIGet(p.hc, p.url, path, data) }

// waitQuery waits until an instant query returns n series.
func (p *promRun) waitQuery(t *testing.T, query string, n int) {
	t.Helper()
	var got int
	err := waitUntil(60*time.Second, func() (bool, error) {
		var data struct {
			Result []json.RawMessage `json:"result"`
		}
		if err := p.get("/api/v1/query?query="+url.QueryEscape(query), &data); err != nil {
			return false, err
		}
		got = len(data.Result)
		return got == n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d series of %s (last %d): %v", n, query, got, err)
	}
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// alert returns the active (pending or firing) alert of that name whose labels include labels.
func (p *promRun) alert(t *testing.T, name string, labels map[string]string) *promAlert {
	t.Helper()
	a, err := p.findAlert(name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (p *promRun) findAlert(name string, labels map[string]string) (*promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", &data); err != nil {
		return nil, err
	}
	for _, a := range data.Alerts {
		if a.Labels["alertname"] != name {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && a.Labels[k] == v
		}
		if match {
			return &a, nil
		}
	}
	return nil, nil
}

// waitAlert waits until the alert is in the state (pending, firing).
func (p *promRun) waitAlert(t *testing.T, name string, labels map[string]string, state string) *promAlert {
	t.Helper()
	var last *promAlert
	err := waitUntil(90*time.Second, func() (bool, error) {
		a, err := p.findAlert(name, labels)
		last = a
		return err == nil && a != nil && a.State == state, err
	})
	if err != nil {
		t.Fatalf("waiting for %s %v to be %s (last seen: %+v): %v", name, labels, state, last, err)
	}
	return last
}

// waitNoAlert waits until the alert is neither pending nor firing.
func (p *promRun) waitNoAlert(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	var last *promAlert
	err := waitUntil(90*time.Second, func() (bool, error) {
		a, err := p.findAlert(name, labels)
		last = a
		return err == nil && a == nil, err
	})
	if err != nil {
		t.Fatalf("waiting for %s %v to clear (last seen: %+v): %v", name, labels, last, err)
	}
}
