package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

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
// backend's own, which names what it was doing, without the text of the lync sentinel the code
// already says ("Conflict: pool01 is paired with pool03", not "Conflict: conflict: ...").
func backendError(err error) *apiError {
	msg := err.Error()
	var fieldErr *protocol.FieldError
	switch {
	case errors.As(err, &fieldErr):
		// A backend's own validation (the handler's normally refuses the input first).
		return invalid(msg)
	case errors.Is(err, lync.ErrNotFound):
		return notFound(reason(err, lync.ErrNotFound))
	case errors.Is(err, lync.ErrUnavailable):
		return unavailable(reason(err, lync.ErrUnavailable))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return unavailable(msg)
	case errors.Is(err, lync.ErrPermission):
		return &apiError{http.StatusForbidden, protocol.Error{Code: protocol.CodeForbidden, Message: reason(err, lync.ErrPermission)}}
	case errors.Is(err, lync.ErrConflict):
		return conflict(reason(err, lync.ErrConflict))
	}
	return internal(msg)
}

// reason is err's message without the text of sentinel, which err wraps and whose class the caller
// states once itself (as an error code, or as an operation message's prefix). Backends put that
// text first ("conflict: pool01 is paired with pool03", the sim), last ("pool01 is paired with
// pool03: conflict", PowerShell), or before a hint ("Access is denied: permission denied (the
// account ...)"); every such element goes. A message that is nothing but the sentinel is kept.
func reason(err, sentinel error) string {
	msg, word := err.Error(), sentinel.Error()
	var out []string
	for _, part := range strings.Split(msg, ": ") {
		switch {
		case part == word:
			continue
		case strings.HasPrefix(part, word+" (") && len(out) > 0:
			out[len(out)-1] += part[len(word):]
			continue
		}
		out = append(out, part)
	}
	if len(out) == 0 {
		return msg
	}
	return strings.Join(out, ": ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Messages are read with curl too: "->" stays "->", not "-\u003e".
	enc.SetEscapeHTML(false)
	// The status is already sent; a failed write means the client went away.
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, e.body)
}
