package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

// operationWatcher long-polls the agents for the operations in flight and wakes the owning
// PoolPair the moment one finishes, so a finished step is followed by the next one without
// waiting for a poll. The bounded poll (OperationPollInterval) stays as the fallback.
type operationWatcher struct {
	ctx    context.Context
	events chan event.GenericEvent

	mu      sync.Mutex
	running map[string]context.CancelFunc // by endpoint + id
	byOwner map[types.NamespacedName]map[string]bool
}

func newOperationWatcher() *operationWatcher {
	return &operationWatcher{
		ctx:     context.Background(),
		events:  make(chan event.GenericEvent, 1024),
		running: map[string]context.CancelFunc{},
		byOwner: map[types.NamespacedName]map[string]bool{},
	}
}

// start sets the context that ends every watch when the manager stops.
func (w *operationWatcher) start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctx = ctx
}

// watch long-polls one operation unless it is already watched.
func (w *operationWatcher) watch(owner types.NamespacedName, agents AgentClient, endpoint, id string) {
	if w == nil {
		return
	}
	key := endpoint + "|" + id
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.running[key]; ok {
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.running[key] = cancel
	if w.byOwner[owner] == nil {
		w.byOwner[owner] = map[string]bool{}
	}
	w.byOwner[owner][key] = true
	go func() {
		_, err := agents.AwaitDone(ctx, endpoint, id)
		w.mu.Lock()
		delete(w.running, key)
		delete(w.byOwner[owner], key)
		if len(w.byOwner[owner]) == 0 {
			delete(w.byOwner, owner)
		}
		w.mu.Unlock()
		cancel()
		if err != nil && ctx.Err() != nil {
			return // forgotten or shutting down
		}
		// Done, or the agent went away: either way the owner should look now.
		pp := &drv1alpha1.PoolPair{}
		pp.Namespace, pp.Name = owner.Namespace, owner.Name
		select {
		case w.events <- event.GenericEvent{Object: pp}:
		case <-w.ctx.Done():
		}
	}()
}

// forget stops the watches of a PoolPair that is gone.
func (w *operationWatcher) forget(owner types.NamespacedName) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for key := range w.byOwner[owner] {
		if cancel, ok := w.running[key]; ok {
			cancel()
			delete(w.running, key)
		}
	}
	delete(w.byOwner, owner)
}

// wake asks for a pass of owner, without blocking the caller.
func (w *operationWatcher) wake(owner types.NamespacedName) {
	pp := &drv1alpha1.PoolPair{}
	pp.Namespace, pp.Name = owner.Namespace, owner.Name
	go func() {
		select {
		case w.events <- event.GenericEvent{Object: pp}:
		case <-w.ctx.Done():
		}
	}()
}
