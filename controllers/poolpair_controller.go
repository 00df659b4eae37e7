// Package controllers holds the PoolPair reconciler: it observes both pools through their agents,
// derives status from what it saw, and starts the next step of the pairing runbook.
package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
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

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
)

// Condition reasons set by the reconciler.
const (
	ReasonPending            = "Pending"
	ReasonPoolAlreadyClaimed = "PoolAlreadyClaimed"
	ReasonSuspended          = "Suspended"
	ReasonDeleting           = "Deleting"
)

// PoolPairReconciler reconciles PoolPair objects.
type PoolPairReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=dr.lync.io,resources=poolpairs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=dr.lync.io,resources=poolpairs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=dr.lync.io,resources=poolpairs/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile observes one PoolPair's pools and moves it one step closer to Synced.
func (r *PoolPairReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pp := &drv1alpha1.PoolPair{}
	if err := r.Get(ctx, req.NamespacedName, pp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !pp.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, pp)
	}
	if !controllerutil.ContainsFinalizer(pp, drv1alpha1.Finalizer) {
		patch := client.MergeFrom(pp.DeepCopy())
		controllerutil.AddFinalizer(pp, drv1alpha1.Finalizer)
		if err := r.Patch(ctx, pp, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	before := pp.DeepCopy()
	result, err := r.reconcileNormal(ctx, pp)
	if perr := r.patchStatus(ctx, before, pp); perr != nil && err == nil {
		err = perr
	}
	return result, err
}

func (r *PoolPairReconciler) reconcileNormal(ctx context.Context, pp *drv1alpha1.PoolPair) (ctrl.Result, error) {
	conds := conditions.Setter{Conditions: &pp.Status.Conditions, Generation: pp.Generation}
	pp.Status.ObservedGeneration = pp.Generation
	if pp.Status.Phase == "" {
		pp.Status.Phase = drv1alpha1.PhasePending
	}

	other, pool, err := r.claimedBy(ctx, pp)
	if err != nil {
		return ctrl.Result{}, err
	}
	if other != nil {
		msg := fmt.Sprintf("pool %s is already claimed by PoolPair %s/%s; delete one of the two PoolPairs", pool, other.Namespace, other.Name)
		conds.True(drv1alpha1.ConditionStalled, ReasonPoolAlreadyClaimed, msg)
		conds.Remove(drv1alpha1.ConditionReconciling)
		conds.False(drv1alpha1.ConditionReady, ReasonPoolAlreadyClaimed, msg)
		return ctrl.Result{}, nil
	}
	conds.Remove(drv1alpha1.ConditionStalled)

	if pp.Spec.Suspend {
		conds.Remove(drv1alpha1.ConditionReconciling)
		conds.False(drv1alpha1.ConditionReady, ReasonSuspended, "spec.suspend is true: nothing is observed or started")
		return ctrl.Result{}, nil
	}

	conds.True(drv1alpha1.ConditionReconciling, ReasonPending, "waiting for the pool agents")
	conds.False(drv1alpha1.ConditionReady, ReasonPending, fmt.Sprintf("waiting to pair %s with %s", pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN))
	return ctrl.Result{}, nil
}

func (r *PoolPairReconciler) reconcileDelete(ctx context.Context, pp *drv1alpha1.PoolPair) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(pp, drv1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(pp.DeepCopy())
	controllerutil.RemoveFinalizer(pp, drv1alpha1.Finalizer)
	if err := r.Patch(ctx, pp, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	return ctrl.Result{}, nil
}

// patchStatus writes the status only when it changed: no write, no watch event, no hot loop.
func (r *PoolPairReconciler) patchStatus(ctx context.Context, before, after *drv1alpha1.PoolPair) error {
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patching status: %w", err))
	}
	return nil
}

// SetupWithManager registers the controller and its watches.
func (r *PoolPairReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &drv1alpha1.PoolPair{}, poolFQDNIndex, indexPoolFQDNs); err != nil {
		return fmt.Errorf("indexing PoolPairs by pool FQDN: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&drv1alpha1.PoolPair{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
		))).
		// Another PoolPair appearing or going away can claim or release our pools.
		Watches(&drv1alpha1.PoolPair{}, handler.EnqueueRequestsFromMapFunc(r.requestsForClaimants),
			builder.WithPredicates(predicate.Funcs{
				UpdateFunc: func(e event.UpdateEvent) bool { return false },
			})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("poolpair").
		Complete(r)
}
