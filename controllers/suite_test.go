package controllers_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

// One control plane per package (it takes seconds to start); each test gets its own namespace and,
// where it needs one, its own manager.
var (
	restConfig *rest.Config
	k8s        client.Client
	scheme     = runtime.NewScheme()
	skipSuite  string
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	flag.Parse()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := drv1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	env, err := testenv.New()
	if err != nil {
		fail, msg := testenv.MissingAssets(err)
		fmt.Fprintln(os.Stderr, msg)
		if fail {
			return 1
		}
		skipSuite = msg
		return m.Run()
	}
	restConfig, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, err = client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating client:", err)
		return 1
	}
	if testing.Verbose() {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	return m.Run()
}

// writeCounter counts the manager's API calls per PoolPair name, so tests can prove a pass wrote
// nothing.
type writeCounter struct {
	mu           sync.Mutex
	statusWrites map[string]int
	gets         map[string]int
}

func (w *writeCounter) count(m map[string]int, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m[name]++
}

func (w *writeCounter) StatusWrites(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.statusWrites[name]
}

func (w *writeCounter) Gets(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gets[name]
}

func (w *writeCounter) funcs() interceptor.Funcs {
	return interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*drv1alpha1.PoolPair); ok {
				w.count(w.gets, key.Name)
			}
			return c.Get(ctx, key, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "status" {
				w.count(w.statusWrites, obj.GetName())
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if sub == "status" {
				w.count(w.statusWrites, obj.GetName())
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	}
}

// manager is a running controller manager for one test.
type manager struct {
	counter *writeCounter
}

// startManager runs the PoolPair controller until the test ends.
func startManager(t testing.TB, configure func(r *controllers.PoolPairReconciler)) *manager {
	t.Helper()
	m, stop := runManager(t, configure)
	t.Cleanup(stop)
	return m
}

// startManagerStoppable runs the PoolPair controller until stop is called (or the test ends).
func startManagerStoppable(t testing.TB, configure func(r *controllers.PoolPairReconciler)) (stop func()) {
	t.Helper()
	_, stopManager := runManager(t, configure)
	var once sync.Once
	stopOnce := func() { once.Do(stopManager) }
	t.Cleanup(stopOnce)
	return stopOnce
}

func runManager(t testing.TB, configure func(r *controllers.PoolPairReconciler)) (*manager, func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             ctrlConfigSkipNameValidation(),
	})
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	counter := &writeCounter{statusWrites: map[string]int{}, gets: map[string]int{}}
	r := &controllers.PoolPairReconciler{
		Client:    interceptor.NewClient(mgrClientWithWatch{mgr.GetClient()}, counter.funcs()),
		APIReader: mgr.GetAPIReader(),
		Scheme:    scheme,
		Recorder:  mgr.GetEventRecorder("poolpair-operator"),
	}
	if configure != nil {
		configure(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		t.Fatalf("setting up the controller: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return &manager{counter: counter}, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with an error: %v", err)
		}
	}
}

// eventually polls cond until it holds or the timeout passes; tests assert on behaviour, the
// timeout only bounds a failure.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mgrClientWithWatch lets the interceptor wrap the manager's (cached) client, which has no Watch.
type mgrClientWithWatch struct{ client.Client }

func (mgrClientWithWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, fmt.Errorf("watch is not supported through the manager's client")
}

// Several managers run in one test binary; controller names are only unique per manager.
func ctrlConfigSkipNameValidation() config.Controller {
	return config.Controller{SkipNameValidation: ptr.To(true)}
}
