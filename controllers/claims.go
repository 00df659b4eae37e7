package controllers

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

// poolFQDNIndex indexes PoolPairs by the FQDNs of both their pools, so a claim check is one
// indexed cache lookup instead of a scan.
const poolFQDNIndex = "spec.poolFQDNs"

func indexPoolFQDNs(obj client.Object) []string {
	pp, ok := obj.(*drv1alpha1.PoolPair)
	if !ok {
		return nil
	}
	return []string{pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN}
}

// claimants lists the other PoolPairs, in any namespace, that name one of pp's pools.
func (r *PoolPairReconciler) claimants(ctx context.Context, pp *drv1alpha1.PoolPair) ([]drv1alpha1.PoolPair, error) {
	seen := map[types.UID]bool{pp.UID: true}
	var out []drv1alpha1.PoolPair
	for _, fqdn := range []string{pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN} {
		var list drv1alpha1.PoolPairList
		if err := r.List(ctx, &list, client.MatchingFields{poolFQDNIndex: fqdn}); err != nil {
			return nil, fmt.Errorf("listing PoolPairs that name pool %s: %w", fqdn, err)
		}
		for _, other := range list.Items {
			if !seen[other.UID] {
				seen[other.UID] = true
				out = append(out, other)
			}
		}
	}
	return out, nil
}

// claimedBy returns the PoolPair that holds one of pp's pools before pp does, or nil. The older
// PoolPair wins (creation time, then namespace/name), so the answer is the same on every pass and
// on every replica, and the loser is released as soon as the winner goes away.
func (r *PoolPairReconciler) claimedBy(ctx context.Context, pp *drv1alpha1.PoolPair) (*drv1alpha1.PoolPair, string, error) {
	others, err := r.claimants(ctx, pp)
	if err != nil {
		return nil, "", err
	}
	sort.Slice(others, func(i, j int) bool { return claimsBefore(&others[i], &others[j]) })
	for i := range others {
		other := &others[i]
		if !claimsBefore(other, pp) {
			continue
		}
		for _, mine := range []string{pp.Spec.Primary.FQDN, pp.Spec.Backup.FQDN} {
			if mine == other.Spec.Primary.FQDN || mine == other.Spec.Backup.FQDN {
				return other, mine, nil
			}
		}
	}
	return nil, "", nil
}

func claimsBefore(a, b *drv1alpha1.PoolPair) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// requestsForClaimants wakes every PoolPair that shares a pool with the changed one, so a
// PoolAlreadyClaimed stall clears as soon as the claim is released (no polling).
func (r *PoolPairReconciler) requestsForClaimants(ctx context.Context, obj client.Object) []reconcile.Request {
	pp, ok := obj.(*drv1alpha1.PoolPair)
	if !ok {
		return nil
	}
	others, err := r.claimants(ctx, pp)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "finding PoolPairs that share a pool")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(others))
	for _, o := range others {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.Namespace, Name: o.Name}})
	}
	return reqs
}
