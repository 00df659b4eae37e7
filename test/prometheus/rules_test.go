package prometheus_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/lync-dr/poolpair-operator/internal/testenv"
	"github.com/lync-dr/poolpair-operator/test/prometheus"
)

const (
	rulesPath    = "config/prometheus/rules.yaml"
	unitTestPath = "config/prometheus/tests/rules_test.yaml"
	monitorPath  = "config/prometheus/monitor.yaml"
	servicePath  = "config/manager/metrics_service.yaml"
	// ruleFileName is the name rules_test.yaml loads (rule_files).
	ruleFileName = "poolpair-operator.rules.yaml"
	runbookBase  = "https://github.com/lync-dr/poolpair-operator/blob/main/README.md#"
)

// notPerPair are the alerts that are about the operator, not about one PoolPair: their
// descriptions cannot name one.
var notPerPair = []string{"PoolPairOperatorDown"}

func readRepoFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func shippedRules(t *testing.T) (prometheus.RuleFile, []byte) {
	t.Helper()
	rf, file, err := prometheus.ExtractRuleFile(readRepoFile(t, rulesPath))
	if err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	if len(rf.Alerts()) == 0 {
		t.Fatalf("%s has no alerting rule", rulesPath)
	}
	return rf, file
}

// TestPromtool runs `promtool check rules` on the rule file of rules.yaml's PrometheusRule, then
// `promtool test rules` on the unit tests, which must make every alert fire and not fire.
func TestPromtool(t *testing.T) {
	promtool := prometheus.LookPath(t, "promtool")
	_, file := shippedRules(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ruleFileName), file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(unitTestPath)), readRepoFile(t, unitTestPath), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", ruleFileName},
		{"test", "rules", filepath.Base(unitTestPath)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s (%s, from %s): %v\n%s", strings.Join(args, " "), args[2], rulesPath, err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), bytes.TrimSpace(out))
	}
}

// TestEveryAlertIsUnitTested: for every alert, rules_test.yaml has an evaluation where it fires
// and one where it does not, and tests no alert that does not exist.
func TestEveryAlertIsUnitTested(t *testing.T) {
	rf, _ := shippedRules(t)
	var tests struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, unitTestPath), &tests); err != nil {
		t.Fatalf("%s: %v", unitTestPath, err)
	}
	if !slices.Equal(tests.RuleFiles, []string{ruleFileName}) {
		t.Errorf("%s: rule_files is %v, want [%s] (what TestPromtool writes)", unitTestPath, tests.RuleFiles, ruleFileName)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var names []string
	for _, r := range rf.Alerts() {
		names = append(names, r.Alert)
		if !fires[r.Alert] {
			t.Errorf("%s: no test where %s fires", unitTestPath, r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no test where %s does not fire (exp_alerts: [])", unitTestPath, r.Alert)
		}
	}
	for name := range fires {
		if !slices.Contains(names, name) {
			t.Errorf("%s tests %s, which %s does not define", unitTestPath, name, rulesPath)
		}
	}
}

// TestAlertAnnotations: every alert says what happened and to which PoolPair, links its runbook
// entry in the README, and has a severity.
func TestAlertAnnotations(t *testing.T) {
	rf, _ := shippedRules(t)
	anchors := readmeAnchors(t)
	for _, r := range rf.Alerts() {
		if r.Annotations["summary"] == "" {
			t.Errorf("%s: no summary", r.Alert)
		}
		desc := r.Annotations["description"]
		switch {
		case desc == "":
			t.Errorf("%s: no description", r.Alert)
		case slices.Contains(notPerPair, r.Alert):
			if strings.Contains(desc, "$labels.name") {
				t.Errorf("%s is not about one PoolPair, but its description names one: %q", r.Alert, desc)
			}
		case !strings.Contains(desc, "{{ $labels.namespace }}/{{ $labels.name }}"):
			t.Errorf("%s: the description does not name the PoolPair as {{ $labels.namespace }}/{{ $labels.name }}: %q", r.Alert, desc)
		}
		switch sev := r.Labels["severity"]; sev {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s: severity label %q, want critical, warning or info", r.Alert, sev)
		}
		url := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(url, runbookBase)
		if !ok {
			t.Errorf("%s: runbook_url %q does not point into the README (%s...)", r.Alert, url, runbookBase)
			continue
		}
		if anchor != strings.ToLower(r.Alert) {
			t.Errorf("%s: runbook_url anchor #%s, want #%s (a README heading named after the alert)", r.Alert, anchor, strings.ToLower(r.Alert))
		}
		if !anchors[anchor] {
			t.Errorf("%s: runbook_url %q: README.md has no heading with the anchor #%s", r.Alert, url, anchor)
		}
	}
}

// readmeAnchors returns the anchors GitHub makes of README.md's headings (outside code blocks):
// lower case, spaces to hyphens, punctuation other than hyphens and underscores dropped.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	anchors := map[string]bool{}
	punct := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	fenced := false
	sc := bufio.NewScanner(bytes.NewReader(readRepoFile(t, "README.md")))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		slug := strings.ReplaceAll(punct.ReplaceAllString(strings.ToLower(title), ""), " ", "-")
		anchors[slug] = true
	}
	return anchors
}

// TestServiceMonitor: the ServiceMonitor selects the metrics Service, scrapes its HTTPS port with a
// bearer token, keeps the PoolPairs' namespace label, and leaves the job label at the Service's
// name, which PoolPairOperatorDown looks for.
func TestServiceMonitor(t *testing.T) {
	var svc struct {
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Ports []struct {
				Name string `json:"name"`
			} `json:"ports"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, servicePath), &svc); err != nil {
		t.Fatalf("%s: %v", servicePath, err)
	}
	var sm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			JobLabel string `json:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port            string `json:"port"`
				Scheme          string `json:"scheme"`
				Path            string `json:"path"`
				HonorLabels     bool   `json:"honorLabels"`
				BearerTokenFile string `json:"bearerTokenFile"`
				TLSConfig       struct {
					InsecureSkipVerify bool `json:"insecureSkipVerify"`
				} `json:"tlsConfig"`
				Interval string `json:"interval"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(readRepoFile(t, monitorPath), &sm); err != nil {
		// Strict: a misspelt field would be dropped by the API server with only a warning.
		t.Fatalf("%s: %v", monitorPath, err)
	}
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" || sm.Metadata.Namespace != "poolpair-system" {
		t.Errorf("%s: a %s %s in namespace %q, want a monitoring.coreos.com/v1 ServiceMonitor in poolpair-system", monitorPath, sm.APIVersion, sm.Kind, sm.Metadata.Namespace)
	}
	if ep := sm.Spec.Endpoints; len(ep) > 0 && ep[0].Path != "" && ep[0].Path != "/metrics" {
		t.Errorf("%s: path %q: the metrics-reader ClusterRole grants GET /metrics only", monitorPath, ep[0].Path)
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("%s: no selector.matchLabels", monitorPath)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("%s selects %s=%s, which Service %s (%s) does not have: %v", monitorPath, k, v, svc.Metadata.Name, servicePath, svc.Metadata.Labels)
		}
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%s: %d endpoints, want 1", monitorPath, len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	var portNames []string
	for _, p := range svc.Spec.Ports {
		portNames = append(portNames, p.Name)
	}
	if !slices.Contains(portNames, ep.Port) {
		t.Errorf("%s: endpoint port %q is not a port name of Service %s %v", monitorPath, ep.Port, svc.Metadata.Name, portNames)
	}
	if ep.Scheme != "https" || ep.BearerTokenFile == "" {
		t.Errorf("%s: scheme %q, bearerTokenFile %q: the endpoint serves HTTPS to callers with a token", monitorPath, ep.Scheme, ep.BearerTokenFile)
	}
	if !ep.HonorLabels {
		t.Errorf("%s: honorLabels is not true: the PoolPairs' namespace label would become exported_namespace", monitorPath)
	}
	if !ep.TLSConfig.InsecureSkipVerify {
		t.Errorf("%s: tlsConfig.insecureSkipVerify is not true: the manager's self-signed certificate would fail every scrape", monitorPath)
	}
	if sm.Spec.JobLabel != "" {
		t.Errorf("%s: jobLabel %q: the job label would no longer be the Service's name", monitorPath, sm.Spec.JobLabel)
	}
	rf, _ := shippedRules(t)
	want := `job="` + svc.Metadata.Name + `"`
	for _, r := range rf.Alerts() {
		if r.Alert == "PoolPairOperatorDown" && !strings.Contains(r.Expr, want) {
			t.Errorf("PoolPairOperatorDown does not look for %s (the job label of a ServiceMonitor without jobLabel is the Service's name): %s", want, r.Expr)
		}
	}
}
