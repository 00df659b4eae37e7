// Package agent is the lync-agent's HTTP API (protocol v1): reads of the Lync deployment and a
// fixed set of operations, recorded in a durable journal, served only over mutual TLS. It drives a
// lync.Backend and knows nothing of Kubernetes or of which backend it drives.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// DefaultMaxWait caps a long-poll (GET /v1/operations/{id}?wait=) when Config.MaxWait is zero.
const DefaultMaxWait = 60 * time.Second

// Config configures the handler.
type Config struct {
	Backend lync.Backend
	Journal *Journal
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Version is the agent's version, reported by GET /v1/info.
	Version string
	// MaxWait caps long-polls; DefaultMaxWait when zero.
	MaxWait time.Duration
}

// Handler serves the agent protocol. It implements http.Handler; Close stops its operations.
type Handler struct {
	backend lync.Backend
	journal *Journal
	log     *slog.Logger
	version string
	maxWait time.Duration
	mux     *http.ServeMux

	// opsCtx is the parent of every operation's context: operations outlive the request that
	// started them, and end only when they finish or the agent stops.
	opsCtx    context.Context
	cancelOps context.CancelFunc
	running   sync.WaitGroup
	// topology serializes PairPools and Unpair (a one-slot semaphore so a waiter can give up).
	topology chan struct{}

	mu     sync.Mutex // guards live and closed; held while an operation is created
	live   map[string]*liveOp
	closed bool
}

// NewHandler returns the agent's HTTP handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Backend == nil {
		return nil, errors.New("agent: Config.Backend is required")
	}
	if cfg.Journal == nil {
		return nil, errors.New("agent: Config.Journal is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		backend:   cfg.Backend,
		journal:   cfg.Journal,
		log:       cfg.Logger,
		version:   cfg.Version,
		maxWait:   cfg.MaxWait,
		opsCtx:    ctx,
		cancelOps: cancel,
		topology:  make(chan struct{}, 1),
		live:      map[string]*liveOp{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", h.info)
	mux.HandleFunc("GET /v1/pools/{fqdn}", h.pool)
	mux.HandleFunc("GET /v1/pools/{fqdn}/backup-status", h.backupStatus)
	mux.HandleFunc("GET /v1/server", h.server)
	mux.HandleFunc("POST /v1/operations", h.startOperation)
	mux.HandleFunc("GET /v1/operations/{id...}", h.getOperation)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("no such endpoint: "+r.Method+" "+r.URL.Path))
	})
	h.mux = mux
	return h, nil
}

// ServeHTTP refuses any request that did not arrive over mutual TLS (a second line behind
// ServerTLSConfig, should the handler ever be mounted elsewhere), then routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	client := ""
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		writeError(rec, &apiError{http.StatusUnauthorized, protocol.Error{Code: protocol.CodeUnauthorized, Message: "a client certificate over TLS is required"}})
	} else {
		client = r.TLS.VerifiedChains[0][0].Subject.CommonName
		h.mux.ServeHTTP(rec, r)
	}
	h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", r.Pattern,
		"status", rec.status, "client", client, "remote", r.RemoteAddr, "duration", time.Since(start))
}

// Close refuses new operations, waits for those running until ctx ends, then cancels them (they
// are recorded Failed and retryable) and waits for them to record it. It does not close the journal.
func (h *Handler) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.running.Wait(); close(done) }()
	select {
	case <-done:
		h.cancelOps()
		return nil
	case <-ctx.Done():
		h.cancelOps()
		<-done
		return ctx.Err()
	}
}

func (h *Handler) info(w http.ResponseWriter, r *http.Request) {
	id, err := h.backend.Identity(r.Context())
	if err != nil {
		writeError(w, backendError(err))
		return
	}
	writeJSON(w, http.StatusOK, protocol.Info{
		ServerFQDN:   id.ServerFQDN,
		PoolFQDN:     id.PoolFQDN,
		Product:      id.Product,
		AgentVersion: h.version,
		Backend:      id.Backend,
	})
}

func (h *Handler) pool(w http.ResponseWriter, r *http.Request) {
	fqdn := r.PathValue("fqdn")
	if err := protocol.ValidateFQDN("fqdn", fqdn); err != nil {
		writeError(w, invalid(err.Error()))
		return
	}
	p, err := h.backend.Pool(r.Context(), fqdn)
	if err != nil {
		writeError(w, backendError(err))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *Handler) backupStatus(w http.ResponseWriter, r *http.Request) {
	fqdn := r.PathValue("fqdn")
	if err := protocol.ValidateFQDN("fqdn", fqdn); err != nil {
		writeError(w, invalid(err.Error()))
		return
	}
	s, err := h.backend.BackupStatus(r.Context(), fqdn)
	if err != nil {
		writeError(w, backendError(err))
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *Handler) server(w http.ResponseWriter, r *http.Request) {
	id, err := h.backend.Identity(r.Context())
	if err != nil {
		writeError(w, backendError(err))
		return
	}
	if id.ServerFQDN == "" {
		writeError(w, notFound("this endpoint stands for pool "+id.PoolFQDN+", not for a Front End server"))
		return
	}
	svc, err := h.backend.BackupService(r.Context())
	if err != nil {
		writeError(w, backendError(err))
		return
	}
	last, err := h.journal.lastBootstrap()
	if err != nil {
		writeError(w, internal("journal: "+err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, protocol.Server{
		FQDN:          id.ServerFQDN,
		PoolFQDN:      id.PoolFQDN,
		BackupService: svc,
		LastBootstrap: last,
	})
}

// statusRecorder keeps the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
