package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestReadsAnswerFromTheBackend(t *testing.T) {
	a := startAgent(t, agentOpts{})

	var info protocol.Info
	if status, raw := a.do("GET", "/v1/info", "", &info); status != 200 {
		t.Fatalf("info: %d %s", status, raw)
	}
	want := protocol.Info{ServerFQDN: "fe01.pool01.contoso.com", PoolFQDN: "pool01.contoso.com", Product: "lync2013", AgentVersion: "test", Backend: "fake"}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("info = %+v, want %+v", info, want)
	}

	var pool protocol.Pool
	if status, raw := a.do("GET", "/v1/pools/pool01.contoso.com", "", &pool); status != 200 || pool.Edition != protocol.EditionEnterprise {
		t.Fatalf("pool: %d %s", status, raw)
	}
	if status, raw := a.do("GET", "/v1/pools/pool09.contoso.com", "", nil); status != 404 || !strings.Contains(raw, `"code":"NotFound"`) {
		t.Errorf("unknown pool: %d %s", status, raw)
	}

	var bs protocol.BackupStatus
	if status, raw := a.do("GET", "/v1/pools/pool01.contoso.com/backup-status", "", &bs); status != 200 || len(bs.Modules) != 1 {
		t.Fatalf("backup-status: %d %s", status, raw)
	}

	var srv protocol.Server
	if status, raw := a.do("GET", "/v1/server", "", &srv); status != 200 {
		t.Fatalf("server: %d %s", status, raw)
	}
	if srv.FQDN != "fe01.pool01.contoso.com" || !srv.BackupService.Installed || srv.LastBootstrap != nil {
		t.Errorf("server = %+v", srv)
	}
}

func TestBackendErrorsMapToStatuses(t *testing.T) {
	a := startAgent(t, agentOpts{})
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("Get-CsPool: %w", lync.ErrUnavailable), 503, protocol.CodeUnavailable},
		{fmt.Errorf("Get-CsPool: %w", lync.ErrPermission), 403, protocol.CodeForbidden},
		{fmt.Errorf("Get-CsPool: %w", lync.ErrConflict), 409, protocol.CodeConflict},
		{fmt.Errorf("Get-CsPool: %w", lync.ErrNotFound), 404, protocol.CodeNotFound},
		{fmt.Errorf("Get-CsPool: %w", &protocol.FieldError{Field: "fqdn", Reason: "not a DNS name"}), 400, protocol.CodeInvalid},
		{fmt.Errorf("something broke"), 500, protocol.CodeInternal},
	} {
		a.backend.setErr("Pool", tc.err)
		status, raw := a.do("GET", "/v1/pools/pool01.contoso.com", "", nil)
		var e protocol.Error
		_ = json.Unmarshal([]byte(raw), &e)
		if status != tc.status || e.Code != tc.code || !strings.Contains(e.Message, "Get-CsPool") && tc.status != 500 {
			t.Errorf("%v: got %d %s, want %d %s", tc.err, status, raw, tc.status, tc.code)
		}
	}
}

// TestHostileRequestsRunNothing sends invalid and hostile requests: each is refused with 400
// (413 for the oversized body) naming the parameter, and the backend is never called.
func TestHostileRequestsRunNothing(t *testing.T) {
	a := startAgent(t, agentOpts{})
	long := strings.Repeat("a", 300) + ".contoso.com"
	pair := func(p, b string) string {
		return fmt.Sprintf(`{"id":"op-1","kind":"PairPools","params":{"primaryFqdn":%q,"backupFqdn":%q}}`, p, b)
	}
	big := `{"id":"op-1","kind":"SyncBackup","params":{"poolFqdn":"` + strings.Repeat("a", protocol.MaxBodyBytes) + `"}}`
	cases := []struct {
		name, method, path, body string
		status                   int
		mention                  string
	}{
		{"unknown kind", "POST", "/v1/operations", `{"id":"op-1","kind":"RunScript","params":{"script":"whoami"}}`, 400, "kind"},
		{"missing kind", "POST", "/v1/operations", `{"id":"op-1"}`, 400, "kind"},
		{"unknown top-level field", "POST", "/v1/operations", `{"id":"op-1","kind":"Bootstrap","command":"calc.exe"}`, 400, `"command"`},
		{"unknown param field", "POST", "/v1/operations", `{"id":"op-1","kind":"PairPools","params":{"primaryFqdn":"a.contoso.com","backupFqdn":"b.contoso.com","script":"x"}}`, 400, "params"},
		{"injection: semicolon", "POST", "/v1/operations", pair("pool01.contoso.com; Remove-CsPool", "pool02.contoso.com"), 400, "params.primaryFqdn"},
		{"injection: subexpression", "POST", "/v1/operations", pair("$(whoami).contoso.com", "pool02.contoso.com"), 400, "params.primaryFqdn"},
		{"injection: backticks", "POST", "/v1/operations", pair("pool01.contoso.com", "`whoami`.contoso.com"), 400, "params.backupFqdn"},
		{"injection: quotes", "POST", "/v1/operations", pair(`pool01".contoso.com`, "pool02.contoso.com"), 400, "params.primaryFqdn"},
		{"injection: newline", "POST", "/v1/operations", pair("pool01.contoso.com\nRemove-CsPool", "pool02.contoso.com"), 400, "params.primaryFqdn"},
		{"empty fqdn", "POST", "/v1/operations", pair("", "pool02.contoso.com"), 400, "params.primaryFqdn"},
		{"300-char label", "POST", "/v1/operations", pair(long, "pool02.contoso.com"), 400, "params.primaryFqdn"},
		{"single-label name", "POST", "/v1/operations", `{"id":"op-1","kind":"SyncBackup","params":{"poolFqdn":"pool01"}}`, 400, "params.poolFqdn"},
		{"same primary and backup", "POST", "/v1/operations", pair("pool01.contoso.com", "POOL01.contoso.com"), 400, "params.backupFqdn: a pool cannot be paired with itself"},
		{"unpair injection", "POST", "/v1/operations", `{"id":"op-1","kind":"Unpair","params":{"primaryFqdn":"a.contoso.com","backupFqdn":"b.contoso.com|calc"}}`, 400, "params.backupFqdn"},
		{"voice interval out of range", "POST", "/v1/operations", `{"id":"op-1","kind":"PairPools","params":{"primaryFqdn":"a.contoso.com","backupFqdn":"b.contoso.com","voiceFailover":{"enabled":true,"failureDetectionIntervalSeconds":5}}}`, 400, "failureDetectionIntervalSeconds"},
		{"bootstrap takes no params", "POST", "/v1/operations", `{"id":"op-1","kind":"Bootstrap","params":{"force":true}}`, 400, "params"},
		{"params not an object", "POST", "/v1/operations", `{"id":"op-1","kind":"SyncBackup","params":["pool01.contoso.com"]}`, 400, "params"},
		{"bad id: path traversal", "POST", "/v1/operations", `{"id":"../../etc/passwd","kind":"Bootstrap"}`, 400, "id"},
		{"bad id: space", "POST", "/v1/operations", `{"id":"op 1","kind":"Bootstrap"}`, 400, "id"},
		{"empty id", "POST", "/v1/operations", `{"id":"","kind":"Bootstrap"}`, 400, "id"},
		{"id too long", "POST", "/v1/operations", `{"id":"` + strings.Repeat("x", 600) + `","kind":"Bootstrap"}`, 400, "id"},
		{"body over 64 KiB", "POST", "/v1/operations", big, 413, "body"},
		{"trailing garbage", "POST", "/v1/operations", `{"id":"op-1","kind":"Bootstrap"} {"id":"op-2","kind":"Bootstrap"}`, 400, "trailing"},
		{"trailing brace", "POST", "/v1/operations", `{"id":"op-1","kind":"Bootstrap"}}`, 400, "trailing"},
		{"wrong type: kind", "POST", "/v1/operations", `{"id":"op-1","kind":5}`, 400, "kind"},
		{"wrong type: id", "POST", "/v1/operations", `{"id":["op-1"],"kind":"Bootstrap"}`, 400, "id"},
		{"wrong type: param", "POST", "/v1/operations", `{"id":"op-1","kind":"SyncBackup","params":{"poolFqdn":7}}`, 400, "poolFqdn"},
		{"not JSON", "POST", "/v1/operations", `kind=Bootstrap&id=op-1`, 400, "body"},
		{"empty body", "POST", "/v1/operations", ``, 400, "body"},
		{"JSON array body", "POST", "/v1/operations", `[{"id":"op-1","kind":"Bootstrap"}]`, 400, "body"},
		{"null body", "POST", "/v1/operations", `null`, 400, "id"},
		{"pool path: semicolon", "GET", "/v1/pools/pool01.contoso.com%3B%20Remove-CsPool", "", 400, "fqdn"},
		{"pool path: subexpression", "GET", "/v1/pools/$(whoami).contoso.com", "", 400, "fqdn"},
		{"pool path: backticks", "GET", "/v1/pools/%60whoami%60.contoso.com/backup-status", "", 400, "fqdn"},
		{"pool path: quote", "GET", "/v1/pools/pool01%22.contoso.com", "", 400, "fqdn"},
		{"pool path: newline", "GET", "/v1/pools/pool01.contoso.com%0ARemove-CsPool", "", 400, "fqdn"},
		{"pool path: escaped slash", "GET", "/v1/pools/pool01.contoso.com%2F..%2Fx", "", 400, "fqdn"},
		{"pool path: 300 chars", "GET", "/v1/pools/" + long, "", 400, "fqdn"},
		{"pool path: empty", "GET", "/v1/pools/", "", 404, "no such endpoint"},
		{"operation path: bad id", "GET", "/v1/operations/op%201", "", 400, "id"},
		{"wait: not a duration", "GET", "/v1/operations/op-1?wait=forever", "", 400, "wait"},
		{"wait: negative", "GET", "/v1/operations/op-1?wait=-5s", "", 400, "wait"},
		{"wait: twice", "GET", "/v1/operations/op-1?wait=1s&wait=2s", "", 400, "wait"},
		{"unknown route", "POST", "/v1/run", `{"cmd":"whoami"}`, 404, "no such endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := a.do(tc.method, tc.path, tc.body, nil)
			t.Logf("%d %s", status, strings.TrimSpace(raw))
			var e protocol.Error
			if err := json.Unmarshal([]byte(raw), &e); err != nil {
				t.Fatalf("answer is not a JSON error: %d %q", status, raw)
			}
			if status != tc.status || !strings.Contains(e.Message, tc.mention) {
				t.Errorf("got %d %s; want %d mentioning %q", status, raw, tc.status, tc.mention)
			}
			if status == 400 && e.Code != protocol.CodeInvalid {
				t.Errorf("code %q, want %q", e.Code, protocol.CodeInvalid)
			}
		})
	}
	if n := a.backend.total(); n != 0 {
		t.Errorf("backend was called %d times (%v); refused requests must run nothing", n, a.backend.calls)
	}
	if a.journal.count != 0 {
		t.Errorf("journal has %d records after refused requests", a.journal.count)
	}
}

func TestValidRequestsOfEachKindRun(t *testing.T) {
	a := startAgent(t, agentOpts{})
	reqs := []protocol.OperationRequest{
		pairReq("uid-1/PairPools/pool01.contoso.com/1/0", "pool01.contoso.com", "pool02.contoso.com"),
		{ID: "uid-1/Bootstrap/fe01.pool01.contoso.com/1/0", Kind: protocol.KindBootstrap},
		{ID: "uid-1/StartBackupService/fe01.pool01.contoso.com/1/0", Kind: protocol.KindStartBackupService, Params: json.RawMessage(`{}`)},
		{ID: "uid-1/SyncBackup/pool01.contoso.com/1/0", Kind: protocol.KindSyncBackup, Params: json.RawMessage(`{"poolFqdn":"pool01.contoso.com"}`)},
		{ID: "uid-1/Unpair/pool01.contoso.com/1/0", Kind: protocol.KindUnpair, Params: json.RawMessage(`{"primaryFqdn":"pool01.contoso.com","backupFqdn":"pool02.contoso.com"}`)},
	}
	for _, req := range reqs {
		status, op, raw := a.post(req)
		if status != http.StatusAccepted || op.ID != req.ID || op.Kind != req.Kind || op.State != protocol.StatePending {
			t.Fatalf("POST %s: %d %s", req.Kind, status, raw)
		}
		done := a.await(req.ID)
		if done.State != protocol.StateSucceeded || done.Started == nil || done.Finished == nil || done.Message == "" {
			t.Errorf("%s finished as %+v", req.Kind, done)
		}
	}
	for _, m := range []string{"PairPools", "Bootstrap", "StartBackupService", "SyncBackup", "Unpair"} {
		if n := a.backend.count(m); n != 1 {
			t.Errorf("%s called %d times, want 1", m, n)
		}
	}
	var srv protocol.Server
	a.do("GET", "/v1/server", "", &srv)
	lb := srv.LastBootstrap
	if lb == nil || lb.OperationID != reqs[1].ID || !lb.Succeeded || lb.BackupPool != "pool02.contoso.com" || lb.Finished.IsZero() {
		t.Errorf("lastBootstrap = %+v", lb)
	}
}

// TestInfoReportsTheStartChecks: /v1/info carries the checks serve made at its start, and when the
// agent cannot tell which server it is, its error names the failed checks and what to do.
func TestInfoReportsTheStartChecks(t *testing.T) {
	checks := []protocol.StartCheck{
		{Name: "tls-cert", Status: "PASS", Saw: "server.crt: CN=fe01.pool01.contoso.com"},
		{Name: "module", Status: "FAIL", Saw: "Import-Module Lync: not found", Fix: "install the Lync Server Management Shell"},
		{Name: "pool-read", Status: "UNKNOWN", Saw: "not checked", Fix: "fix module first"},
	}
	backend := newFake()
	a := startAgent(t, agentOpts{backend: backend, checks: checks})
	var info protocol.Info
	if status, raw := a.do("GET", "/v1/info", "", &info); status != 200 || !reflect.DeepEqual(info.StartChecks, checks) {
		t.Fatalf("info: %d %s; want the start checks %+v", status, raw, checks)
	}
	backend.setErr("Identity", fmt.Errorf("powershell Identity: the Lync module is not installed: %w", lync.ErrUnavailable))
	status, raw := a.do("GET", "/v1/info", "", nil)
	want := `{"code":"Unavailable","message":"powershell Identity: the Lync module is not installed; start checks that failed: module: Import-Module Lync: not found -> install the Lync Server Management Shell"}` + "\n"
	if status != 503 || raw != want {
		t.Errorf("info while Identity fails: %d %s\nwant 503 %s", status, raw, want)
	}
}
