package metrics

import (
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// ServerOptions are the manager's metrics endpoint options. Secure serves HTTPS and lets in only
// callers the API server authenticates (TokenReview) and authorizes for a GET on /metrics
// (SubjectAccessReview; the metrics-reader ClusterRole grants it): the metrics name every pool and
// Front End server. certDir holds tls.crt and tls.key, watched for rotation; empty, a self-signed
// certificate is generated at start. Insecure is plain HTTP, for a manager on loopback (the demo).
func ServerOptions(bindAddress string, secure bool, certDir string) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: bindAddress}
	if secure {
		opts.SecureServing = true
		opts.FilterProvider = filters.WithAuthenticationAndAuthorization
		opts.CertDir = certDir
	}
	return opts
}
