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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
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
	suite      testenv.Suite
)

func TestMain(m *testing.M) {
	flag.Parse()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(drv1alpha1.AddToScheme(scheme))
	if testing.Verbose() {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	os.Exit(suite.Run(m, func(cfg *rest.Config) error {
		restConfig = cfg
		var err error
		k8s, err = client.New(cfg, client.Options{Scheme: scheme})
		return err
	}))
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
	// cache is the manager's informer cache.
	cache client.Reader
	// elected is closed once the manager leads.
	elected <-chan struct{}
}

// startManager runs the PoolPair controller until the test ends.
func startManager(t testing.TB, configure func(r *controllers.PoolPairReconciler)) *manager {
	t.Helper()
	m, stop := runManager(t, nil, configure)
	t.Cleanup(stop)
	return m
}

// startManagerWith runs the PoolPair controller on a manager with options of the test's own.
func startManagerWith(t testing.TB, options func(*ctrl.Options), configure func(r *controllers.PoolPairReconciler)) *manager {
	t.Helper()
	m, stop := runManager(t, options, configure)
	t.Cleanup(stop)
	return m
}

// startManagerStoppable runs the PoolPair controller until stop is called (or the test ends).
func startManagerStoppable(t testing.TB, configure func(r *controllers.PoolPairReconciler)) (stop func()) {
	t.Helper()
	_, stopManager := runManager(t, nil, configure)
	var once sync.Once
	stopOnce := func() { once.Do(stopManager) }
	t.Cleanup(stopOnce)
	return stopOnce
}

func runManager(t testing.TB, options func(*ctrl.Options), configure func(r *controllers.PoolPairReconciler)) (*manager, func()) {
	t.Helper()
	opts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             ctrlConfigSkipNameValidation(),
		// As main.go: Secrets are cached only when labelled for the operator, so an unlabelled
		// agent TLS Secret is missing from the cache here as it is in production.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{drv1alpha1.AgentTLSSecretLabel: "true"})},
		}},
	}
	if options != nil {
		options(&opts)
	}
	mgr, err := ctrl.NewManager(restConfig, opts)
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
	return &manager{counter: counter, cache: mgr.GetCache(), elected: mgr.Elected()}, func() {
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
