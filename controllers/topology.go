package controllers

import (
	"context"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

// topologyWriters lets one PoolPair at a time write the topology of a Lync deployment (PairPools,
// Unpair): every pairing of a deployment is published to the same Central Management Store, and
// two publishes at once would race. The holder is kept in memory from the moment its write is
// recorded until it finishes; a manager that just started learns the writes in flight from the
// PoolPairs' status (the holder's record is written before its request is sent).
type topologyWriters struct {
	mu      sync.Mutex
	holders map[string]types.NamespacedName
	// recorded finds a PoolPair other than except whose status records a topology write in
	// flight on cms.
	recorded func(cms string, except types.NamespacedName) (types.NamespacedName, bool)
}

// acquire makes pair the writer of cms, or returns the PoolPair that is.
func (w *topologyWriters) acquire(cms string, pair types.NamespacedName) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h, ok := w.holders[cms]; ok && h != pair {
		return h.String(), false
	}
	if w.recorded != nil {
		if other, ok := w.recorded(cms, pair); ok {
			return other.String(), false
		}
	}
	if w.holders == nil {
		w.holders = map[string]types.NamespacedName{}
	}
	w.holders[cms] = pair
	return "", true
}

// release gives up pair's hold on cms, if it has it.
func (w *topologyWriters) release(cms string, pair types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holders[cms] == pair {
		delete(w.holders, cms)
	}
}

// forget drops every hold of a PoolPair that is gone.
func (w *topologyWriters) forget(pair types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for cms, h := range w.holders {
		if h == pair {
			delete(w.holders, cms)
		}
	}
}

// recordedWriter looks through the cached PoolPairs for a topology write in flight on cms.
func (r *PoolPairReconciler) recordedWriter(cms string, except types.NamespacedName) (types.NamespacedName, bool) {
	var list drv1alpha1.PoolPairList
	// Read-only, and called for every topology write: no deep copy of every PoolPair.
	if err := r.List(context.Background(), &list, client.UnsafeDisableDeepCopy); err != nil {
		// Unknown: count it as taken, and look again on the next pass.
		ctrl.Log.WithName("topology-writers").Error(err, "listing PoolPairs")
		return types.NamespacedName{Name: "(unknown: listing PoolPairs failed)"}, true
	}
	for _, pp := range list.Items {
		key := types.NamespacedName{Namespace: pp.Namespace, Name: pp.Name}
		if op := pp.Status.Operation; key != except && op != nil && op.CMSPool == cms {
			return key, true
		}
	}
	return types.NamespacedName{}, false
}

// cmsPool names the Central Management Store the pair's topology writes serialize on: the pool
// hosting it as an agent reported it, else whichever of the two pools hosts it, else "" (unknown:
// every such write shares one slot).
func (p *pass) cmsPool() string {
	for _, pool := range p.obs.pools() {
		if pool.ok() && pool.Pool.CMSPool != "" {
			return strings.ToLower(strings.TrimSuffix(pool.Pool.CMSPool, "."))
		}
	}
	for _, pool := range p.obs.pools() {
		if pool.ok() && pool.Pool.HostsCMS {
			return pool.FQDN
		}
	}
	return ""
}
