// Package agent is the lync-agent's HTTP API (protocol v1): reads of the Lync deployment and a
// fixed set of operations, recorded in a durable journal, served only over mutual TLS. It drives a
// lync.Backend and knows nothing of Kubernetes or of which backend it drives.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
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
	// StartChecks are the checks the agent made when it started, reported by GET /v1/info.
	StartChecks []protocol.StartCheck
}

// Handler serves the agent protocol. It implements http.Handler; Close stops its operations.
type Handler struct {
	backend lync.Backend
	journal *Journal
	log     *slog.Logger
	version string
	maxWait time.Duration
	mux     *http.ServeMux
	checks  []protocol.StartCheck

	// opsCtx is the parent of every operation's context: operations outlive the request that
	// started them, and end only when they finish or the agent stops.
	opsCtx    context.Context
	cancelOps context.CancelFunc
	running   sync.WaitGroup

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
		checks:    cfg.StartChecks,
		opsCtx:    ctx,
		cancelOps: cancel,
		live:      map[string]*liveOp{},
	}
	h.mux = h.newMux() // routes.go
	if err := h.resume(); err != nil {
		cancel()
		return nil, err
	}
	return h, nil
}

// resume settles the operations an earlier agent process left unfinished. A Bootstrapper run is a
// process of its own and may have outlived that agent: while one is still going on, its operation
// stays Running and is tracked to its end, so no second run starts beside it. Any other operation
// died with its PowerShell host: Failed, and retryable, since nobody can tell how far it got.
func (h *Handler) resume() error {
	recs, err := h.journal.unfinished()
	if err != nil {
		return fmt.Errorf("agent: reading the journal: %w", err)
	}
	now := time.Now().UTC()
	// Newest first: only the latest Bootstrap record can belong to a run still going on.
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		if rec.Op.Kind == protocol.KindBootstrap && h.resumeBootstrap(rec) {
			continue
		}
		rec.Op.State, rec.Op.Message, rec.Op.Retryable, rec.Op.Finished = protocol.StateFailed, interruptedMessage, true, &now
		interrupted(&rec)
		if err := h.journal.update(rec); err != nil {
			return fmt.Errorf("agent: recording interrupted operation %q: %w", rec.Op.ID, err)
		}
		h.log.Warn("operation interrupted by an agent restart", "kind", rec.Op.Kind, "id", rec.Op.ID, "target", rec.Target)
	}
	return nil
}

// resumeBootstrap tracks rec to its end when a Bootstrapper run is still going on, and reports
// whether it does. When the backend cannot tell, the record is failed: Bootstrap itself refuses
// to start a second run while one is in progress.
func (h *Handler) resumeBootstrap(rec record) bool {
	h.mu.Lock()
	for _, op := range h.live {
		if op.rec.Op.Kind == protocol.KindBootstrap {
			h.mu.Unlock()
			return false // already tracking the run under a newer record
		}
	}
	h.mu.Unlock()
	wait, found, err := h.backend.RunningBootstrap(h.opsCtx)
	if err != nil {
		h.log.Warn("cannot tell whether Bootstrapper.exe still runs", "id", rec.Op.ID, "err", err)
		return false
	}
	if !found {
		return false
	}
	if rec.Op.Started == nil {
		started := time.Now().UTC()
		rec.Op.Started = &started
	}
	rec.Op.State = protocol.StateRunning
	op := &liveOp{rec: rec, done: make(chan struct{})}
	h.mu.Lock()
	h.live[rec.Op.ID] = op
	h.mu.Unlock()
	h.save(op, rec, false)
	h.log.Info("Bootstrapper.exe outlived the previous agent process; tracking it", "id", rec.Op.ID)
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		h.complete(op, rec, func(ctx context.Context) (string, *bootstrapOutcome, error) {
			res, err := wait(ctx)
			if err != nil {
				return "", nil, err
			}
			msg, boot := bootstrapMessage(res)
			return msg, boot, nil
		})
	}()
	return true
}

// ServeHTTP refuses any request that did not arrive over TLS with a verified client certificate
// (a second line behind ServerTLSConfig, should the handler ever be mounted elsewhere; see
// verifiedClient), then routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	client, ok := verifiedClient(r.TLS)
	if !ok {
		writeError(rec, &apiError{http.StatusUnauthorized, protocol.Error{Code: protocol.CodeUnauthorized, Message: "a verified client certificate over TLS is required"}})
	} else {
		h.route(rec, r)
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
		// The start checks usually say why, and what to do.
		e := backendError(err)
		if failed := failedChecks(h.checks); failed != "" {
			e.body.Message += "; start checks that failed: " + failed
		}
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, protocol.Info{
		ServerFQDN:   id.ServerFQDN,
		PoolFQDN:     id.PoolFQDN,
		Product:      id.Product,
		AgentVersion: h.version,
		Backend:      id.Backend,
		StartChecks:  h.checks,
	})
}

// failedChecks lists the failed checks, each with what to do.
func failedChecks(checks []protocol.StartCheck) string {
	var failed []string
	for _, c := range checks {
		if c.Status == protocol.StartCheckFail {
			failed = append(failed, c.Name+": "+c.Saw+" -> "+c.Fix)
		}
	}
	return strings.Join(failed, "; ")
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
	srv := protocol.Server{
		FQDN:             id.ServerFQDN,
		PoolFQDN:         id.PoolFQDN,
		BackupService:    svc,
		LastBootstrap:    last,
		ActiveOperations: h.activeOperations(),
	}
	if boot, err := h.backend.BootTime(r.Context()); err != nil {
		h.log.Info("cannot read the server's boot time", "err", err)
	} else {
		srv.BootTime = &boot
	}
	srv.RebootPending = rebootPending(last, srv.BootTime)
	if fe, err := h.backend.FrontEndService(r.Context()); err != nil {
		h.log.Info("cannot read the Front End service", "err", err)
	} else {
		srv.FrontEnd = fe
	}
	writeJSON(w, http.StatusOK, srv)
}

// rebootPending: the last Bootstrapper run asked for a restart and the server has not restarted
// since. A boot time the agent cannot read counts as not restarted: Bootstrapper is never run
// again on a guess that the administrator rebooted.
func rebootPending(last *protocol.BootstrapRun, bootTime *time.Time) bool {
	if last == nil || !last.RebootRequired {
		return false
	}
	return bootTime == nil || !bootTime.After(last.Finished)
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
