package agentclient_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const simYAML = `
product: lync2013
sites: [Redmond, Dublin, Paris]
cms: {pool: pool01.contoso.com}
durations:
  bootstrap: 10s
pools:
- fqdn: pool01.contoso.com
  site: Redmond
  edition: Enterprise
  servers:
  - fqdn: fe01.pool01.contoso.com
- fqdn: pool02.contoso.com
  site: Dublin
  edition: Enterprise
  servers:
  - fqdn: fe01.pool02.contoso.com
- fqdn: se01.contoso.com
  site: Paris
  edition: Standard
  servers:
  - fqdn: se01srv.contoso.com
`

// TestSimErrorsReachTheManagerOnce drives agents over the sim backend into its refusals and reads
// them as the manager does: each class (conflict, not found, backend unavailable) is said once,
// in the agent's answers and in its operations' messages.
func TestSimErrorsReachTheManagerOnce(t *testing.T) {
	d, err := sim.Parse([]byte(simYAML))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Two agent processes of one server: the second finds the first one's Bootstrapper run.
	b1, _ := d.Backend("fe01.pool01.contoso.com")
	b2, _ := d.Backend("fe01.pool01.contoso.com")
	ep, _ := serveAgent(t, "127.0.0.1:0", t.TempDir(), b1)
	ep2, _ := serveAgent(t, "127.0.0.1:0", t.TempDir(), b2)
	c := newClient(t, agentclient.Config{})
	ctx := t.Context()
	pair := func(id, backup string) protocol.OperationRequest {
		p, _ := json.Marshal(protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: backup})
		return protocol.OperationRequest{ID: id, Kind: protocol.KindPairPools, Params: p}
	}
	sync := func(id, pool string) protocol.OperationRequest {
		p, _ := json.Marshal(protocol.SyncBackupParams{PoolFQDN: pool})
		return protocol.OperationRequest{ID: id, Kind: protocol.KindSyncBackup, Params: p}
	}
	run := func(at string, req protocol.OperationRequest) string {
		t.Helper()
		if _, err := c.StartOperation(ctx, at, req); err != nil {
			t.Fatalf("%s: %v", req.ID, err)
		}
		op, err := c.AwaitDone(ctx, at, req.ID)
		if err != nil {
			t.Fatalf("%s: %v", req.ID, err)
		}
		return op.Message
	}
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s:\ngot  %s\nwant %s", what, got, want)
		}
	}

	if _, err := c.StartOperation(ctx, ep, protocol.OperationRequest{ID: "boot-1", Kind: protocol.KindBootstrap}); err != nil {
		t.Fatal(err)
	}
	for {
		op, err := c.Operation(ctx, ep, "boot-1")
		if err != nil {
			t.Fatal(err)
		}
		if op.State == protocol.StateRunning {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, err = c.StartOperation(ctx, ep, protocol.OperationRequest{ID: "boot-2", Kind: protocol.KindBootstrap})
	check("second Bootstrap, same agent", errText(err),
		`POST `+ep+`/v1/operations: 409 Conflict: a Bootstrap operation on fe01.pool01.contoso.com is already in flight on this server (id "boot-1", Running); wait for it to finish`)
	check("second Bootstrap, other agent of the server", run(ep2, protocol.OperationRequest{ID: "boot-3", Kind: protocol.KindBootstrap}),
		"conflict: Bootstrapper.exe is already running on fe01.pool01.contoso.com")
	check("pairing with a Standard Edition pool", run(ep, pair("pair-se", "se01.contoso.com")),
		"conflict: edition mismatch: pool01.contoso.com is Enterprise Edition, se01.contoso.com is Standard Edition")
	check("sync of an unpaired pool", run(ep, sync("sync-1", "pool02.contoso.com")),
		"conflict: pool02.contoso.com has no backup pool in the published topology")
	check("pairing", run(ep, pair("pair-1", "pool02.contoso.com")),
		"paired pool01.contoso.com and pool02.contoso.com as each other's backup pool; topology published and enabled")
	check("sync before Bootstrapper ran", run(ep, sync("sync-2", "pool01.contoso.com")),
		"backend unavailable: the backup service does not replicate pool01.contoso.com to pool02.contoso.com: "+
			"LYNCBACKUP must run on a bootstrapped Front End server of both pools, paired with each other")
	_, err = c.BackupStatus(ctx, ep, "pool09.contoso.com")
	check("unknown pool", errText(err),
		`GET `+ep+`/v1/pools/pool09.contoso.com/backup-status: 404 NotFound: pool "pool09.contoso.com" is not in the topology`)
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
