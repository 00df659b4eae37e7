package agentclient

import (
	"errors"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// TestAPIErrorSaysTheCodeOnce: an older agent's message that repeats its code loses the repeat;
// anything else is kept as the agent sent it.
func TestAPIErrorSaysTheCodeOnce(t *testing.T) {
	const op = "POST https://fe01.pool01.contoso.com:9443/v1/operations: "
	for _, tc := range []struct {
		status        int
		code, message string
		want          string
	}{
		{409, protocol.CodeConflict, "conflict: pool01.contoso.com is already paired with pool03.contoso.com",
			op + "409 Conflict: pool01.contoso.com is already paired with pool03.contoso.com"},
		{409, protocol.CodeConflict, "pool01.contoso.com is already paired with pool03.contoso.com",
			op + "409 Conflict: pool01.contoso.com is already paired with pool03.contoso.com"},
		{503, protocol.CodeUnavailable, "backend unavailable: fe01.pool01.contoso.com is restarting",
			op + "503 Unavailable: fe01.pool01.contoso.com is restarting"},
		{404, protocol.CodeNotFound, `not found: pool "pool09.contoso.com" is not in the topology`,
			op + `404 NotFound: pool "pool09.contoso.com" is not in the topology`},
		{403, protocol.CodeForbidden, "permission denied: Start-CsWindowsService: Access is denied",
			op + "403 Forbidden: Start-CsWindowsService: Access is denied"},
		{409, protocol.CodeConflict, "conflict", op + "409 Conflict: conflict"},
		{400, protocol.CodeInvalid, "conflict: not a repeat of Invalid", op + "400 Invalid: conflict: not a repeat of Invalid"},
		{502, "", "<html>Bad Gateway</html>", op + "502 Bad Gateway: <html>Bad Gateway</html>"},
	} {
		e := &APIError{Method: "POST", Endpoint: "https://fe01.pool01.contoso.com:9443", Path: "/v1/operations", Status: tc.status,
			Code: tc.code, Message: withoutCode(tc.code, tc.message)}
		if e.Error() != tc.want {
			t.Errorf("got  %s\nwant %s", e.Error(), tc.want)
		}
	}
}

func TestMethodNotAllowedIsInvalid(t *testing.T) {
	e := &APIError{Status: 405, Code: protocol.CodeMethodNotAllowed}
	if !errors.Is(e, ErrInvalid) || errors.Is(e, ErrUnavailable) || errors.Is(e, ErrNotFound) {
		t.Errorf("405 classified wrongly")
	}
}
