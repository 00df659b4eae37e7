package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// apiError is an answer other than 2xx: an HTTP status and the protocol's {code, message}.
type apiError struct {
	status int
	body   protocol.Error
}

func (e *apiError) Error() string { return e.body.Error() }

func invalid(msg string) *apiError {
	return &apiError{http.StatusBadRequest, protocol.Error{Code: protocol.CodeInvalid, Message: msg}}
}

func notFound(msg string) *apiError {
	return &apiError{http.StatusNotFound, protocol.Error{Code: protocol.CodeNotFound, Message: msg}}
}

func conflict(msg string) *apiError {
	return &apiError{http.StatusConflict, protocol.Error{Code: protocol.CodeConflict, Message: msg}}
}

func unavailable(msg string) *apiError {
	return &apiError{http.StatusServiceUnavailable, protocol.Error{Code: protocol.CodeUnavailable, Message: msg}}
}

func internal(msg string) *apiError {
	return &apiError{http.StatusInternalServerError, protocol.Error{Code: protocol.CodeInternal, Message: msg}}
}

// backendError maps a Backend error to the protocol's status and code. The message is the
// backend's own, which names what it was doing.
func backendError(err error) *apiError {
	msg := err.Error()
	var fieldErr *protocol.FieldError
	switch {
	case errors.As(err, &fieldErr):
		// A backend's own validation (the handler's normally refuses the input first).
		return invalid(msg)
	case errors.Is(err, lync.ErrNotFound):
		return notFound(msg)
	case errors.Is(err, lync.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return unavailable(msg)
	case errors.Is(err, lync.ErrPermission):
		return &apiError{http.StatusForbidden, protocol.Error{Code: protocol.CodeForbidden, Message: msg}}
	case errors.Is(err, lync.ErrConflict):
		return conflict(msg)
	}
	return internal(msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The status is already sent; a failed write means the client went away.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, e.body)
}
