package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Failover, as Microsoft's "Failing over and failing back a pool" describes it and as the sim
// models it (lync.Failover):
//
//   - The active Central Management store is in one pool (mutState.CMSPool, cms.pool in the file).
//     FailoverCMS, run on a Front End of the pool the CMS moves to, makes that pool's standby
//     active: it must be the backup pool of the CMS pool (paired both ways). A CMS pool that does
//     not answer needs the disaster form (-Force).
//   - Each Edge pool (edgePools in the file) sends its internal traffic to a next hop, a Front End
//     pool; MoveEdgeNextHop changes it (Set-CsEdgeServer -Registrar).
//   - FailoverPool lets a pool's users sign in to its backup pool (poolMut.FailedOverTo). Lync
//     refuses it when the pool has no backup pool (or one paired elsewhere), is already failed
//     over, when its backup pool is itself failed over, while the pool hosts the active CMS, while
//     an Edge pool still uses it as next hop, and when the pool does not answer unless
//     -DisasterMode. FailbackPool returns them; Lync refuses it when the pool is not failed over,
//     and the sim while the pool does not answer (any of its Front End servers unreachable) or its
//     Front End service is stopped on any of its servers.
//   - A pool "does not answer" when every one of its Front End servers is unreachable (the
//     servers' unreachable fault; SetPoolUnreachable sets it on all of them and on the pool's
//     alias). A Front End server's Front End service (RTCSRV) runs unless SetFrontEnd stopped it;
//     a restart of the server starts it. An unreachable server's service keeps its state: the
//     server does not answer, and when it answers again its service runs as it did.
//
// Each write checks everything at once (a refusal is lync.ErrConflict, or lync.ErrUnavailable
// when a pool it needs does not answer, and changes nothing), then runs for its duration
// (durations.failoverCMS, moveEdgeNextHop, failoverPool, failbackPool) as a cmdlet of the
// server's PowerShell host: a process of its own that the agent only waits for. When the caller
// gives up (its ctx ends: the agent stops or is killed), the call returns ctx's error and the run
// goes on to its end, checks again and applies itself: whether a failover happened is then for
// the caller to read, never to guess. A restart of the server (Reboot) or the deployment's
// shutdown cuts the run short, and it changes nothing. Each holds the topology write lock for its
// whole run. With whatIf, the checks run at once and nothing changes: the answer says what would
// happen, and the execution is counted under "<Kind>(WhatIf)".

var _ lync.Failover = (*view)(nil)

// whatIfKind is the kind a rehearsal of kind is counted and recorded under.
func whatIfKind(kind protocol.OperationKind) protocol.OperationKind {
	return kind + "(WhatIf)"
}

// FrontEndService reads the Front End service on this server, as a read (see Pool).
func (v *view) FrontEndService(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := v.d.beforeRead(ctx, v.server); err != nil {
		return "", err
	}
	var out string
	v.d.read(func(st *mutState, _ time.Time) { out = frontEndStatus(st.Servers[v.server]) })
	return out, nil
}

func frontEndStatus(sm *serverMut) string {
	if sm.FrontEndStopped {
		return protocol.ServiceStopped
	}
	return protocol.ServiceRunning
}

// FailoverCMS makes the standby Central Management store of toPool active
// (Invoke-CsManagementServerFailover; with disaster, -Force and the backup pool's back-end store).
// It must run on a Front End of toPool, and toPool must be the backup pool of the pool that hosts
// the CMS, paired both ways.
func (v *view) FailoverCMS(ctx context.Context, toPool string, disaster, whatIf bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	to, err := v.d.resolveFrontEndPool(toPool, "toPool")
	if err != nil {
		return "", err
	}
	cmdlet := "Invoke-CsManagementServerFailover"
	if disaster {
		cmdlet += " -BackupSqlServerFqdn <" + to + "'s back-end store> -Force"
	}
	check := func(st *mutState) (from string, err error) {
		from = st.CMSPool
		switch {
		case v.pool != to:
			return "", fmt.Errorf("%w: Invoke-CsManagementServerFailover runs on a Front End of the pool the Central Management store moves to (%s), not on %s of %s",
				lync.ErrConflict, to, v.server, v.pool)
		case from == to:
			return "", fmt.Errorf("%w: the active Central Management store is already in %s: nothing to fail over", lync.ErrConflict, to)
		case st.Pools[from].BackupPool == "":
			return "", fmt.Errorf("%w: the Central Management store is active in %s, which has no backup pool: there is no standby store to fail over to",
				lync.ErrConflict, from)
		case st.Pools[from].BackupPool != to || st.Pools[to].BackupPool != from:
			return "", fmt.Errorf("%w: the Central Management store is active in %s, whose backup pool is %s, not %s: it fails over only to the standby store of its pool's backup pool",
				lync.ErrConflict, from, orNone(st.Pools[from].BackupPool), to)
		case !disaster && poolDown(st, v.d.topo, from):
			return "", fmt.Errorf("%w: %s, which hosts the Central Management store, does not answer: use -Force (a disaster failover to the back-end store of %s)",
				lync.ErrConflict, from, to)
		}
		return from, nil
	}
	return v.failoverWrite(ctx, protocol.KindFailoverCMS, to, whatIf, v.d.topo.timing.FailoverCMS, func(st *mutState, apply bool) (string, error) {
		from, err := check(st)
		if err != nil {
			return "", err
		}
		if !apply {
			return fmt.Sprintf("what if: the Central Management store would move from %s to %s (%s -WhatIf)", from, to, cmdlet), nil
		}
		st.CMSPool = to
		return fmt.Sprintf("the Central Management store moved from %s to %s (%s)", from, to, cmdlet), nil
	})
}

// MoveEdgeNextHop makes registrar the next hop of edgePool (Set-CsEdgeServer -Registrar). An Edge
// pool that already uses registrar is left alone (the call succeeds, at once).
func (v *view) MoveEdgeNextHop(ctx context.Context, edgePool, registrar string, whatIf bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	edge, err := v.d.resolveEdgePool(edgePool)
	if err != nil {
		return "", err
	}
	hop, err := v.d.resolveFrontEndPool(registrar, "registrar")
	if err != nil {
		return "", err
	}
	cmdlet := fmt.Sprintf("Set-CsEdgeServer -Identity EdgeServer:%s -Registrar Registrar:%s", edge, hop)
	var dur time.Duration
	v.d.read(func(st *mutState, _ time.Time) {
		if st.EdgePools[edge].NextHop != hop {
			dur = v.d.topo.timing.MoveEdgeNextHop
		}
	})
	return v.failoverWrite(ctx, protocol.KindMoveEdgeNextHop, edge, whatIf, dur, func(st *mutState, apply bool) (string, error) {
		was := st.EdgePools[edge].NextHop
		switch {
		case was == hop && !apply:
			return fmt.Sprintf("what if: the next hop of the Edge pool %s is already %s: nothing would change", edge, hop), nil
		case was == hop:
			return fmt.Sprintf("the next hop of the Edge pool %s is already %s: nothing changed", edge, hop), nil
		case !apply:
			return fmt.Sprintf("what if: the next hop of the Edge pool %s would move from %s to %s (%s -WhatIf)", edge, was, hop, cmdlet), nil
		}
		st.EdgePools[edge].NextHop = hop
		st.TopologyVersion++
		return fmt.Sprintf("the next hop of the Edge pool %s moved from %s to %s (%s)", edge, was, hop, cmdlet), nil
	})
}

// FailoverPool lets pool's users sign in to its backup pool (Invoke-CsPoolFailOver).
func (v *view) FailoverPool(ctx context.Context, pool string, disasterMode, whatIf bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name, err := v.d.resolveFrontEndPool(pool, "pool")
	if err != nil {
		return "", err
	}
	cmdlet := "Invoke-CsPoolFailOver -PoolFqdn " + name
	if disasterMode {
		cmdlet += " -DisasterMode"
	}
	t := v.d.topo
	check := func(st *mutState) (backup string, err error) {
		pm := st.Pools[name]
		backup = pm.BackupPool
		switch {
		case backup == "":
			return "", fmt.Errorf("%w: %s has no backup pool in the published topology: Invoke-CsPoolFailOver needs one", lync.ErrConflict, name)
		case st.Pools[backup].BackupPool != name:
			return "", fmt.Errorf("%w: %s, the backup pool of %s, is paired with %s: fix the pairing first", lync.ErrConflict, backup, name, orNone(st.Pools[backup].BackupPool))
		case pm.FailedOverTo != "":
			return "", fmt.Errorf("%w: %s is already failed over to %s: its users sign in there until Invoke-CsPoolFailBack -PoolFqdn %s", lync.ErrConflict, name, pm.FailedOverTo, name)
		case st.Pools[backup].FailedOverTo != "":
			return "", fmt.Errorf("%w: the backup pool %s is itself failed over to %s: a failed-over pool cannot take another pool's users (fail %s back first)",
				lync.ErrConflict, backup, st.Pools[backup].FailedOverTo, backup)
		case st.CMSPool == name:
			return "", fmt.Errorf("%w: %s hosts the active Central Management store: fail it over to %s first (Invoke-CsManagementServerFailover on a Front End of %s)",
				lync.ErrConflict, name, backup, backup)
		}
		if edges := edgePoolsOf(t, st, name); len(edges) > 0 {
			moves := make([]string, len(edges))
			for i, e := range edges {
				moves[i] = fmt.Sprintf("Set-CsEdgeServer -Identity EdgeServer:%s -Registrar Registrar:%s", e, backup)
			}
			what := "the Edge pool " + edges[0]
			if len(edges) > 1 {
				what = "the Edge pools " + strings.Join(edges, ", ")
			}
			return "", fmt.Errorf("%w: %s is the next hop of %s: move it to another Front End pool first (%s), or External access, federation and XMPP stop working",
				lync.ErrConflict, name, what, strings.Join(moves, "; "))
		}
		switch {
		case !disasterMode && poolDown(st, t, name):
			return "", fmt.Errorf("%w: %s does not answer: use -DisasterMode (a disaster failover)", lync.ErrConflict, name)
		case poolDown(st, t, backup):
			return "", fmt.Errorf("%w: the backup pool %s does not answer: it cannot take the users of %s", lync.ErrUnavailable, backup, name)
		}
		return backup, nil
	}
	return v.failoverWrite(ctx, protocol.KindFailoverPool, name, whatIf, t.timing.FailoverPool, func(st *mutState, apply bool) (string, error) {
		backup, err := check(st)
		if err != nil {
			return "", err
		}
		if !apply {
			return fmt.Sprintf("what if: the users of %s would sign in to its backup pool %s until failback (%s -WhatIf)", name, backup, cmdlet), nil
		}
		st.Pools[name].FailedOverTo = backup
		return fmt.Sprintf("failed %s over to %s: its users sign in to %s until failback (%s)", name, backup, backup, cmdlet), nil
	})
}

// FailbackPool returns pool's users to it (Invoke-CsPoolFailBack).
func (v *view) FailbackPool(ctx context.Context, pool string, whatIf bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name, err := v.d.resolveFrontEndPool(pool, "pool")
	if err != nil {
		return "", err
	}
	cmdlet := "Invoke-CsPoolFailBack -PoolFqdn " + name
	t := v.d.topo
	check := func(st *mutState) (backup string, err error) {
		backup = st.Pools[name].FailedOverTo
		if backup == "" {
			return "", fmt.Errorf("%w: %s is not failed over: its users sign in to it (Invoke-CsPoolFailBack is for a pool Invoke-CsPoolFailOver failed over)", lync.ErrConflict, name)
		}
		p, _ := t.pool(name)
		var down, stopped []string
		for _, s := range p.Servers {
			sm := st.Servers[s]
			switch {
			case sm.Faults.Unreachable:
				down = append(down, s)
			case sm.FrontEndStopped:
				stopped = append(stopped, s)
			}
		}
		switch {
		case len(down) > 0:
			return "", fmt.Errorf("%w: %s does not answer (%s unreachable): fail it back once every Front End server of it answers again", lync.ErrConflict, name, strings.Join(down, ", "))
		case len(stopped) > 0:
			return "", fmt.Errorf("%w: the Front End service (RTCSRV) of %s is not running on %s: fail it back once it runs on every Front End server of the pool",
				lync.ErrConflict, name, strings.Join(stopped, ", "))
		case poolDown(st, t, backup):
			return "", fmt.Errorf("%w: %s, which serves the users of %s, does not answer: Invoke-CsPoolFailBack needs it (the agent never runs -DisasterMode, which loses what the users did there)",
				lync.ErrUnavailable, backup, name)
		}
		return backup, nil
	}
	return v.failoverWrite(ctx, protocol.KindFailbackPool, name, whatIf, t.timing.FailbackPool, func(st *mutState, apply bool) (string, error) {
		backup, err := check(st)
		if err != nil {
			return "", err
		}
		if !apply {
			return fmt.Sprintf("what if: the users of %s would sign in to it again instead of %s (%s -WhatIf)", name, backup, cmdlet), nil
		}
		st.Pools[name].FailedOverTo = ""
		return fmt.Sprintf("failed %s back: its users sign in to it again instead of %s (%s)", name, backup, cmdlet), nil
	})
}

// poolDown reports whether pool does not answer: every one of its Front End servers is unreachable.
func poolDown(st *mutState, t *topology, pool string) bool {
	p, _ := t.pool(pool)
	for _, s := range p.Servers {
		if !st.Servers[s].Faults.Unreachable {
			return false
		}
	}
	return true
}

func orNone(pool string) string {
	if pool == "" {
		return "no pool"
	}
	return pool
}

// failoverWrite runs one failover write of kind on target from this server. step checks the
// state and, with apply, changes it (in a copy that replaces the state only when step succeeds),
// returning the call's message. A rehearsal (whatIf) runs step once at once without applying,
// counted and recorded as whatIfKind(kind). A real run checks at once, then runs for dur as a
// process of the server's host (see the package's failover notes), checks again and applies.
func (v *view) failoverWrite(ctx context.Context, kind protocol.OperationKind, target string, whatIf bool, dur time.Duration,
	step func(st *mutState, apply bool) (string, error)) (string, error) {
	d := v.d
	if whatIf {
		x, err := d.begin(whatIfKind(kind), target, v.server)
		if err != nil {
			return "", err
		}
		var msg string
		d.read(func(st *mutState, _ time.Time) { msg, err = step(st, false) })
		x.end(ctx, err)
		return msg, err
	}

	// The run's life: the server's (a restart cuts it short) within the deployment's.
	d.ctl.Lock()
	if d.closed {
		d.ctl.Unlock()
		return "", fmt.Errorf("%w: the simulated deployment is shut down", lync.ErrUnavailable)
	}
	h := d.hosts[v.server]
	if h.rebooting {
		d.ctl.Unlock()
		return "", fmt.Errorf("%w: %s is restarting", lync.ErrUnavailable, v.server)
	}
	life, kill := context.WithCancelCause(d.life)
	stop := context.AfterFunc(h.life, func() { kill(context.Cause(h.life)) })
	d.processes.Add(1)
	d.ctl.Unlock()
	endWrite := d.beginWrite(v.server)
	release := func() {
		stop()
		kill(nil)
		endWrite()
		d.processes.Done()
	}

	x, err := d.begin(kind, target, v.server)
	if err != nil {
		release()
		return "", err
	}
	// Waiting for the topology lock is the caller's: giving up then starts nothing.
	unlock, err := d.lockTopology(ctx)
	if err != nil {
		x.end(ctx, err)
		release()
		return "", err
	}
	var msg string
	d.read(func(st *mutState, _ time.Time) { _, err = step(st.clone(), true) })
	if err != nil {
		x.end(ctx, err)
		unlock()
		release()
		return "", err
	}

	type result struct {
		msg string
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer release()
		defer unlock()
		if err := sleep(life, d.clock, dur); err != nil {
			x.finish(OutcomeInterrupted)
			if errors.Is(context.Cause(life), errRestarted) {
				err = fmt.Errorf("%w: %s restarted while %s ran on it: cut short, it changed nothing", lync.ErrUnavailable, v.server, kind)
			} else {
				err = fmt.Errorf("%w: the simulated deployment shut down while %s ran on %s: it changed nothing", lync.ErrUnavailable, kind, v.server)
			}
			done <- result{err: err}
			return
		}
		var refused error
		err := x.commit(func(st *mutState, _ time.Time) (string, error) {
			m, err := step(st, true)
			if err != nil {
				// Refused at its end (the deployment changed meanwhile): Failed, nothing applied.
				refused = err
				return "", errRefused
			}
			msg = m
			return OutcomeSucceeded, nil
		})
		switch {
		case refused != nil:
			x.finish(OutcomeFailed)
			err = refused
		case err != nil:
			x.finish(OutcomeFailed)
		}
		done <- result{msg: msg, err: err}
	}()
	select {
	case r := <-done:
		return r.msg, r.err
	case <-ctx.Done():
		// The agent gave up; the cmdlet goes on in the server's PowerShell host.
		return "", ctx.Err()
	}
}

// errRefused makes commit leave the state as it was when a step refuses at the end of its run.
var errRefused = errors.New("refused")
