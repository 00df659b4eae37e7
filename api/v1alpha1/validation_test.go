package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
