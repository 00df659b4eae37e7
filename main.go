// Command manager runs the poolpair-operator controller manager.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr      string
		probeAddr        string
		leaderElect      bool
		leaderElectionNS string
		maxConcurrent    int
		agentTLSDir      string
		agentTimeout     time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one of several replicas reconciles.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the manager's own namespace).")
	flag.IntVar(&maxConcurrent, "max-concurrent-reconciles", 4, "How many PoolPairs are reconciled in parallel.")
	flag.StringVar(&agentTLSDir, "agent-tls-dir", "", "Directory with the default client certificate for the lync-agents (tls.crt, tls.key, ca.crt); re-read when the files change.")
	flag.DurationVar(&agentTimeout, "agent-timeout", 5*time.Second, "Timeout of each request to a lync-agent.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(drv1alpha1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme: scheme,
		// Secrets are cached only when labelled for the operator: it never lists the cluster's Secrets.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{drv1alpha1.AgentTLSSecretLabel: "true"})},
		}},
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "poolpair-operator.dr.lync.io",
		LeaderElectionNamespace: leaderElectionNS,
		// Stepping down at once on SIGTERM lets a new replica take over without waiting out the lease.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	ctx := ctrl.SetupSignalHandler()
	reconciler := &controllers.PoolPairReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		AgentTLSDir:             agentTLSDir,
		AgentTimeout:            agentTimeout,
		Scheme:                  mgr.GetScheme(),
		Recorder:                mgr.GetEventRecorder("poolpair-operator"),
		MaxConcurrentReconciles: maxConcurrent,
	}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the PoolPair controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}

	log.Info("starting manager")
	if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
