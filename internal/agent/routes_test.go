package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const apiList = "GET /v1/info, GET /v1/pools/{fqdn}, GET /v1/pools/{fqdn}/backup-status, GET /v1/server, " +
	"GET /v1/operations, POST /v1/operations, GET /v1/operations/{id}"

// TestUnknownRoutesAndMethodsAnswerJSON: whatever the path and method, the agent answers with the
// protocol's JSON error, never a redirect or ServeMux's text: 404 naming the path and listing the
// routes, or 405 with an Allow header naming the methods.
func TestUnknownRoutesAndMethodsAnswerJSON(t *testing.T) {
	a := startAgent(t, agentOpts{})
	c := *a.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	notFound := func(method, path string) string {
		return fmt.Sprintf("no such endpoint: %s %s; the agent's API is %s", method, path, apiList)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
		message      string
	}{
		{"DELETE", "/v1/operations", 405, protocol.CodeMethodNotAllowed, "GET, HEAD, POST", "DELETE /v1/operations: method not allowed; this endpoint takes GET, POST"},
		{"PUT", "/v1/operations", 405, protocol.CodeMethodNotAllowed, "GET, HEAD, POST", "PUT /v1/operations: method not allowed; this endpoint takes GET, POST"},
		{"PUT", "/v1/info", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", "PUT /v1/info: method not allowed; this endpoint takes GET"},
		{"OPTIONS", "/v1/server", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", "OPTIONS /v1/server: method not allowed; this endpoint takes GET"},
		{"POST", "/v1/pools/pool01.contoso.com", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", "POST /v1/pools/pool01.contoso.com: method not allowed; this endpoint takes GET"},
		{"DELETE", "/v1/pools/pool01.contoso.com/backup-status", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", "DELETE /v1/pools/pool01.contoso.com/backup-status: method not allowed; this endpoint takes GET"},
		{"DELETE", "/v1/operations/a%2Fb", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", "DELETE /v1/operations/a%2Fb: method not allowed; this endpoint takes GET"},
		{"POST", "/v1/run", 404, protocol.CodeNotFound, "", notFound("POST", "/v1/run")},
		{"GET", "/", 404, protocol.CodeNotFound, "", notFound("GET", "/")},
		{"GET", "/v1", 404, protocol.CodeNotFound, "", notFound("GET", "/v1")},
		{"GET", "/v1/", 404, protocol.CodeNotFound, "", notFound("GET", "/v1/")},
		{"GET", "/v1/info/", 404, protocol.CodeNotFound, "", notFound("GET", "/v1/info/")},
		{"GET", "/v1//info", 404, protocol.CodeNotFound, "", notFound("GET", "/v1//info")},
		{"GET", "/v1/./info", 404, protocol.CodeNotFound, "", notFound("GET", "/v1/./info")},
		{"GET", "/v1/pools", 404, protocol.CodeNotFound, "", notFound("GET", "/v1/pools")},
		{"GET", "/v1/pools/", 404, protocol.CodeNotFound, "", notFound("GET", "/v1/pools/")},
		{"GET", "/v1/operations/a/../b", 404, protocol.CodeNotFound, "", notFound("GET", "/v1/operations/a/../b")},
		{"POST", "/v1/operations/op-1", 405, protocol.CodeMethodNotAllowed, "GET, HEAD", "POST /v1/operations/op-1: method not allowed; this endpoint takes GET"},
		{"GET", "/v2/info", 404, protocol.CodeNotFound, "", notFound("GET", "/v2/info")},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, a.url+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var e protocol.Error
			if err := json.Unmarshal(raw, &e); err != nil || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %q: not a JSON error", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Message != tc.message || resp.Header.Get("Allow") != tc.allow {
				t.Errorf("got %d %s (Allow %q)\nwant %d %s %q (Allow %q)", resp.StatusCode, raw, resp.Header.Get("Allow"), tc.status, tc.code, tc.message, tc.allow)
			}
		})
	}
	if n := a.backend.total(); n != 0 {
		t.Errorf("backend called %d times", n)
	}
}

// TestListOperations: GET /v1/operations lists the journal's operations newest first, in their
// current state, at most ?limit= of them.
func TestListOperations(t *testing.T) {
	a := startAgent(t, agentOpts{})
	var empty protocol.OperationList
	if status, raw := a.do("GET", "/v1/operations", "", &empty); status != 200 || empty.Operations == nil || len(empty.Operations) != 0 || !strings.Contains(raw, `"operations":[]`) {
		t.Fatalf("empty journal: %d %s", status, raw)
	}
	ids := []string{"uid-1/Bootstrap/fe01.pool01.contoso.com/1/0", "uid-1/StartBackupService/fe01.pool01.contoso.com/1/0", "uid-1/SyncBackup/pool01.contoso.com/1/0"}
	kinds := []protocol.OperationKind{protocol.KindBootstrap, protocol.KindStartBackupService, protocol.KindSyncBackup}
	for i, id := range ids[:2] {
		if status, _, raw := a.post(protocol.OperationRequest{ID: id, Kind: kinds[i]}); status != http.StatusAccepted {
			t.Fatalf("%d %s", status, raw)
		}
		a.await(id)
	}
	gate := make(chan struct{})
	defer close(gate)
	a.backend.setGate(gate)
	if status, _, raw := a.post(protocol.OperationRequest{ID: ids[2], Kind: kinds[2], Params: json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)}); status != http.StatusAccepted {
		t.Fatalf("%d %s", status, raw)
	}
	a.backend.waitStarted(t, "Bootstrap")
	a.backend.waitStarted(t, "StartBackupService")
	a.backend.waitStarted(t, "SyncBackup")

	list := func(query string) []protocol.Operation {
		t.Helper()
		var l protocol.OperationList
		if status, raw := a.do("GET", "/v1/operations"+query, "", &l); status != 200 {
			t.Fatalf("list%s: %d %s", query, status, raw)
		}
		return l.Operations
	}
	all := list("")
	if len(all) != 3 || all[0].ID != ids[2] || all[1].ID != ids[1] || all[2].ID != ids[0] {
		t.Fatalf("list = %+v", all)
	}
	if all[0].State != protocol.StateRunning || all[1].State != protocol.StateSucceeded || all[2].State != protocol.StateSucceeded || all[1].Message == "" {
		t.Errorf("states: %+v", all)
	}
	if got := list("?limit=2"); len(got) != 2 || got[0].ID != ids[2] || got[1].ID != ids[1] {
		t.Errorf("limit=2: %+v", got)
	}
	if got := list("?limit=100000"); len(got) != 3 {
		t.Errorf("limit above the cap: %d operations", len(got))
	}
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=ten", "?limit=", "?limit=1&limit=2"} {
		status, raw := a.do("GET", "/v1/operations"+q, "", nil)
		var e protocol.Error
		_ = json.Unmarshal([]byte(raw), &e)
		if status != 400 || e.Code != protocol.CodeInvalid || !strings.HasPrefix(e.Message, "limit: ") {
			t.Errorf("%s: %d %s", q, status, raw)
		}
	}
	status, raw := a.do("GET", "/v1/operations?limit=ten", "", nil)
	if want := `{"code":"Invalid","message":"limit: \"ten\" is not a whole number from 1 to 500"}`; status != 400 || strings.TrimSpace(raw) != want {
		t.Errorf("limit=ten: %d %s, want %s", status, raw, want)
	}
}
