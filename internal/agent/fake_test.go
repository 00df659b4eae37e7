package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// fakeBackend counts every call. Writes block on gate when it is set, and report on started.
type fakeBackend struct {
	mu      sync.Mutex
	id      lync.Identity
	calls   map[string]int
	errs    map[string]error
	boot    lync.BootstrapResult
	gate    chan struct{}
	started chan string
	// orphan, when set, is a Bootstrapper run an earlier agent process left going on:
	// RunningBootstrap finds it, and its waiter returns what the test sends.
	orphan chan lync.BootstrapResult
	// bootTime is when the fake server last started.
	bootTime time.Time
}

func newFake() *fakeBackend {
	return &fakeBackend{
		id:       lync.Identity{ServerFQDN: "fe01.pool01.contoso.com", PoolFQDN: "pool01.contoso.com", Product: protocol.ProductLync2013, Backend: "fake"},
		calls:    map[string]int{},
		errs:     map[string]error{},
		boot:     lync.BootstrapResult{Succeeded: true, BackupPool: "pool02.contoso.com"},
		started:  make(chan string, 100),
		bootTime: time.Now().Add(-time.Hour),
	}
}

func (f *fakeBackend) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// writes is the number of calls that change the deployment.
func (f *fakeBackend) writes() int {
	n := 0
	for _, m := range []string{"PairPools", "Unpair", "Bootstrap", "StartBackupService", "SyncBackup"} {
		n += f.count(m)
	}
	return n
}

func (f *fakeBackend) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeBackend) setGate(g chan struct{}) {
	f.mu.Lock()
	f.gate = g
	f.mu.Unlock()
}

func (f *fakeBackend) setErr(method string, err error) {
	f.mu.Lock()
	f.errs[method] = err
	f.mu.Unlock()
}

func (f *fakeBackend) read(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	return f.errs[method]
}

func (f *fakeBackend) write(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls[method]++
	gate, err := f.gate, f.errs[method]
	f.mu.Unlock()
	f.started <- method
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (f *fakeBackend) Identity(context.Context) (lync.Identity, error) {
	err := f.read("Identity")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id, err
}

func (f *fakeBackend) Pool(_ context.Context, fqdn string) (protocol.Pool, error) {
	if err := f.read("Pool"); err != nil {
		return protocol.Pool{}, err
	}
	if fqdn != "pool01.contoso.com" {
		return protocol.Pool{}, lync.ErrNotFound
	}
	return protocol.Pool{FQDN: fqdn, Site: "Dublin", Edition: protocol.EditionEnterprise, Version: "Lync Server 2013", Computers: []string{"fe01.pool01.contoso.com"}}, nil
}

func (f *fakeBackend) BackupStatus(_ context.Context, pool string) (protocol.BackupStatus, error) {
	if err := f.read("BackupStatus"); err != nil {
		return protocol.BackupStatus{}, err
	}
	return protocol.BackupStatus{PoolFQDN: pool, BackupPool: "pool02.contoso.com", Modules: []protocol.BackupModule{{Identity: "UserServices.PresenceFocus", ExportStatus: protocol.ExportSteadyState, ImportStatus: protocol.ImportNormalState}}}, nil
}

func (f *fakeBackend) BackupService(context.Context) (protocol.BackupService, error) {
	return protocol.BackupService{Installed: true, Status: protocol.ServiceRunning}, f.read("BackupService")
}

func (f *fakeBackend) PairPools(ctx context.Context, _ protocol.PairPoolsParams) error {
	return f.write(ctx, "PairPools")
}

func (f *fakeBackend) Unpair(ctx context.Context, _ protocol.UnpairParams) error {
	return f.write(ctx, "Unpair")
}

func (f *fakeBackend) Bootstrap(ctx context.Context) (lync.BootstrapResult, error) {
	if err := f.write(ctx, "Bootstrap"); err != nil {
		return lync.BootstrapResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boot, nil
}

func (f *fakeBackend) RunningBootstrap(context.Context) (func(context.Context) (lync.BootstrapResult, error), bool, error) {
	f.mu.Lock()
	run := f.orphan
	f.mu.Unlock()
	if run == nil {
		return nil, false, nil
	}
	return func(ctx context.Context) (lync.BootstrapResult, error) {
		select {
		case res := <-run:
			return res, nil
		case <-ctx.Done():
			return lync.BootstrapResult{}, ctx.Err()
		}
	}, true, nil
}

func (f *fakeBackend) StartBackupService(ctx context.Context) error {
	return f.write(ctx, "StartBackupService")
}

func (f *fakeBackend) RestartBackupService(ctx context.Context) error {
	return f.write(ctx, "RestartBackupService")
}

func (f *fakeBackend) BootTime(context.Context) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bootTime, f.errs["BootTime"]
}

func (f *fakeBackend) SyncBackup(ctx context.Context, _ string) error {
	return f.write(ctx, "SyncBackup")
}

// The failover steps: counted per kind, rehearsals apart ("FailoverPool(WhatIf)").
func (f *fakeBackend) failover(ctx context.Context, method string, whatIf bool, msg string) (string, error) {
	if whatIf {
		method += "(WhatIf)"
		msg = "what if: " + msg
	}
	if err := f.write(ctx, method); err != nil {
		return "", err
	}
	return msg, nil
}

func (f *fakeBackend) FailoverCMS(ctx context.Context, to string, _, whatIf bool) (string, error) {
	return f.failover(ctx, "FailoverCMS", whatIf, "the Central Management store moved to "+to)
}

func (f *fakeBackend) MoveEdgeNextHop(ctx context.Context, edge, to string, whatIf bool) (string, error) {
	return f.failover(ctx, "MoveEdgeNextHop", whatIf, "the next hop of "+edge+" is "+to)
}

func (f *fakeBackend) FailoverPool(ctx context.Context, pool string, _, whatIf bool) (string, error) {
	return f.failover(ctx, "FailoverPool", whatIf, "failed "+pool+" over")
}

func (f *fakeBackend) FailbackPool(ctx context.Context, pool string, whatIf bool) (string, error) {
	return f.failover(ctx, "FailbackPool", whatIf, "failed "+pool+" back")
}

func (f *fakeBackend) FrontEndService(context.Context) (string, error) {
	return protocol.ServiceRunning, f.read("FrontEndService")
}

// testAgent is an agent served over mutual TLS on 127.0.0.1, with a client that presents the
// bundle's client certificate.
type testAgent struct {
	t       *testing.T
	backend *fakeBackend
	handler *Handler
	journal *Journal
	dir     string
	url     string
	certs   *devcerts.Bundle
	client  *http.Client
	// hits counts requests that reached the handler.
	hits atomic.Int64
	stop func()
}

type agentOpts struct {
	maxWait time.Duration
	allowed []string
	dir     string
	backend *fakeBackend
	// logs, when set, receives the agent's log as JSON lines.
	logs *syncBuffer
	// checks are the start checks /v1/info reports.
	checks []protocol.StartCheck
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	bundleOnce sync.Once
	bundle     *devcerts.Bundle
)

func testBundle(t *testing.T) *devcerts.Bundle {
	bundleOnce.Do(func() {
		var err error
		if bundle, err = devcerts.Generate([]string{"127.0.0.1", "localhost"}, "poolpair-operator"); err != nil {
			panic(err)
		}
	})
	return bundle
}

func startAgent(t *testing.T, o agentOpts) *testAgent {
	t.Helper()
	b := testBundle(t)
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.backend == nil {
		o.backend = newFake()
	}
	j, err := OpenJournal(o.dir)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.logs != nil {
		logger = slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := NewHandler(Config{Backend: o.backend, Journal: j, Logger: logger, Version: "test", MaxWait: o.maxWait, StartChecks: o.checks})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := ServerTLSConfig(b.ServerCertPEM, b.ServerKeyPEM, b.CACertPEM, o.allowed)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{t: t, backend: o.backend, handler: h, journal: j, dir: o.dir, url: "https://" + ln.Addr().String(), certs: b}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		h.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, counted, tlsCfg, logger) }()
	a.client = clientFor(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			// Idle client connections first: the server's shutdown waits up to 5 s for a
			// connection that never sent a request.
			a.client.CloseIdleConnections()
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			_ = h.Close(cctx)
			_ = j.Close()
		})
	}
	t.Cleanup(a.stop)
	return a
}

func clientFor(t *testing.T, caPEM, certPEM, keyPEM []byte) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 40 * time.Second}
}

// do sends a request and decodes a JSON answer into out (when not nil); it returns the status
// and the raw body.
func (a *testAgent) do(method, path, body string, out any) (int, string) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

func (a *testAgent) post(req protocol.OperationRequest) (int, protocol.Operation, string) {
	a.t.Helper()
	body, _ := json.Marshal(req)
	var op protocol.Operation
	status, raw := a.do("POST", "/v1/operations", string(body), &op)
	return status, op, raw
}

// await long-polls until the operation is done.
func (a *testAgent) await(id string) protocol.Operation {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var op protocol.Operation
		if status, raw := a.do("GET", "/v1/operations/"+escapeID(id)+"?wait=10s", "", &op); status != 200 {
			a.t.Fatalf("GET operation %s: %d %s", id, status, raw)
		}
		if op.State.Done() {
			return op
		}
	}
	a.t.Fatalf("operation %s not done in time", id)
	return protocol.Operation{}
}

// waitStarted waits until the backend saw method begin.
func (f *fakeBackend) waitStarted(t *testing.T, method string) {
	t.Helper()
	select {
	case m := <-f.started:
		if m != method {
			t.Fatalf("backend started %s, want %s", m, method)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("backend never started %s", method)
	}
}

func escapeID(id string) string { return strings.ReplaceAll(id, "/", "%2F") }

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func pairReq(id, primary, backup string) protocol.OperationRequest {
	p, _ := json.Marshal(protocol.PairPoolsParams{PrimaryFQDN: primary, BackupFQDN: backup})
	return protocol.OperationRequest{ID: id, Kind: protocol.KindPairPools, Params: p}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
