package sim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Outcomes of an Execution.
const (
	OutcomeSucceeded = "Succeeded"
	OutcomeFailed    = "Failed"
	// OutcomeInterrupted: the call's ctx ended (the agent stopped, the operation timed out) before
	// it returned, the server whose agent ran it restarted (Deployment.Reboot), or the sim process
	// died while it ran; it changed nothing, except that an interrupted RestartBackupService has
	// stopped the service and left it Stopped.
	OutcomeInterrupted = "Interrupted"
)

// Execution is one execution of an operation's backend method, as the deployment saw it.
//
// Every call of PairPools, Unpair, SyncBackup, StartBackupService and RestartBackupService that
// names a valid target is
// one execution, from the call to its return, whatever it did (an idempotent call that found
// nothing to do Succeeded; a refusal Failed). A Bootstrap execution is one Bootstrapper.exe run:
// from its start to its end, with the run's outcome whatever its caller's ctx did (a run outlives
// the agent that started it); a Bootstrap call refused because a run is already in progress on
// the server starts no run and is not an execution (Counts still counts the call). A failover
// write (FailoverCMS, MoveEdgeNextHop, FailoverPool, FailbackPool) is one execution from the call
// to the end of its cmdlet, which may come after the call returned (its caller gave up: the
// cmdlet goes on); a rehearsal of one (whatIf) is an execution of kind "<Kind>(WhatIf)".
type Execution struct {
	// Kind is the operation kind (protocol.OperationKind).
	Kind string `json:"kind"`
	// Target is spelled as in the Counts keys: the server for Bootstrap, StartBackupService and
	// RestartBackupService, the pool for SyncBackup, the primary pool for PairPools and Unpair,
	// the pool the CMS moves to for FailoverCMS, the Edge pool for MoveEdgeNextHop, the failed
	// pool for FailoverPool and FailbackPool.
	Target string `json:"target"`
	// Server is the Front End whose view (agent) ran it.
	Server  string    `json:"server"`
	Started time.Time `json:"started"`
	// Finished is nil while it runs.
	Finished *time.Time `json:"finished,omitempty"`
	// Outcome is OutcomeSucceeded, OutcomeFailed or OutcomeInterrupted; empty while it runs. A
	// Bootstrapper run that asks for a restart (exit 3010) is OutcomeFailed: it did not finish.
	Outcome string `json:"outcome,omitempty"`
	// RebootRequired (Bootstrap only): the run ended asking for a restart of the server (exit 3010).
	RebootRequired bool `json:"rebootRequired,omitempty"`
	// RebootPending (Bootstrap only): the run started while a restart that an earlier run asked
	// for was still pending on the server. Such a run does nothing but ask again (Duplicates
	// reports it): the operator must wait for the administrator's restart.
	RebootPending bool `json:"rebootPending,omitempty"`
}

func cloneTimeline(in []Execution) []Execution {
	if in == nil {
		return nil
	}
	out := make([]Execution, len(in))
	for i, x := range in {
		out[i] = x
		if x.Finished != nil {
			f := *x.Finished
			out[i].Finished = &f
		}
	}
	return out
}

// appendExec starts an execution in st and returns its index (the timeline only grows).
func appendExec(st *mutState, now time.Time, kind protocol.OperationKind, target, server string) int {
	st.Timeline = append(st.Timeline, Execution{Kind: string(kind), Target: target, Server: server, Started: now})
	return len(st.Timeline) - 1
}

func finishExec(st *mutState, i int, now time.Time, outcome string) {
	f := now
	st.Timeline[i].Finished = &f
	st.Timeline[i].Outcome = outcome
}

// execution is an Execution in progress, as its method sees it.
type execution struct {
	d     *Deployment
	index int
	ended bool
}

// begin counts a call and starts its execution, in one state change.
func (d *Deployment) begin(kind protocol.OperationKind, target, server string) (*execution, error) {
	x := &execution{d: d}
	err := d.mutate(func(st *mutState, now time.Time) error {
		st.Counts[string(kind)+"/"+target]++
		x.index = appendExec(st, now, kind, target, server)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return x, nil
}

// commit applies fn and, in the same state change (so a state file never holds one without the
// other), ends the execution with the outcome fn reports. When fn fails nothing changes and the
// execution goes on.
func (x *execution) commit(fn func(st *mutState, now time.Time) (outcome string, err error)) error {
	err := x.d.mutate(func(st *mutState, now time.Time) error {
		outcome, err := fn(st, now)
		if err != nil {
			return err
		}
		finishExec(st, x.index, now, outcome)
		return nil
	})
	if err == nil {
		x.ended = true
	}
	return err
}

// end records how a method call ended, unless commit already did: Succeeded without an error,
// Interrupted when ctx ended, Failed otherwise.
func (x *execution) end(ctx context.Context, err error) {
	switch {
	case err == nil:
		x.finish(OutcomeSucceeded)
	case ctx.Err() != nil:
		x.finish(OutcomeInterrupted)
	default:
		x.finish(OutcomeFailed)
	}
}

func (x *execution) finish(outcome string) {
	if x.ended {
		return
	}
	// If even this cannot be saved, the execution stays running in the timeline; a restarted sim
	// process records it Interrupted.
	if x.d.mutate(func(st *mutState, now time.Time) error { finishExec(st, x.index, now, outcome); return nil }) == nil {
		x.ended = true
	}
}

// Duplicates finds the executions that should not have happened, for tests and the chaos
// harness: for each kind and target, an execution is a duplicate when it started while another
// of the same kind and target was still running, or after an earlier one Succeeded. An execution
// after a Failed or Interrupted one is a legitimate retry. The rule is the same for every kind, so
// a second SyncBackup of a pool after a successful one counts, even when the direction needed a
// sync again (a backlog that grew back), and so does a second StartBackupService after the
// service was stopped, or a second RestartBackupService of a server after a later pairing change:
// tests that do this on purpose expect those lines. Executions that start at the same instant
// another finishes do not overlap.
//
// Bootstrap has one more rule: a run that started while a restart an earlier run asked for was
// still pending on the server (Execution.RebootPending) is a duplicate, since the operator must
// wait for the administrator's restart. A run after a run that asked for a restart (exit 3010)
// and after the restart is legitimate.
//
// It returns one human-readable line per duplicate, in timeline order.
func Duplicates(timeline []Execution) []string {
	type group struct {
		key   string
		execs []int
	}
	var groups []*group
	byKey := map[string]*group{}
	for i, x := range timeline {
		k := x.Kind + " " + x.Target
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.execs = append(g.execs, i)
	}
	type dup struct {
		at   int
		line string
	}
	var dups []dup
	for _, g := range groups {
		execs := g.execs
		// By start time; the timeline's order breaks ties.
		slices.SortStableFunc(execs, func(a, b int) int { return timeline[a].Started.Compare(timeline[b].Started) })
		for j := range execs {
			x := timeline[execs[j]]
			why := ""
			for i := range j {
				p := timeline[execs[i]]
				switch {
				case p.Finished == nil || p.Finished.After(x.Started):
					why = fmt.Sprintf("while the %s (started at %s) was still running", ordinal(i+1), stamp(p.Started))
				case p.Outcome == OutcomeSucceeded && !p.RebootRequired:
					why = fmt.Sprintf("after the %s succeeded at %s", ordinal(i+1), stamp(*p.Finished))
				default:
					continue
				}
				break
			}
			if why == "" && x.RebootPending {
				why = "while a restart of the server was pending"
				// Name the run that asked for it: the last one before x that did, not itself
				// started while the restart was pending.
				for i := j - 1; i >= 0; i-- {
					if p := timeline[execs[i]]; p.RebootRequired && !p.RebootPending && p.Finished != nil {
						why += fmt.Sprintf(" (the %s asked for it at %s)", ordinal(i+1), stamp(*p.Finished))
						break
					}
				}
				why += ": only the administrator's restart lets Bootstrapper go on"
			}
			if why == "" {
				continue
			}
			dups = append(dups, dup{at: execs[j], line: fmt.Sprintf("%s ran %d times; the %s started at %s on %s %s",
				g.key, len(execs), ordinal(j+1), stamp(x.Started), x.Server, why)})
		}
	}
	slices.SortStableFunc(dups, func(a, b dup) int { return a.at - b.at })
	out := make([]string, len(dups))
	for i, d := range dups {
		out[i] = d.line
	}
	return out
}

// MaxConcurrent is the largest number of executions of kind on the given servers (the Front End
// whose view ran them) that overlapped at any instant: at the start of each such execution, it
// and those that had started and not yet finished. Executions that start at the same instant
// another finishes do not overlap. Tests of maxParallelPerPool pass Bootstrap and a pool's servers.
func MaxConcurrent(timeline []Execution, kind string, servers []string) int {
	in := map[string]bool{}
	for _, s := range servers {
		in[key(s)] = true
	}
	var xs []Execution
	for _, x := range timeline {
		if x.Kind == kind && in[key(x.Server)] {
			xs = append(xs, x)
		}
	}
	best := 0
	for j, x := range xs {
		n := 1
		for i, p := range xs {
			if i == j {
				continue
			}
			startedBefore := p.Started.Before(x.Started) || p.Started.Equal(x.Started)
			running := p.Finished == nil || p.Finished.After(x.Started)
			if startedBefore && running {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

func stamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z07:00") }

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprint(n) + suffix
}
