// Package simrun serves a simulated Lync deployment (internal/lync/sim) the way a real one is
// reached: one lync-agent handler per Front End server, each on its own mutual-TLS listener with
// its own journal; for each pool with a listen address, an alias that hands every connection to a
// random Front End of the pool, as the pool's DNS name does (round robin, knowing nothing of which
// servers are up); and the sim's admin API. `lync-agent sim`, the demo and the controller tests use
// it. An agent can be killed and restarted (RestartAgent, StopEndpoint, StartEndpoint) while the
// deployment, and any Bootstrapper.exe it started, goes on; a whole Front End server can be
// restarted (RebootServer), which takes its agent and its Bootstrapper run down with it.
package simrun

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agent"
	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync"
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

// RestartRoute is the admin route RestartAgent is served on (ServeAdmin).
const RestartRoute = "POST " + sim.AdminPrefix + "/agents/{fqdn}/restart"

// RebootRoute is the admin route RebootServer is served on (ServeAdmin); it replaces the sim's own
// route of that pattern, which reboots the server without its agent.
const RebootRoute = "POST " + sim.AdminPrefix + "/servers/{fqdn}/reboot"

// aliasDialTimeout bounds the alias's connection to the Front End it picked.
const aliasDialTimeout = 2 * time.Second

// Endpoint is one served endpoint: a server's agent or a pool's alias (Kind sim.KindPool).
type Endpoint struct {
	sim.Endpoint
	// URL is the endpoint's base URL, https://host:port.
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
	endpoints []*endpoint // in d.Endpoints() order: pool aliases, then servers
	byFQDN    map[string]*endpoint
	admin     *server
	stopped   bool
	stopOnce  sync.Once
}

// endpoint is one served address: a server's agent (agent is nil while it is stopped) or a pool
// alias (alias is nil while it is stopped).
type endpoint struct {
	Endpoint
	addr       string // the bound address, reused by a restart
	journalDir string // servers only
	agent      *server
	alias      *alias
}

func (e *endpoint) running() bool { return e.agent != nil || e.alias != nil }

// server is one running listener with its agent handler and journal (both nil for the admin).
type server struct {
	ln      *gatedListener
	cancel  context.CancelFunc
	done    chan struct{}
	handler *agent.Handler
	journal *agent.Journal
}

// alias is a pool's DNS name: each connection goes, bytes as they are (TLS passes through), to a
// Front End of the pool picked at random among all of them, up or not.
type alias struct {
	ln      *gatedListener
	targets []string // the pool's servers' agent addresses
	done    chan struct{}
	proxies sync.WaitGroup
}

// StartSim starts one agent per Front End server of d, each with a journal in
// journalDir/<fqdn>/, all presenting tlsFiles' certificate and requiring clients signed by its CA,
// and one alias per pool that has a listen address. listenOverride, when not nil and answering
// non-empty, replaces an endpoint's listen address (tests pass "127.0.0.1:0"). If any listener
// cannot start, everything already started is stopped and the error names the address and the
// endpoint. ctx bounds the runner's life, as Stop does. The runner does not own d: Stop leaves
// the deployment (and its Bootstrapper runs) alone.
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
		e := &endpoint{Endpoint: Endpoint{Endpoint: ep}, addr: addr}
		if ep.Kind == sim.KindServer {
			e.journalDir = filepath.Join(journalDir, safeDirName(ep.FQDN))
		}
		r.endpoints = append(r.endpoints, e)
		r.byFQDN[strings.ToLower(ep.FQDN)] = e
	}
	// The servers first: an alias hands connections to their bound addresses.
	for _, kind := range []string{sim.KindServer, sim.KindPool} {
		for _, e := range r.endpoints {
			if e.Kind != kind {
				continue
			}
			if err := r.startLocked(e); err != nil {
				r.Stop()
				return nil, err
			}
		}
	}
	// The caller's ctx ending is a Stop, so journals are closed either way.
	go func() {
		<-base.Done()
		r.Stop()
	}()
	return r, nil
}

// Deployment returns the simulated deployment.
func (r *SimRunner) Deployment() *sim.Deployment { return r.d }

// Endpoints maps each endpoint's FQDN to its base URL: a server's agent, or a pool's alias.
func (r *SimRunner) Endpoints() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.endpoints))
	for _, e := range r.endpoints {
		out[e.FQDN] = e.URL
	}
	return out
}

// List returns the endpoints in the deployment's order: pool aliases, then servers.
func (r *SimRunner) List() []Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Endpoint, len(r.endpoints))
	for i, e := range r.endpoints {
		out[i] = e.Endpoint
	}
	return out
}

// lookup finds an endpoint; called with r.mu held.
func (r *SimRunner) lookup(fqdn string) (*endpoint, error) {
	e, ok := r.byFQDN[strings.ToLower(strings.TrimSuffix(fqdn, "."))]
	if !ok {
		return nil, fmt.Errorf("%w: the simulated deployment serves no agent or alias %q", lync.ErrNotFound, fqdn)
	}
	if r.stopped {
		return nil, fmt.Errorf("%w: the simulated agents are stopped", lync.ErrUnavailable)
	}
	return e, nil
}

// RestartAgent kills the agent of Front End server fqdn, as a process killed without warning
// (its connections cut, its operations cancelled at once and recorded so in its journal, the
// journal closed), and starts it again on the same address and journal directory. The deployment
// goes on meanwhile: a Bootstrapper.exe run the agent started carries on (the new agent finds it
// through RunningBootstrap); any other operation it was running is cut short and changes nothing.
// A stopped agent is just started.
func (r *SimRunner) RestartAgent(fqdn string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.lookupServer(fqdn)
	if err != nil {
		return err
	}
	r.stopLocked(e, 0)
	return r.startLocked(e)
}

// lookupServer finds a Front End server's endpoint; a pool alias (its DNS name) is sim.ErrInvalid.
// Called with r.mu held.
func (r *SimRunner) lookupServer(fqdn string) (*endpoint, error) {
	e, err := r.lookup(fqdn)
	if err != nil {
		return nil, err
	}
	if e.Kind != sim.KindServer {
		return nil, fmt.Errorf("%w: %s is a pool alias (its DNS name), not a Front End server; name one of its servers", sim.ErrInvalid, e.FQDN)
	}
	return e, nil
}

// RebootServer restarts Front End server fqdn as its administrator would (the operator never
// does): the machine goes down, so its agent is killed as RestartAgent kills it (its operations
// cut short and recorded so in its journal), then the deployment restarts the server
// (sim.Deployment.Reboot: a Bootstrapper.exe run in progress on it is cut short and changes
// nothing, the boot time becomes now, a restart Bootstrapper asked for is no longer pending, an
// installed LYNCBACKUP starts on its own), then the agent starts again on the same address and
// journal, as a service that starts with Windows. The server is down for no time at all; a test
// that wants it down longer calls StopEndpoint, Deployment().Reboot and StartEndpoint itself. A
// stopped agent is started. A pool alias is sim.ErrInvalid.
func (r *SimRunner) RebootServer(fqdn string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.lookupServer(fqdn)
	if err != nil {
		return err
	}
	r.stopLocked(e, 0)
	if err := r.d.Reboot(e.FQDN); err != nil {
		// The machine did not go down: its agent comes back as it was.
		if serr := r.startLocked(e); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	return r.startLocked(e)
}

// StopEndpoint kills a server's agent as RestartAgent does, and leaves it stopped: its address
// refuses connections (and an alias that picks it closes the client's connection). For a pool
// alias, the pool's name stops answering: the alias's listener closes and its connections are cut.
func (r *SimRunner) StopEndpoint(fqdn string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.lookup(fqdn)
	if err != nil {
		return err
	}
	r.stopLocked(e, 0)
	return nil
}

// StartEndpoint starts a stopped endpoint again on the same address (and, for an agent, the same
// journal: what the kill cut short is reported as the agent reports interrupted operations). A
// running endpoint is left alone.
func (r *SimRunner) StartEndpoint(fqdn string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.lookup(fqdn)
	if err != nil {
		return err
	}
	if e.running() {
		return nil
	}
	return r.startLocked(e)
}

// ServeAdmin serves sim.AdminHandler on addr behind the same mutual TLS, with one more route,
// POST /sim/v1/agents/{fqdn}/restart (RestartAgent), and POST /sim/v1/servers/{fqdn}/reboot
// served by RebootServer (the agent restarts with its machine), and returns its URL.
func (r *SimRunner) ServeAdmin(addr string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return "", errors.New("simrun: stopped")
	}
	if r.admin != nil {
		return "", errors.New("simrun: the admin API is already served")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s for the sim admin API: %w", addr, err)
	}
	h := sim.AdminHandler(r.d, sim.AdminRoute{
		Pattern: RestartRoute,
		Do:      func(req *http.Request) error { return r.RestartAgent(req.PathValue("fqdn")) },
	}, sim.AdminRoute{
		Pattern: RebootRoute,
		Do:      func(req *http.Request) error { return r.RebootServer(req.PathValue("fqdn")) },
	})
	r.admin = r.serve(&gatedListener{Listener: ln}, h, nil, nil)
	return urlFor(ln.Addr()), nil
}

// Stop stops every agent, alias and the admin API; agents give their running operations a
// little grace, as a service that is stopped (not killed) does. It is safe to call more than once
// and from several goroutines; every call returns once everything is stopped.
func (r *SimRunner) Stop() { r.stopOnce.Do(r.stop) }

func (r *SimRunner) stop() {
	r.mu.Lock()
	r.stopped = true
	admin := r.admin
	r.admin = nil
	r.mu.Unlock()
	// The admin API first, and without r.mu: a restart it is serving needs the lock to finish.
	if admin != nil {
		admin.stop(0)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range r.endpoints {
		wg.Add(1)
		go func(e *endpoint) {
			defer wg.Done()
			r.stopLocked(e, 2*time.Second)
		}(e)
	}
	wg.Wait()
	r.cancel()
}

// stopLocked stops e if it runs; called with r.mu held (or, in stop, on distinct endpoints).
func (r *SimRunner) stopLocked(e *endpoint, grace time.Duration) {
	if e.agent != nil {
		e.agent.stop(grace)
		e.agent = nil
	}
	if e.alias != nil {
		e.alias.stop()
		e.alias = nil
	}
}

// startLocked starts e; called with r.mu held or before r is shared.
func (r *SimRunner) startLocked(e *endpoint) error {
	if e.Kind == sim.KindPool {
		return r.startAlias(e)
	}
	return r.startAgent(e)
}

// startAgent opens e's journal and listener and serves its agent, with a new backend view: a new
// agent process.
func (r *SimRunner) startAgent(e *endpoint) error {
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
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		_ = h.Close(ctx)
		cancel()
		j.Close()
		return fmt.Errorf("listen %s for %s %s: %w", e.addr, e.Kind, e.FQDN, err)
	}
	e.addr = ln.Addr().String()
	e.URL = urlFor(ln.Addr())
	fqdn := e.FQDN
	gated := &gatedListener{Listener: ln, reachable: func() bool { return r.d.Reachable(fqdn) }}
	e.agent = r.serve(gated, h, h, j)
	return nil
}

// startAlias serves the pool alias e.
func (r *SimRunner) startAlias(e *endpoint) error {
	servers, err := r.d.Servers(e.FQDN)
	if err != nil {
		return err
	}
	var targets []string
	for _, s := range servers {
		se, ok := r.byFQDN[strings.ToLower(s)]
		if !ok || se.addr == "" {
			return fmt.Errorf("simrun: pool %s: server %s has no agent address", e.FQDN, s)
		}
		targets = append(targets, se.addr)
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		return fmt.Errorf("listen %s for the alias of pool %s: %w", e.addr, e.FQDN, err)
	}
	e.addr = ln.Addr().String()
	e.URL = urlFor(ln.Addr())
	pool := e.FQDN
	a := &alias{
		ln:      &gatedListener{Listener: ln, reachable: func() bool { return r.d.Reachable(pool) }},
		targets: targets,
		done:    make(chan struct{}),
	}
	go a.serve()
	e.alias = a
	return nil
}

func (a *alias) serve() {
	defer close(a.done)
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.proxies.Add(1)
		go func() {
			defer a.proxies.Done()
			a.proxy(c)
		}()
	}
}

// proxy hands one client connection to a Front End picked at random, uniformly among all the
// pool's servers, as a DNS round robin answer would. When that server's agent is stopped or does
// not answer, the client's connection is closed, as a dead host's would be.
func (a *alias) proxy(c net.Conn) {
	target := a.targets[rand.IntN(len(a.targets))]
	up, err := net.DialTimeout("tcp", target, aliasDialTimeout)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ended: end both
	c.Close()
	up.Close()
	<-done
}

// stop closes the alias and cuts its connections.
func (a *alias) stop() {
	a.ln.kill()
	a.ln.Close()
	<-a.done
	a.proxies.Wait()
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

// stop ends a server as a process that dies: connections are cut and new ones dropped at once,
// then operations still running get grace (none for a kill) before they are cancelled and
// recorded so, then the journal closes.
func (s *server) stop(grace time.Duration) {
	s.ln.kill()
	s.cancel()
	if s.handler != nil {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		_ = s.handler.Close(ctx)
		cancel()
	}
	<-s.done
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
