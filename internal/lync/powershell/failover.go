package powershell

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Failover follows Microsoft's "Failing over and failing back a pool in Skype for Business
// Server" (the Lync Server 2013 page is the same procedure): the Central Management store first
// when the failed pool hosts it (Invoke-CsManagementServerFailover on a Front End of the surviving
// pool, checked with Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus), the
// Edge pool's next hop (Set-CsEdgeServer -Registrar), then Invoke-CsPoolFailOver [-DisasterMode];
// Invoke-CsPoolFailBack once the pool runs again. Each write checks first what the backend can
// read for sure, runs its cmdlet in the write host with -Confirm:$false (and -WhatIf for a
// rehearsal), and is verified afterwards where a documented read exists.

var _ lync.Failover = (*Backend)(nil)

// How long FailoverCMS waits for Get-CsManagementStoreReplicationStatus to name the new active
// master, and how often it asks (variables: tests shorten them).
var (
	cmsVerifyTimeout  = 2 * time.Minute
	cmsVerifyInterval = 5 * time.Second
)

// cmsStatus is Invoke-AgentGetCmsStatus' answer.
type cmsStatus struct {
	Found                    bool             `json:"found"`
	ActiveMasterFQDN         string           `json:"activeMasterFqdn"`
	ActiveFileTransferAgents jsonList[string] `json:"activeFileTransferAgents"`
	ActiveMasterPool         string           `json:"activeMasterPool"`
}

// in reports whether the active master is a Front End of pool p.
func (s cmsStatus) in(p protocol.Pool) bool {
	master := cleanFQDN(s.ActiveMasterFQDN)
	if master == "" {
		return false
	}
	if pool := cleanFQDN(s.ActiveMasterPool); pool != "" {
		return protocol.SameFQDN(pool, p.FQDN)
	}
	return protocol.SameFQDN(master, p.FQDN) || slices.ContainsFunc(p.Computers, func(c string) bool { return protocol.SameFQDN(c, master) })
}

// pool is the pool of the active master, "" when the CMS does not answer or its pool is unknown.
func (s cmsStatus) pool() string { return cleanFQDN(s.ActiveMasterPool) }

func (b *Backend) cmsStatus(ctx context.Context) (cmsStatus, error) {
	var st cmsStatus
	err := b.read.call(ctx, opGetCmsStatus, nil, &st)
	return st, err
}

// propsResult is Get-AgentEdgePools' answer: each object's properties, or the cmdlet's failure.
type propsResult struct {
	Answers jsonList[relationshipAnswer] `json:"answers"`
	Error   *wireError                   `json:"error"`
}

func (r *propsResult) UnmarshalJSON(b []byte) error {
	type plain propsResult
	return decodeObject(b, (*plain)(r))
}

// edgeEntry is one Edge pool and its next hop ("" when unknown: see EdgeNextHopProperties).
type edgeEntry struct {
	FQDN, NextHop string
	// Known is false when the answer had none of EdgeNextHopProperties.
	Known bool
	// Properties are the names the answer had, sorted.
	Properties []string
}

// edgePools reads the Edge pools of an answer of Get-AgentEdgePools.
func (r *propsResult) edgePools(op string) ([]edgeEntry, error) {
	if r == nil {
		return nil, fmt.Errorf(`powershell %s: decoding the result: "edges" is null`, op)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("powershell %s: Get-CsService -EdgeServer failed: %w", op, classify(op, r.Error))
	}
	var out []edgeEntry
	for _, a := range r.Answers {
		fqdn := ""
		for k, v := range a {
			if strings.EqualFold(k, "Identity") {
				fqdn = cleanFQDN(v) // EdgeServer:<fqdn>
			}
		}
		if fqdn == "" {
			continue
		}
		e := edgeEntry{FQDN: fqdn}
		for k := range a {
			e.Properties = append(e.Properties, k)
		}
		slices.Sort(e.Properties)
		for _, name := range EdgeNextHopProperties {
			for k, v := range a {
				if strings.EqualFold(k, name) && !e.Known {
					e.NextHop, e.Known = cleanFQDN(v), true
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// edgePoolsOf lists the Edge pools whose next hop is pool, sorted (nil when none).
func edgePoolsOf(edges []edgeEntry, pool string) []string {
	var out []string
	for _, e := range edges {
		if e.Known && protocol.SameFQDN(e.NextHop, pool) {
			out = append(out, e.FQDN)
		}
	}
	slices.Sort(out)
	return out
}

func (b *Backend) edgePools(ctx context.Context) ([]edgeEntry, error) {
	var res propsResult
	if err := b.read.call(ctx, opGetEdgePools, nil, &res); err != nil {
		return nil, err
	}
	return res.edgePools(opGetEdgePools)
}

// failoverResult is Get-AgentFailoverState's answer.
type failoverResult struct {
	User   string             `json:"user"`
	Answer relationshipAnswer `json:"answer"`
	Error  *wireError         `json:"error"`
}

func (r *failoverResult) UnmarshalJSON(b []byte) error {
	type plain failoverResult
	return decodeObject(b, (*plain)(r))
}

// failedOverTo reads Pool.FailedOverTo from Get-AgentFailoverState's answer (see FailedOverTo):
// "" with no error when no user is homed on the pool (nothing tells, and no user is served
// elsewhere).
func (r *failoverResult) failedOverTo(op, pool string) (string, error) {
	if r == nil {
		return "", fmt.Errorf(`powershell %s: decoding the result: "failover" is null`, op)
	}
	if r.Error != nil {
		return "", fmt.Errorf("powershell %s: reading whom the users of %s sign in to (Get-CsUser, Get-CsUserPoolInfo) failed: %w", op, pool, classify(op, r.Error))
	}
	if r.User == "" {
		return "", nil
	}
	to, err := FailedOverTo(pool, r.Answer)
	if err != nil {
		return "", fmt.Errorf("powershell %s: Get-CsUserPoolInfo -Identity %s: %w", op, r.User, err)
	}
	return to, nil
}

// FrontEndService reads the Front End service (RTCSRV) on this server (Get-CsWindowsService).
func (b *Backend) FrontEndService(ctx context.Context) (string, error) {
	var res struct {
		Installed bool   `json:"installed"`
		Status    string `json:"status"`
	}
	if err := b.read.call(ctx, opGetFrontEnd, nil, &res); err != nil {
		return "", err
	}
	if !res.Installed {
		return "", fmt.Errorf("powershell %s: the Front End service (RTCSRV) is not installed on this server: %w", opGetFrontEnd, lync.ErrNotFound)
	}
	return normalise(res.Status, serviceStates), nil
}

// failoverCMSParams are Invoke-AgentFailoverCMS' parameters.
type failoverCMSParams struct {
	Disaster              bool   `json:"disaster"`
	WhatIf                bool   `json:"whatIf"`
	BackupSQLServerFQDN   string `json:"backupSqlServerFqdn"`
	BackupSQLInstanceName string `json:"backupSqlInstanceName"`
}

// FailoverCMS makes the standby Central Management store of toPool active. It must run on a Front
// End of toPool, the backup pool of the pool that hosts the CMS (which Get-CsManagementStoreReplicationStatus
// -CentralManagementStoreStatus names by its active master). A CMS that answers is failed over
// without a target store; one that does not (no active master) only in a disaster, which passes
// toPool's back-end store (BackendStore) and -Force. Afterwards the active master must be a
// Front End of toPool within cmsVerifyTimeout.
func (b *Backend) FailoverCMS(ctx context.Context, toPool string, disaster, whatIf bool) (string, error) {
	if err := protocol.ValidateFQDN("toPoolFqdn", toPool); err != nil {
		return "", invalid("toPoolFqdn", err)
	}
	id, err := b.Identity(ctx)
	if err != nil {
		return "", err
	}
	if !protocol.SameFQDN(id.PoolFQDN, toPool) {
		return "", fmt.Errorf("Invoke-CsManagementServerFailover runs on a Front End of the pool the Central Management store moves to (%s), not on %s of %s: %w",
			toPool, id.ServerFQDN, id.PoolFQDN, lync.ErrConflict)
	}
	target, err := b.Pool(ctx, toPool)
	if err != nil {
		return "", err
	}
	st, err := b.cmsStatus(ctx)
	if err != nil {
		return "", err
	}
	if st.in(target) {
		return "", fmt.Errorf("the active Central Management store is already in %s (ActiveMasterFqdn %s): nothing to fail over: %w", target.FQDN, st.ActiveMasterFQDN, lync.ErrConflict)
	}
	from := st.pool()
	if from == "" {
		if cleanFQDN(st.ActiveMasterFQDN) != "" {
			return "", fmt.Errorf("cannot tell the pool of the active master %s (Get-CsComputer): %w", st.ActiveMasterFQDN, lync.ErrUnavailable)
		}
		if !disaster {
			return "", fmt.Errorf("Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus names no active master: the Central Management store does not answer; "+
				"fail it over as a disaster (-Force, to the back-end store of %s): %w", target.FQDN, lync.ErrConflict)
		}
		from = target.BackupPool // the CMS can only be in the pool toPool backs up
	}
	if target.BackupPool == "" || !protocol.SameFQDN(target.BackupPool, from) {
		return "", fmt.Errorf("the Central Management store is active in %s, but the backup pool of %s is %s: it fails over only to the standby store of its pool's backup pool: %w",
			orNone(from), target.FQDN, orNone(target.BackupPool), lync.ErrConflict)
	}
	p := failoverCMSParams{Disaster: disaster, WhatIf: whatIf}
	cmdlet := "Invoke-CsManagementServerFailover"
	if disaster {
		var store BackendStore
		if err := b.read.call(ctx, opGetBackendStore, poolParams{PoolFQDN: target.FQDN}, &store); err != nil {
			return "", err
		}
		if cleanFQDN(store.SQLServerFQDN) == "" {
			return "", fmt.Errorf("cannot tell the back-end SQL Server store of %s (its UserServer service names no UserDatabase), which a disaster failover of the Central Management store needs: %w",
				target.FQDN, lync.ErrConflict)
		}
		p.BackupSQLServerFQDN, p.BackupSQLInstanceName = cleanFQDN(store.SQLServerFQDN), strings.TrimSpace(store.SQLInstanceName)
		cmdlet += " -BackupSqlServerFqdn " + p.BackupSQLServerFQDN
		if p.BackupSQLInstanceName != "" {
			cmdlet += " -BackupSqlInstanceName " + p.BackupSQLInstanceName
		}
		cmdlet += " -Force"
	}
	if whatIf {
		if err := b.write.call(ctx, opFailoverCMS, p, nil); err != nil {
			return "", err
		}
		return fmt.Sprintf("what if: the Central Management store would move from %s to %s (%s -WhatIf)", from, target.FQDN, cmdlet), nil
	}
	b.log.Warn("failing the Central Management store over", "from", from, "to", target.FQDN, "disaster", disaster)
	if err := b.write.call(ctx, opFailoverCMS, p, nil); err != nil {
		return "", err
	}
	master, err := b.awaitCMS(ctx, target)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the Central Management store moved from %s to %s (%s); its active master is %s", from, target.FQDN, cmdlet, master), nil
}

// awaitCMS waits until the active master is a Front End of pool, as Microsoft's procedure checks
// after the failover (ActiveMasterFqdn, ActiveFileTransferAgents).
func (b *Backend) awaitCMS(ctx context.Context, pool protocol.Pool) (string, error) {
	deadline := time.Now().Add(cmsVerifyTimeout)
	var last cmsStatus
	var lastErr error
	for {
		st, err := b.cmsStatus(ctx)
		if err == nil && st.in(pool) {
			return cleanFQDN(st.ActiveMasterFQDN), nil
		}
		last, lastErr = st, err
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("Invoke-CsManagementServerFailover returned; waiting for its check: %w", ctx.Err())
		case <-time.After(cmsVerifyInterval):
		}
	}
	saw := fmt.Sprintf("names the active master %q", last.ActiveMasterFQDN)
	if lastErr != nil {
		saw = "failed: " + lastErr.Error()
	}
	return "", fmt.Errorf("Invoke-CsManagementServerFailover returned, but after %s Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus still %s, not a Front End of %s: "+
		"check the Central Management store before going on", cmsVerifyTimeout, saw, pool.FQDN)
}

// edgeNextHopParams are Invoke-AgentMoveEdgeNextHop's parameters.
type edgeNextHopParams struct {
	EdgePoolFQDN  string `json:"edgePoolFqdn"`
	RegistrarFQDN string `json:"registrarFqdn"`
	WhatIf        bool   `json:"whatIf"`
}

// MoveEdgeNextHop makes registrar the next hop of edgePool (Set-CsEdgeServer -Identity
// EdgeServer:<edgePool> -Registrar Registrar:<registrar>), as Microsoft's procedure does for a
// next hop in another site. edgePool must be an Edge pool of the topology (Get-CsService
// -EdgeServer) and registrar a Front End pool (Get-CsPool), not an Edge pool. An Edge pool already
// using registrar is left alone; afterwards the next hop is read back (when the backend can read
// it: EdgeNextHopProperties).
func (b *Backend) MoveEdgeNextHop(ctx context.Context, edgePool, registrar string, whatIf bool) (string, error) {
	p := protocol.EdgeNextHopParams{EdgePoolFQDN: edgePool, RegistrarFQDN: registrar}
	if err := p.Validate(); err != nil {
		return "", err
	}
	edges, err := b.edgePools(ctx)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(edges, func(e edgeEntry) bool { return protocol.SameFQDN(e.FQDN, edgePool) })
	if i < 0 {
		return "", fmt.Errorf("Edge pool %q is not in the topology (Get-CsService -EdgeServer): %w", edgePool, lync.ErrNotFound)
	}
	edge := edges[i]
	if slices.ContainsFunc(edges, func(e edgeEntry) bool { return protocol.SameFQDN(e.FQDN, registrar) }) {
		return "", fmt.Errorf("registrar %s is an Edge pool, not a Front End pool: %w", registrar, lync.ErrConflict)
	}
	hop, err := b.Pool(ctx, registrar)
	if err != nil {
		return "", err
	}
	cmdlet := fmt.Sprintf("Set-CsEdgeServer -Identity EdgeServer:%s -Registrar Registrar:%s", edge.FQDN, hop.FQDN)
	was := edge.NextHop
	if !edge.Known {
		was = "(unknown)"
		b.log.Warn("cannot read the Edge pool's next hop (EdgeNextHopProperties); setting it without checking", "edgePool", edge.FQDN)
	}
	if edge.Known && protocol.SameFQDN(edge.NextHop, hop.FQDN) {
		if whatIf {
			return fmt.Sprintf("what if: the next hop of the Edge pool %s is already %s: nothing would change", edge.FQDN, hop.FQDN), nil
		}
		return fmt.Sprintf("the next hop of the Edge pool %s is already %s: nothing changed", edge.FQDN, hop.FQDN), nil
	}
	params := edgeNextHopParams{EdgePoolFQDN: edge.FQDN, RegistrarFQDN: hop.FQDN, WhatIf: whatIf}
	if err := b.write.call(ctx, opMoveEdgeNextHop, params, nil); err != nil {
		return "", err
	}
	if whatIf {
		return fmt.Sprintf("what if: the next hop of the Edge pool %s would move from %s to %s (%s -WhatIf)", edge.FQDN, was, hop.FQDN, cmdlet), nil
	}
	if edge.Known {
		after, err := b.edgePools(ctx)
		if err != nil {
			return "", fmt.Errorf("%s returned, but reading the Edge pools back failed: %w", cmdlet, err)
		}
		if j := slices.IndexFunc(after, func(e edgeEntry) bool { return protocol.SameFQDN(e.FQDN, edge.FQDN) }); j < 0 || !protocol.SameFQDN(after[j].NextHop, hop.FQDN) {
			now := "(gone)"
			if j >= 0 {
				now = after[j].NextHop
			}
			return "", fmt.Errorf("%s returned, but the next hop of %s reads %s", cmdlet, edge.FQDN, now)
		}
	}
	return fmt.Sprintf("the next hop of the Edge pool %s moved from %s to %s (%s)", edge.FQDN, was, hop.FQDN, cmdlet), nil
}

// FailoverPool lets pool's users sign in to its backup pool (Invoke-CsPoolFailOver -PoolFqdn
// <pool> [-DisasterMode]). Refused first (lync.ErrConflict) when the pool has no backup pool,
// hosts the active Central Management store, when the CMS does not answer at all (it "must be
// functional when the pool's users are failed over"), or when an Edge pool uses it as next hop
// (as far as the backend reads: Invoke-CsPoolFailOver refuses that itself, and its refusal is a
// lync.ErrConflict too). Everything else is the cmdlet's to refuse.
func (b *Backend) FailoverPool(ctx context.Context, pool string, disasterMode, whatIf bool) (string, error) {
	p := protocol.PoolFailoverParams{PoolFQDN: pool, DisasterMode: disasterMode, WhatIf: whatIf}
	if err := p.ValidateFailover(); err != nil {
		return "", err
	}
	failed, err := b.Pool(ctx, pool)
	if err != nil {
		return "", err
	}
	if failed.BackupPool == "" {
		return "", fmt.Errorf("%s has no backup pool in the published topology: Invoke-CsPoolFailOver needs one: %w", failed.FQDN, lync.ErrConflict)
	}
	st, err := b.cmsStatus(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case st.in(failed):
		return "", fmt.Errorf("%s hosts the active Central Management store (ActiveMasterFqdn %s): fail it over to %s first (Invoke-CsManagementServerFailover on a Front End of %s): %w",
			failed.FQDN, st.ActiveMasterFQDN, failed.BackupPool, failed.BackupPool, lync.ErrConflict)
	case cleanFQDN(st.ActiveMasterFQDN) == "":
		return "", fmt.Errorf("Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus names no active master: the Central Management store does not answer, "+
			"and it must before %s fails over: fail it over to %s first (a disaster failover, -Force): %w", failed.FQDN, failed.BackupPool, lync.ErrConflict)
	}
	if len(failed.EdgePools) > 0 {
		moves := make([]string, len(failed.EdgePools))
		for i, e := range failed.EdgePools {
			moves[i] = fmt.Sprintf("Set-CsEdgeServer -Identity EdgeServer:%s -Registrar Registrar:%s", e, failed.BackupPool)
		}
		return "", fmt.Errorf("%s is the next hop of the Edge pool(s) %s: move it to another Front End pool first (%s), or External access, federation and XMPP stop working: %w",
			failed.FQDN, strings.Join(failed.EdgePools, ", "), strings.Join(moves, "; "), lync.ErrConflict)
	}
	cmdlet := "Invoke-CsPoolFailOver -PoolFqdn " + failed.FQDN
	if disasterMode {
		cmdlet += " -DisasterMode"
	}
	if whatIf {
		if err := b.write.call(ctx, opFailoverPool, p, nil); err != nil {
			return "", err
		}
		return fmt.Sprintf("what if: the users of %s would sign in to its backup pool %s until failback (%s -WhatIf)", failed.FQDN, failed.BackupPool, cmdlet), nil
	}
	b.log.Warn("failing a pool over", "pool", failed.FQDN, "to", failed.BackupPool, "disasterMode", disasterMode)
	if err := b.write.call(ctx, opFailoverPool, p, nil); err != nil {
		return "", err
	}
	b.noteFailoverState(ctx, failed.FQDN, failed.BackupPool)
	return fmt.Sprintf("failed %s over to %s: its users sign in to %s until failback (%s)", failed.FQDN, failed.BackupPool, failed.BackupPool, cmdlet), nil
}

// FailbackPool returns pool's users to it (Invoke-CsPoolFailBack -PoolFqdn <pool>, the FQDN the
// failover used). The pool must be in the topology; whether it is failed over and runs again is
// the cmdlet's to tell (the backend's reading of it, FailedOverTo, is UNVERIFIED).
func (b *Backend) FailbackPool(ctx context.Context, pool string, whatIf bool) (string, error) {
	p := protocol.PoolFailoverParams{PoolFQDN: pool, WhatIf: whatIf}
	if err := p.ValidateFailback(); err != nil {
		return "", err
	}
	failed, err := b.Pool(ctx, pool)
	if err != nil {
		return "", err
	}
	cmdlet := "Invoke-CsPoolFailBack -PoolFqdn " + failed.FQDN
	if whatIf {
		if err := b.write.call(ctx, opFailbackPool, p, nil); err != nil {
			return "", err
		}
		return fmt.Sprintf("what if: the users of %s would sign in to it again (%s -WhatIf)", failed.FQDN, cmdlet), nil
	}
	b.log.Warn("failing a pool back", "pool", failed.FQDN)
	if err := b.write.call(ctx, opFailbackPool, p, nil); err != nil {
		return "", err
	}
	b.noteFailoverState(ctx, failed.FQDN, "")
	return fmt.Sprintf("failed %s back: its users sign in to it again (%s)", failed.FQDN, cmdlet), nil
}

// noteFailoverState logs when the backend's UNVERIFIED reading of the failover state (FailedOverTo)
// disagrees with what the cmdlet that just succeeded did: the lab check it needs, seen in the field.
func (b *Backend) noteFailoverState(ctx context.Context, pool, want string) {
	got, err := b.Pool(ctx, pool)
	switch {
	case err != nil:
		b.log.Warn("cannot read the pool back after its failover cmdlet", "pool", pool, "error", err)
	case !protocol.SameFQDN(got.FailedOverTo, want) && (got.FailedOverTo != "" || want != ""):
		b.log.Warn("the failover state read (UNVERIFIED: Get-CsUserPoolInfo, UserPoolServingProperties) disagrees with the cmdlet that succeeded; report this",
			"pool", pool, "read", got.FailedOverTo, "want", want)
	}
}

func orNone(pool string) string {
	if pool == "" {
		return "(none)"
	}
	return pool
}
