package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
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
		{[]string{"pool-unreachable", "pool01.contoso.com", "true"}, http.MethodPost, "/sim/v1/pools/pool01.contoso.com/unreachable"},
		{[]string{"front-end", "fe01.pool01.contoso.com", "stop"}, http.MethodPost, "/sim/v1/servers/fe01.pool01.contoso.com/front-end"},
		{[]string{"failover-state"}, http.MethodGet, "/sim/v1/state"},
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
	for _, bad := range [][]string{{"front-end", "fe01.pool01.contoso.com", "true"}, {"pool-unreachable", "pool01.contoso.com"}, {"failover-state", "x"}, {"set-sync-interval", "0s"}, {"set-sync-interval", "-5s"}, {"set-sync-interval"}, {"reboot"}, {"reboot", "a", "b"}} {
		if _, _, _, err := simctlRequest(bad); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}

func TestSimctlRequestBodies(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pool-unreachable", "pool01.contoso.com", "false"}, `{"unreachable":false}`},
		{[]string{"front-end", "fe01.pool01.contoso.com", "stop"}, `{"running":false}`},
		{[]string{"front-end", "fe01.pool01.contoso.com", "START"}, `{"running":true}`},
	} {
		_, _, body, err := simctlRequest(c.args)
		b, _ := json.Marshal(body)
		if err != nil || string(b) != c.want {
			t.Errorf("%v: body %s, %v; want %s", c.args, b, err, c.want)
		}
	}
}

func TestFailoverSummary(t *testing.T) {
	d, err := sim.Parse([]byte(`
product: lync2013
sites: [Redmond, Dublin]
cms: {pool: pool02.contoso.com}
pools:
- {fqdn: pool01.contoso.com, site: Redmond, edition: Enterprise, backupPool: pool02.contoso.com, servers: [{fqdn: fe01.pool01.contoso.com, faults: {unreachable: true}}]}
- {fqdn: pool02.contoso.com, site: Dublin, edition: Enterprise, servers: [{fqdn: fe01.pool02.contoso.com}]}
edgePools:
- {fqdn: edge01.contoso.com, nextHop: pool02.contoso.com}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := `Central Management store: active in pool02.contoso.com
pool01.contoso.com: serves its own users; backup pool pool02.contoso.com
  fe01.pool01.contoso.com: Front End Running, unreachable
pool02.contoso.com: serves its own users; backup pool pool01.contoso.com; hosts the Central Management store; next hop of edge01.contoso.com
  fe01.pool02.contoso.com: Front End Running
edge01.contoso.com (Edge pool): next hop pool02.contoso.com
`
	if got := failoverSummary(d.Snapshot()); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}
