// Command manager runs the poolpair-operator controller manager.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/controllers"
	"github.com/lync-dr/poolpair-operator/internal/metrics"
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
		metricsSecure    bool
		metricsCertDir   string
		agentTLSDir      string
		defaultTLSNS     string
		agentTimeout     time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to callers the API server authenticates and authorizes (the metrics-reader ClusterRole); false serves plain HTTP, for a manager on loopback only.")
	flag.StringVar(&metricsCertDir, "metrics-cert-dir", "", "Directory with the metrics endpoint's serving certificate (tls.crt, tls.key), re-read when it changes; empty: a self-signed one.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one of several replicas reconciles.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the manager's own namespace).")
	flag.IntVar(&maxConcurrent, "max-concurrent-reconciles", 4, "How many PoolPairs are reconciled in parallel.")
	flag.StringVar(&agentTLSDir, "agent-tls-dir", "", "Directory with the default client certificate for the lync-agents (tls.crt, tls.key, ca.crt); re-read when the files change.")
	flag.StringVar(&defaultTLSNS, "default-tls-namespaces", "", "Comma-separated namespaces whose PoolPairs may use the default client certificate (--agent-tls-dir); \"*\" for every namespace. Default: the manager's own namespace. PoolPairs elsewhere must name their own Secret in spec.agent.tlsSecretRef.")
	flag.DurationVar(&agentTimeout, "agent-timeout", 5*time.Second, "Timeout of each request to a lync-agent.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if !metricsSecure && metricsAddr != "0" && !loopback(metricsAddr) {
		return fmt.Errorf("--metrics-secure=false serves the metrics to anyone who can connect: bind them to loopback (--metrics-bind-address=127.0.0.1:PORT), not %q", metricsAddr)
	}
	defaultTLSNamespaces := splitList(defaultTLSNS)
	for _, ns := range defaultTLSNamespaces {
		if errs := validation.IsDNS1123Label(ns); ns != "*" && len(errs) > 0 {
			return fmt.Errorf("--default-tls-namespaces: %q is not a namespace name (%s); give names separated by commas, or * for every namespace", ns, strings.Join(errs, "; "))
		}
	}
	if defaultTLSNS == "" {
		if ns := ownNamespace(); ns != "" {
			defaultTLSNamespaces = []string{ns}
		}
	}
	if agentTLSDir != "" {
		if len(defaultTLSNamespaces) == 0 {
			log.Info("no namespace may use the default agent client certificate: the manager's own namespace is unknown; pass --default-tls-namespaces")
		} else {
			log.Info("namespaces whose PoolPairs may use the default agent client certificate", "namespaces", defaultTLSNamespaces)
		}
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(drv1alpha1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme: scheme,
		// Secrets are cached only when labelled for the operator: it never lists the cluster's Secrets.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{drv1alpha1.AgentTLSSecretLabel: "true"})},
		}},
		Metrics:                 metrics.ServerOptions(metricsAddr, metricsSecure, metricsCertDir),
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
		DefaultTLSNamespaces:    defaultTLSNamespaces,
		AgentTimeout:            agentTimeout,
		Scheme:                  mgr.GetScheme(),
		Recorder:                mgr.GetEventRecorder("poolpair-operator"),
		MaxConcurrentReconciles: maxConcurrent,
	}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the PoolPair controller: %w", err)
	}
	crmetrics.Registry.MustRegister(&metrics.PoolPairCollector{Reader: mgr.GetCache(), Elected: mgr.Elected()})
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

// ownNamespace is the namespace the manager runs in: POD_NAMESPACE (the Deployment sets it from
// the downward API), else its service account's.
func ownNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// loopback: addr listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
