package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// repeated finds a class said twice in a row in a message: "Conflict: conflict: ...", "NotFound:
// not found: ...", "Unavailable: backend unavailable: ..." (compared without case and spaces, one
// element ending with the next).
func repeated(msg string) string {
	parts := strings.Split(msg, ": ")
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	for i := 1; i < len(parts); i++ {
		a, b := norm(parts[i-1]), norm(parts[i])
		if a != "" && b != "" && (strings.HasSuffix(a, b) || strings.HasSuffix(b, a)) {
			return parts[i-1] + ": " + parts[i]
		}
	}
	return ""
}

func TestRepeatedFindsDoubledPrefixes(t *testing.T) {
	for msg, want := range map[string]bool{
		"Conflict: conflict: pool01 is paired":                 true,
		"NotFound: not found: pool09":                          true,
		"Unavailable: backend unavailable: WCF timeout":        true,
		"409 Conflict: conflict: x":                            true,
		"conflict: pool01 is paired with pool03":               false,
		"Conflict: a PairPools operation is already in flight": false,
	} {
		if got := repeated(msg) != ""; got != want {
			t.Errorf("repeated(%q) = %v", msg, got)
		}
	}
}

// TestBackendErrorsSayTheirClassOnce: a backend error reaches the client as the protocol's code
// with the backend's message (JSON answers), or as an operation message that starts with the class,
// and either way the class is said once, wherever the backend put its sentinel.
func TestBackendErrorsSayTheirClassOnce(t *testing.T) {
	hint := "the account running lync-agent needs membership of RTCUniversalServerAdmins"
	for _, tc := range []struct {
		name      string
		err       error
		status    int
		code      string
		message   string // the JSON error's message
		op        string // the operation's message
		retryable bool
	}{
		{"sim conflict", fmt.Errorf("%w: pool01.contoso.com is already paired with pool03.contoso.com", lync.ErrConflict),
			409, protocol.CodeConflict, "pool01.contoso.com is already paired with pool03.contoso.com",
			"conflict: pool01.contoso.com is already paired with pool03.contoso.com", false},
		{"powershell conflict", fmt.Errorf("pool %s is already paired with %s: %w", "pool01.contoso.com", "pool03.contoso.com", lync.ErrConflict),
			409, protocol.CodeConflict, "pool pool01.contoso.com is already paired with pool03.contoso.com",
			"conflict: pool pool01.contoso.com is already paired with pool03.contoso.com", false},
		{"bootstrapper already running", fmt.Errorf("%w: Bootstrapper.exe is already running on fe01.pool01.contoso.com", lync.ErrConflict),
			409, protocol.CodeConflict, "Bootstrapper.exe is already running on fe01.pool01.contoso.com",
			"conflict: Bootstrapper.exe is already running on fe01.pool01.contoso.com", false},
		{"sim unavailable", fmt.Errorf("%w: fe01.pool01.contoso.com is restarting", lync.ErrUnavailable),
			503, protocol.CodeUnavailable, "fe01.pool01.contoso.com is restarting",
			"backend unavailable: fe01.pool01.contoso.com is restarting", true},
		{"powershell unavailable", fmt.Errorf("powershell %s: %s: %w", "SyncBackup", "the PowerShell host did not answer within 2m0s", lync.ErrUnavailable),
			503, protocol.CodeUnavailable, "powershell SyncBackup: the PowerShell host did not answer within 2m0s",
			"backend unavailable: powershell SyncBackup: the PowerShell host did not answer within 2m0s", true},
		{"unavailable wrapped twice", fmt.Errorf("%w: saving the sim state: %w", lync.ErrUnavailable, fmt.Errorf("%w: disk full", lync.ErrUnavailable)),
			503, protocol.CodeUnavailable, "saving the sim state: disk full",
			"backend unavailable: saving the sim state: disk full", true},
		{"unavailable in the middle", fmt.Errorf("looking for a running Bootstrapper.exe: %w: %w", errors.New("WMI: RPC server unavailable"), lync.ErrUnavailable),
			503, protocol.CodeUnavailable, "looking for a running Bootstrapper.exe: WMI: RPC server unavailable",
			"backend unavailable: looking for a running Bootstrapper.exe: WMI: RPC server unavailable", true},
		{"permission with a hint", fmt.Errorf("Start-CsWindowsService: Access is denied: %w (%s)", lync.ErrPermission, hint),
			403, protocol.CodeForbidden, "Start-CsWindowsService: Access is denied (" + hint + ")",
			"permission denied: Start-CsWindowsService: Access is denied (" + hint + ")", false},
		{"not found", fmt.Errorf("%w: pool %q is not in the topology", lync.ErrNotFound, "pool09.contoso.com"),
			404, protocol.CodeNotFound, `pool "pool09.contoso.com" is not in the topology`,
			`not found: pool "pool09.contoso.com" is not in the topology`, false},
		{"bare sentinel", lync.ErrConflict, 409, protocol.CodeConflict, "conflict", "conflict", false},
		{"no sentinel", errors.New("something broke"), 500, protocol.CodeInternal, "something broke", "something broke", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := backendError(tc.err)
			if e.status != tc.status || e.body.Code != tc.code || e.body.Message != tc.message {
				t.Errorf("JSON error: %d %s %q\nwant       %d %s %q", e.status, e.body.Code, e.body.Message, tc.status, tc.code, tc.message)
			}
			h := &Handler{opsCtx: context.Background()}
			msg, retryable := h.failure(context.Background(), time.Minute, tc.err)
			if msg != tc.op || retryable != tc.retryable {
				t.Errorf("operation: %q retryable %v\nwant       %q retryable %v", msg, retryable, tc.op, tc.retryable)
			}
			for _, s := range []string{e.body.Error(), msg} {
				if r := repeated(s); r != "" && tc.name != "bare sentinel" {
					t.Errorf("%q says %q", s, r)
				}
			}
		})
	}
}

// TestConflictingOperationAnswer: the agent's own 409 for a second operation of a kind while one
// runs says so once.
func TestConflictingOperationAnswer(t *testing.T) {
	a := startAgent(t, agentOpts{})
	gate := make(chan struct{})
	defer close(gate)
	a.backend.setGate(gate)
	if status, _, raw := a.post(protocol.OperationRequest{ID: "boot-1", Kind: protocol.KindBootstrap}); status != 202 {
		t.Fatalf("%d %s", status, raw)
	}
	a.backend.waitStarted(t, "Bootstrap")
	status, raw := a.do("POST", "/v1/operations", `{"id":"boot-2","kind":"Bootstrap"}`, nil)
	want := `{"code":"Conflict","message":"a Bootstrap operation on fe01.pool01.contoso.com is already in flight on this server (id \"boot-1\", Running); wait for it to finish",` +
		`"operation":{"id":"boot-1","kind":"Bootstrap","target":"fe01.pool01.contoso.com","state":"Running","started":`
	if status != 409 || !strings.HasPrefix(raw, want) {
		t.Errorf("got %d %s\nwant 409 %s...", status, raw, want)
	}
}
