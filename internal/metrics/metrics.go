// Package metrics defines the manager's Prometheus metrics, registered on controller-runtime's
// registry so they are served on the manager's metrics endpoint.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// StepDuration is how long agent steps took, from start to finish, by step kind and outcome.
	StepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "poolpair_step_duration_seconds",
		Help:    "Duration of pairing steps run by the lync-agents, by step and outcome.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600},
	}, []string{"step", "outcome"})

	// StepFailures counts failed steps by step kind and reason.
	StepFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolpair_step_failures_total",
		Help: "Failed pairing steps, by step and reason.",
	}, []string{"step", "reason"})

	// AgentRequestDuration is the latency of requests to the lync-agents by route template and code.
	AgentRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "poolpair_agent_request_duration_seconds",
		Help:    "Latency of lync-agent requests, by method, route and HTTP status (\"error\" when there was no answer).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"method", "route", "code"})
)

func init() {
	crmetrics.Registry.MustRegister(StepDuration, StepFailures, AgentRequestDuration)
}

// ObserveAgentRequest records one agent request (the agentclient's Observe hook).
func ObserveAgentRequest(method, route, code string, d time.Duration) {
	AgentRequestDuration.WithLabelValues(method, route, code).Observe(d.Seconds())
}
