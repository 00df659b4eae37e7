package agent

import (
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// routes are the agent's endpoints. Anything else is answered by route, in JSON.
var routes = []struct {
	pattern string
	handle  func(*Handler, http.ResponseWriter, *http.Request)
}{
	{"GET /v1/info", (*Handler).info},
	{"GET /v1/pools/{fqdn}", (*Handler).pool},
	{"GET /v1/pools/{fqdn}/backup-status", (*Handler).backupStatus},
	{"GET /v1/server", (*Handler).server},
	{"GET /v1/operations", (*Handler).listOperations},
	{"POST /v1/operations", (*Handler).startOperation},
	// {id...}: operator ids contain slashes, which a client may or may not escape (%2F).
	{"GET /v1/operations/{id...}", (*Handler).getOperation},
}

// routeList names the routes for a 404 answer, as the README documents them.
var routeList = func() string {
	var out []string
	for _, rt := range routes {
		out = append(out, strings.ReplaceAll(rt.pattern, "...}", "}"))
	}
	return strings.Join(out, ", ")
}()

// probeMethods are the methods tried to tell a 405 from a 404.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

func (h *Handler) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		handle := rt.handle
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { handle(h, w, r) })
	}
	return mux
}

// route serves r through the mux when one of the routes takes it. Anything else gets the
// protocol's JSON error, never ServeMux's own answers (a text/plain 404 or 405, or a redirect to a
// cleaned path or to a trailing slash): an unknown or unclean path is 404 with the list of routes,
// a known path with another method is 405 with an Allow header.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	if cleanPath(p) == p {
		if _, pattern := h.mux.Handler(r); pattern != "" {
			h.mux.ServeHTTP(w, r)
			return
		}
		if allowed := h.allowedMethods(r); len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			// HEAD goes with GET: the header says so, the message need not.
			named := slices.DeleteFunc(slices.Clone(allowed), func(m string) bool { return m == http.MethodHead })
			writeError(w, &apiError{http.StatusMethodNotAllowed, protocol.Error{Code: protocol.CodeMethodNotAllowed,
				Message: fmt.Sprintf("%s %s: method not allowed; this endpoint takes %s", r.Method, shortPath(p), strings.Join(named, ", "))}})
			return
		}
	}
	writeError(w, notFound(fmt.Sprintf("no such endpoint: %s %s; the agent's API is %s", r.Method, shortPath(p), routeList)))
}

// allowedMethods lists the methods a route takes r's path with.
func (h *Handler) allowedMethods(r *http.Request) []string {
	var out []string
	for _, m := range probeMethods {
		if _, pattern := h.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// cleanPath is the path ServeMux would redirect p to (net/http's cleanPath): "." and ".."
// elements and doubled slashes removed, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// shortPath bounds a path echoed in an answer.
func shortPath(p string) string {
	const maxLen = 200
	if len(p) <= maxLen {
		return p
	}
	return firstBytes(p, maxLen) + "..."
}
