package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// AdminPrefix is the path prefix of the admin API.
const AdminPrefix = "/sim/v1"

// AdminHandler exposes the chaos and admin controls as JSON over HTTP, for tests and the demo. The
// caller puts it behind mutual TLS. Routes (successful writes answer 200 with the State snapshot):
//
//	GET  /sim/v1/state                                  State
//	GET  /sim/v1/endpoints                              []Endpoint
//	POST /sim/v1/servers/{fqdn}/stop-backup-service
//	POST /sim/v1/servers/{fqdn}/reboot                  (Deployment.Reboot)
//	POST /sim/v1/servers/{fqdn}/faults                  ServerFaults (replaces the server's faults)
//	POST /sim/v1/servers/{fqdn}/front-end               {"running": false} (Deployment.SetFrontEnd)
//	POST /sim/v1/endpoints/{fqdn}/unreachable           {"unreachable": true}
//	POST /sim/v1/pools/{fqdn}/unreachable               {"unreachable": true} (the whole pool: Deployment.SetPoolUnreachable)
//	POST /sim/v1/pools/{fqdn}/export-error              {"module": "", "on": true}  ("" = all modules)
//	POST /sim/v1/pools/{fqdn}/import-error              {"module": "", "on": true}
//	POST /sim/v1/pools/{fqdn}/backup-pool               {"backupPool": "pool03.contoso.com"} ("" unpairs that side)
//	POST /sim/v1/reads                                  {"latency": "2s", "waitForWrites": true} (either may be left out)
//	POST /sim/v1/sync-interval                          {"syncInterval": "30s"} (Deployment.SetSyncInterval)
//
// plus the extra routes given (simrun adds POST /sim/v1/agents/{fqdn}/restart, and serves
// POST /sim/v1/servers/{fqdn}/reboot itself so that the agent restarts with the machine): an
// extra route with the pattern of a route above replaces it. Errors are protocol.Error bodies:
// 400 Invalid, 404 NotFound, 409 Conflict, 503 Unavailable.
func AdminHandler(d *Deployment, extra ...AdminRoute) http.Handler {
	mux := http.NewServeMux()
	replaced := map[string]bool{}
	for _, r := range extra {
		replaced[r.Pattern] = true
		mux.HandleFunc(r.Pattern, func(w http.ResponseWriter, req *http.Request) {
			if err := decodeBody(req, nil); err != nil {
				writeError(w, err)
				return
			}
			answer(w, d, r.Do(req))
		})
	}
	handle := func(pattern string, h http.HandlerFunc) {
		if !replaced[pattern] {
			mux.HandleFunc(pattern, h)
		}
	}
	handle("POST "+AdminPrefix+"/servers/{fqdn}/reboot", func(w http.ResponseWriter, r *http.Request) {
		if err := decodeBody(r, nil); err != nil {
			writeError(w, err)
			return
		}
		answer(w, d, d.Reboot(r.PathValue("fqdn")))
	})
	handle("POST "+AdminPrefix+"/sync-interval", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			SyncInterval *string `json:"syncInterval"`
		}
		if err := decodeBody(r, &body); err != nil {
			writeError(w, err)
			return
		}
		if body.SyncInterval == nil {
			writeError(w, fmt.Errorf("%w: syncInterval: required (a Go duration, like 30s or 2m)", ErrInvalid))
			return
		}
		v, err := time.ParseDuration(*body.SyncInterval)
		if err != nil {
			writeError(w, fmt.Errorf("%w: syncInterval: %q is not a Go duration (like 30s or 2m)", ErrInvalid, *body.SyncInterval))
			return
		}
		answer(w, d, d.SetSyncInterval(v))
	})
	handle("POST "+AdminPrefix+"/reads", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Latency       *string `json:"latency"`
			WaitForWrites *bool   `json:"waitForWrites"`
		}
		if err := decodeBody(r, &body); err != nil {
			writeError(w, err)
			return
		}
		latency, wait := d.Reads()
		if body.Latency != nil {
			v, err := time.ParseDuration(*body.Latency)
			if err != nil {
				writeError(w, fmt.Errorf("%w: latency: %q is not a Go duration (like 500ms or 2s)", ErrInvalid, *body.Latency))
				return
			}
			latency = v
		}
		if body.WaitForWrites != nil {
			wait = *body.WaitForWrites
		}
		answer(w, d, d.SetReads(latency, wait))
	})
	handle("GET "+AdminPrefix+"/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Snapshot())
	})
	handle("GET "+AdminPrefix+"/endpoints", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Endpoints())
	})
	handle("POST "+AdminPrefix+"/servers/{fqdn}/stop-backup-service", func(w http.ResponseWriter, r *http.Request) {
		if err := decodeBody(r, nil); err != nil {
			writeError(w, err)
			return
		}
		answer(w, d, d.StopBackupService(r.PathValue("fqdn")))
	})
	handle("POST "+AdminPrefix+"/servers/{fqdn}/faults", func(w http.ResponseWriter, r *http.Request) {
		var f ServerFaults
		if err := decodeBody(r, &f); err != nil {
			writeError(w, err)
			return
		}
		answer(w, d, d.SetFaults(r.PathValue("fqdn"), f))
	})
	handle("POST "+AdminPrefix+"/endpoints/{fqdn}/unreachable", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Unreachable *bool `json:"unreachable"`
		}
		if err := decodeBody(r, &body); err != nil {
			writeError(w, err)
			return
		}
		if body.Unreachable == nil {
			writeError(w, fmt.Errorf("%w: unreachable: required", ErrInvalid))
			return
		}
		answer(w, d, d.SetUnreachable(r.PathValue("fqdn"), *body.Unreachable))
	})
	handle("POST "+AdminPrefix+"/pools/{fqdn}/unreachable", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Unreachable *bool `json:"unreachable"`
		}
		if err := decodeBody(r, &body); err != nil {
			writeError(w, err)
			return
		}
		if body.Unreachable == nil {
			writeError(w, fmt.Errorf("%w: unreachable: required", ErrInvalid))
			return
		}
		answer(w, d, d.SetPoolUnreachable(r.PathValue("fqdn"), *body.Unreachable))
	})
	handle("POST "+AdminPrefix+"/servers/{fqdn}/front-end", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Running *bool `json:"running"`
		}
		if err := decodeBody(r, &body); err != nil {
			writeError(w, err)
			return
		}
		if body.Running == nil {
			writeError(w, fmt.Errorf("%w: running: required", ErrInvalid))
			return
		}
		answer(w, d, d.SetFrontEnd(r.PathValue("fqdn"), *body.Running))
	})
	moduleFault := func(set func(pool, module string, on bool) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var body struct {
				Module string `json:"module"`
				On     *bool  `json:"on"`
			}
			if err := decodeBody(r, &body); err != nil {
				writeError(w, err)
				return
			}
			if body.On == nil {
				writeError(w, fmt.Errorf("%w: on: required", ErrInvalid))
				return
			}
			answer(w, d, set(r.PathValue("fqdn"), body.Module, *body.On))
		}
	}
	handle("POST "+AdminPrefix+"/pools/{fqdn}/export-error", moduleFault(d.SetExportError))
	handle("POST "+AdminPrefix+"/pools/{fqdn}/import-error", moduleFault(d.SetImportError))
	handle("POST "+AdminPrefix+"/pools/{fqdn}/backup-pool", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			BackupPool *string `json:"backupPool"`
		}
		if err := decodeBody(r, &body); err != nil {
			writeError(w, err)
			return
		}
		if body.BackupPool == nil {
			writeError(w, fmt.Errorf("%w: backupPool: required (\"\" unpairs)", ErrInvalid))
			return
		}
		answer(w, d, d.SetBackupPool(r.PathValue("fqdn"), *body.BackupPool))
	})

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			// ServeMux answers unknown paths and wrong methods in plain text; keep every answer JSON.
			rec := &statusRecorder{header: http.Header{}}
			h.ServeHTTP(rec, r)
			if rec.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", rec.header.Get("Allow"))
				writeJSON(w, http.StatusMethodNotAllowed, protocol.Error{Code: protocol.CodeInvalid, Message: fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)})
				return
			}
			writeJSON(w, http.StatusNotFound, protocol.Error{Code: protocol.CodeNotFound, Message: "no such sim admin endpoint: " + r.URL.Path})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// AdminRoute is one more admin route, served like the others: the body must be empty or {},
// errors are protocol.Error bodies, and a success answers 200 with the State.
type AdminRoute struct {
	// Pattern is a net/http pattern with its method, e.g. "POST /sim/v1/agents/{fqdn}/restart".
	Pattern string
	// Do carries the request out.
	Do func(r *http.Request) error
}

// statusRecorder captures what ServeMux's built-in 404/405 handlers would write.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.status = code }

func answer(w http.ResponseWriter, d *Deployment, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d.Snapshot())
}

// decodeBody strictly decodes a JSON body into v; with v nil the body must be empty or {}.
func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("%w: reading the body: %v", ErrInvalid, err)
	}
	if len(b) > protocol.MaxBodyBytes {
		return fmt.Errorf("%w: body larger than %d bytes", ErrInvalid, protocol.MaxBodyBytes)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		b = []byte("{}")
	}
	if v == nil {
		v = &struct{}{}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body: trailing data after the JSON object", ErrInvalid)
	}
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, protocol.CodeInternal
	switch {
	case errors.Is(err, ErrInvalid):
		status, code = http.StatusBadRequest, protocol.CodeInvalid
	case errors.Is(err, lync.ErrNotFound):
		status, code = http.StatusNotFound, protocol.CodeNotFound
	case errors.Is(err, lync.ErrConflict):
		status, code = http.StatusConflict, protocol.CodeConflict
	case errors.Is(err, lync.ErrUnavailable):
		status, code = http.StatusServiceUnavailable, protocol.CodeUnavailable
	}
	writeJSON(w, status, protocol.Error{Code: code, Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
