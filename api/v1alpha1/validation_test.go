package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

var (
	k8s   client.Client
	suite testenv.Suite
)

func TestMain(m *testing.M) {
	os.Exit(suite.Run(m, func(cfg *rest.Config) error {
		scheme := runtime.NewScheme()
		if err := drv1alpha1.AddToScheme(scheme); err != nil {
			return err
		}
		var err error
		k8s, err = client.New(cfg, client.Options{Scheme: scheme})
		return err
	}))
}

func requireAPIServer(t *testing.T) { t.Helper(); suite.Require(t) }

func validPair(name string) *drv1alpha1.PoolPair {
	return &drv1alpha1.PoolPair{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: drv1alpha1.PoolPairSpec{
			Primary: drv1alpha1.PoolSpec{FQDN: "pool01.contoso.com"},
			Backup:  drv1alpha1.PoolSpec{FQDN: "pool02.contoso.com"},
		},
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestDefaultsApplied(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	pp := validPair("defaults")
	if err := k8s.Create(ctx, pp); err != nil {
		t.Fatalf("creating a minimal PoolPair: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, pp) })
	got := &drv1alpha1.PoolPair{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pp), got); err != nil {
		t.Fatal(err)
	}
	s := got.Spec
	// stableFor has no default in the schema: the controller derives it from the pools' sync
	// interval. voiceFailover left out means enabled, decided by the controller too.
	if s.DeletionPolicy != drv1alpha1.DeletionPolicyRetain || s.Agent.Port != 9443 || s.Bootstrap.MaxParallelPerPool != 1 ||
		s.Sync.StableFor != nil || s.VoiceFailover != nil || s.Topology.PublishedBy != drv1alpha1.TopologyPublishedByOperator ||
		s.Sync.CheckInterval == nil || s.Sync.CheckInterval.Duration != 5*time.Minute ||
		s.Sync.Timeout == nil || s.Sync.Timeout.Duration != 2*time.Hour {
		t.Fatalf("defaults not applied as documented: %+v", s)
	}
}

func TestValidPoolPairsAccepted(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	full := validPair("full")
	full.Spec.Primary.AgentEndpoint = "https://pool01.contoso.com:9443"
	full.Spec.Primary.Servers = []drv1alpha1.ServerSpec{
		{FQDN: "fe01.pool01.contoso.com", AgentEndpoint: "https://127.0.0.1:19451"},
		{FQDN: "fe02.pool01.contoso.com"},
	}
	full.Spec.Backup.AgentEndpoint = "https://[::1]:19442/"
	full.Spec.VoiceFailover = &drv1alpha1.VoiceFailoverSpec{Enabled: ptr.To(true), FailureDetectionInterval: dur(5 * time.Minute), FailbackDetectionInterval: dur(10 * time.Minute)}
	full.Spec.Bootstrap.MaxParallelPerPool = 2
	full.Spec.Agent = drv1alpha1.AgentSpec{Port: 443, TLSSecretRef: &drv1alpha1.SecretReference{Name: "lync-agent-client"}}
	full.Spec.Sync = drv1alpha1.SyncSpec{StableFor: dur(0), CheckInterval: dur(30 * time.Second), Timeout: dur(3 * time.Hour)}
	full.Spec.DeletionPolicy = drv1alpha1.DeletionPolicyUnpair
	full.Spec.Suspend = true
	byAdministrator := validPair("by-administrator")
	byAdministrator.Spec.Topology.PublishedBy = drv1alpha1.TopologyPublishedByAdministrator
	voiceOff := validPair("voice-off")
	voiceOff.Spec.VoiceFailover = &drv1alpha1.VoiceFailoverSpec{Enabled: ptr.To(false)}
	for _, pp := range []*drv1alpha1.PoolPair{validPair("minimal"), full, byAdministrator, voiceOff} {
		if err := k8s.Create(ctx, pp); err != nil {
			t.Errorf("valid PoolPair %s refused: %v", pp.Name, err)
			continue
		}
		_ = k8s.Delete(ctx, pp)
	}
}

func TestInvalidPoolPairsRefused(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		mutate func(*drv1alpha1.PoolPair)
		// field must appear in the API server's message.
		field string
	}{
		{"injection: semicolon and cmdlet", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "pool01.contoso.com; Remove-CsPool" }, "spec.primary.fqdn"},
		{"injection: subexpression", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "$(whoami).contoso.com" }, "spec.primary.fqdn"},
		{"injection: backtick", func(p *drv1alpha1.PoolPair) { p.Spec.Backup.FQDN = "pool02`.contoso.com" }, "spec.backup.fqdn"},
		{"injection: quotes", func(p *drv1alpha1.PoolPair) { p.Spec.Backup.FQDN = `pool02".contoso.com` }, "spec.backup.fqdn"},
		{"injection: pipe", func(p *drv1alpha1.PoolPair) { p.Spec.Backup.FQDN = "pool02.contoso.com|calc" }, "spec.backup.fqdn"},
		{"space in fqdn", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "pool 01.contoso.com" }, "spec.primary.fqdn"},
		{"newline in fqdn", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "pool01.contoso.com\nRemove-CsPool" }, "spec.primary.fqdn"},
		{"single label, not fully qualified", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "pool01" }, "spec.primary.fqdn"},
		{"upper case", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "Pool01.Contoso.com" }, "spec.primary.fqdn"},
		{"label over 63 characters", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = strings.Repeat("a", 64) + ".contoso.com" }, "spec.primary.fqdn"},
		{"leading hyphen", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "-pool01.contoso.com" }, "spec.primary.fqdn"},
		{"empty primary", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "" }, "spec.primary.fqdn"},
		{"server fqdn injection", func(p *drv1alpha1.PoolPair) {
			p.Spec.Primary.Servers = []drv1alpha1.ServerSpec{{FQDN: "fe01.contoso.com&del"}}
		}, "spec.primary.servers[0].fqdn"},
		{"primary equals backup", func(p *drv1alpha1.PoolPair) { p.Spec.Backup.FQDN = p.Spec.Primary.FQDN }, "spec.backup.fqdn must differ"},
		{"server in both pools", func(p *drv1alpha1.PoolPair) {
			p.Spec.Primary.Servers = []drv1alpha1.ServerSpec{{FQDN: "fe01.contoso.com"}}
			p.Spec.Backup.Servers = []drv1alpha1.ServerSpec{{FQDN: "fe01.contoso.com"}}
		}, "spec.primary.servers and spec.backup.servers"},
		{"duplicate server", func(p *drv1alpha1.PoolPair) {
			p.Spec.Primary.Servers = []drv1alpha1.ServerSpec{{FQDN: "fe01.contoso.com"}, {FQDN: "fe01.contoso.com"}}
		}, "spec.primary.servers[1]"},
		{"http endpoint", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.AgentEndpoint = "http://pool01.contoso.com:9443" }, "spec.primary.agentEndpoint"},
		{"endpoint with a path and query", func(p *drv1alpha1.PoolPair) {
			p.Spec.Backup.AgentEndpoint = "https://pool02.contoso.com:9443/x?y=$(whoami)"
		}, "spec.backup.agentEndpoint"},
		{"server http endpoint", func(p *drv1alpha1.PoolPair) {
			p.Spec.Backup.Servers = []drv1alpha1.ServerSpec{{FQDN: "fe01.pool02.contoso.com", AgentEndpoint: "ftp://fe01"}}
		}, "spec.backup.servers[0].agentEndpoint"},
		{"negative port", func(p *drv1alpha1.PoolPair) { p.Spec.Agent.Port = -1 }, "spec.agent.port"},
		{"port too large", func(p *drv1alpha1.PoolPair) { p.Spec.Agent.Port = 70000 }, "spec.agent.port"},
		{"negative parallelism", func(p *drv1alpha1.PoolPair) { p.Spec.Bootstrap.MaxParallelPerPool = -1 }, "spec.bootstrap.maxParallelPerPool"},
		{"parallelism too large", func(p *drv1alpha1.PoolPair) { p.Spec.Bootstrap.MaxParallelPerPool = 100 }, "spec.bootstrap.maxParallelPerPool"},
		{"check interval too short", func(p *drv1alpha1.PoolPair) { p.Spec.Sync.CheckInterval = dur(time.Second) }, "sync.checkInterval must be between"},
		{"stable for too long", func(p *drv1alpha1.PoolPair) { p.Spec.Sync.StableFor = dur(48 * time.Hour) }, "sync.stableFor must be between"},
		{"timeout too short", func(p *drv1alpha1.PoolPair) { p.Spec.Sync.Timeout = dur(time.Second) }, "sync.timeout must be between"},
		{"voice failure detection too short", func(p *drv1alpha1.PoolPair) {
			p.Spec.VoiceFailover = &drv1alpha1.VoiceFailoverSpec{FailureDetectionInterval: dur(time.Second)}
		}, "voiceFailover.failureDetectionInterval"},
		{"unknown topology publisher", func(p *drv1alpha1.PoolPair) { p.Spec.Topology.PublishedBy = "TopologyBuilder" }, "spec.topology.publishedBy"},
		{"voice failover with an administrator-published pairing", func(p *drv1alpha1.PoolPair) {
			p.Spec.Topology.PublishedBy = drv1alpha1.TopologyPublishedByAdministrator
			p.Spec.VoiceFailover = &drv1alpha1.VoiceFailoverSpec{Enabled: ptr.To(false)}
		}, "set 'Automatic failover and failback for Voice' in Topology Builder"},
		{"unpair on deletion with an administrator-published pairing", func(p *drv1alpha1.PoolPair) {
			p.Spec.Topology.PublishedBy = drv1alpha1.TopologyPublishedByAdministrator
			p.Spec.DeletionPolicy = drv1alpha1.DeletionPolicyUnpair
		}, "spec.deletionPolicy Unpair writes the topology"},
		{"unknown deletion policy", func(p *drv1alpha1.PoolPair) { p.Spec.DeletionPolicy = "Delete" }, "spec.deletionPolicy"},
		{"secret name invalid", func(p *drv1alpha1.PoolPair) {
			p.Spec.Agent.TLSSecretRef = &drv1alpha1.SecretReference{Name: "Bad Name"}
		}, "spec.agent.tlsSecretRef.name"},
	}
	if len(cases) < 20 {
		t.Fatalf("the table must hold at least 20 invalid PoolPairs, has %d", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pp := validPair(fmt.Sprintf("invalid-%d", i))
			tc.mutate(pp)
			err := k8s.Create(ctx, pp)
			if err == nil {
				_ = k8s.Delete(ctx, pp)
				t.Fatalf("the API server accepted an invalid PoolPair (%s)", tc.name)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("the error does not name %q: %v", tc.field, err)
			}
			// Nothing was created.
			if getErr := k8s.Get(ctx, client.ObjectKeyFromObject(pp), &drv1alpha1.PoolPair{}); !apierrors.IsNotFound(getErr) {
				t.Fatalf("a refused PoolPair exists: %v", getErr)
			}
		})
	}
}

func TestPoolFQDNsImmutable(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	pp := validPair("immutable")
	if err := k8s.Create(ctx, pp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, pp) })
	for _, tc := range []struct {
		field  string
		mutate func(*drv1alpha1.PoolPair)
	}{
		{"spec.primary.fqdn", func(p *drv1alpha1.PoolPair) { p.Spec.Primary.FQDN = "pool03.contoso.com" }},
		{"spec.backup.fqdn", func(p *drv1alpha1.PoolPair) { p.Spec.Backup.FQDN = "pool03.contoso.com" }},
	} {
		changed := pp.DeepCopy()
		tc.mutate(changed)
		err := k8s.Update(ctx, changed)
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "immutable") {
			t.Errorf("changing %s: want an immutable error naming the field, got %v", tc.field, err)
		}
	}
	// Other fields stay editable.
	editable := pp.DeepCopy()
	editable.Spec.Suspend = true
	if err := k8s.Update(ctx, editable); err != nil {
		t.Errorf("changing spec.suspend was refused: %v", err)
	}
}

// rawPair is a PoolPair as the JSON a user sends (so that a bare number reaches the API server as
// one): a valid minimal spec with extra merged into it.
func rawPair(t *testing.T, name, extra string) *unstructured.Unstructured {
	t.Helper()
	spec := map[string]any{
		"primary": map[string]any{"fqdn": "pool01.contoso.com"},
		"backup":  map[string]any{"fqdn": "pool02.contoso.com"},
	}
	if extra != "" {
		var patch map[string]any
		if err := json.Unmarshal([]byte(extra), &patch); err != nil {
			t.Fatalf("bad test spec %s: %v", extra, err)
		}
		merge(spec, patch)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(drv1alpha1.GroupVersion.WithKind("PoolPair"))
	u.SetNamespace("default")
	u.SetName(name)
	return u
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				merge(d, sub)
				continue
			}
		}
		dst[k] = v
	}
}

// refusal is one cause of an Invalid error: the field and what the API server says about it.
type refusal struct{ field, message string }

// causes are the refusals in an Invalid error, in the API server's order.
func causes(t *testing.T, err error) []refusal {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error, got %v", err)
	}
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		t.Fatalf("no details in %v", err)
	}
	var out []refusal
	for _, c := range status.Status().Details.Causes {
		out = append(out, refusal{c.Field, c.Message})
	}
	return out
}

// jargon is what a refusal must never say: a regular expression, a CEL conversion error, or the
// note that some rules were skipped.
var jargon = []string{"should match", "type conversion error", "some validation rules were not checked", "no such overload", "evaluating rule"}

func invalid(value, message string) string { return "Invalid value: " + value + ": " + message }

// TestRefusalsSpeakHuman pins the exact words of each refusal: the field, the value and a message
// with an example, never a regular expression.
func TestRefusalsSpeakHuman(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	const (
		poolFQDN   = "must be a lower-case DNS name such as pool01.contoso.com: letters a-z, digits and hyphens, in two or more labels separated by dots, each label 1 to 63 characters that neither starts nor ends with a hyphen"
		serverFQDN = "must be a lower-case DNS name such as fe01.pool01.contoso.com: letters a-z, digits and hyphens, in two or more labels separated by dots, each label 1 to 63 characters that neither starts nor ends with a hyphen"
		poolURL    = "must be an https URL such as https://pool01.contoso.com:9443: https://, a host name or IP address ([::1] for IPv6), an optional port, and no path or query"
		serverURL  = "must be an https URL such as https://fe01.pool01.contoso.com:9443: https://, a host name or IP address ([::1] for IPv6), an optional port, and no path or query"
		secretName = "must be a Secret name such as lync-agent-client: lower-case letters a-z, digits, hyphens and dots, starting and ending with a letter or digit"
	)
	notAString := func(field, example string) string {
		return field + ` must be a duration string such as "` + example + `" (a number needs a unit: s, m or h)`
	}
	notADuration := func(field, example string) string {
		return field + " must be a duration such as 30s, " + example + " or 1h30m (each number followed by a unit: ms, s, m or h)"
	}
	cases := []struct {
		name, spec string
		want       []refusal
	}{
		{"upper-case pool FQDN", `{"primary":{"fqdn":"Pool01.Contoso.com"}}`,
			[]refusal{{"spec.primary.fqdn", invalid(`"Pool01.Contoso.com"`, poolFQDN)}}},
		{"space in a pool FQDN", `{"backup":{"fqdn":"pool 02.contoso.com"}}`,
			[]refusal{{"spec.backup.fqdn", invalid(`"pool 02.contoso.com"`, poolFQDN)}}},
		{"PowerShell subexpression in a pool FQDN", `{"primary":{"fqdn":"$(whoami).contoso.com"}}`,
			[]refusal{{"spec.primary.fqdn", invalid(`"$(whoami).contoso.com"`, poolFQDN)}}},
		{"shell command after a pool FQDN", `{"backup":{"fqdn":"pool02.contoso.com; rm -rf /"}}`,
			[]refusal{{"spec.backup.fqdn", invalid(`"pool02.contoso.com; rm -rf /"`, poolFQDN)}}},
		{"empty pool FQDN", `{"primary":{"fqdn":""}}`,
			[]refusal{{"spec.primary.fqdn", invalid(`""`, poolFQDN)}}},
		{"upper-case server FQDN", `{"primary":{"servers":[{"fqdn":"FE01.pool01.contoso.com"}]}}`,
			[]refusal{{"spec.primary.servers[0].fqdn", invalid(`"FE01.pool01.contoso.com"`, serverFQDN)}}},
		{"pipe in a server FQDN", `{"backup":{"servers":[{"fqdn":"fe01.pool02.contoso.com|calc"}]}}`,
			[]refusal{{"spec.backup.servers[0].fqdn", invalid(`"fe01.pool02.contoso.com|calc"`, serverFQDN)}}},
		{"http pool endpoint", `{"primary":{"agentEndpoint":"http://pool01.contoso.com:9443"}}`,
			[]refusal{{"spec.primary.agentEndpoint", invalid(`"http://pool01.contoso.com:9443"`, poolURL)}}},
		{"pool endpoint with a path and query", `{"backup":{"agentEndpoint":"https://pool02.contoso.com:9443/x?y=$(whoami)"}}`,
			[]refusal{{"spec.backup.agentEndpoint", invalid(`"https://pool02.contoso.com:9443/x?y=$(whoami)"`, poolURL)}}},
		{"ftp server endpoint", `{"backup":{"servers":[{"fqdn":"fe01.pool02.contoso.com","agentEndpoint":"ftp://fe01"}]}}`,
			[]refusal{{"spec.backup.servers[0].agentEndpoint", invalid(`"ftp://fe01"`, serverURL)}}},
		{"stableFor a bare number", `{"sync":{"stableFor":2}}`,
			[]refusal{{"spec.sync.stableFor", invalid(`2`, notAString("spec.sync.stableFor", "4m"))}}},
		{"stableFor a number in a string", `{"sync":{"stableFor":"2"}}`,
			[]refusal{{"spec.sync.stableFor", invalid(`"2"`, notADuration("spec.sync.stableFor", "4m"))}}},
		{"stableFor an unknown unit", `{"sync":{"stableFor":"2x"}}`,
			[]refusal{{"spec.sync.stableFor", invalid(`"2x"`, notADuration("spec.sync.stableFor", "4m"))}}},
		{"stableFor negative", `{"sync":{"stableFor":"-1m"}}`,
			[]refusal{{"spec.sync.stableFor", invalid(`"-1m"`, notADuration("spec.sync.stableFor", "4m"))}}},
		{"stableFor too long", `{"sync":{"stableFor":"25h"}}`,
			[]refusal{{"spec.sync.stableFor", invalid(`"25h"`, "spec.sync.stableFor must be between 0s and 24h")}}},
		{"stableFor beyond what a duration holds", `{"sync":{"stableFor":"9999999999h"}}`,
			[]refusal{{"spec.sync.stableFor", invalid(`"9999999999h"`, "spec.sync.stableFor must be between 0s and 24h")}}},
		{"checkInterval a bare number", `{"sync":{"checkInterval":300}}`,
			[]refusal{{"spec.sync.checkInterval", invalid(`300`, notAString("spec.sync.checkInterval", "5m"))}}},
		{"checkInterval too short", `{"sync":{"checkInterval":"9s"}}`,
			[]refusal{{"spec.sync.checkInterval", invalid(`"9s"`, "spec.sync.checkInterval must be between 10s and 24h")}}},
		{"timeout in days", `{"sync":{"timeout":"1d"}}`,
			[]refusal{{"spec.sync.timeout", invalid(`"1d"`, notADuration("spec.sync.timeout", "2h"))}}},
		{"timeout too long", `{"sync":{"timeout":"169h"}}`,
			[]refusal{{"spec.sync.timeout", invalid(`"169h"`, "spec.sync.timeout must be between 1m and 168h")}}},
		{"timeout too short", `{"sync":{"timeout":"59s"}}`,
			[]refusal{{"spec.sync.timeout", invalid(`"59s"`, "spec.sync.timeout must be between 1m and 168h")}}},
		{"voice failure detection a bare number", `{"voiceFailover":{"failureDetectionInterval":120}}`,
			[]refusal{{"spec.voiceFailover.failureDetectionInterval", invalid(`120`, notAString("spec.voiceFailover.failureDetectionInterval", "2m"))}}},
		{"voice failure detection too short", `{"voiceFailover":{"failureDetectionInterval":"10s"}}`,
			[]refusal{{"spec.voiceFailover.failureDetectionInterval", invalid(`"10s"`, "spec.voiceFailover.failureDetectionInterval must be between 30s and 24h")}}},
		{"voice failback detection with a space", `{"voiceFailover":{"failbackDetectionInterval":"10 m"}}`,
			[]refusal{{"spec.voiceFailover.failbackDetectionInterval", invalid(`"10 m"`, notADuration("spec.voiceFailover.failbackDetectionInterval", "10m"))}}},
		{"voice failback detection too long", `{"voiceFailover":{"failbackDetectionInterval":"25h"}}`,
			[]refusal{{"spec.voiceFailover.failbackDetectionInterval", invalid(`"25h"`, "spec.voiceFailover.failbackDetectionInterval must be between 30s and 24h")}}},
		{"secret name with a space", `{"agent":{"tlsSecretRef":{"name":"Bad Name"}}}`,
			[]refusal{{"spec.agent.tlsSecretRef.name", invalid(`"Bad Name"`, secretName)}}},
		{"several at once, each named", `{"primary":{"fqdn":"POOL01.contoso.com"},"sync":{"stableFor":2,"timeout":"2"}}`,
			[]refusal{
				{"spec.primary.fqdn", invalid(`"POOL01.contoso.com"`, poolFQDN)},
				{"spec.sync.stableFor", invalid(`2`, notAString("spec.sync.stableFor", "4m"))},
				{"spec.sync.timeout", invalid(`"2"`, notADuration("spec.sync.timeout", "2h"))},
			}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pp := rawPair(t, fmt.Sprintf("human-%d", i), tc.spec)
			err := k8s.Create(ctx, pp, client.DryRunAll)
			if err == nil {
				t.Fatalf("the API server accepted %s", tc.spec)
			}
			got := causes(t, err)
			sortRefusals(got)
			want := append([]refusal(nil), tc.want...)
			sortRefusals(want)
			if !slices.Equal(got, want) {
				t.Errorf("the API server said:\n%s\nwant:\n%s", formatRefusals(got), formatRefusals(want))
			}
			for _, j := range jargon {
				if strings.Contains(err.Error(), j) {
					t.Errorf("the refusal says %q: %v", j, err)
				}
			}
		})
	}
}

func sortRefusals(r []refusal) {
	slices.SortFunc(r, func(a, b refusal) int { return strings.Compare(a.field+a.message, b.field+b.message) })
}

func formatRefusals(r []refusal) string {
	var b strings.Builder
	for _, x := range r {
		fmt.Fprintf(&b, "  %s: %s\n", x.field, x.message)
	}
	return b.String()
}

// TestRulesAcceptWhatThePatternsAccepted: the CEL rules that replaced the schema patterns accept
// exactly what the patterns (and, for durations, the old range rules) accepted.
func TestRulesAcceptWhatThePatternsAccepted(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	oldFQDN := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$`)
	oldEndpoint := regexp.MustCompile(`^https://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?$`)
	oldDuration := regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`)
	label63 := strings.Repeat("a", 63)
	fqdns := []string{
		"pool01.contoso.com", "a.b", "ab", "a", "1.2.3.4", "xn--bcher-kva.example", "pool-01.contoso.com",
		label63 + ".contoso.com", label63 + "a.contoso.com", "pool01.contoso.com.", ".contoso.com", "pool01..contoso.com",
		"-pool01.contoso.com", "pool01-.contoso.com", "pool_01.contoso.com", "Pool01.contoso.com", "pöol01.contoso.com",
		"pool01.contoso.com\n", "pool01.contoso.com ", "pool01.contoso.com;calc", "pool01.contoso.com`", "pool01.contoso.com'",
		"pool01.contoso.com\"", "pool01.contoso.com&", "pool01.contoso.com$", "*.contoso.com", "pool01.contoso.c-m",
	}
	for i, fqdn := range fqdns {
		want := oldFQDN.MatchString(fqdn)
		for _, spec := range []map[string]any{
			{"primary": map[string]any{"fqdn": fqdn}},
			{"primary": map[string]any{"servers": []any{map[string]any{"fqdn": fqdn}}}},
		} {
			extra, _ := json.Marshal(spec)
			err := k8s.Create(ctx, rawPair(t, fmt.Sprintf("fqdn-%d", i), string(extra)), client.DryRunAll)
			if (err == nil) != want {
				t.Errorf("%s: the pattern accepted it: %v; the API server says: %v", extra, want, err)
			}
		}
	}
	endpoints := []string{
		"https://pool01.contoso.com:9443", "https://pool01.contoso.com", "https://pool01.contoso.com/", "https://[::1]:19442/",
		"https://127.0.0.1:19451", "https://host:99999", "https://Pool01.Contoso.com:9443", "https://", "https://host//",
		"https://host/x", "https://host?x", "https://host#x", "http://host", "HTTPS://host", "https://a b", "https://host:9443\n",
		"https://user@host", "https://hóst", "ftp://host", " https://host",
	}
	for i, ep := range endpoints {
		want := oldEndpoint.MatchString(ep)
		for _, spec := range []map[string]any{
			{"backup": map[string]any{"agentEndpoint": ep}},
			{"backup": map[string]any{"servers": []any{map[string]any{"fqdn": "fe01.pool02.contoso.com", "agentEndpoint": ep}}}},
		} {
			extra, _ := json.Marshal(spec)
			err := k8s.Create(ctx, rawPair(t, fmt.Sprintf("endpoint-%d", i), string(extra)), client.DryRunAll)
			if (err == nil) != want {
				t.Errorf("%s: the pattern accepted it: %v; the API server says: %v", extra, want, err)
			}
		}
	}
	durations := []string{
		"0s", "10s", "9s", "9.999s", "10.0s", "1.5h", "1h30m", "90m", "100000ms", "86400000ms", "86400001ms", "24h", "24h0m0.001s",
		"1h1h", "0000000000000000000001m", "1e3s", ".5m", "1.m", "1us", "2", "2x", "-1s", "+1s", "1h-1m", "5m ", "", "25h",
		"1439m59.999s", "9999999999h", "99999999999999999999ms", "2562048h",
	}
	for i, d := range durations {
		parsed, err := time.ParseDuration(d)
		want := oldDuration.MatchString(d) && err == nil && parsed >= 10*time.Second && parsed <= 24*time.Hour
		pp := rawPair(t, fmt.Sprintf("duration-%d", i), "")
		if err := unstructured.SetNestedField(pp.Object, d, "spec", "sync", "checkInterval"); err != nil {
			t.Fatal(err)
		}
		err = k8s.Create(ctx, pp, client.DryRunAll)
		if (err == nil) != want {
			t.Errorf("checkInterval %q: the pattern and range accepted it: %v; the API server says: %v", d, want, err)
		}
		if err != nil {
			for _, j := range jargon {
				if strings.Contains(err.Error(), j) {
					t.Errorf("checkInterval %q: the refusal says %q: %v", d, j, err)
				}
			}
		}
	}
}

// TestFailoverDeclarationRules: spec.failover names one of the pair's pools, cannot switch to the
// other pool in one edit (Lync requires a failback first), cannot turn a real failover into a
// rehearsal, and needs an operator-published topology unless it is a rehearsal.
func TestFailoverDeclarationRules(t *testing.T) {
	requireAPIServer(t)
	ctx := context.Background()
	third := validPair("failover-third")
	third.Spec.Failover = &drv1alpha1.FailoverSpec{Pool: "pool03.contoso.com", Mode: drv1alpha1.FailoverPlanned}
	err := k8s.Create(ctx, third)
	if want := "spec.failover.pool must be spec.primary.fqdn or spec.backup.fqdn: the pool whose users move to its partner"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a failover of a third pool: %v; want %q", err, want)
	}
	admin := validPair("failover-admin")
	admin.Spec.Topology.PublishedBy = drv1alpha1.TopologyPublishedByAdministrator
	admin.Spec.Failover = &drv1alpha1.FailoverSpec{Pool: "pool01.contoso.com", Mode: drv1alpha1.FailoverDisaster}
	err = k8s.Create(ctx, admin)
	if want := "spec.failover needs spec.topology.publishedBy Operator"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a failover with publishedBy Administrator: %v; want %q", err, want)
	}
	admin.Spec.Failover.Mode = drv1alpha1.FailoverRehearsal
	if err := k8s.Create(ctx, admin); err != nil {
		t.Errorf("a rehearsal with publishedBy Administrator was refused: %v", err)
	} else {
		t.Cleanup(func() { _ = k8s.Delete(ctx, admin) })
	}

	pp := validPair("failover-edits")
	pp.Spec.Failover = &drv1alpha1.FailoverSpec{Pool: "pool01.contoso.com", Mode: drv1alpha1.FailoverPlanned}
	if err := k8s.Create(ctx, pp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, pp) })
	for _, tc := range []struct {
		name   string
		mutate func(*drv1alpha1.FailoverSpec)
		want   string
	}{
		{"switch pools", func(f *drv1alpha1.FailoverSpec) { f.Pool = "pool02.contoso.com" },
			"spec.failover.pool cannot switch to the other pool in one edit: remove spec.failover first (the users fail back), then fail the other pool over, as Lync requires"},
		{"turn into a rehearsal", func(f *drv1alpha1.FailoverSpec) { f.Mode = drv1alpha1.FailoverRehearsal },
			"spec.failover.mode cannot become Rehearsal once users were failed over: remove spec.failover to fail back first"},
		{"unknown mode", func(f *drv1alpha1.FailoverSpec) { f.Mode = "Now" }, `spec.failover.mode: Unsupported value: "Now"`},
	} {
		changed := pp.DeepCopy()
		tc.mutate(changed.Spec.Failover)
		if err := k8s.Update(ctx, changed); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	// Planned to Disaster (the pool went down meanwhile) and removal (failback) are fine.
	disaster := pp.DeepCopy()
	disaster.Spec.Failover.Mode = drv1alpha1.FailoverDisaster
	if err := k8s.Update(ctx, disaster); err != nil {
		t.Fatalf("Planned to Disaster: %v", err)
	}
	disaster.Spec.Failover = nil
	if err := k8s.Update(ctx, disaster); err != nil {
		t.Errorf("removing spec.failover: %v", err)
	}
}
