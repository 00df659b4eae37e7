package controllers_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/lync-dr/poolpair-operator/internal/localrun"
	"github.com/lync-dr/poolpair-operator/internal/metrics"
	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

// TestMetricsEndpointIsProtectedAndFeedsEveryAlert scrapes the manager as Prometheus does, over
// HTTPS with a service account token: a token bound to the shipped metrics-reader ClusterRole gets
// the metrics, one without it is refused, and so is no token. The scrape of a Synced pair holds
// every metric the shipped alert rules use, with the pair's state; once the PoolPair is gone, so
// are its series.
func TestMetricsEndpointIsProtectedAndFeedsEveryAlert(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	ports, err := localrun.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	m := startManagerWith(t, func(o *ctrl.Options) {
		o.Metrics = metrics.ServerOptions(addr, true, "")
	}, env.fastReconciler)
	// As main.go registers it; this test's manager is the one it reads.
	collector := &metrics.PoolPairCollector{Reader: m.cache, Elected: m.elected}
	crmetrics.Registry.MustRegister(collector)
	t.Cleanup(func() { crmetrics.Registry.Unregister(collector) })

	ns := newNamespace(t)
	create(t, env.pair(ns, "scraped"))
	waitReady(t, ns, "scraped", 60*time.Second)

	reader := serviceAccountToken(t, ns, "prometheus", true)
	stranger := serviceAccountToken(t, ns, "stranger", false)
	url := "https://" + addr + "/metrics"
	if code, body := scrape(t, url, ""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401: %.200s", code, body)
	}
	if code, body := scrape(t, url, stranger); code != http.StatusForbidden {
		t.Errorf("a token without metrics-reader: %d, want 403: %.200s", code, body)
	}

	var families map[string]*dto.MetricFamily
	eventually(t, 20*time.Second, "a scrape with every metric of the pair", func() (bool, string) {
		code, body := scrape(t, url, reader)
		if code != http.StatusOK {
			return false, fmt.Sprintf("%d: %.300s", code, body)
		}
		families = parseMetrics(t, body)
		return value(families, "poolpair_backup_data_loss_window_seconds", ns, "scraped", nil) != nil, "no data loss window yet"
	})
	pair := func(name string, labels map[string]string) *float64 {
		return value(families, name, ns, "scraped", labels)
	}
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"poolpair_info", map[string]string{"primary": "pool01.contoso.com", "backup": "pool02.contoso.com"}, 1},
		{"poolpair_phase", map[string]string{"phase": "Synced"}, 1},
		{"poolpair_phase", map[string]string{"phase": "Pending"}, 0},
		{"poolpair_condition", map[string]string{"type": "Ready", "status": "true"}, 1},
		{"poolpair_condition", map[string]string{"type": "Ready", "status": "false"}, 0},
		{"poolpair_condition", map[string]string{"type": "Stalled", "status": "true"}, 0},
		{"poolpair_suspended", nil, 0},
		{"poolpair_backup_direction_healthy", map[string]string{"from": "pool01.contoso.com", "to": "pool02.contoso.com"}, 1},
		{"poolpair_backup_direction_healthy", map[string]string{"from": "pool02.contoso.com", "to": "pool01.contoso.com"}, 1},
		{"poolpair_backup_data_loss_window_seconds", nil, 0},
		{"poolpair_agent_up", map[string]string{"pool": "pool01.contoso.com", "server": "fe02.pool01.contoso.com"}, 1},
		{"poolpair_agent_up", map[string]string{"pool": "pool02.contoso.com", "server": "fe01.pool02.contoso.com"}, 1},
	} {
		got := pair(want.name, want.labels)
		if got == nil || *got != want.value {
			t.Errorf("%s%v of %s/scraped = %v, want %v", want.name, want.labels, ns, deref(got), want.value)
		}
	}
	got := getPair(t, ns, "scraped")
	if last := pair("poolpair_backup_direction_last_forced_sync_timestamp_seconds", map[string]string{"from": "pool01.contoso.com"}); got.Status.Backup[0].LastSyncTime != nil &&
		(last == nil || int64(*last) != got.Status.Backup[0].LastSyncTime.Unix()) {
		t.Errorf("last forced sync of pool01 -> pool02: %v, status says %v", deref(last), got.Status.Backup[0].LastSyncTime)
	}

	// A backup direction breaks (the sim's export error, as simctl export-error sets it): the
	// series that only exist while something is wrong appear.
	if err := env.d.SetExportError("pool01.contoso.com", "ConfServices.DataConf", true); err != nil {
		t.Fatal(err)
	}
	healthy := families
	var broken map[string]*dto.MetricFamily
	eventually(t, 30*time.Second, "the broken direction in the scrape", func() (bool, string) {
		poke(t, ns, "scraped")
		_, body := scrape(t, url, reader)
		broken = parseMetrics(t, body)
		direction := map[string]string{"from": "pool01.contoso.com", "to": "pool02.contoso.com"}
		h := value(broken, "poolpair_backup_direction_healthy", ns, "scraped", direction)
		since := value(broken, "poolpair_backup_direction_unhealthy_since_timestamp_seconds", ns, "scraped", direction)
		return h != nil && *h == 0 && since != nil, fmt.Sprintf("healthy %v, unhealthy since %v", deref(h), deref(since))
	})
	if w := value(broken, "poolpair_backup_data_loss_window_seconds", ns, "scraped", nil); w == nil {
		t.Errorf("no data loss window while a direction is unhealthy")
	}
	if err := env.d.SetExportError("pool01.contoso.com", "", false); err != nil {
		t.Fatal(err)
	}

	// Every metric a shipped rule uses is exported, in one state or the other.
	for _, name := range ruleMetrics(t) {
		if healthy[name] == nil && broken[name] == nil {
			t.Errorf("the rules use %s, which the manager does not export", name)
		}
	}

	// Gone with the PoolPair.
	if err := k8s.Delete(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the deleted pair's series gone", func() (bool, string) {
		_, body := scrape(t, url, reader)
		left := seriesOf(parseMetrics(t, body), ns)
		return len(left) == 0, strings.Join(left, "\n")
	})
}

// serviceAccountToken creates a service account, binds it to config/rbac's metrics-reader
// ClusterRole when reader is set, and returns a token of it.
func serviceAccountToken(t *testing.T, ns, name string, reader bool) string {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	if reader {
		var role rbacv1.ClusterRole
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "metrics_reader_role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(raw, &role); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctx, &role); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		}
		if err := k8s.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), binding) })
	}
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("minting a token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

func scrape(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The manager's self-signed serving certificate, as the shipped ServiceMonitor accepts it.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func parseMetrics(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return families
}

// value is the gauge of name for the PoolPair ns/pp whose labels include labels; nil if none.
func value(families map[string]*dto.MetricFamily, name, ns, pp string, labels map[string]string) *float64 {
	f := families[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		if have["namespace"] != ns || have["name"] != pp {
			continue
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		v := m.GetGauge().GetValue()
		return &v
	}
	return nil
}

// seriesOf lists the series labelled with namespace ns.
func seriesOf(families map[string]*dto.MetricFamily, ns string) []string {
	var out []string
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					out = append(out, name+fmt.Sprint(m.GetLabel()))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// ruleMetrics are the poolpair_* metrics the expressions of config/prometheus/rules.yaml use.
func ruleMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var names []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			for _, name := range regexp.MustCompile(`\bpoolpair_[a-z_]+\b`).FindAllString(r.Expr, -1) {
				if !seen[name] {
					seen[name] = true
					names = append(names, name)
				}
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("config/prometheus/rules.yaml uses no poolpair_ metric")
	}
	return names
}

func deref(v *float64) any {
	if v == nil {
		return "absent"
	}
	return *v
}
