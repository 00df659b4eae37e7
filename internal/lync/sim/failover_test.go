package sim

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const edge01 = "edge01.contoso.com"

// failoverYAML is baseYAML with pool01 (the CMS pool) paired with pool02, an Edge pool whose next
// hop is pool01, and the failover durations.
func failoverYAML(t *testing.T) string {
	t.Helper()
	y := replace(t, baseYAML, "  initialBacklog: 500\n", "  initialBacklog: 500\n  failoverCMS: 2s\n  moveEdgeNextHop: 1s\n  failoverPool: 5s\n  failbackPool: 4s\n")
	y = replace(t, y, "  listen: 127.0.0.1:0\n  servers:\n", "  listen: 127.0.0.1:0\n  backupPool: pool02.contoso.com\n  servers:\n")
	return y + "edgePools:\n- fqdn: edge01.contoso.com\n  nextHop: pool01.contoso.com\n"
}

// The failover calls, run from a server's view and stepped on the fake clock.
func failoverCMS(t *testing.T, d *Deployment, clk *FakeClock, server, to string, disaster bool) msgErr {
	t.Helper()
	be := backend(t, d, server).(lync.Failover)
	o := do(t, clk, 2*time.Second, func() msgErr {
		m, err := be.FailoverCMS(context.Background(), to, disaster, false)
		return msgErr{m, err}
	})
	return o
}

func moveEdge(t *testing.T, d *Deployment, clk *FakeClock, server, edge, to string) msgErr {
	t.Helper()
	be := backend(t, d, server).(lync.Failover)
	o := do(t, clk, time.Second, func() msgErr {
		m, err := be.MoveEdgeNextHop(context.Background(), edge, to, false)
		return msgErr{m, err}
	})
	return o
}

func failoverPool(t *testing.T, d *Deployment, clk *FakeClock, server, pool string, disasterMode bool) msgErr {
	t.Helper()
	be := backend(t, d, server).(lync.Failover)
	o := do(t, clk, 5*time.Second, func() msgErr {
		m, err := be.FailoverPool(context.Background(), pool, disasterMode, false)
		return msgErr{m, err}
	})
	return o
}

func failbackPool(t *testing.T, d *Deployment, clk *FakeClock, server, pool string) msgErr {
	t.Helper()
	be := backend(t, d, server).(lync.Failover)
	o := do(t, clk, 4*time.Second, func() msgErr { m, err := be.FailbackPool(context.Background(), pool, false); return msgErr{m, err} })
	return o
}

type msgErr struct {
	msg string
	err error
}

func mustOK(t *testing.T, what string, o msgErr) string {
	t.Helper()
	if o.err != nil {
		t.Fatalf("%s: %v", what, o.err)
	}
	return o.msg
}

// failoverFacts is what a failover changes, for comparisons.
func failoverFacts(s State) map[string]string {
	out := map[string]string{"cms": s.CMSPool}
	for _, p := range s.Pools {
		out["failedOverTo "+p.FQDN] = p.FailedOverTo
		out["edgePools "+p.FQDN] = strings.Join(p.EdgePools, ",")
	}
	for _, e := range s.EdgePools {
		out["nextHop "+e.FQDN] = e.NextHop
	}
	for _, sv := range s.Servers {
		out["frontEnd "+sv.FQDN] = sv.FrontEnd
	}
	return out
}

// TestPlannedFailoverRoundTrip: Microsoft's order (CMS, Edge next hop, pool), each once, then the
// failback; the reads follow every step.
func TestPlannedFailoverRoundTrip(t *testing.T) {
	d, clk := newSim(t, failoverYAML(t))
	if p := poolOf(t, d, pool01); !p.HostsCMS || p.FailedOverTo != "" || strings.Join(p.EdgePools, ",") != edge01 {
		t.Fatalf("pool01 before = %+v", p)
	}

	msg := mustOK(t, "FailoverCMS", failoverCMS(t, d, clk, fe1p2, pool02, false))
	if want := "the Central Management store moved from pool01.contoso.com to pool02.contoso.com (Invoke-CsManagementServerFailover)"; msg != want {
		t.Errorf("FailoverCMS = %q, want %q", msg, want)
	}
	if a, b := poolOf(t, d, pool01), poolOf(t, d, pool02); a.HostsCMS || !b.HostsCMS || a.CMSPool != pool02 || b.CMSPool != pool02 {
		t.Errorf("after FailoverCMS: pool01 %+v, pool02 %+v", a, b)
	}
	// The CMS module's master is now pool02's: pool01 has none to export.
	if got := exports(t, d, pool01)[protocol.ModuleCMSMaster]; got != protocol.ExportNotInitialized {
		t.Errorf("pool01 CMSMaster export = %s", got)
	}

	msg = mustOK(t, "MoveEdgeNextHop", moveEdge(t, d, clk, fe1p2, edge01, pool02))
	if want := "the next hop of the Edge pool edge01.contoso.com moved from pool01.contoso.com to pool02.contoso.com (Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:pool02.contoso.com)"; msg != want {
		t.Errorf("MoveEdgeNextHop = %q, want %q", msg, want)
	}
	if a, b := poolOf(t, d, pool01), poolOf(t, d, pool02); len(a.EdgePools) != 0 || strings.Join(b.EdgePools, ",") != edge01 {
		t.Errorf("Edge pools after the move: pool01 %v, pool02 %v", a.EdgePools, b.EdgePools)
	}
	// Moving it again changes nothing, at once.
	be := backend(t, d, fe2p2).(lync.Failover)
	again := instant(t, clk, func() msgErr {
		m, err := be.MoveEdgeNextHop(context.Background(), "EDGE01.contoso.com", pool02, false)
		return msgErr{m, err}
	})
	if again.err != nil || again.msg != "the next hop of the Edge pool edge01.contoso.com is already pool02.contoso.com: nothing changed" {
		t.Errorf("MoveEdgeNextHop again = %q, %v", again.msg, again.err)
	}

	// The pool's failover waits its duration before anything shows.
	done := make(chan msgErr, 1)
	go func() {
		m, err := backend(t, d, fe1p2).(lync.Failover).FailoverPool(context.Background(), pool01, false, false)
		done <- msgErr{m, err}
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Step(4 * time.Second)
	if p := poolOf(t, d, pool01); p.FailedOverTo != "" {
		t.Fatalf("failed over after 4s of 5s")
	}
	clk.Step(time.Second)
	o := <-done
	if want := "failed pool01.contoso.com over to pool02.contoso.com: its users sign in to pool02.contoso.com until failback (Invoke-CsPoolFailOver -PoolFqdn pool01.contoso.com)"; o.err != nil || o.msg != want {
		t.Errorf("FailoverPool = %q, %v; want %q", o.msg, o.err, want)
	}
	if p := poolOf(t, d, pool01); p.FailedOverTo != pool02 {
		t.Errorf("pool01.failedOverTo = %q", p.FailedOverTo)
	}
	if p := poolOf(t, d, pool02); p.FailedOverTo != "" {
		t.Errorf("pool02.failedOverTo = %q", p.FailedOverTo)
	}

	msg = mustOK(t, "FailbackPool", failbackPool(t, d, clk, fe1p2, pool01))
	if want := "failed pool01.contoso.com back: its users sign in to it again instead of pool02.contoso.com (Invoke-CsPoolFailBack -PoolFqdn pool01.contoso.com)"; msg != want {
		t.Errorf("FailbackPool = %q, want %q", msg, want)
	}
	if p := poolOf(t, d, pool01); p.FailedOverTo != "" {
		t.Errorf("after failback pool01.failedOverTo = %q", p.FailedOverTo)
	}
	// Microsoft: the CMS may stay where it is; the Edge pool keeps its next hop.
	if p := poolOf(t, d, pool02); !p.HostsCMS || strings.Join(p.EdgePools, ",") != edge01 {
		t.Errorf("pool02 after failback = %+v", p)
	}

	want := map[string]int{
		"FailoverCMS/" + pool02: 1, "MoveEdgeNextHop/" + edge01: 2, "FailoverPool/" + pool01: 1, "FailbackPool/" + pool01: 1,
	}
	if got := d.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	tl := d.Timeline()
	for _, x := range tl {
		if x.Outcome != OutcomeSucceeded {
			t.Errorf("timeline:\n%s", timelineSummary(tl))
			break
		}
	}
	// Moving the next hop twice is the one repeat, and it changed nothing; the rest ran once.
	if dups := Duplicates(tl); len(dups) != 1 || !strings.HasPrefix(dups[0], "MoveEdgeNextHop "+edge01) {
		t.Errorf("duplicates: %v", dups)
	}
}

// TestFailoverRefusals: each thing Lync refuses, with the sim's exact message; nothing changes.
func TestFailoverRefusals(t *testing.T) {
	type call func(t *testing.T, d *Deployment, clk *FakeClock) (string, error)
	cms := func(server, to string, disaster bool) call {
		return func(t *testing.T, d *Deployment, clk *FakeClock) (string, error) {
			o := failoverCMS(t, d, clk, server, to, disaster)
			return o.msg, o.err
		}
	}
	over := func(pool string, disaster bool) call {
		return func(t *testing.T, d *Deployment, clk *FakeClock) (string, error) {
			o := failoverPool(t, d, clk, fe1p3, pool, disaster)
			return o.msg, o.err
		}
	}
	back := func(pool string) call {
		return func(t *testing.T, d *Deployment, clk *FakeClock) (string, error) {
			o := failbackPool(t, d, clk, fe1p3, pool)
			return o.msg, o.err
		}
	}
	edge := func(e, to string) call {
		return func(t *testing.T, d *Deployment, clk *FakeClock) (string, error) {
			o := moveEdge(t, d, clk, fe1p2, e, to)
			return o.msg, o.err
		}
	}
	// Steps that set a case up.
	cmsToPool02 := func(t *testing.T, d *Deployment, clk *FakeClock) {
		mustOK(t, "FailoverCMS", failoverCMS(t, d, clk, fe1p2, pool02, false))
	}
	edgeToPool02 := func(t *testing.T, d *Deployment, clk *FakeClock) {
		mustOK(t, "MoveEdgeNextHop", moveEdge(t, d, clk, fe1p2, edge01, pool02))
	}
	pool01Over := func(t *testing.T, d *Deployment, clk *FakeClock) {
		cmsToPool02(t, d, clk)
		edgeToPool02(t, d, clk)
		mustOK(t, "FailoverPool", failoverPool(t, d, clk, fe1p2, pool01, false))
	}
	down := func(fqdn string) func(t *testing.T, d *Deployment, clk *FakeClock) {
		return func(t *testing.T, d *Deployment, clk *FakeClock) {
			if err := d.SetPoolUnreachable(fqdn, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name     string
		setup    []func(t *testing.T, d *Deployment, clk *FakeClock)
		call     call
		sentinel error
		want     string
	}{
		// FailoverPool
		{"pool without a backup pool", nil, over(pool03, false), lync.ErrConflict,
			"conflict: pool03.contoso.com has no backup pool in the published topology: Invoke-CsPoolFailOver needs one"},
		{"backup pool paired elsewhere", []func(*testing.T, *Deployment, *FakeClock){func(t *testing.T, d *Deployment, _ *FakeClock) {
			if err := d.SetBackupPool(pool03, pool01); err != nil {
				t.Fatal(err)
			}
		}}, over(pool03, false), lync.ErrConflict,
			"conflict: pool01.contoso.com, the backup pool of pool03.contoso.com, is paired with pool02.contoso.com: fix the pairing first"},
		{"pool that hosts the CMS", nil, over(pool01, false), lync.ErrConflict,
			"conflict: pool01.contoso.com hosts the active Central Management store: fail it over to pool02.contoso.com first (Invoke-CsManagementServerFailover on a Front End of pool02.contoso.com)"},
		{"pool an Edge pool uses as next hop", []func(*testing.T, *Deployment, *FakeClock){cmsToPool02}, over(pool01, false), lync.ErrConflict,
			"conflict: pool01.contoso.com is the next hop of the Edge pool edge01.contoso.com: move it to another Front End pool first (Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:pool02.contoso.com), or External access, federation and XMPP stop working"},
		{"pool that does not answer, without -DisasterMode", []func(*testing.T, *Deployment, *FakeClock){cmsToPool02, edgeToPool02, down(pool01)}, over(pool01, false), lync.ErrConflict,
			"conflict: pool01.contoso.com does not answer: use -DisasterMode (a disaster failover)"},
		{"backup pool that does not answer", []func(*testing.T, *Deployment, *FakeClock){cmsToPool02, edgeToPool02, func(t *testing.T, d *Deployment, _ *FakeClock) {
			if err := d.SetUnreachable(fe2p2, true); err != nil {
				t.Fatal(err)
			}
			if err := d.SetUnreachable(fe1p2, true); err != nil {
				t.Fatal(err)
			}
		}}, over(pool01, false), lync.ErrUnavailable,
			"backend unavailable: the backup pool pool02.contoso.com does not answer: it cannot take the users of pool01.contoso.com"},
		{"pool already failed over", []func(*testing.T, *Deployment, *FakeClock){pool01Over}, over(pool01, false), lync.ErrConflict,
			"conflict: pool01.contoso.com is already failed over to pool02.contoso.com: its users sign in there until Invoke-CsPoolFailBack -PoolFqdn pool01.contoso.com"},
		{"backup pool failed over itself", []func(*testing.T, *Deployment, *FakeClock){pool01Over}, over(pool02, true), lync.ErrConflict,
			"conflict: the backup pool pool01.contoso.com is itself failed over to pool02.contoso.com: a failed-over pool cannot take another pool's users (fail pool01.contoso.com back first)"},
		{"a Front End server is no pool", nil, over(fe1p1, false), lync.ErrConflict,
			"conflict: pool fe01.pool01.contoso.com is a Front End server, not a Front End pool"},
		{"an unknown pool", nil, over("pool99.contoso.com", false), lync.ErrNotFound,
			`not found: pool "pool99.contoso.com" is not in the topology`},
		// FailbackPool
		{"failback of a pool not failed over", nil, back(pool01), lync.ErrConflict,
			"conflict: pool01.contoso.com is not failed over: its users sign in to it (Invoke-CsPoolFailBack is for a pool Invoke-CsPoolFailOver failed over)"},
		{"failback of a pool a server of which does not answer", []func(*testing.T, *Deployment, *FakeClock){pool01Over, func(t *testing.T, d *Deployment, _ *FakeClock) {
			if err := d.SetUnreachable(fe2p1, true); err != nil {
				t.Fatal(err)
			}
		}}, back(pool01), lync.ErrConflict,
			"conflict: pool01.contoso.com does not answer (fe02.pool01.contoso.com unreachable): fail it back once every Front End server of it answers again"},
		{"failback while the Front End service is stopped", []func(*testing.T, *Deployment, *FakeClock){pool01Over, func(t *testing.T, d *Deployment, _ *FakeClock) {
			if err := d.SetFrontEnd(fe1p1, false); err != nil {
				t.Fatal(err)
			}
		}}, back(pool01), lync.ErrConflict,
			"conflict: the Front End service (RTCSRV) of pool01.contoso.com is not running on fe01.pool01.contoso.com: fail it back once it runs on every Front End server of the pool"},
		// FailoverCMS
		{"CMS failover from the wrong pool's server", nil, cms(fe1p1, pool02, false), lync.ErrConflict,
			"conflict: Invoke-CsManagementServerFailover runs on a Front End of the pool the Central Management store moves to (pool02.contoso.com), not on fe01.pool01.contoso.com of pool01.contoso.com"},
		{"CMS failover to where it is", []func(*testing.T, *Deployment, *FakeClock){cmsToPool02}, cms(fe1p2, pool02, false), lync.ErrConflict,
			"conflict: the active Central Management store is already in pool02.contoso.com: nothing to fail over"},
		{"CMS failover to a pool that is not the CMS pool's backup", nil, cms("fe01.pool03.contoso.com", pool03, false), lync.ErrConflict,
			"conflict: the Central Management store is active in pool01.contoso.com, whose backup pool is pool02.contoso.com, not pool03.contoso.com: it fails over only to the standby store of its pool's backup pool"},
		{"CMS failover from an unpaired CMS pool", []func(*testing.T, *Deployment, *FakeClock){func(t *testing.T, d *Deployment, _ *FakeClock) {
			if err := d.SetBackupPool(pool01, ""); err != nil {
				t.Fatal(err)
			}
		}}, cms(fe1p2, pool02, false), lync.ErrConflict,
			"conflict: the Central Management store is active in pool01.contoso.com, which has no backup pool: there is no standby store to fail over to"},
		{"CMS failover from a CMS pool that does not answer, without -Force", []func(*testing.T, *Deployment, *FakeClock){down(pool01)}, cms(fe1p2, pool02, false), lync.ErrConflict,
			"conflict: pool01.contoso.com, which hosts the Central Management store, does not answer: use -Force (a disaster failover to the back-end store of pool02.contoso.com)"},
		// MoveEdgeNextHop
		{"an unknown Edge pool", nil, edge("edge99.contoso.com", pool02), lync.ErrNotFound,
			`not found: Edge pool "edge99.contoso.com" is not in the topology`},
		{"a Front End pool as the Edge pool", nil, edge(pool01, pool02), lync.ErrConflict,
			"conflict: pool01.contoso.com is a Front End pool, not an Edge pool"},
		{"a Front End server as the next hop", nil, edge(edge01, fe1p2), lync.ErrConflict,
			"conflict: registrar fe01.pool02.contoso.com is a Front End server, not a Front End pool"},
		{"an unknown next hop", nil, edge(edge01, "pool99.contoso.com"), lync.ErrNotFound,
			`not found: registrar "pool99.contoso.com" is not in the topology`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, clk := newSim(t, failoverYAML(t))
			for _, s := range c.setup {
				s(t, d, clk)
			}
			before := failoverFacts(d.Snapshot())
			msg, err := c.call(t, d, clk)
			if err == nil || err.Error() != c.want || !errors.Is(err, c.sentinel) {
				t.Fatalf("got %q, %v\nwant %s", msg, err, c.want)
			}
			if after := failoverFacts(d.Snapshot()); !reflect.DeepEqual(before, after) {
				t.Errorf("a refusal changed the deployment:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestFailoverWhatIf: a rehearsal of each step runs every check, changes nothing, returns at once
// and is counted apart from real runs.
func TestFailoverWhatIf(t *testing.T) {
	d, clk := newSim(t, failoverYAML(t))
	be := backend(t, d, fe1p2).(lync.Failover)
	ctx := context.Background()
	before := failoverFacts(d.Snapshot())
	rehearse := func(fn func() (string, error)) msgErr {
		t.Helper()
		return instant(t, clk, func() msgErr { m, err := fn(); return msgErr{m, err} })
	}
	cases := []struct {
		run  func() (string, error)
		want string
	}{
		{func() (string, error) { return be.FailoverCMS(ctx, pool02, false, true) },
			"what if: the Central Management store would move from pool01.contoso.com to pool02.contoso.com (Invoke-CsManagementServerFailover -WhatIf)"},
		{func() (string, error) { return be.MoveEdgeNextHop(ctx, edge01, pool02, true) },
			"what if: the next hop of the Edge pool edge01.contoso.com would move from pool01.contoso.com to pool02.contoso.com (Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:pool02.contoso.com -WhatIf)"},
	}
	for _, c := range cases {
		if o := rehearse(c.run); o.err != nil || o.msg != c.want {
			t.Errorf("got %q, %v\nwant %q", o.msg, o.err, c.want)
		}
	}
	// The pool's own rehearsal is refused, as the real run would be: the CMS is still in it.
	o := rehearse(func() (string, error) { return be.FailoverPool(ctx, pool01, false, true) })
	if !errors.Is(o.err, lync.ErrConflict) || !strings.Contains(o.err.Error(), "hosts the active Central Management store") {
		t.Errorf("FailoverPool rehearsal before the CMS moved: %q, %v", o.msg, o.err)
	}
	if o := rehearse(func() (string, error) { return be.FailbackPool(ctx, pool01, true) }); !errors.Is(o.err, lync.ErrConflict) {
		t.Errorf("FailbackPool rehearsal of a pool not failed over: %v", o.err)
	}
	if after := failoverFacts(d.Snapshot()); !reflect.DeepEqual(before, after) {
		t.Errorf("a rehearsal changed the deployment:\nbefore %v\nafter  %v", before, after)
	}
	want := map[string]int{
		"FailoverCMS(WhatIf)/" + pool02: 1, "MoveEdgeNextHop(WhatIf)/" + edge01: 1,
		"FailoverPool(WhatIf)/" + pool01: 1, "FailbackPool(WhatIf)/" + pool01: 1,
	}
	if got := d.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	for _, x := range d.Timeline() {
		if !strings.HasSuffix(x.Kind, "(WhatIf)") || x.Finished == nil {
			t.Errorf("timeline:\n%s", timelineSummary(d.Timeline()))
			break
		}
	}

	// Once the CMS and the Edge pool have moved, the pool's rehearsal says what would happen.
	mustOK(t, "FailoverCMS", failoverCMS(t, d, clk, fe1p2, pool02, false))
	mustOK(t, "MoveEdgeNextHop", moveEdge(t, d, clk, fe1p2, edge01, pool02))
	o = rehearse(func() (string, error) { return be.FailoverPool(ctx, pool01, true, true) })
	if want := "what if: the users of pool01.contoso.com would sign in to its backup pool pool02.contoso.com until failback (Invoke-CsPoolFailOver -PoolFqdn pool01.contoso.com -DisasterMode -WhatIf)"; o.err != nil || o.msg != want {
		t.Errorf("FailoverPool rehearsal = %q, %v; want %q", o.msg, o.err, want)
	}
	if p := poolOf(t, d, pool01); p.FailedOverTo != "" {
		t.Errorf("a rehearsal failed pool01 over")
	}
	if n := d.Counts()["FailoverPool/"+pool01]; n != 0 {
		t.Errorf("FailoverPool counted %d real runs", n)
	}
}

// TestDisasterFailover: pool01 (the CMS pool, the Edge pool's next hop) stops answering; the
// surviving pool takes the CMS with -Force, the Edge pool's next hop, and pool01's users with
// -DisasterMode. Failback waits for pool01 to answer, with its Front End service running.
func TestDisasterFailover(t *testing.T) {
	d, clk := newSim(t, failoverYAML(t))
	if err := d.SetPoolUnreachable(pool01, true); err != nil {
		t.Fatal(err)
	}
	if d.Reachable(pool01) || d.Reachable(fe1p1) || d.Reachable(fe2p1) || !d.Reachable(fe1p2) {
		t.Fatal("SetPoolUnreachable did not take the pool's alias and servers down")
	}
	if err := failoverCMS(t, d, clk, fe1p2, pool02, false).err; !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "use -Force") {
		t.Fatalf("FailoverCMS without -Force: %v", err)
	}
	msg := mustOK(t, "FailoverCMS -Force", failoverCMS(t, d, clk, fe1p2, pool02, true))
	if want := "the Central Management store moved from pool01.contoso.com to pool02.contoso.com (Invoke-CsManagementServerFailover -BackupSqlServerFqdn <pool02.contoso.com's back-end store> -Force)"; msg != want {
		t.Errorf("FailoverCMS = %q, want %q", msg, want)
	}
	mustOK(t, "MoveEdgeNextHop", moveEdge(t, d, clk, fe2p2, edge01, pool02))
	if err := failoverPool(t, d, clk, fe1p2, pool01, false).err; err == nil || !strings.Contains(err.Error(), "does not answer: use -DisasterMode") {
		t.Fatalf("FailoverPool without -DisasterMode: %v", err)
	}
	mustOK(t, "FailoverPool -DisasterMode", failoverPool(t, d, clk, fe1p2, pool01, true))
	if p := poolOf(t, d, pool01); p.FailedOverTo != pool02 || p.HostsCMS {
		t.Fatalf("pool01 = %+v", p)
	}

	if err := failbackPool(t, d, clk, fe1p2, pool01).err; !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("FailbackPool while pool01 is down: %v", err)
	}
	if err := d.SetPoolUnreachable(pool01, false); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFrontEnd(fe2p1, false); err != nil {
		t.Fatal(err)
	}
	if fe, err := backend(t, d, fe2p1).(lync.Failover).FrontEndService(context.Background()); err != nil || fe != protocol.ServiceStopped {
		t.Fatalf("FrontEndService = %q, %v", fe, err)
	}
	if err := failbackPool(t, d, clk, fe1p2, pool01).err; !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "(RTCSRV)") {
		t.Fatalf("FailbackPool while RTCSRV is stopped: %v", err)
	}
	// A restart of the server starts its Front End service.
	if err := d.Reboot(fe2p1); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, d, fe2p1); s.FrontEnd != protocol.ServiceRunning {
		t.Fatalf("after a reboot the Front End service is %q", s.FrontEnd)
	}
	mustOK(t, "FailbackPool", failbackPool(t, d, clk, fe1p1, pool01))
	if p := poolOf(t, d, pool01); p.FailedOverTo != "" {
		t.Fatalf("pool01 after failback = %+v", p)
	}
}

// TestFailoverOutlivesItsCaller: an agent that gives up (stops, is killed) does not stop the
// cmdlet: it runs to its end and the pool is failed over, which only a read tells. A restart of
// the server the cmdlet runs on cuts it short, and nothing changes.
func TestFailoverOutlivesItsCaller(t *testing.T) {
	d, clk := newSim(t, failoverYAML(t))
	mustOK(t, "FailoverCMS", failoverCMS(t, d, clk, fe1p2, pool02, false))
	mustOK(t, "MoveEdgeNextHop", moveEdge(t, d, clk, fe1p2, edge01, pool02))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := backend(t, d, fe1p2).(lync.Failover).FailoverPool(ctx, pool01, false, false)
		done <- err
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("FailoverPool after its caller gave up: %v", err)
	}
	if p := poolOf(t, d, pool01); p.FailedOverTo != "" {
		t.Fatal("failed over before its duration")
	}
	clk.Step(5 * time.Second)
	waitUntil(t, "the failover to finish", func() bool { return poolOf(t, d, pool01).FailedOverTo == pool02 })
	tl := d.Timeline()
	if x := tl[len(tl)-1]; x.Kind != "FailoverPool" || x.Outcome != OutcomeSucceeded {
		t.Errorf("timeline:\n%s", timelineSummary(tl))
	}

	// The failback, cut short by a restart of its server.
	done2 := make(chan error, 1)
	go func() {
		_, err := backend(t, d, fe2p2).(lync.Failover).FailbackPool(context.Background(), pool01, false)
		done2 <- err
	}()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Reboot(fe2p2); err != nil {
		t.Fatal(err)
	}
	if err := <-done2; !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "restarted while FailbackPool ran on it") {
		t.Fatalf("FailbackPool cut short: %v", err)
	}
	if p := poolOf(t, d, pool01); p.FailedOverTo != pool02 {
		t.Fatal("a failback cut short changed the pool")
	}
	tl = d.Timeline()
	if x := tl[len(tl)-1]; x.Kind != "FailbackPool" || x.Outcome != OutcomeInterrupted {
		t.Errorf("timeline:\n%s", timelineSummary(tl))
	}
	// The server and the topology lock are free again: the same step, asked again, runs.
	mustOK(t, "FailbackPool after the restart", failbackPool(t, d, clk, fe2p2, pool01))
	if p := poolOf(t, d, pool01); p.FailedOverTo != "" {
		t.Fatal("the second failback did not land")
	}
	if dups := Duplicates(d.Timeline()); len(dups) != 0 {
		t.Errorf("duplicates: %v", dups)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

// TestFailoverStateSurvivesRestart: the CMS pool, the pools failed over, the Edge pools' next hops
// and stopped Front End services are Lync's state: a restarted sim process keeps them. A state
// file of format 2 (before failover existed) reads as a deployment where none happened.
func TestFailoverStateSurvivesRestart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	yml := failoverYAML(t)
	d, clk := newSim(t, yml, WithStateFile(stateFile))
	mustOK(t, "FailoverCMS", failoverCMS(t, d, clk, fe1p2, pool02, false))
	mustOK(t, "MoveEdgeNextHop", moveEdge(t, d, clk, fe1p2, edge01, pool02))
	mustOK(t, "FailoverPool", failoverPool(t, d, clk, fe1p2, pool01, false))
	if err := d.SetFrontEnd(fe2p1, false); err != nil {
		t.Fatal(err)
	}
	before := failoverFacts(d.Snapshot())

	d2, err := Parse([]byte(yml), WithClock(NewFakeClock(clk.Now())), WithStateFile(stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if after := failoverFacts(d2.Snapshot()); !reflect.DeepEqual(before, after) {
		t.Fatalf("failover state changed across a restart:\nbefore %v\nafter  %v", before, after)
	}
	if p := poolOf(t, d2, pool01); p.FailedOverTo != pool02 || p.CMSPool != pool02 {
		t.Errorf("pool01 after a restart = %+v", p)
	}
	if n := d2.Counts()["FailoverPool/"+pool01]; n != 1 {
		t.Errorf("counts after a restart: %v", d2.Counts())
	}

	// Format 2.
	var raw map[string]any
	b, _ := os.ReadFile(stateFile)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	raw["formatVersion"] = 2
	delete(raw, "cmsPool")
	delete(raw, "edgePools")
	for _, p := range raw["pools"].(map[string]any) {
		delete(p.(map[string]any), "failedOverTo")
	}
	for _, s := range raw["servers"].(map[string]any) {
		delete(s.(map[string]any), "frontEndStopped")
	}
	b, _ = json.Marshal(raw)
	if err := os.WriteFile(stateFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d3, err := Parse([]byte(yml), WithClock(NewFakeClock(clk.Now())), WithStateFile(stateFile))
	if err != nil {
		t.Fatalf("a format 2 state file: %v", err)
	}
	if p := poolOf(t, d3, pool01); p.FailedOverTo != "" || !p.HostsCMS || strings.Join(p.EdgePools, ",") != edge01 {
		t.Errorf("pool01 from a format 2 file = %+v", p)
	}

	// A state file that names a pool that is not there is refused.
	raw["formatVersion"] = 3
	raw["cmsPool"] = "pool99.contoso.com"
	b, _ = json.Marshal(raw)
	if err := os.WriteFile(stateFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]byte(yml), WithStateFile(stateFile)); err == nil || !strings.Contains(err.Error(), `cmsPool: "pool99.contoso.com" is not a pool`) {
		t.Errorf("a state file with an unknown CMS pool: %v", err)
	}
}

func TestEdgePoolConfig(t *testing.T) {
	base := baseYAML
	for _, c := range []struct {
		edges, want string
	}{
		{"edgePools:\n- fqdn: edge01.contoso.com\n", "edgePools[0].nextHop: required"},
		{"edgePools:\n- fqdn: edge01.contoso.com\n  nextHop: pool99.contoso.com\n", `edgePools[0].nextHop: "pool99.contoso.com" is not a Front End pool`},
		{"edgePools:\n- fqdn: edge01.contoso.com\n  nextHop: fe01.pool01.contoso.com\n", "is not a Front End pool"},
		{"edgePools:\n- fqdn: pool02.contoso.com\n  nextHop: pool01.contoso.com\n", "already used"},
		{"edgePools:\n- fqdn: Edge01.contoso.com\n  nextHop: pool01.contoso.com\n", "must be in lower case"},
		{"edgePools:\n- fqdn: edge01.contoso.com\n  nextHop: pool01.contoso.com\n  site: Dublin\n", "edgePools[0].site: unknown field"},
	} {
		if _, err := Parse([]byte(base + c.edges)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.edges, err, c.want)
		}
	}
	d, _ := newSim(t, failoverYAML(t))
	if _, err := d.Backend(edge01); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("Backend(edge pool): %v", err)
	}
	if d.Reachable(edge01) {
		t.Errorf("an Edge pool has no endpoint")
	}
	if err := d.SetUnreachable(edge01, true); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("SetUnreachable(edge pool): %v", err)
	}
	if _, err := anyView(t, d).Pool(context.Background(), edge01); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("Pool(edge pool): %v", err)
	}
	s := d.Snapshot()
	if len(s.EdgePools) != 1 || s.EdgePools[0] != (EdgePoolState{FQDN: edge01, NextHop: pool01}) {
		t.Errorf("snapshot Edge pools = %+v", s.EdgePools)
	}
	if _, err := Parse([]byte(replace(t, baseYAML, "  syncBackup: 3s\n", "  syncBackup: 3s\n  failbackPool: soon\n"))); err == nil || !strings.Contains(err.Error(), "durations.failbackPool") {
		t.Errorf("a bad failback duration: %v", err)
	}
}
