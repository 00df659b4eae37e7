package agentclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrUnavailable: the agent could not be reached or answered 503 (connection refused or reset,
	// timeout, TLS handshake cut off, backend unavailable). Try again later.
	ErrUnavailable = errors.New("agent unavailable")
	// ErrNotFound: 404, an unknown pool or operation.
	ErrNotFound = errors.New("not found")
	// ErrConflict: 409.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: 400, 405 or 413, the request was refused as invalid.
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthorized: 401 or 403, or a TLS authentication failure in either direction: the agent
	// refused this client's certificate, or the agent's certificate is not signed by the CA this
	// client trusts.
	ErrUnauthorized = errors.New("unauthorized")
)

// APIError is an answer from the agent with a status other than 2xx.
type APIError struct {
	Method   string
	Endpoint string
	Path     string
	Status   int
	// Code and Message are the agent's protocol.Error (less a start of Message that only repeats
	// Code, as older agents sent: see withoutCode); when the body was not one, Code is empty and
	// Message holds the start of the body.
	Code    string
	Message string
	// Operation is, on a 409, the operation in flight that the request collided with.
	Operation *protocol.ActiveOperation
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s%s: %d %s: %s", e.Method, e.Endpoint, e.Path, e.Status, code, e.Message)
}

// Is maps the HTTP status to the sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrInvalid:
		// 405: this client sent a method the agent does not take on that path (a version skew).
		return e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge || e.Status == http.StatusMethodNotAllowed
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	}
	return false
}

// transportError classifies a failure to get an answer at all. ctx is the caller's context: when it
// ended, its error is returned as is, since the agent is not to blame. A TLS authentication
// failure is ErrUnauthorized with a *TLSError saying which certificate is wrong and what to do;
// anything else is ErrUnavailable.
func transportError(ctx context.Context, id tlsIdentity, method, endpoint, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s%s: %w", method, endpoint, path, ctx.Err())
	}
	// *url.Error repeats the method and URL this message already names.
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	if isAuthFailure(err) {
		return fmt.Errorf("%s %s%s: %w: %w", method, endpoint, path, ErrUnauthorized, id.explain(err))
	}
	return fmt.Errorf("%s %s%s: %w: %w", method, endpoint, path, ErrUnavailable, err)
}

// isAuthFailure reports a TLS authentication failure, as opposed to an agent that is down: the
// agent's certificate did not verify, or the agent sent a TLS alert refusing ours.
func isAuthFailure(err error) bool {
	var verifyErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	if errors.As(err, &verifyErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return true
	}
	// An alert from the peer arrives as *net.OpError{Op: "remote error"}: "bad certificate",
	// "unknown certificate authority", "certificate required".
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return true
	}
	return false
}

// codeWords are the words an agent's message may start with that only repeat its code: older
// agents sent a backend's error as it was ("Conflict" with "conflict: pool01 is paired with
// pool03").
var codeWords = map[string]string{
	protocol.CodeNotFound:    "not found: ",
	protocol.CodeConflict:    "conflict: ",
	protocol.CodeUnavailable: "backend unavailable: ",
	protocol.CodeForbidden:   "permission denied: ",
}

// withoutCode drops from msg a start that repeats code.
func withoutCode(code, msg string) string {
	if w, ok := codeWords[code]; ok && len(msg) > len(w) && strings.EqualFold(msg[:len(w)], w) {
		return msg[len(w):]
	}
	return msg
}

// InFlight returns the operation already in flight that a 409 answer names, or nil.
func InFlight(err error) *protocol.ActiveOperation {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
		return apiErr.Operation
	}
	return nil
}
