package controllers_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
	"github.com/lync-dr/poolpair-operator/internal/devcerts/certtest"
)

// TestDefaultCertificateOnlyForAllowedNamespaces: a PoolPair outside --default-tls-namespaces
// cannot drive the agents with the manager's own certificate; it stalls with
// DefaultAgentTLSNotAllowed, says what to do, and nothing runs. Its own Secret lets it converge.
// A PoolPair in an allowed namespace is not refused.
func TestDefaultCertificateOnlyForAllowedNamespaces(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	allowed, other := newNamespace(t), newNamespace(t)
	startManager(t, func(r *controllers.PoolPairReconciler) {
		env.fastReconciler(r)
		r.DefaultTLSNamespaces = []string{allowed}
	})
	ctx := context.Background()

	create(t, env.pair(other, "elsewhere"))
	got := waitStalled(t, other, "elsewhere", controllers.ReasonDefaultAgentTLSNotAllowed, "--default-tls-namespaces")
	msg := conditionOf(got, drv1alpha1.ConditionStalled).Message
	for _, want := range []string{other, allowed, "spec.agent.tlsSecretRef", drv1alpha1.AgentTLSSecretLabel} {
		if !strings.Contains(msg, want) {
			t.Errorf("the stall does not mention %q: %s", want, msg)
		}
	}
	if n := len(env.d.Counts()); n != 0 {
		t.Errorf("steps ran for a PoolPair the default certificate is not for: %v", env.d.Counts())
	}

	// In an allowed namespace the default certificate is taken: the pair goes on to its agents
	// (none answers for these pools, which is not a stall).
	pp := newPair(allowed, "home", "pool61.contoso.com", "pool62.contoso.com")
	create(t, pp)
	eventually(t, 20*time.Second, "the allowed pair observed", func() (bool, string) {
		got := getPair(t, allowed, "home")
		c := conditionOf(got, drv1alpha1.ConditionReady)
		return c != nil && c.Reason != controllers.ReasonDefaultAgentTLSNotAllowed && conditionOf(got, drv1alpha1.ConditionStalled) == nil, describe(got)
	})

	// The fix the message gives: a Secret of the PoolPair's own namespace.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "agent-client", Labels: map[string]string{drv1alpha1.AgentTLSSecretLabel: "true"}},
		Data:       map[string][]byte{"tls.crt": env.certs.ClientCertPEM, "tls.key": env.certs.ClientKeyPEM, "ca.crt": env.certs.CACertPEM},
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	got = getPair(t, other, "elsewhere")
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Agent.TLSSecretRef = &drv1alpha1.SecretReference{Name: "agent-client"}
	if err := k8s.Patch(ctx, got, patch); err != nil {
		t.Fatal(err)
	}
	waitReady(t, other, "elsewhere", 60*time.Second)
	assertExactlyOnce(t, env, 1)
}

// TestManagerUsesItsRotatedClientCertificate: the manager's own certificate (--agent-tls-dir) is
// replaced on disk while it runs. The next pass uses the new one: first one from a CA the agents
// do not trust (they refuse it, which proves it was sent), then one from their CA with a new
// serial, and the pair is Ready again, with no restart.
func TestManagerUsesItsRotatedClientCertificate(t *testing.T) {
	requireAPIServer(t)
	env := startSim(t, testDurations, nil)
	// The manager's files, a copy of the sim's client certificate, replaced as cert-manager does.
	dir := t.TempDir()
	write := func(cert, key []byte) {
		t.Helper()
		for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": env.certs.CACertPEM} {
			tmp := filepath.Join(dir, name+".tmp")
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(env.certs.ClientCertPEM, env.certs.ClientKeyPEM)
	startManager(t, func(r *controllers.PoolPairReconciler) {
		env.fastReconciler(r)
		r.AgentTLSDir = dir
		r.AgentTLSWatchInterval = 100 * time.Millisecond
	})
	ns := newNamespace(t)
	create(t, env.pair(ns, "rotating"))
	waitReady(t, ns, "rotating", 60*time.Second)

	write(certtest.NewCA(t, "Some Other CA").Issue(t, certtest.Leaf(7101, "poolpair-operator", x509.ExtKeyUsageClientAuth)))
	eventually(t, 20*time.Second, "the agents refusing the rotated certificate", func() (bool, string) {
		poke(t, ns, "rotating")
		got := getPair(t, ns, "rotating")
		c := conditionOf(got, drv1alpha1.ConditionAgentsReachable)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "refused the operator's client certificate"), describe(got)
	})

	write(certtest.FromBundle(t, env.certs).Issue(t, certtest.Leaf(7102, "poolpair-operator", x509.ExtKeyUsageClientAuth)))
	eventually(t, 20*time.Second, "the pair Ready through the new certificate", func() (bool, string) {
		poke(t, ns, "rotating")
		got := getPair(t, ns, "rotating")
		return conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionReady) && conditions.IsTrue(got.Status.Conditions, drv1alpha1.ConditionAgentsReachable), describe(got)
	})
	assertExactlyOnce(t, env, 1)
}
