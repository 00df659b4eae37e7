// Package controllers holds the PoolPair reconciler: it observes both pools through their agents,
// derives status from what it saw, and starts the next step of the pairing runbook.
package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/pairing"
)

// PoolPairReconciler reconciles PoolPair objects.
type PoolPairReconciler struct {
	client.Client
	// APIReader reads around the cache: the cache holds only labelled Secrets, and a direct read
	// tells an unlabelled Secret from a missing one.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int

	// AgentTLSDir holds the manager's default agent client certificate (tls.crt, tls.key, ca.crt).
	AgentTLSDir string
	// DefaultTLSNamespaces are the namespaces whose PoolPairs may use the AgentTLSDir certificate
	// ("*": every namespace); PoolPairs elsewhere must name their own Secret.
	DefaultTLSNamespaces []string
	// AgentTLSWatchInterval is how often the AgentTLSDir files are polled, beside file
	// notifications (default: certwatcher's).
	AgentTLSWatchInterval time.Duration
	// Connect builds the agent client for some TLS material; nil means *agentclient.Client.
	Connect func(TLSMaterial) (AgentClient, error)
	// AgentTimeout bounds each agent request (default 5s).
	AgentTimeout time.Duration
	// Backoff paces retries of failed steps (default pairing.DefaultBackoff).
	Backoff pairing.Backoff
	// OperationPollInterval is the fallback poll while a step runs; a finished step normally wakes
	// its PoolPair at once through the long-poll watcher (default 30s).
	OperationPollInterval time.Duration
	// UnreachableRetry is how soon an unreachable agent is tried again (default 15s).
	UnreachableRetry time.Duration

	clientsMu  sync.Mutex
	clients    map[[32]byte]*agentclient.Client
	watcher    *operationWatcher
	defaultTLS *defaultTLS
	writers    topologyWriters
}

// +kubebuilder:rbac:groups=dr.lync.io,resources=poolpairs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=dr.lync.io,resources=poolpairs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=dr.lync.io,resources=poolpairs/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// Reconcile observes one PoolPair's pools and moves it one step closer to Synced.
func (r *PoolPairReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pp := &drv1alpha1.PoolPair{}
	if err := r.Get(ctx, req.NamespacedName, pp); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.watcher.forget(req.NamespacedName)
			r.writers.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if pp.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(pp, drv1alpha1.Finalizer) {
		patch := client.MergeFrom(pp.DeepCopy())
		controllerutil.AddFinalizer(pp, drv1alpha1.Finalizer)
		if err := r.Patch(ctx, pp, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	// Whatever this pass gives back of a topology writer slot goes to the next PoolPair once
	// the pass has written its status.
	defer r.writers.settled(req.NamespacedName)
	before := pp.DeepCopy()
	p := &pass{r: r, pp: pp, base: before, now: r.Clock.Now(), conds: conditionsFor(pp)}
	var err error
	if pp.DeletionTimestamp.IsZero() {
		err = p.reconcileNormal(ctx)
	} else {
		err = p.reconcileDelete(ctx)
		if err == nil && p.released {
			r.watcher.forget(req.NamespacedName)
			r.writers.forget(req.NamespacedName)
			patch := client.MergeFrom(before)
			controllerutil.RemoveFinalizer(pp, drv1alpha1.Finalizer)
			return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, pp, patch))
		}
	}
	if p.aborted != nil {
		// The write-ahead record lost the optimistic-lock race (or could not be written): nothing
		// was sent; look again with fresh data.
		if apierrors.IsConflict(p.aborted) {
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
		return ctrl.Result{}, p.aborted
	}
	if perr := r.patchStatus(ctx, p.base, pp); perr != nil {
		if apierrors.IsConflict(perr) {
			// This pass read a stale copy; another pass already wrote. Look again with fresh data.
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
		if err == nil {
			err = perr
		}
	} else {
		p.emitEvents()
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: p.requeue}, nil
}

// patchStatus writes the status only when it changed: no write, no watch event, no hot loop. The
// write is guarded by the resourceVersion read, so a pass that worked from a stale cache cannot
// overwrite (or double-count) what a newer pass recorded.
func (r *PoolPairReconciler) patchStatus(ctx context.Context, before, after *drv1alpha1.PoolPair) error {
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, after, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) {
			return err
		}
		return client.IgnoreNotFound(fmt.Errorf("patching status: %w", err))
	}
	return nil
}

// tlsSecretIndex indexes PoolPairs by the Secret they take their agent certificate from.
const tlsSecretIndex = "spec.agent.tlsSecretRef.name"

// SetupWithManager registers the controller and its watches.
func (r *PoolPairReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Backoff == (pairing.Backoff{}) {
		r.Backoff = pairing.DefaultBackoff
	}
	if r.OperationPollInterval <= 0 {
		r.OperationPollInterval = 30 * time.Second
	}
	if r.UnreachableRetry <= 0 {
		r.UnreachableRetry = 15 * time.Second
	}
	r.watcher = newOperationWatcher()
	r.defaultTLS = &defaultTLS{dir: r.AgentTLSDir, ctx: ctx, interval: r.AgentTLSWatchInterval}
	r.writers.recorded = r.recordedWriter
	r.writers.wake = r.watcher.wake
	r.watcher.start(ctx)

	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &drv1alpha1.PoolPair{}, poolFQDNIndex, indexPoolFQDNs); err != nil {
		return fmt.Errorf("indexing PoolPairs by pool FQDN: %w", err)
	}
	if err := indexer.IndexField(ctx, &drv1alpha1.PoolPair{}, tlsSecretIndex, func(obj client.Object) []string {
		if ref := obj.(*drv1alpha1.PoolPair).Spec.Agent.TLSSecretRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing PoolPairs by TLS Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Status-only updates (our own writes) do not trigger a pass.
		For(&drv1alpha1.PoolPair{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
		))).
		// Another PoolPair appearing or going away can claim or release our pools.
		Watches(&drv1alpha1.PoolPair{}, handler.EnqueueRequestsFromMapFunc(r.requestsForClaimants),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		// A labelled agent TLS Secret created or rotated wakes the PoolPairs that use it.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.requestsForSecret)).
		// A finished agent operation wakes its PoolPair at once.
		WatchesRawSource(source.Channel(r.watcher.events, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("poolpair").
		Complete(r)
}

func (r *PoolPairReconciler) requestsForSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var list drv1alpha1.PoolPairList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{tlsSecretIndex: obj.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "finding PoolPairs that use a Secret")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, pp := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pp.Namespace, Name: pp.Name}})
	}
	return reqs
}
