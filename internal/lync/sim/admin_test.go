package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestAdminHandler(t *testing.T) {
	d, clk := newSim(t, baseYAML)
	pairAndRun(t, d, clk)
	h := AdminHandler(d)

	call := func(method, path, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", method, path, ct)
		}
		return rec
	}

	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string             // error code, for errors
		check        func(t *testing.T) // state after a success
	}{
		{name: "stop backup service", method: "POST", path: "/sim/v1/servers/fe01.pool01.contoso.com/stop-backup-service", status: 200, check: func(t *testing.T) {
			if s := serverState(t, d, fe1p1); s.BackupService.Status != protocol.ServiceStopped {
				t.Errorf("service = %+v", s.BackupService)
			}
		}},
		{name: "stop on unknown server", method: "POST", path: "/sim/v1/servers/fe09.pool01.contoso.com/stop-backup-service", status: 404, code: protocol.CodeNotFound},
		{name: "stop where not installed", method: "POST", path: "/sim/v1/servers/fe01.pool03.contoso.com/stop-backup-service", status: 409, code: protocol.CodeConflict},
		{name: "unreachable on", method: "POST", path: "/sim/v1/endpoints/pool02.contoso.com/unreachable", body: `{"unreachable":true}`, status: 200, check: func(t *testing.T) {
			if d.Reachable(pool02) {
				t.Error("pool02 still reachable")
			}
		}},
		{name: "unreachable off", method: "POST", path: "/sim/v1/endpoints/pool02.contoso.com/unreachable", body: `{"unreachable":false}`, status: 200, check: func(t *testing.T) {
			if !d.Reachable(pool02) {
				t.Error("pool02 unreachable")
			}
		}},
		{name: "unreachable without value", method: "POST", path: "/sim/v1/endpoints/pool02.contoso.com/unreachable", body: `{}`, status: 400, code: protocol.CodeInvalid},
		{name: "pool unreachable", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/unreachable", body: `{"unreachable":true}`, status: 200, check: func(t *testing.T) {
			if d.Reachable(pool02) || d.Reachable(fe1p2) || d.Reachable(fe2p2) {
				t.Error("pool02 or a server of it still reachable")
			}
		}},
		{name: "pool reachable again", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/unreachable", body: `{"unreachable":false}`, status: 200, check: func(t *testing.T) {
			if !d.Reachable(pool02) || !d.Reachable(fe1p2) || !d.Reachable(fe2p2) {
				t.Error("pool02 or a server of it unreachable")
			}
		}},
		{name: "pool unreachable of a server", method: "POST", path: "/sim/v1/pools/fe01.pool02.contoso.com/unreachable", body: `{"unreachable":true}`, status: 404, code: protocol.CodeNotFound},
		{name: "pool unreachable without value", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/unreachable", body: `{}`, status: 400, code: protocol.CodeInvalid},
		{name: "front end stop", method: "POST", path: "/sim/v1/servers/fe01.pool02.contoso.com/front-end", body: `{"running":false}`, status: 200, check: func(t *testing.T) {
			if s := serverState(t, d, fe1p2); s.FrontEnd != protocol.ServiceStopped {
				t.Errorf("Front End = %q", s.FrontEnd)
			}
		}},
		{name: "front end start", method: "POST", path: "/sim/v1/servers/fe01.pool02.contoso.com/front-end", body: `{"running":true}`, status: 200, check: func(t *testing.T) {
			if s := serverState(t, d, fe1p2); s.FrontEnd != protocol.ServiceRunning {
				t.Errorf("Front End = %q", s.FrontEnd)
			}
		}},
		{name: "front end of a pool", method: "POST", path: "/sim/v1/servers/pool02.contoso.com/front-end", body: `{"running":false}`, status: 404, code: protocol.CodeNotFound},
		{name: "front end without value", method: "POST", path: "/sim/v1/servers/fe01.pool02.contoso.com/front-end", body: `{}`, status: 400, code: protocol.CodeInvalid},
		{name: "unknown body field", method: "POST", path: "/sim/v1/endpoints/pool02.contoso.com/unreachable", body: `{"unreachable":true,"x":1}`, status: 400, code: protocol.CodeInvalid},
		{name: "export error", method: "POST", path: "/sim/v1/pools/pool01.contoso.com/export-error", body: `{"module":"ConfServices.DataConf","on":true}`, status: 200, check: func(t *testing.T) {
			if got := exports(t, d, pool01)[dataConf]; got != protocol.ExportErrorState {
				t.Errorf("DataConf export = %s", got)
			}
		}},
		{name: "export error all off", method: "POST", path: "/sim/v1/pools/pool01.contoso.com/export-error", body: `{"module":"","on":false}`, status: 200, check: func(t *testing.T) {
			if got := exports(t, d, pool01)[dataConf]; got == protocol.ExportErrorState {
				t.Errorf("DataConf export = %s", got)
			}
		}},
		{name: "export error unknown module", method: "POST", path: "/sim/v1/pools/pool01.contoso.com/export-error", body: `{"module":"X.Y","on":true}`, status: 400, code: protocol.CodeInvalid},
		{name: "import error", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/import-error", body: `{"on":true}`, status: 200, check: func(t *testing.T) {
			if m := status(t, d, pool02).Modules[0]; m.ImportStatus != protocol.ImportErrorState {
				t.Errorf("import = %+v", m)
			}
		}},
		{name: "backup pool", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/backup-pool", body: `{"backupPool":"pool03.contoso.com"}`, status: 200, check: func(t *testing.T) {
			if p := poolOf(t, d, pool02); p.BackupPool != pool03 {
				t.Errorf("pool02 backup = %q", p.BackupPool)
			}
		}},
		{name: "backup pool unpair", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/backup-pool", body: `{"backupPool":""}`, status: 200, check: func(t *testing.T) {
			if p := poolOf(t, d, pool02); p.BackupPool != "" {
				t.Errorf("pool02 backup = %q", p.BackupPool)
			}
		}},
		{name: "backup pool missing field", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/backup-pool", body: `{}`, status: 400, code: protocol.CodeInvalid},
		{name: "backup pool unknown", method: "POST", path: "/sim/v1/pools/pool02.contoso.com/backup-pool", body: `{"backupPool":"pool09.contoso.com"}`, status: 404, code: protocol.CodeNotFound},
		{name: "faults", method: "POST", path: "/sim/v1/servers/fe02.pool02.contoso.com/faults", body: `{"bootstrapFailures":2,"serviceWillNotStart":true}`, status: 200, check: func(t *testing.T) {
			if f := serverState(t, d, fe2p2).Faults; f != (ServerFaults{BootstrapFailures: 2, ServiceWillNotStart: true}) {
				t.Errorf("faults = %+v", f)
			}
		}},
		{name: "faults invalid", method: "POST", path: "/sim/v1/servers/fe02.pool02.contoso.com/faults", body: `{"bootstrapFailures":-1}`, status: 400, code: protocol.CodeInvalid},
		{name: "faults on a pool", method: "POST", path: "/sim/v1/servers/pool02.contoso.com/faults", body: `{}`, status: 404, code: protocol.CodeNotFound},
		{name: "reboot", method: "POST", path: "/sim/v1/servers/fe01.pool02.contoso.com/reboot", status: 200, check: func(t *testing.T) {
			if s := serverState(t, d, fe1p2); !s.BootTime.Equal(clk.Now()) || s.BackupService.Status != protocol.ServiceRunning {
				t.Errorf("server after the reboot = %+v", s)
			}
		}},
		{name: "reboot a pool", method: "POST", path: "/sim/v1/servers/pool02.contoso.com/reboot", status: 404, code: protocol.CodeNotFound},
		{name: "reboot with a body", method: "POST", path: "/sim/v1/servers/fe01.pool02.contoso.com/reboot", body: `{"now":true}`, status: 400, code: protocol.CodeInvalid},
		{name: "sync interval", method: "POST", path: "/sim/v1/sync-interval", body: `{"syncInterval":"90s"}`, status: 200, check: func(t *testing.T) {
			if s := status(t, d, pool01); s.SyncIntervalSeconds != 90 || d.Snapshot().SyncInterval != "1m30s" {
				t.Errorf("sync interval = %d", s.SyncIntervalSeconds)
			}
		}},
		{name: "sync interval out of range", method: "POST", path: "/sim/v1/sync-interval", body: `{"syncInterval":"100ms"}`, status: 400, code: protocol.CodeInvalid},
		{name: "sync interval not a duration", method: "POST", path: "/sim/v1/sync-interval", body: `{"syncInterval":"often"}`, status: 400, code: protocol.CodeInvalid},
		{name: "sync interval missing", method: "POST", path: "/sim/v1/sync-interval", body: `{}`, status: 400, code: protocol.CodeInvalid},
		{name: "wrong method", method: "GET", path: "/sim/v1/servers/fe01.pool01.contoso.com/stop-backup-service", status: 405, code: protocol.CodeInvalid},
		{name: "unknown path", method: "GET", path: "/sim/v1/nothing", status: 404, code: protocol.CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(tc.method, tc.path, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" {
				var e protocol.Error
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != tc.code || e.Message == "" {
					t.Fatalf("error body %s (%v), want code %s", rec.Body, err, tc.code)
				}
				return
			}
			var s State
			if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || len(s.Pools) == 0 {
				t.Fatalf("answer is not a State: %v: %s", err, rec.Body)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}

	t.Run("state", func(t *testing.T) {
		rec := call("GET", "/sim/v1/state", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		var s State
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		if len(s.Pools) != 5 || len(s.Servers) != 7 || s.Counts["PairPools/"+pool01] != 1 || s.Pools[0].Backup.PoolFQDN != pool01 || len(s.Pools[0].Backup.Modules) != 3 {
			t.Errorf("state = %s", rec.Body)
		}
		// The pool facts are inlined, as protocol.Pool spells them.
		if !strings.Contains(rec.Body.String(), `"hostsCms": true`) {
			t.Errorf("state does not inline the pool facts: %s", rec.Body)
		}
	})
	t.Run("endpoints", func(t *testing.T) {
		rec := call("GET", "/sim/v1/endpoints", "")
		var eps []Endpoint
		if err := json.Unmarshal(rec.Body.Bytes(), &eps); err != nil || len(eps) != 8 || eps[0].FQDN != pool01 || eps[0].Kind != KindPool || eps[1].Kind != KindServer {
			t.Errorf("endpoints = %s (%v)", rec.Body, err)
		}
	})
}

// TestAdminExtraRouteReplacesOwn: an extra route with the pattern of one of the sim's own routes
// replaces it (simrun serves the reboot route itself, to restart the agent with the machine).
func TestAdminExtraRouteReplacesOwn(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	var got string
	h := AdminHandler(d, AdminRoute{
		Pattern: "POST " + AdminPrefix + "/servers/{fqdn}/reboot",
		Do:      func(r *http.Request) error { got = r.PathValue("fqdn"); return nil },
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/sim/v1/servers/fe01.pool01.contoso.com/reboot", nil))
	if rec.Code != 200 || got != fe1p1 {
		t.Fatalf("status %d, extra route saw %q", rec.Code, got)
	}
	if s := serverState(t, d, fe1p1); !s.BootTime.Equal(t0) {
		t.Errorf("the sim's own route ran too: %+v", s)
	}
}
