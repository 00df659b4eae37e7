package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/conditions"
)

func requireAPIServer(t testing.TB) {
	t.Helper()
	suite.Require(t)
}

var nsCounter int

// newNamespace creates a namespace for one test.
func newNamespace(t testing.TB) string {
	t.Helper()
	nsCounter++
	// A DNS label: subtest names may hold any character.
	name := fmt.Sprintf("%s-%d", strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			return c
		}
		return '-'
	}, strings.ToLower(t.Name())), nsCounter)
	if len(name) > 63 {
		name = name[len(name)-63:]
		name = strings.TrimLeft(name, "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

func getPair(t testing.TB, ns, name string) *drv1alpha1.PoolPair {
	t.Helper()
	pp := &drv1alpha1.PoolPair{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pp); err != nil {
		t.Fatalf("getting PoolPair %s/%s: %v", ns, name, err)
	}
	return pp
}

func newPair(ns, name, primary, backup string) *drv1alpha1.PoolPair {
	return &drv1alpha1.PoolPair{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: drv1alpha1.PoolPairSpec{
			Primary: drv1alpha1.PoolSpec{FQDN: primary},
			Backup:  drv1alpha1.PoolSpec{FQDN: backup},
		},
	}
}

func TestFinalizerAddedAndRemovedWithRetain(t *testing.T) {
	requireAPIServer(t)
	startManager(t, nil)
	ns := newNamespace(t)
	ctx := context.Background()
	pp := newPair(ns, "retain", "pool11.contoso.com", "pool12.contoso.com")
	pp.Spec.Suspend = true // no agents in this test
	create(t, pp)
	eventually(t, 10*time.Second, "the finalizer", func() (bool, string) {
		got := getPair(t, ns, "retain")
		return controllerutil.ContainsFinalizer(got, drv1alpha1.Finalizer), fmt.Sprint(got.Finalizers)
	})
	if err := k8s.Delete(ctx, pp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the PoolPair to be gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(pp), &drv1alpha1.PoolPair{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func TestPoolAlreadyClaimedSetAndCleared(t *testing.T) {
	requireAPIServer(t)
	startManager(t, nil)
	ctx := context.Background()
	nsA, nsB := newNamespace(t), newNamespace(t)
	first := newPair(nsA, "first", "pool21.contoso.com", "pool22.contoso.com")
	first.Spec.Suspend = true
	create(t, first)
	eventually(t, 10*time.Second, "the first PoolPair to be reconciled", func() (bool, string) {
		got := getPair(t, nsA, "first")
		return got.Status.ObservedGeneration == got.Generation && conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReady) != nil, fmt.Sprint(got.Status)
	})
	// A second PoolPair in another namespace that names one of the same pools (as its backup).
	second := newPair(nsB, "second", "pool23.contoso.com", "pool21.contoso.com")
	second.Spec.Suspend = true
	create(t, second)
	eventually(t, 10*time.Second, "Stalled=PoolAlreadyClaimed on the second PoolPair", func() (bool, string) {
		got := getPair(t, nsB, "second")
		c := conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "PoolAlreadyClaimed" &&
			strings.Contains(c.Message, nsA+"/first") && strings.Contains(c.Message, "pool21.contoso.com"), fmt.Sprint(got.Status.Conditions)
	})
	ready := conditions.Get(getPair(t, nsB, "second").Status.Conditions, drv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse {
		t.Fatalf("Ready must be False on a stalled PoolPair, got %+v", ready)
	}
	// The first one is not disturbed.
	if c := conditions.Get(getPair(t, nsA, "first").Status.Conditions, drv1alpha1.ConditionStalled); c != nil {
		t.Fatalf("the older PoolPair must keep its claim, got %+v", c)
	}

	// Deleting the first releases the pool: the stall clears without touching the second.
	if err := k8s.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the stall to clear", func() (bool, string) {
		got := getPair(t, nsB, "second")
		return conditions.Get(got.Status.Conditions, drv1alpha1.ConditionStalled) == nil, fmt.Sprint(got.Status.Conditions)
	})
}

func TestNoStatusWriteWhenNothingChanged(t *testing.T) {
	requireAPIServer(t)
	m := startManager(t, nil)
	ctx := context.Background()
	ns := newNamespace(t)
	pp := newPair(ns, "quiet", "pool31.contoso.com", "pool32.contoso.com")
	pp.Spec.Suspend = true
	create(t, pp)
	eventually(t, 10*time.Second, "the first status", func() (bool, string) {
		got := getPair(t, ns, "quiet")
		return got.Status.ObservedGeneration == got.Generation && conditions.Get(got.Status.Conditions, drv1alpha1.ConditionReady) != nil, fmt.Sprint(got.Status)
	})
	writes, gets := m.counter.StatusWrites("quiet"), m.counter.Gets("quiet")

	// Poke it three times with an unrelated annotation: three reconciles, nothing to write. Each
	// pass starts with a Get of the PoolPair: the next poke waits for it.
	for i := 0; i < 3; i++ {
		got := getPair(t, ns, "quiet")
		patch := client.MergeFrom(got.DeepCopy())
		if got.Annotations == nil {
			got.Annotations = map[string]string{}
		}
		got.Annotations["example.com/poke"] = fmt.Sprint(i)
		if err := k8s.Patch(ctx, got, patch); err != nil {
			t.Fatal(err)
		}
		want := gets + i + 1
		eventually(t, 10*time.Second, "the reconcile of the poke", func() (bool, string) {
			return m.counter.Gets("quiet") >= want, fmt.Sprintf("%d reconciles", m.counter.Gets("quiet"))
		})
	}
	// A pass that started has not necessarily written yet. The passes of one PoolPair run one at a
	// time, so a last change that must be written (a new generation) is written by a pass that
	// starts after the pokes' passes ended: once it is seen, every write they made is counted.
	got := getPair(t, ns, "quiet")
	generation := got.Generation
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Sync.StableFor = &metav1.Duration{Duration: time.Minute}
	if err := k8s.Patch(ctx, got, patch); err != nil {
		t.Fatal(err)
	}
	if got.Generation <= generation {
		t.Fatalf("the spec change did not make a new generation (%d, was %d)", got.Generation, generation)
	}
	eventually(t, 10*time.Second, "the new generation observed", func() (bool, string) {
		now := getPair(t, ns, "quiet")
		return now.Status.ObservedGeneration == got.Generation, fmt.Sprintf("generation %d observed %d", got.Generation, now.Status.ObservedGeneration)
	})
	if got := m.counter.StatusWrites("quiet") - writes; got != 1 {
		t.Fatalf("status written %d times on three passes where nothing changed and one that observed a new generation; want 1", got)
	}
}
