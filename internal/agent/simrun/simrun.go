// Package simrun serves a simulated Lync deployment (internal/lync/sim) the way real agents would:
// one lync-agent handler per pool endpoint and per Front End server, each on its own mutual-TLS
// listener with its own journal, plus the sim's admin API. `lync-agent sim`, the demo and the
// controller tests use it; an endpoint's agent can be stopped and started again to play an agent
// that goes down.
package simrun

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agent"
	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
)

// TLS is the server side of the agents' mutual TLS: the CA that signs clients, the server
// certificate every simulated agent presents, and optionally the client names allowed.
type TLS struct {
	CAPEM, CertPEM, KeyPEM []byte
	AllowedClients         []string
}

// LoadTLSDir reads ca.crt, server.crt and server.key from dir (as `lync-agent certs` writes them).
func LoadTLSDir(dir string) (TLS, error) {
	var t TLS
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{devcerts.CACertFile, &t.CAPEM}, {devcerts.ServerCertFile, &t.CertPEM}, {devcerts.ServerKeyFile, &t.KeyPEM}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return TLS{}, fmt.Errorf("TLS directory: %w", err)
		}
		*f.dst = b
	}
	return t, nil
}

// Option tunes StartSim.
type Option func(*options)

type options struct {
	logger  *slog.Logger
	version string
	maxWait time.Duration
}

// WithLogger sets the logger of every simulated agent (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithVersion sets the agent version the endpoints report.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithMaxWait caps the agents' long-polls (agent.DefaultMaxWait when zero).
func WithMaxWait(d time.Duration) Option { return func(o *options) { o.maxWait = d } }

// Endpoint is one served endpoint.
type Endpoint struct {
	sim.Endpoint
	// URL is the agent's base URL, https://host:port.
	URL string
}

// SimRunner serves the endpoints of one deployment. Safe for concurrent use.
type SimRunner struct {
	d       *sim.Deployment
	tlsCfg  *tls.Config
	opts    options
	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex
	endpoints []*endpoint // in d.Endpoints() order
	byFQDN    map[string]*endpoint
	admin     *server
}

// endpoint is one simulated agent; server is nil while it is stopped.
type endpoint struct {
	Endpoint
	addr       string // the bound address, reused by a restart
	journalDir string
	server     *server
}

// server is one running listener with its agent handler and journal (both nil for the admin).
type server struct {
	ln      *gatedListener
	cancel  context.CancelFunc
	done    chan struct{}
	handler *agent.Handler
	journal *agent.Journal
}

// StartSim starts one agent per endpoint of d, each with a journal in journalDir/<fqdn>/, all
// presenting tlsFiles' certificate and requiring clients signed by its CA. listenOverride, when
// not nil and answering non-empty, replaces an endpoint's listen address (tests pass
// "127.0.0.1:0"). If any listener cannot start, everything already started is stopped and the
// error names the address and the endpoint. ctx bounds the runner's life, as Stop does.
func StartSim(ctx context.Context, d *sim.Deployment, tlsFiles TLS, journalDir string, listenOverride func(sim.Endpoint) string, opts ...Option) (*SimRunner, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if journalDir == "" {
		return nil, errors.New("simrun: a journal directory is required")
	}
	tlsCfg, err := agent.ServerTLSConfig(tlsFiles.CertPEM, tlsFiles.KeyPEM, tlsFiles.CAPEM, tlsFiles.AllowedClients)
	if err != nil {
		return nil, err
	}
	base, cancel := context.WithCancel(ctx)
	r := &SimRunner{d: d, tlsCfg: tlsCfg, opts: o, baseCtx: base, cancel: cancel, byFQDN: map[string]*endpoint{}}
	// The caller's ctx ending is a Stop, so journals are closed either way.
	go func() {
		<-base.Done()
		r.Stop()
	}()
	for _, ep := range d.Endpoints() {
		addr := ep.Listen
		if listenOverride != nil {
			if l := listenOverride(ep); l != "" {
				addr = l
			}
		}
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		e := &endpoint{Endpoint: Endpoint{Endpoint: ep}, addr: addr, journalDir: filepath.Join(journalDir, safeDirName(ep.FQDN))}
		if err := r.start(e); err != nil {
			r.Stop()
			return nil, err
		}
		r.endpoints = append(r.endpoints, e)
		r.byFQDN[strings.ToLower(ep.FQDN)] = e
	}
	return r, nil
}

// Deployment returns the simulated deployment.
func (r *SimRunner) Deployment() *sim.Deployment { return r.d }

// Endpoints maps each endpoint's FQDN to its agent's base URL.
func (r *SimRunner) Endpoints() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.endpoints))
	for _, e := range r.endpoints {
		out[e.FQDN] = e.URL
	}
	return out
}

// List returns the endpoints in the deployment's order: pools, then servers.
func (r *SimRunner) List() []Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Endpoint, len(r.endpoints))
	for i, e := range r.endpoints {
		out[i] = e.Endpoint
	}
	return out
}

// StopEndpoint stops one endpoint's agent as if its process died: the listener closes (clients get
// connection refused), operations in flight are cut short and the journal is closed.
func (r *SimRunner) StopEndpoint(fqdn string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byFQDN[strings.ToLower(fqdn)]
	if !ok {
		return fmt.Errorf("simrun: no endpoint %q", fqdn)
	}
	if e.server != nil {
		e.server.stop(0)
		e.server = nil
	}
	return nil
}

// StartEndpoint starts a stopped endpoint's agent again on the same address and journal; the
// journal reports what the stop cut short as Failed and retryable.
func (r *SimRunner) StartEndpoint(fqdn string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byFQDN[strings.ToLower(fqdn)]
	if !ok {
		return fmt.Errorf("simrun: no endpoint %q", fqdn)
	}
	if e.server != nil {
		return nil
	}
	return r.start(e)
}

// ServeAdmin serves sim.AdminHandler on addr behind the same mutual TLS and returns its URL.
func (r *SimRunner) ServeAdmin(addr string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.admin != nil {
		return "", errors.New("simrun: the admin API is already served")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s for the sim admin API: %w", addr, err)
	}
	r.admin = r.serve(&gatedListener{Listener: ln}, sim.AdminHandler(r.d), nil, nil)
	return urlFor(ln.Addr()), nil
}

// Stop stops every agent and the admin API. It is safe to call more than once.
func (r *SimRunner) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	// In parallel: each agent may give its running operations a little grace.
	var wg sync.WaitGroup
	for _, e := range r.endpoints {
		if e.server != nil {
			wg.Add(1)
			go func(s *server) {
				defer wg.Done()
				s.stop(2 * time.Second)
			}(e.server)
			e.server = nil
		}
	}
	wg.Wait()
	if r.admin != nil {
		r.admin.stop(0)
		r.admin = nil
	}
	r.cancel()
}

// start opens e's journal and listener and serves its agent; called with r.mu held or before r
// is shared.
func (r *SimRunner) start(e *endpoint) error {
	backend, err := r.d.Backend(e.FQDN)
	if err != nil {
		return err
	}
	j, err := agent.OpenJournal(e.journalDir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", e.Kind, e.FQDN, err)
	}
	logger := r.opts.logger.With("endpoint", e.FQDN)
	h, err := agent.NewHandler(agent.Config{Backend: backend, Journal: j, Logger: logger, Version: r.opts.version, MaxWait: r.opts.maxWait})
	if err != nil {
		j.Close()
		return err
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		j.Close()
		return fmt.Errorf("listen %s for %s %s: %w", e.addr, e.Kind, e.FQDN, err)
	}
	e.addr = ln.Addr().String()
	e.URL = urlFor(ln.Addr())
	fqdn := e.FQDN
	gated := &gatedListener{Listener: ln, reachable: func() bool { return r.d.Reachable(fqdn) }}
	e.server = r.serve(gated, h, h, j)
	return nil
}

// serve runs agent.Serve on ln until the server is stopped.
func (r *SimRunner) serve(ln *gatedListener, h http.Handler, ah *agent.Handler, j *agent.Journal) *server {
	ctx, cancel := context.WithCancel(r.baseCtx)
	s := &server{ln: ln, cancel: cancel, done: make(chan struct{}), handler: ah, journal: j}
	go func() {
		defer close(s.done)
		if err := agent.Serve(ctx, ln, h, r.tlsCfg, r.opts.logger); err != nil {
			r.opts.logger.Error("sim agent stopped serving", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return s
}

// stop ends a server abruptly, as a process that dies: connections are cut, then operations
// still running get grace to finish before they are cancelled, then the journal closes.
func (s *server) stop(grace time.Duration) {
	s.ln.closeAll()
	s.cancel()
	<-s.done
	if s.handler != nil {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		_ = s.handler.Close(ctx)
		cancel()
	}
	if s.journal != nil {
		_ = s.journal.Close()
	}
}

// urlFor is the https URL of a bound address; an unspecified IP is reached on loopback.
func urlFor(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return "https://" + a.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// safeDirName keeps a journal directory name to the characters of a DNS name.
func safeDirName(fqdn string) string {
	return strings.Map(func(c rune) rune {
		if c == '.' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			return c
		}
		return '_'
	}, strings.ToLower(fqdn))
}
