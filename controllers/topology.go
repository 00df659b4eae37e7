package controllers

import (
	"context"
	"slices"
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
// PoolPairs' status (the holder's record is written before its request is sent). A PoolPair that
// has to wait is woken when the slot is given back, in the order they asked.
type topologyWriters struct {
	mu      sync.Mutex
	holders map[string]types.NamespacedName
	waiters map[string][]types.NamespacedName
	// wakeAfter holds, per PoolPair that gave a slot back, the waiters to wake once its status is
	// written.
	wakeAfter map[types.NamespacedName][]types.NamespacedName
	// recorded finds a PoolPair other than except whose status records a topology write in
	// flight on cms.
	recorded func(cms string, except types.NamespacedName) (types.NamespacedName, bool)
	// wake asks for a pass of a PoolPair.
	wake func(types.NamespacedName)
}

// acquire makes pair the writer of cms, or returns the PoolPair that is and queues pair to be
// woken when the slot is given back.
func (w *topologyWriters) acquire(cms string, pair types.NamespacedName) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	holder, taken := w.holders[cms]
	if !taken || holder == pair {
		if w.recorded != nil {
			holder, taken = w.recorded(cms, pair)
		}
	}
	if taken && holder != pair {
		if w.waiters == nil {
			w.waiters = map[string][]types.NamespacedName{}
		}
		if !slices.Contains(w.waiters[cms], pair) {
			w.waiters[cms] = append(w.waiters[cms], pair)
		}
		return holder.String(), false
	}
	if w.holders == nil {
		w.holders = map[string]types.NamespacedName{}
	}
	w.holders[cms] = pair
	// w.waiters is nil until a PoolPair first had to wait.
	if w.waiters != nil {
		w.waiters[cms] = slices.DeleteFunc(w.waiters[cms], func(p types.NamespacedName) bool { return p == pair })
	}
	return "", true
}

// release gives up pair's hold on cms (also a hold this manager only knew from status) and wakes
// the PoolPair that has waited longest. Waking one at a time keeps a crowd of waiters from all
// looking at once; the others look again at their own poll interval if the woken one no longer
// needs the slot.
func (w *topologyWriters) release(cms string, pair types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h, ok := w.holders[cms]; ok && h != pair {
		return
	}
	delete(w.holders, cms)
	if q := w.waiters[cms]; len(q) > 0 {
		// Woken once pair's status (which still records the write) is written: see settled.
		if w.wakeAfter == nil {
			w.wakeAfter = map[types.NamespacedName][]types.NamespacedName{}
		}
		w.wakeAfter[pair] = append(w.wakeAfter[pair], q[0])
		w.waiters[cms] = q[1:]
	}
}

// settled is called when a pass of pair has written its status: the PoolPairs its released
// writes let through are woken now, so they read a status that no longer records the write.
func (w *topologyWriters) settled(pair types.NamespacedName) {
	w.mu.Lock()
	next := w.wakeAfter[pair]
	delete(w.wakeAfter, pair)
	w.mu.Unlock()
	for _, n := range next {
		if w.wake != nil {
			w.wake(n)
		}
	}
}

// forget drops every hold and wait of a PoolPair that is gone.
func (w *topologyWriters) forget(pair types.NamespacedName) {
	w.mu.Lock()
	held := []string{}
	for cms, h := range w.holders {
		if h == pair {
			held = append(held, cms)
		}
	}
	for cms, q := range w.waiters {
		w.waiters[cms] = slices.DeleteFunc(q, func(p types.NamespacedName) bool { return p == pair })
	}
	w.mu.Unlock()
	for _, cms := range held {
		w.release(cms, pair)
	}
	w.settled(pair)
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
