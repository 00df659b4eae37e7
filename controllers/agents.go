package controllers

import (
	"context"
	"crypto/sha256"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/metrics"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// AgentClient is what the reconciler asks of the lync-agents; *agentclient.Client implements it.
type AgentClient interface {
	Info(ctx context.Context, endpoint string) (protocol.Info, error)
	Pool(ctx context.Context, endpoint, fqdn string) (protocol.Pool, error)
	BackupStatus(ctx context.Context, endpoint, fqdn string) (protocol.BackupStatus, error)
	Server(ctx context.Context, endpoint string) (protocol.Server, error)
	StartOperation(ctx context.Context, endpoint string, req protocol.OperationRequest) (protocol.Operation, error)
	Operation(ctx context.Context, endpoint, id string) (protocol.Operation, error)
	AwaitDone(ctx context.Context, endpoint, id string) (protocol.Operation, error)
}

// TLSMaterial is a client certificate, its key, and the CA that signed the agents' certificates.
type TLSMaterial struct {
	CertPEM, KeyPEM, CAPEM []byte
}

// Secret and --agent-tls-dir file names.
const (
	tlsCertKey = "tls.crt"
	tlsKeyKey  = "tls.key"
	tlsCAKey   = "ca.crt"
)

// stallError is a problem only a human can fix; the PoolPair is Stalled with Reason until the
// input changes.
type stallError struct {
	Reason  string
	Message string
}

func (e *stallError) Error() string { return e.Message }

// agentTLS finds the client material for pp: the referenced Secret, else the manager's own files.
func (r *PoolPairReconciler) agentTLS(ctx context.Context, pp *drv1alpha1.PoolPair) (TLSMaterial, error) {
	ref := pp.Spec.Agent.TLSSecretRef
	if ref == nil {
		if r.AgentTLSDir != "" && !r.mayUseDefaultTLS(pp.Namespace) {
			return TLSMaterial{}, &stallError{Reason: ReasonDefaultAgentTLSNotAllowed, Message: fmt.Sprintf(
				"PoolPairs in namespace %s may not use the manager's default agent client certificate (--default-tls-namespaces: %s): "+
					"set spec.agent.tlsSecretRef to a Secret in %s labelled %s=true holding a client certificate the agents allow (tls.crt, tls.key, ca.crt), "+
					"or ask the operator's administrator to add %s to --default-tls-namespaces",
				pp.Namespace, listOrNone(r.DefaultTLSNamespaces), pp.Namespace, drv1alpha1.AgentTLSSecretLabel, pp.Namespace)}
		}
		return r.dirTLS()
	}
	key := client.ObjectKey{Namespace: pp.Namespace, Name: ref.Name}
	var secret corev1.Secret
	// The manager's cache holds only labelled Secrets; a miss is confirmed with a direct read so the
	// message can tell a missing Secret from an unlabelled one.
	err := r.Get(ctx, key, &secret)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		err = r.APIReader.Get(ctx, key, &secret)
		if err == nil {
			return TLSMaterial{}, &stallError{Reason: ReasonAgentTLSSecretNotLabelled, Message: fmt.Sprintf(
				"Secret %s/%s named by spec.agent.tlsSecretRef is not labelled %s=true; the operator only reads Secrets with that label: kubectl label secret -n %s %s %s=true",
				key.Namespace, key.Name, drv1alpha1.AgentTLSSecretLabel, key.Namespace, key.Name, drv1alpha1.AgentTLSSecretLabel)}
		}
	}
	if apierrors.IsNotFound(err) {
		return TLSMaterial{}, &stallError{Reason: ReasonAgentTLSSecretNotFound, Message: fmt.Sprintf(
			"Secret %s/%s named by spec.agent.tlsSecretRef does not exist; create it with tls.crt, tls.key and ca.crt, labelled %s=true",
			key.Namespace, key.Name, drv1alpha1.AgentTLSSecretLabel)}
	}
	if err != nil {
		return TLSMaterial{}, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	m := TLSMaterial{CertPEM: secret.Data[tlsCertKey], KeyPEM: secret.Data[tlsKeyKey], CAPEM: secret.Data[tlsCAKey]}
	if len(m.CertPEM) == 0 || len(m.KeyPEM) == 0 || len(m.CAPEM) == 0 {
		return TLSMaterial{}, &stallError{Reason: ReasonAgentTLSSecretInvalid, Message: fmt.Sprintf(
			"Secret %s/%s must hold tls.crt, tls.key and ca.crt", key.Namespace, key.Name)}
	}
	return m, nil
}

// dirTLS is the manager's own client material (--agent-tls-dir).
func (r *PoolPairReconciler) dirTLS() (TLSMaterial, error) {
	if r.AgentTLSDir == "" {
		return TLSMaterial{}, &stallError{Reason: ReasonAgentTLSNotConfigured, Message: "no agent client certificate: the manager runs without --agent-tls-dir and spec.agent.tlsSecretRef is not set"}
	}
	m, err := r.defaultTLS.get()
	if err != nil {
		return TLSMaterial{}, &stallError{Reason: ReasonAgentTLSNotConfigured, Message: err.Error()}
	}
	return m, nil
}

// maxAgentClients bounds the cache of agent clients (one per distinct TLS material).
const maxAgentClients = 64

// connect returns the agent client for m: r.Connect when set (tests), else a cached
// *agentclient.Client per distinct material, so connections are reused across passes.
func (r *PoolPairReconciler) connect(m TLSMaterial) (AgentClient, error) {
	if r.Connect != nil {
		return r.Connect(m)
	}
	r.clientsMu.Lock()
	defer r.clientsMu.Unlock()
	h := sha256.New()
	for _, part := range [][]byte{m.CertPEM, m.KeyPEM, m.CAPEM} {
		_, _ = fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	var key [32]byte
	copy(key[:], h.Sum(nil))
	if c, ok := r.clients[key]; ok {
		return c, nil
	}
	c, err := agentclient.New(agentclient.Config{
		CertPEM: m.CertPEM, KeyPEM: m.KeyPEM, CAPEM: m.CAPEM,
		Timeout: r.AgentTimeout,
		Observe: metrics.ObserveAgentRequest,
	})
	if err != nil {
		return nil, &stallError{Reason: ReasonAgentTLSSecretInvalid, Message: fmt.Sprintf("agent client certificate: %v", err)}
	}
	if r.clients == nil || len(r.clients) >= maxAgentClients {
		// Certificates rotate: forget the old clients rather than keep them (and their idle
		// connections) forever. The ones still in use are rebuilt on their next pass.
		for _, old := range r.clients {
			old.CloseIdleConnections()
		}
		r.clients = map[[32]byte]*agentclient.Client{}
	}
	r.clients[key] = c
	return c, nil
}
