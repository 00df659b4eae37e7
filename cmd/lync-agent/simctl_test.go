package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestSimctlCommandsAreDocumented: every command simctl accepts is in its usage text and in the
// list it prints when the command is missing, and maps to its admin route.
func TestSimctlCommandsAreDocumented(t *testing.T) {
	_, _, _, err := simctlRequest(nil)
	if !errors.Is(err, errUsage) {
		t.Fatalf("no command: %v", err)
	}
	for _, c := range []struct {
		args         []string
		method, path string
	}{
		{[]string{"state"}, http.MethodGet, "/sim/v1/state"},
		{[]string{"stop-service", "fe01.pool01.contoso.com"}, http.MethodPost, "/sim/v1/servers/fe01.pool01.contoso.com/stop-backup-service"},
		{[]string{"unreachable", "fe01.pool01.contoso.com", "true"}, http.MethodPost, "/sim/v1/endpoints/fe01.pool01.contoso.com/unreachable"},
		{[]string{"export-error", "pool01.contoso.com", "on"}, http.MethodPost, "/sim/v1/pools/pool01.contoso.com/export-error"},
		{[]string{"restart-agent", "fe01.pool01.contoso.com"}, http.MethodPost, "/sim/v1/agents/fe01.pool01.contoso.com/restart"},
		{[]string{"reboot", "fe01.pool01.contoso.com"}, http.MethodPost, "/sim/v1/servers/fe01.pool01.contoso.com/reboot"},
		{[]string{"reads", "0s", "false"}, http.MethodPost, "/sim/v1/reads"},
		{[]string{"set-sync-interval", "30s"}, http.MethodPost, "/sim/v1/sync-interval"},
	} {
		name := c.args[0]
		if !strings.Contains(simctlSynopsis, "\n  "+name+" ") {
			t.Errorf("%s is not in simctl's usage text", name)
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s is not in the list of commands: %v", name, err)
		}
		method, path, _, rerr := simctlRequest(c.args)
		if rerr != nil || method != c.method || path != c.path {
			t.Errorf("%v -> %s %s, %v; want %s %s", c.args, method, path, rerr, c.method, c.path)
		}
	}
	for _, bad := range [][]string{{"set-sync-interval", "0s"}, {"set-sync-interval", "-5s"}, {"set-sync-interval"}, {"reboot"}, {"reboot", "a", "b"}} {
		if _, _, _, err := simctlRequest(bad); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}
