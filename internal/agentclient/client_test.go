package agentclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agent"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// backend is a minimal lync.Backend: one pool, writes that wait on gate.
type backend struct {
	mu      sync.Mutex
	poolErr error
	gate    chan struct{}
}

func (b *backend) Identity(context.Context) (lync.Identity, error) {
	return lync.Identity{ServerFQDN: "fe01.pool01.contoso.com", PoolFQDN: "pool01.contoso.com", Product: "lync2013", Backend: "fake"}, nil
}
func (b *backend) Pool(_ context.Context, fqdn string) (protocol.Pool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.poolErr != nil {
		return protocol.Pool{}, b.poolErr
	}
	if fqdn != "pool01.contoso.com" {
		return protocol.Pool{}, fmt.Errorf("pool %s: %w", fqdn, lync.ErrNotFound)
	}
	return protocol.Pool{FQDN: fqdn, Edition: protocol.EditionEnterprise}, nil
}
func (b *backend) BackupStatus(_ context.Context, p string) (protocol.BackupStatus, error) {
	return protocol.BackupStatus{PoolFQDN: p, Modules: []protocol.BackupModule{}}, nil
}
func (b *backend) BackupService(context.Context) (protocol.BackupService, error) {
	return protocol.BackupService{Installed: true, Status: protocol.ServiceStopped}, nil
}
func (b *backend) wait(ctx context.Context) error {
	b.mu.Lock()
	g := b.gate
	b.mu.Unlock()
	if g == nil {
		return nil
	}
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (b *backend) PairPools(ctx context.Context, _ protocol.PairPoolsParams) error {
	return b.wait(ctx)
}
func (b *backend) Unpair(ctx context.Context, _ protocol.UnpairParams) error { return b.wait(ctx) }
func (b *backend) FailoverCMS(ctx context.Context, _ string, _, _ bool) (string, error) {
	return "", b.wait(ctx)
}
func (b *backend) MoveEdgeNextHop(ctx context.Context, _, _ string, _ bool) (string, error) {
	return "", b.wait(ctx)
}
func (b *backend) FailoverPool(ctx context.Context, _ string, _, _ bool) (string, error) {
	return "", b.wait(ctx)
}
func (b *backend) FailbackPool(ctx context.Context, _ string, _ bool) (string, error) {
	return "", b.wait(ctx)
}
func (b *backend) FrontEndService(context.Context) (string, error) {
	return protocol.ServiceRunning, nil
}
func (b *backend) Bootstrap(ctx context.Context) (lync.BootstrapResult, error) {
	return lync.BootstrapResult{Succeeded: true}, b.wait(ctx)
}
func (b *backend) RunningBootstrap(context.Context) (func(context.Context) (lync.BootstrapResult, error), bool, error) {
	return nil, false, nil
}
func (b *backend) StartBackupService(ctx context.Context) error   { return b.wait(ctx) }
func (b *backend) RestartBackupService(ctx context.Context) error { return b.wait(ctx) }
func (b *backend) BootTime(context.Context) (time.Time, error)    { return time.Time{}, nil }
func (b *backend) SyncBackup(ctx context.Context, _ string) error { return b.wait(ctx) }

var certs = func() *devcerts.Bundle {
	b, err := devcerts.Generate([]string{"127.0.0.1", "localhost"}, "poolpair-operator")
	if err != nil {
		panic(err)
	}
	return b
}()

// serveAgent runs an agent on addr ("127.0.0.1:0" for any port) with journal dir; stop ends it.
func serveAgent(t *testing.T, addr, dir string, b lync.Backend) (endpoint string, stop func()) {
	t.Helper()
	j, err := agent.OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := agent.NewHandler(agent.Config{Backend: b, Journal: j, Logger: quiet, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := agent.ServerTLSConfig(certs.ServerCertPEM, certs.ServerKeyPEM, certs.CACertPEM, []string{"poolpair-operator"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, ln, h, tlsCfg, quiet) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-served
			cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer ccancel()
			_ = h.Close(cctx)
			_ = j.Close()
		})
	}
	t.Cleanup(stop)
	return "https://" + ln.Addr().String(), stop
}

func newClient(t *testing.T, cfg agentclient.Config) *agentclient.Client {
	t.Helper()
	if cfg.CertPEM == nil {
		cfg.CertPEM, cfg.KeyPEM = certs.ClientCertPEM, certs.ClientKeyPEM
	}
	if cfg.CAPEM == nil {
		cfg.CAPEM = certs.CACertPEM
	}
	c, err := agentclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestReadsAndObserve(t *testing.T) {
	ep, _ := serveAgent(t, "127.0.0.1:0", t.TempDir(), &backend{})
	var mu sync.Mutex
	var seen []string
	c := newClient(t, agentclient.Config{Observe: func(method, path, code string, d time.Duration) {
		mu.Lock()
		seen = append(seen, method+" "+path+" "+code)
		mu.Unlock()
	}})
	ctx := t.Context()
	info, err := c.Info(ctx, ep)
	if err != nil || info.ServerFQDN != "fe01.pool01.contoso.com" || info.AgentVersion != "test" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if p, err := c.Pool(ctx, ep+"/", "pool01.contoso.com"); err != nil || p.Edition != protocol.EditionEnterprise {
		t.Fatalf("Pool = %+v, %v", p, err)
	}
	if s, err := c.BackupStatus(ctx, ep, "pool01.contoso.com"); err != nil || s.PoolFQDN != "pool01.contoso.com" {
		t.Fatalf("BackupStatus = %+v, %v", s, err)
	}
	if s, err := c.Server(ctx, ep); err != nil || s.BackupService.Status != protocol.ServiceStopped {
		t.Fatalf("Server = %+v, %v", s, err)
	}
	want := []string{"GET /v1/info 200", "GET /v1/pools/{fqdn} 200", "GET /v1/pools/{fqdn}/backup-status 200", "GET /v1/server 200"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("observed %q, want %q", seen, want)
	}
}

func TestOperationsRoundTrip(t *testing.T) {
	b := &backend{gate: make(chan struct{})}
	ep, _ := serveAgent(t, "127.0.0.1:0", t.TempDir(), b)
	c := newClient(t, agentclient.Config{})
	ctx := t.Context()
	id := "3f2a/Bootstrap/fe01.pool01.contoso.com/2/0"
	op, err := c.StartOperation(ctx, ep, protocol.OperationRequest{ID: id, Kind: protocol.KindBootstrap})
	if err != nil || op.ID != id || op.State != protocol.StatePending {
		t.Fatalf("StartOperation = %+v, %v", op, err)
	}
	again, err := c.StartOperation(ctx, ep, protocol.OperationRequest{ID: id, Kind: protocol.KindBootstrap})
	if err != nil || again.ID != id {
		t.Fatalf("repeat = %+v, %v", again, err)
	}
	if op, err := c.WaitOperation(ctx, ep, id, 100*time.Millisecond); err != nil || op.State.Done() {
		t.Fatalf("WaitOperation while blocked = %+v, %v", op, err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(b.gate)
	}()
	done, err := c.AwaitDone(ctx, ep, id)
	if err != nil || done.State != protocol.StateSucceeded {
		t.Fatalf("AwaitDone = %+v, %v", done, err)
	}
	if op, err := c.Operation(ctx, ep, id); err != nil || op.State != protocol.StateSucceeded {
		t.Fatalf("Operation = %+v, %v", op, err)
	}
}

func TestErrorMapping(t *testing.T) {
	b := &backend{}
	ep, _ := serveAgent(t, "127.0.0.1:0", t.TempDir(), b)
	c := newClient(t, agentclient.Config{})
	ctx := t.Context()
	pair := func(backup string) protocol.OperationRequest {
		p, _ := json.Marshal(protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: backup})
		return protocol.OperationRequest{ID: "pair-1", Kind: protocol.KindPairPools, Params: p}
	}
	if _, err := c.StartOperation(ctx, ep, pair("pool02.contoso.com")); err != nil {
		t.Fatal(err)
	}

	_, notFound := c.Pool(ctx, ep, "pool09.contoso.com")
	_, opNotFound := c.Operation(ctx, ep, "no/such/op")
	_, conflict := c.StartOperation(ctx, ep, pair("pool03.contoso.com"))
	_, invalid := c.Pool(ctx, ep, "pool01.contoso.com; Remove-CsPool")
	_, invalidOp := c.StartOperation(ctx, ep, protocol.OperationRequest{ID: "x", Kind: "RunScript"})
	_, notHTTPS := c.Info(ctx, strings.Replace(ep, "https://", "http://", 1))
	b.mu.Lock()
	b.poolErr = fmt.Errorf("Get-CsPool: %w", lync.ErrUnavailable)
	b.mu.Unlock()
	_, unavailable := c.Pool(ctx, ep, "pool01.contoso.com")
	b.mu.Lock()
	b.poolErr = fmt.Errorf("Get-CsPool: %w", lync.ErrPermission)
	b.mu.Unlock()
	_, forbidden := c.Pool(ctx, ep, "pool01.contoso.com")

	for _, tc := range []struct {
		name   string
		err    error
		want   error
		status int
	}{
		{"unknown pool", notFound, agentclient.ErrNotFound, 404},
		{"unknown operation", opNotFound, agentclient.ErrNotFound, 404},
		{"same id, other params", conflict, agentclient.ErrConflict, 409},
		{"hostile fqdn", invalid, agentclient.ErrInvalid, 400},
		{"unknown kind", invalidOp, agentclient.ErrInvalid, 400},
		{"backend unavailable", unavailable, agentclient.ErrUnavailable, 503},
		{"backend permission", forbidden, agentclient.ErrUnauthorized, 403},
		{"plain http endpoint", notHTTPS, agentclient.ErrInvalid, 0},
	} {
		t.Logf("%s: %v", tc.name, tc.err)
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v is not %v", tc.name, tc.err, tc.want)
		}
		for _, other := range []error{agentclient.ErrNotFound, agentclient.ErrConflict, agentclient.ErrInvalid, agentclient.ErrUnavailable, agentclient.ErrUnauthorized} {
			if other != tc.want && errors.Is(tc.err, other) {
				t.Errorf("%s: %v is also %v", tc.name, tc.err, other)
			}
		}
		if tc.status == 0 {
			continue
		}
		var apiErr *agentclient.APIError
		if !errors.As(tc.err, &apiErr) || apiErr.Status != tc.status || apiErr.Code == "" || apiErr.Message == "" || apiErr.Endpoint != ep {
			t.Errorf("%s: APIError = %+v", tc.name, apiErr)
		}
	}
}

func TestTransportErrors(t *testing.T) {
	ep, stop := serveAgent(t, "127.0.0.1:0", t.TempDir(), &backend{})
	ctx := t.Context()

	// Wrong CA, either way round: both are authentication failures, not an agent that is down.
	foreign, err := devcerts.Generate([]string{"127.0.0.1"}, "poolpair-operator")
	if err != nil {
		t.Fatal(err)
	}
	untrustedServer := newClient(t, agentclient.Config{CAPEM: foreign.CACertPEM})
	_, err = untrustedServer.Info(ctx, ep)
	t.Logf("server from an unknown CA: %v", err)
	if !errors.Is(err, agentclient.ErrUnauthorized) {
		t.Errorf("server cert from an unknown CA: %v", err)
	}
	foreignClient := newClient(t, agentclient.Config{CertPEM: foreign.ClientCertPEM, KeyPEM: foreign.ClientKeyPEM})
	_, err = foreignClient.Info(ctx, ep)
	t.Logf("client from an unknown CA: %v", err)
	if !errors.Is(err, agentclient.ErrUnauthorized) {
		t.Errorf("client cert from an unknown CA: %v", err)
	}
	intruderCert, intruderKey, _ := certs.IssueClient("intruder")
	intruder := newClient(t, agentclient.Config{CertPEM: intruderCert, KeyPEM: intruderKey})
	if _, err = intruder.Info(ctx, ep); !errors.Is(err, agentclient.ErrUnauthorized) {
		t.Errorf("client not allowed: %v", err)
	}

	// Agent down: connection refused.
	c := newClient(t, agentclient.Config{Timeout: 500 * time.Millisecond})
	if _, err := c.Info(ctx, ep); err != nil {
		t.Fatal(err)
	}
	stop()
	_, err = c.Info(ctx, ep)
	t.Logf("agent down: %v", err)
	if !errors.Is(err, agentclient.ErrUnavailable) || errors.Is(err, agentclient.ErrUnauthorized) {
		t.Errorf("agent down: %v", err)
	}

	// A listener that accepts and never answers: the per-request timeout applies.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	start := time.Now()
	_, err = c.Info(ctx, "https://"+ln.Addr().String())
	t.Logf("silent agent: %v after %s", err, time.Since(start))
	if !errors.Is(err, agentclient.ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Errorf("silent agent: %v after %s", err, time.Since(start))
	}
	// A listener that closes every connection at once (a sim server marked unreachable).
	closer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	go func() {
		for {
			conn, err := closer.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	if _, err = c.Info(ctx, "https://"+closer.Addr().String()); !errors.Is(err, agentclient.ErrUnavailable) {
		t.Errorf("closing agent: %v", err)
	}

	// The caller giving up is not the agent's fault.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = c.Info(cctx, "https://"+ln.Addr().String()); !errors.Is(err, context.Canceled) || errors.Is(err, agentclient.ErrUnavailable) {
		t.Errorf("cancelled caller: %v", err)
	}
}

// TestAwaitDoneRidesOutAnAgentRestart: the agent stops while an operation runs and comes back on
// the same address and journal; AwaitDone reports the operation as the new process knows it.
func TestAwaitDoneRidesOutAnAgentRestart(t *testing.T) {
	dir := t.TempDir()
	ep, stop := serveAgent(t, "127.0.0.1:0", dir, &backend{gate: make(chan struct{})})
	c := newClient(t, agentclient.Config{Timeout: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := c.StartOperation(ctx, ep, protocol.OperationRequest{ID: "boot", Kind: protocol.KindBootstrap}); err != nil {
		t.Fatal(err)
	}
	stop()
	result := make(chan protocol.Operation, 1)
	go func() {
		op, err := c.AwaitDone(ctx, ep, "boot")
		if err != nil {
			t.Error(err)
		}
		result <- op
	}()
	time.Sleep(300 * time.Millisecond) // AwaitDone meets a refused connection first
	serveAgent(t, strings.TrimPrefix(ep, "https://"), dir, &backend{})
	op := <-result
	if op.State != protocol.StateFailed || !op.Retryable || !strings.Contains(op.Message, "interrupted") {
		t.Errorf("after restart: %+v", op)
	}
}
