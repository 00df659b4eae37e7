package powershell

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// onPool02 is a backend on fe03.contoso.com, the Front End of pool02 (the fake's survivor), with
// pool01 and pool02 paired.
func onPool02(t *testing.T) (*Backend, fakeLog) {
	t.Helper()
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.ServerFQDN = "fe03.contoso.com" })
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatalf("PairPools: %v", err)
	}
	return b, log
}

// lastRequest is the last request of op the fake received.
func lastRequest(t *testing.T, log fakeLog, op string) loggedRequest {
	t.Helper()
	reqs := log.requests(t)
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Op == op {
			return reqs[i]
		}
	}
	t.Fatalf("no %s request in %v", op, log.ops(t))
	return loggedRequest{}
}

func opCount(t *testing.T, log fakeLog, op string) int {
	n := 0
	for _, o := range log.ops(t) {
		if o == op {
			n++
		}
	}
	return n
}

// TestFailoverSequence: Microsoft's order, each cmdlet with the parameters the reference gives
// and -Confirm:$false in the script; the reads follow (the fake answers Get-CsUserPoolInfo as the
// backend's UNVERIFIED reading expects), and the failback returns the users.
func TestFailoverSequence(t *testing.T) {
	b, log := onPool02(t)

	// Rehearsals first: -WhatIf, nothing changes.
	msg, err := b.FailoverCMS(bg, "pool02.contoso.com", false, true)
	if want := "what if: the Central Management store would move from pool01.contoso.com to POOL02.contoso.com (Invoke-CsManagementServerFailover -WhatIf)"; err != nil || msg != want {
		t.Fatalf("FailoverCMS -WhatIf = %q, %v; want %q", msg, err, want)
	}
	if r := lastRequest(t, log, "FailoverCMS"); r.Params["whatIf"] != true || r.Params["disaster"] != false || r.Params["backupSqlServerFqdn"] != "" {
		t.Errorf("rehearsal request %s", r.Raw)
	}
	if p, _ := b.Pool(bg, "pool01.contoso.com"); !p.HostsCMS {
		t.Fatal("a rehearsal moved the CMS")
	}

	msg, err = b.FailoverCMS(bg, "pool02.contoso.com", false, false)
	if want := "the Central Management store moved from pool01.contoso.com to POOL02.contoso.com (Invoke-CsManagementServerFailover); its active master is fe03.contoso.com"; err != nil || msg != want {
		t.Fatalf("FailoverCMS = %q, %v; want %q", msg, err, want)
	}
	if p, _ := b.Pool(bg, "pool02.contoso.com"); !p.HostsCMS {
		t.Errorf("pool02 after the CMS failover = %+v", p)
	}
	if _, err := b.FailoverCMS(bg, "pool02.contoso.com", false, false); !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "already in POOL02.contoso.com") {
		t.Errorf("FailoverCMS again = %v", err)
	}

	// The Edge pool still uses pool01: the backend refuses before Invoke-CsPoolFailOver runs.
	_, err = b.FailoverPool(bg, "pool01.contoso.com", false, false)
	if !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:pool02.contoso.com") {
		t.Fatalf("FailoverPool before the Edge pool moved = %v", err)
	}
	if n := opCount(t, log, "FailoverPool"); n != 0 {
		t.Fatalf("Invoke-CsPoolFailOver ran %d times", n)
	}

	msg, err = b.MoveEdgeNextHop(bg, "EDGE01.contoso.com", "pool02.contoso.com", false)
	if want := "the next hop of the Edge pool edge01.contoso.com moved from pool01.contoso.com to POOL02.contoso.com (Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:POOL02.contoso.com)"; err != nil || msg != want {
		t.Fatalf("MoveEdgeNextHop = %q, %v; want %q", msg, err, want)
	}
	if r := lastRequest(t, log, "MoveEdgeNextHop"); r.Params["edgePoolFqdn"] != "edge01.contoso.com" || r.Params["registrarFqdn"] != "POOL02.contoso.com" || r.Params["whatIf"] != false {
		t.Errorf("Set-CsEdgeServer request %s", r.Raw)
	}
	// Already there: nothing runs.
	if msg, err := b.MoveEdgeNextHop(bg, "edge01.contoso.com", "pool02.contoso.com", false); err != nil || !strings.Contains(msg, "is already POOL02.contoso.com: nothing changed") {
		t.Errorf("MoveEdgeNextHop again = %q, %v", msg, err)
	}
	if n := opCount(t, log, "MoveEdgeNextHop"); n != 1 {
		t.Errorf("Set-CsEdgeServer ran %d times", n)
	}

	msg, err = b.FailoverPool(bg, "pool01.contoso.com", true, false)
	if want := "failed pool01.contoso.com over to pool02.contoso.com: its users sign in to pool02.contoso.com until failback (Invoke-CsPoolFailOver -PoolFqdn pool01.contoso.com -DisasterMode)"; err != nil || msg != want {
		t.Fatalf("FailoverPool = %q, %v; want %q", msg, err, want)
	}
	if r := lastRequest(t, log, "FailoverPool"); r.Params["poolFqdn"] != "pool01.contoso.com" || r.Params["disasterMode"] != true || r.Params["whatIf"] != nil {
		t.Errorf("Invoke-CsPoolFailOver request %s", r.Raw)
	}
	if p, err := b.Pool(bg, "pool01.contoso.com"); err != nil || p.FailedOverTo != "pool02.contoso.com" || len(p.EdgePools) != 0 {
		t.Errorf("pool01 after the failover = %+v, %v", p, err)
	}
	if p, _ := b.Pool(bg, "pool02.contoso.com"); strings.Join(p.EdgePools, ",") != "edge01.contoso.com" || p.FailedOverTo != "" {
		t.Errorf("pool02 after the failover = %+v", p)
	}
	// Invoke-CsPoolFailOver refuses a second failover itself; the agent never hides that.
	if _, err := b.FailoverPool(bg, "pool01.contoso.com", true, false); err == nil || !strings.Contains(err.Error(), "already failed over") {
		t.Errorf("FailoverPool again = %v", err)
	}

	msg, err = b.FailbackPool(bg, "pool01.contoso.com", true)
	if want := "what if: the users of pool01.contoso.com would sign in to it again (Invoke-CsPoolFailBack -PoolFqdn pool01.contoso.com -WhatIf)"; err != nil || msg != want {
		t.Errorf("FailbackPool -WhatIf = %q, %v", msg, err)
	}
	msg, err = b.FailbackPool(bg, "pool01.contoso.com", false)
	if want := "failed pool01.contoso.com back: its users sign in to it again (Invoke-CsPoolFailBack -PoolFqdn pool01.contoso.com)"; err != nil || msg != want {
		t.Errorf("FailbackPool = %q, %v", msg, err)
	}
	if r := lastRequest(t, log, "FailbackPool"); r.Params["poolFqdn"] != "pool01.contoso.com" || r.Params["whatIf"] != nil || r.Params["disasterMode"] != nil {
		t.Errorf("Invoke-CsPoolFailBack request %s", r.Raw)
	}
	if p, _ := b.Pool(bg, "pool01.contoso.com"); p.FailedOverTo != "" {
		t.Errorf("pool01 after the failback = %+v", p)
	}
	var ce *CmdletError
	if _, err := b.FailbackPool(bg, "pool01.contoso.com", false); !errors.As(err, &ce) || !strings.Contains(err.Error(), "is not failed over") {
		t.Errorf("FailbackPool of a pool not failed over = %v", err)
	}
	if fe, err := b.FrontEndService(bg); err != nil || fe != protocol.ServiceRunning {
		t.Errorf("FrontEndService = %q, %v", fe, err)
	}
}

// TestDisasterCMSFailover: with no active master, the CMS fails over only as a disaster, with
// the surviving pool's back-end store and -Force; the check afterwards must see the new master.
func TestDisasterCMSFailover(t *testing.T) {
	t.Setenv(envCMS, "down")
	b, log := onPool02(t)
	if _, err := b.FailoverCMS(bg, "pool02.contoso.com", false, false); !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "names no active master") {
		t.Fatalf("FailoverCMS without -Force = %v", err)
	}
	// The pool cannot fail over while the CMS does not answer.
	if _, err := b.FailoverPool(bg, "pool01.contoso.com", true, false); !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("FailoverPool while the CMS does not answer = %v", err)
	}
	msg, err := b.FailoverCMS(bg, "pool02.contoso.com", true, false)
	if want := "the Central Management store moved from pool01.contoso.com to POOL02.contoso.com (Invoke-CsManagementServerFailover -BackupSqlServerFqdn sql02.contoso.com -BackupSqlInstanceName rtc -Force); its active master is fe03.contoso.com"; err != nil || msg != want {
		t.Fatalf("FailoverCMS -Force = %q, %v; want %q", msg, err, want)
	}
	r := lastRequest(t, log, "FailoverCMS")
	if r.Params["disaster"] != true || r.Params["backupSqlServerFqdn"] != "sql02.contoso.com" || r.Params["backupSqlInstanceName"] != "rtc" {
		t.Errorf("disaster request %s", r.Raw)
	}
	if g := lastRequest(t, log, "GetBackendStore"); g.Params["poolFqdn"] != "POOL02.contoso.com" {
		t.Errorf("back-end store read %s", g.Raw)
	}
}

func TestFailoverCMSRefusals(t *testing.T) {
	// On a Front End of the CMS pool itself.
	b1, log1 := newTestBackend(t, protocol.ProductLync2013, nil)
	if _, err := b1.FailoverCMS(bg, "pool02.contoso.com", false, false); !errors.Is(err, lync.ErrConflict) ||
		!strings.Contains(err.Error(), "runs on a Front End of the pool the Central Management store moves to (pool02.contoso.com), not on fe01.contoso.com of pool01.contoso.com") {
		t.Errorf("FailoverCMS on the wrong pool = %v", err)
	}
	if n := opCount(t, log1, "FailoverCMS"); n != 0 {
		t.Errorf("the cmdlet ran %d times", n)
	}
	// Unpaired: pool02 is not the CMS pool's backup pool.
	b2, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.ServerFQDN = "fe03.contoso.com" })
	if _, err := b2.FailoverCMS(bg, "pool02.contoso.com", false, false); !errors.Is(err, lync.ErrConflict) ||
		!strings.Contains(err.Error(), "the backup pool of POOL02.contoso.com is (none)") {
		t.Errorf("FailoverCMS to an unpaired pool = %v", err)
	}
	if _, err := b2.FailoverCMS(bg, "pool 02", false, false); err == nil {
		t.Errorf("a bad FQDN was accepted")
	}
}

// TestFailoverCMSIsChecked: a CMS failover whose cmdlet returned but whose master did not move is
// an error that says so.
func TestFailoverCMSIsChecked(t *testing.T) {
	defer func(timeout, interval time.Duration) { cmsVerifyTimeout, cmsVerifyInterval = timeout, interval }(cmsVerifyTimeout, cmsVerifyInterval)
	cmsVerifyTimeout, cmsVerifyInterval = 200*time.Millisecond, 20*time.Millisecond
	t.Setenv(envCMS, "stuck")
	b, _ := onPool02(t)
	_, err := b.FailoverCMS(bg, "pool02.contoso.com", false, false)
	if err == nil || errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), `still names the active master "fe02.contoso.com", not a Front End of POOL02.contoso.com`) {
		t.Errorf("FailoverCMS that did not move = %v", err)
	}
}

// TestEdgeNextHopRefusalsAndUnknownProperty: unknown names; an Edge pool as the next hop; and, when
// the next hop's property is not the one the backend reads (UNVERIFIED), the Edge pool is moved
// without a check, and Invoke-CsPoolFailOver's own refusal is a conflict with the way out.
func TestEdgeNextHopRefusalsAndUnknownProperty(t *testing.T) {
	b, log := onPool02(t)
	if _, err := b.MoveEdgeNextHop(bg, "edge09.contoso.com", "pool02.contoso.com", false); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("an unknown Edge pool: %v", err)
	}
	if _, err := b.MoveEdgeNextHop(bg, "edge01.contoso.com", "pool09.contoso.com", false); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("an unknown next hop: %v", err)
	}
	if _, err := b.MoveEdgeNextHop(bg, "edge01.contoso.com", "edge01.contoso.com", false); err == nil {
		t.Errorf("an Edge pool as its own next hop was accepted")
	}
	msg, err := b.MoveEdgeNextHop(bg, "edge01.contoso.com", "pool02.contoso.com", true)
	if want := "what if: the next hop of the Edge pool edge01.contoso.com would move from pool01.contoso.com to POOL02.contoso.com (Set-CsEdgeServer -Identity EdgeServer:edge01.contoso.com -Registrar Registrar:POOL02.contoso.com -WhatIf)"; err != nil || msg != want {
		t.Errorf("MoveEdgeNextHop -WhatIf = %q, %v", msg, err)
	}
	if p, _ := b.Pool(bg, "pool01.contoso.com"); strings.Join(p.EdgePools, ",") != "edge01.contoso.com" {
		t.Errorf("a rehearsal moved the Edge pool: %+v", p)
	}

	t.Setenv(envEdgeProps, "other")
	b2, log2 := onPool02(t)
	if _, err := b2.FailoverCMS(bg, "pool02.contoso.com", false, false); err != nil {
		t.Fatal(err)
	}
	if p, _ := b2.Pool(bg, "pool01.contoso.com"); len(p.EdgePools) != 0 {
		t.Errorf("Edge pools read without their property: %v", p.EdgePools)
	}
	_, err = b2.FailoverPool(bg, "pool01.contoso.com", false, false)
	if !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "is specified in topology as the next hop for the Edge server") || !strings.Contains(err.Error(), EdgeNextHopHint) {
		t.Errorf("Invoke-CsPoolFailOver's refusal = %v", err)
	}
	msg, err = b2.MoveEdgeNextHop(bg, "edge01.contoso.com", "pool02.contoso.com", false)
	if err != nil || !strings.Contains(msg, "moved from (unknown) to POOL02.contoso.com") {
		t.Errorf("MoveEdgeNextHop with an unknown next hop = %q, %v", msg, err)
	}
	if _, err := b2.FailoverPool(bg, "pool01.contoso.com", false, false); err != nil {
		t.Errorf("FailoverPool after the move: %v", err)
	}
	_ = log
	_ = log2
}

func TestFailoverPoolRefusals(t *testing.T) {
	b, log := onPool02(t)
	if _, err := b.FailoverPool(bg, "pool05.contoso.com", false, false); !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "has no backup pool") {
		t.Errorf("a pool without a backup pool: %v", err)
	}
	if _, err := b.FailoverPool(bg, "pool01.contoso.com", false, false); !errors.Is(err, lync.ErrConflict) ||
		!strings.Contains(err.Error(), "hosts the active Central Management store (ActiveMasterFqdn fe02.contoso.com): fail it over to pool02.contoso.com first") {
		t.Errorf("the CMS pool: %v", err)
	}
	if _, err := b.FailoverPool(bg, "pool09.contoso.com", false, false); !errors.Is(err, lync.ErrNotFound) {
		t.Errorf("an unknown pool: %v", err)
	}
	if _, err := b.FailbackPool(bg, "pool01.contoso.com", false); err == nil {
		t.Errorf("FailbackPool of a pool not failed over succeeded")
	}
	if n := opCount(t, log, "FailoverPool"); n != 0 {
		t.Errorf("Invoke-CsPoolFailOver ran %d times", n)
	}
}

// TestFailoverStateUnreadable: a pool without users reads as serving its own; a read that fails
// leaves FailedOverTo empty without failing the pool's read.
func TestFailoverStateUnreadable(t *testing.T) {
	t.Setenv(envNoUsers, "1")
	b, _ := onPool02(t)
	if p, err := b.Pool(bg, "pool01.contoso.com"); err != nil || p.FailedOverTo != "" {
		t.Errorf("Pool without users = %+v, %v", p, err)
	}
	if _, err := FailedOverTo("pool01.contoso.com", map[string]string{"RegistrarPool": "pool01.contoso.com"}); err == nil || !strings.Contains(err.Error(), "[RegistrarPool]") {
		t.Errorf("an answer without the property: %v", err)
	}
	if to, err := FailedOverTo("pool01.contoso.com", map[string]string{"primarypoolfqdn": "POOL01.contoso.com."}); err != nil || to != "" {
		t.Errorf("the pool itself: %q, %v", to, err)
	}
	if to, err := FailedOverTo("pool01.contoso.com", map[string]string{"PrimaryPoolFqdn": "pool02.contoso.com"}); err != nil || to != "pool02.contoso.com" {
		t.Errorf("the backup pool: %q, %v", to, err)
	}
}

func TestFailoverCallsMayTakeLong(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	if d := b.write.timeoutFor(opFailbackPool); d < time.Hour {
		t.Errorf("Invoke-CsPoolFailBack may take %s, Microsoft says up to 60 minutes", d)
	}
	if d := b.write.timeoutFor(opSyncBackup); d != 30*time.Second {
		t.Errorf("SyncBackup's timeout = %s, want the CallTimeout", d)
	}
}
