// Package agentclient is the operator's side of the lync-agent protocol (v1): a JSON client over
// mutual TLS with typed errors, used by the controller, the demo and the tests.
package agentclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// DefaultTimeout bounds each request when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// maxResponseBytes bounds what the client reads of an answer.
const maxResponseBytes = 1 << 20

// Route templates, as passed to Config.Observe.
const (
	RouteInfo         = "/v1/info"
	RoutePool         = "/v1/pools/{fqdn}"
	RouteBackupStatus = "/v1/pools/{fqdn}/backup-status"
	RouteServer       = "/v1/server"
	RouteOperations   = "/v1/operations"
	RouteOperation    = "/v1/operations/{id}"
)

// Config configures a Client.
type Config struct {
	// CertPEM and KeyPEM are the client certificate the agents require; CAPEM the CA that signed
	// the agents' server certificates.
	CertPEM, KeyPEM, CAPEM []byte
	// Timeout bounds each request (a long-poll gets its wait on top); DefaultTimeout when zero.
	Timeout time.Duration
	// Observe, when set, is called after every request with the route template (for example
	// RoutePool), the HTTP status as a decimal string or "error" when there was no answer, and
	// the duration. For metrics.
	Observe func(method, path string, code string, d time.Duration)
}

// Client talks to any number of agents, keeping connections alive between calls. Safe for
// concurrent use.
type Client struct {
	http    *http.Client
	timeout time.Duration
	observe func(method, path, code string, d time.Duration)
	id      tlsIdentity
}

// New returns a client that presents the configured certificate and trusts only agents whose
// certificate CAPEM signed.
func New(cfg Config) (*Client, error) {
	cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("agentclient: client certificate and key: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.CAPEM) {
		return nil, errors.New("agentclient: CA: no PEM certificate found")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	transport := &http.Transport{
		Proxy:               nil, // agents are reached directly; a proxy would see no plaintext anyway
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}},
		TLSHandshakeTimeout: timeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{http: &http.Client{Transport: transport}, timeout: timeout, observe: cfg.Observe, id: newTLSIdentity(cert.Leaf, cfg.CAPEM)}, nil
}

// CloseIdleConnections closes kept-alive connections (for example after an agent's certificate
// changed).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Info reads who the agent is.
func (c *Client) Info(ctx context.Context, endpoint string) (protocol.Info, error) {
	var v protocol.Info
	err := c.do(ctx, endpoint, http.MethodGet, RouteInfo, "/v1/info", nil, c.timeout, &v)
	return v, err
}

// Pool reads one pool's topology facts.
func (c *Client) Pool(ctx context.Context, endpoint, fqdn string) (protocol.Pool, error) {
	var v protocol.Pool
	err := c.do(ctx, endpoint, http.MethodGet, RoutePool, "/v1/pools/"+url.PathEscape(fqdn), nil, c.timeout, &v)
	return v, err
}

// BackupStatus reads the backup modules of the direction from fqdn to its backup pool.
func (c *Client) BackupStatus(ctx context.Context, endpoint, fqdn string) (protocol.BackupStatus, error) {
	var v protocol.BackupStatus
	err := c.do(ctx, endpoint, http.MethodGet, RouteBackupStatus, "/v1/pools/"+url.PathEscape(fqdn)+"/backup-status", nil, c.timeout, &v)
	return v, err
}

// Server reads the Front End server the agent runs on.
func (c *Client) Server(ctx context.Context, endpoint string) (protocol.Server, error) {
	var v protocol.Server
	err := c.do(ctx, endpoint, http.MethodGet, RouteServer, "/v1/server", nil, c.timeout, &v)
	return v, err
}

// StartOperation asks the agent to run an operation, or returns the existing one with that id.
// A different request under an existing id is ErrConflict.
func (c *Client) StartOperation(ctx context.Context, endpoint string, req protocol.OperationRequest) (protocol.Operation, error) {
	var v protocol.Operation
	body, err := json.Marshal(req)
	if err != nil {
		return v, fmt.Errorf("agentclient: encode request: %w", err)
	}
	err = c.do(ctx, endpoint, http.MethodPost, RouteOperations, "/v1/operations", body, c.timeout, &v)
	return v, err
}

// Operation reads an operation.
func (c *Client) Operation(ctx context.Context, endpoint, id string) (protocol.Operation, error) {
	var v protocol.Operation
	err := c.do(ctx, endpoint, http.MethodGet, RouteOperation, operationPath(id), nil, c.timeout, &v)
	return v, err
}

// WaitOperation long-polls once: it returns when the operation is done or wait (capped by the
// agent) has passed, with the operation's state then.
func (c *Client) WaitOperation(ctx context.Context, endpoint, id string, wait time.Duration) (protocol.Operation, error) {
	var v protocol.Operation
	if wait <= 0 {
		return c.Operation(ctx, endpoint, id)
	}
	path := operationPath(id) + "?wait=" + url.QueryEscape(wait.String())
	err := c.do(ctx, endpoint, http.MethodGet, RouteOperation, path, nil, wait+c.timeout, &v)
	return v, err
}

// awaitPoll is each long-poll of AwaitDone; the agent's default cap is 60 s.
const awaitPoll = 30 * time.Second

// AwaitDone long-polls until the operation is done or ctx ends. An unreachable agent is retried
// with a capped backoff (a restarted agent answers for its operations from its journal); any other
// error is returned.
func (c *Client) AwaitDone(ctx context.Context, endpoint, id string) (protocol.Operation, error) {
	backoff := 250 * time.Millisecond
	for {
		op, err := c.WaitOperation(ctx, endpoint, id, awaitPoll)
		switch {
		case err == nil && op.State.Done():
			return op, nil
		case err == nil:
			backoff = 250 * time.Millisecond
			continue
		case !errors.Is(err, ErrUnavailable) || ctx.Err() != nil:
			return op, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return op, fmt.Errorf("await operation %q at %s: %w (last error: %v)", id, endpoint, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// operationPath escapes the id: operator ids contain slashes.
func operationPath(id string) string {
	return "/v1/operations/" + url.PathEscape(id)
}

// do sends one request and decodes a 2xx JSON answer into out.
func (c *Client) do(ctx context.Context, endpoint, method, route, path string, body []byte, timeout time.Duration, out any) error {
	base := strings.TrimSuffix(endpoint, "/")
	u, err := url.Parse(base + path)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%s %s%s: %w: the agent endpoint must be an https:// URL", method, endpoint, path, ErrInvalid)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, base, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.report(method, route, "error", start)
		return transportError(ctx, c.id, method, base, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	c.report(method, route, fmt.Sprint(resp.StatusCode), start)
	if err != nil {
		return transportError(ctx, c.id, method, base, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &APIError{Method: method, Endpoint: base, Path: path, Status: resp.StatusCode}
		var e protocol.Error
		if json.Unmarshal(raw, &e) == nil && e.Code != "" {
			apiErr.Code, apiErr.Message, apiErr.Operation = e.Code, withoutCode(e.Code, e.Message), e.Operation
		} else {
			apiErr.Message = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
		}
		return apiErr
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s%s: decode answer: %w", method, base, path, err)
	}
	return nil
}

func (c *Client) report(method, route, code string, start time.Time) {
	if c.observe != nil {
		c.observe(method, route, code, time.Since(start))
	}
}
