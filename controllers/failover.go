package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Failover condition reasons and stall reasons.
const (
	ReasonFailingOver            = "FailingOver"
	ReasonFailedOver             = "FailedOver"
	ReasonFailingBack            = "FailingBack"
	ReasonFailedBack             = "FailedBack"
	ReasonRehearsing             = "Rehearsing"
	ReasonRehearsed              = "Rehearsed"
	ReasonRehearsalFoundProblems = "RehearsalFoundProblems"
	ReasonFailedOverOutside      = "FailedOverOutsideOperator"
	StepWaitingForFailedPool     = "WaitingForFailedPool"
	StepWaitingForEdge           = "WaitingForEdgeNextHop"
)

// Microsoft's recovery time objectives for a pool failover.
const (
	rtoLync2013 = 30 * time.Minute
	rtoSkype    = 20 * time.Minute
)

// Failover step states.
const (
	stepPending   = "Pending"
	stepRunning   = "Running"
	stepSucceeded = "Succeeded"
	stepSkipped   = "Skipped"
	stepFailed    = "Failed"
)

func failoverSlot(f *drv1alpha1.FailoverStatus) slot {
	return slot{name: "failover", operation: &f.Operation, lastOperation: &f.LastOperation, failedAttempts: &f.FailedAttempts,
		lastFailureTime: &f.LastFailureTime, manualRetry: true}
}

// failoverInPlay says whether this pass belongs to a failover: one is declared, or one that moved
// users (or may have) has not been failed back. Meanwhile the pairing's own steps wait.
func failoverInPlay(pp *drv1alpha1.PoolPair) bool {
	if pp.Spec.Failover != nil {
		return true
	}
	f := pp.Status.Failover
	return f != nil && (usersMayHaveMoved(f) || f.Operation != nil)
}

// usersMayHaveMoved: a failover (not a rehearsal) got as far as its steps, and has not been
// failed back.
func usersMayHaveMoved(f *drv1alpha1.FailoverStatus) bool {
	if f.Mode == drv1alpha1.FailoverRehearsal {
		return false
	}
	switch f.Phase {
	case drv1alpha1.FailoverPhaseFailingOver, drv1alpha1.FailoverPhaseFailedOver, drv1alpha1.FailoverPhaseFailingBack, drv1alpha1.FailoverPhaseOutcomeUnknown:
		return true
	}
	return false
}

// failoverPools is what one failover pass knows of the two pools, read through the surviving
// pool's agent: the topology (and the failed pool's failover state) lives in the Central
// Management store, which any Front End reads, so the failed pool need not answer.
type failoverPools struct {
	failed, surviving protocol.Pool
	on                agentServer // the surviving pool's Front End that runs the steps
	failedAnswers     bool        // some Front End of the failed pool answered this pass
	survivorProblem   string      // why the surviving pool cannot take the users; "" when it can
}

// failover drives a declared failover, rehearsal or failback. It runs instead of the pairing's
// steps, and reports whether they may run after all (a finished rehearsal). report turns
// status.failover into the phase and the FailedOver condition.
func (p *pass) failover(ctx context.Context, synced bool) bool {
	pp := p.pp
	spec, st := pp.Spec.Failover, pp.Status.Failover
	if spec != nil && p.newDeclaration(spec) {
		st = p.declare(spec)
	}
	if st == nil {
		return true
	}
	if spec != nil && st.Mode != spec.Mode && st.Operation == nil {
		st.Mode = spec.Mode // Planned to Disaster: the pool went down meanwhile
	}
	if st.Operation != nil {
		p.progress(p.failoverReason(), fmt.Sprintf("%s: %s on %s is running", p.failoverWhat(), st.Operation.Kind, st.Operation.Server))
		p.wantRequeue(p.r.OperationPollInterval)
		return false
	}
	if st.Mode == drv1alpha1.FailoverRehearsal && st.Phase == drv1alpha1.FailoverPhaseRehearsed {
		return true
	}
	pools, err := p.readFailoverPools(ctx, st)
	if err != "" {
		p.progress(p.failoverReason(), fmt.Sprintf("%s: %s", p.failoverWhat(), err))
		p.wantRequeue(p.r.UnreachableRetry)
		return false
	}
	st.Serving = serving(st.Pool, pools.failed.FailedOverTo)
	st.CMSPool = strings.ToLower(pools.surviving.CMSPool)
	switch {
	case spec == nil:
		p.failBack(pools)
	case st.Mode == drv1alpha1.FailoverRehearsal:
		p.rehearse(pools, synced)
	default:
		p.failOver(pools, synced)
	}
	p.launch(ctx)
	return false
}

// newDeclaration says whether spec declares a failover other than the one status records.
func (p *pass) newDeclaration(spec *drv1alpha1.FailoverSpec) bool {
	st := p.pp.Status.Failover
	switch {
	case st == nil:
		return true
	case st.Operation != nil:
		return false // never lose an operation in flight
	case !protocol.SameFQDN(st.Pool, spec.Pool):
		return true
	case st.Phase == drv1alpha1.FailoverPhaseFailedBack, st.Phase == drv1alpha1.FailoverPhaseRehearsed && spec.Mode != drv1alpha1.FailoverRehearsal:
		return true
	case st.Phase == drv1alpha1.FailoverPhaseRehearsed && p.specChanged:
		return true // an edited rehearsal runs again
	case st.Phase == drv1alpha1.FailoverPhaseFailedOver && p.requestedAt:
		return true // asked to fail over again (after a failback outside the operator)
	}
	return false
}

// declare starts a failover (or rehearsal) declared in spec: what it will move, and the data-loss
// window as the backup directions stand now.
func (p *pass) declare(spec *drv1alpha1.FailoverSpec) *drv1alpha1.FailoverStatus {
	pp := p.pp
	surviving := pp.Spec.Backup.FQDN
	if protocol.SameFQDN(spec.Pool, surviving) {
		surviving = pp.Spec.Primary.FQDN
	}
	st := &drv1alpha1.FailoverStatus{
		Pool: spec.Pool, SurvivingPool: surviving, Mode: spec.Mode, Phase: drv1alpha1.FailoverPhaseFailingOver,
		DeclaredTime: stamp(p.now), DataLossWindow: p.dataLossWindow(),
		Steps: []drv1alpha1.FailoverStepStatus{{Name: drv1alpha1.FailoverStepCMS, State: stepPending}, {Name: drv1alpha1.FailoverStepEdge, State: stepPending},
			{Name: drv1alpha1.FailoverStepPool, State: stepPending}},
	}
	if spec.Mode == drv1alpha1.FailoverRehearsal {
		st.Phase = drv1alpha1.FailoverPhaseRehearsing
	}
	if prev := pp.Status.Failover; prev != nil {
		// Sequences only grow: the next step's id never repeats one of the last failover.
		st.LastOperation = prev.LastOperation
	}
	pp.Status.Failover = st
	p.event(eventNormal, "FailoverDeclared", "Failover "+spec.Pool, "%s of %s to %s declared (mode %s)", p.failoverWhat(), spec.Pool, surviving, spec.Mode)
	return st
}

// dataLossWindow is how long ago both backup directions were last healthy: zero when they are,
// nil when it is not known (a direction could not be read on this pass: its last known state may
// be stale, as it is when the failed pool does not answer).
func (p *pass) dataLossWindow() *metav1.Duration {
	dirs := p.pp.Status.Backup
	if len(dirs) == 0 || p.obs == nil || len(p.obs.Directions) < 2 {
		return nil
	}
	for _, d := range p.obs.Directions {
		if !d.Read || d.Err != nil {
			return nil
		}
	}
	var since *metav1.Time
	for _, d := range dirs {
		if d.Healthy {
			continue
		}
		if d.UnhealthySince == nil {
			return nil
		}
		if since == nil || d.UnhealthySince.Before(since) {
			since = d.UnhealthySince
		}
	}
	if since == nil {
		return &metav1.Duration{}
	}
	return &metav1.Duration{Duration: p.now.Sub(since.Time).Truncate(time.Second)}
}

// readFailoverPools reads both pools through a Front End of the surviving pool, and judges
// whether it can take the users. It returns why it could not read them.
func (p *pass) readFailoverPools(ctx context.Context, st *drv1alpha1.FailoverStatus) (failoverPools, string) {
	var fp failoverPools
	on, ok := p.poolServer(st.SurvivingPool)
	if !ok {
		return fp, fmt.Sprintf("no Front End server of the surviving pool %s answers", st.SurvivingPool)
	}
	fp.on = on
	var err error
	if fp.surviving, err = p.agents.Pool(ctx, on.Endpoint, st.SurvivingPool); err != nil {
		return fp, fmt.Sprintf("reading %s through %s: %s", st.SurvivingPool, on.FQDN, shortError(err))
	}
	if fp.failed, err = p.agents.Pool(ctx, on.Endpoint, st.Pool); err != nil {
		return fp, fmt.Sprintf("reading %s through %s: %s", st.Pool, on.FQDN, shortError(err))
	}
	var stopped []string
	for _, s := range p.obs.Servers {
		switch {
		case s.Err != nil:
		case s.Pool == st.Pool:
			fp.failedAnswers = true
		case s.Pool == st.SurvivingPool && s.Server.FrontEnd != "" && s.Server.FrontEnd != protocol.ServiceRunning:
			stopped = append(stopped, s.FQDN+" ("+s.Server.FrontEnd+")")
		}
	}
	switch {
	case len(stopped) > 0:
		fp.survivorProblem = fmt.Sprintf("the Front End service (RTCSRV) of %s does not run: start it (Start-CsWindowsService RTCSRV)", strings.Join(stopped, ", "))
	case fp.surviving.FailedOverTo != "":
		fp.survivorProblem = fmt.Sprintf("%s's own users are failed over to %s: a failed-over pool cannot take another pool's users; fail it back first", st.SurvivingPool, fp.surviving.FailedOverTo)
	}
	return fp, ""
}

// guards are the checks a failover must pass before its first step; each problem says what to do.
func (p *pass) guards(fp failoverPools, mode drv1alpha1.FailoverMode, synced bool) []string {
	st := p.pp.Status.Failover
	var problems []string
	if fp.survivorProblem != "" {
		problems = append(problems, fp.survivorProblem)
	}
	if !protocol.SameFQDN(fp.failed.BackupPool, st.SurvivingPool) {
		problems = append(problems, fmt.Sprintf("%s is not paired with %s in the topology (its backup pool is %q): Lync fails a pool over only to its backup pool",
			st.Pool, st.SurvivingPool, fp.failed.BackupPool))
	}
	if mode == drv1alpha1.FailoverPlanned || mode == drv1alpha1.FailoverRehearsal {
		if !fp.failedAnswers {
			problems = append(problems, fmt.Sprintf("no Front End server of %s answers: a planned failover needs both pools; declare mode: Disaster (Invoke-CsPoolFailOver -DisasterMode)", st.Pool))
		} else if !synced && fp.failed.FailedOverTo == "" {
			msg := fmt.Sprintf("the pair is not Synced (phase %s): a planned failover needs both backup directions healthy; wait for Synced, or declare mode: Disaster", p.pp.Status.Phase)
			if w := st.DataLossWindow; w != nil {
				msg += fmt.Sprintf(" (user data changed in the last %s may not be on %s)", w.Duration, st.SurvivingPool)
			}
			problems = append(problems, msg)
		}
	}
	return problems
}

// failOver runs the failover's steps in Microsoft's order, one at a time.
func (p *pass) failOver(fp failoverPools, synced bool) {
	st := p.pp.Status.Failover
	if st.Phase == drv1alpha1.FailoverPhaseFailedOver {
		if !protocol.SameFQDN(fp.failed.FailedOverTo, st.SurvivingPool) {
			p.stall(ReasonFailoverDrifted, fmt.Sprintf("%s's users are no longer served by %s (failed back outside the operator?): the operator does not move them on its own; remove spec.failover to record the failback, or set the %s annotation to fail over again",
				st.Pool, st.SurvivingPool, drv1alpha1.RequestedAtAnnotation))
		}
		p.wantRequeue(durationOr(p.pp.Spec.Sync.CheckInterval, 5*time.Minute))
		return
	}
	if st.Phase == drv1alpha1.FailoverPhaseRefused && st.Generation == p.pp.Generation && !p.requestedAt {
		p.stall(ReasonFailoverRefused, st.Message)
		return
	}
	st.Generation = p.pp.Generation
	if !p.stepsStarted() && fp.failed.FailedOverTo == "" {
		if problems := p.guards(fp, st.Mode, synced); len(problems) > 0 {
			st.Phase = drv1alpha1.FailoverPhaseRefused
			st.Message = fmt.Sprintf("failover of %s to %s refused: %s", st.Pool, st.SurvivingPool, strings.Join(problems, "; "))
			p.stall(ReasonFailoverRefused, st.Message)
			return
		}
	}
	st.Phase, st.Message = drv1alpha1.FailoverPhaseFailingOver, ""
	if !p.runSteps(fp, false) {
		return
	}
	st.Phase = drv1alpha1.FailoverPhaseFailedOver
	completed := stamp(p.now)
	st.CompletedTime = &completed
	st.RecoveryTime = &metav1.Duration{Duration: p.now.Sub(st.DeclaredTime.Time).Truncate(time.Second)}
	p.event(eventNormal, ReasonFailedOver, "Failover "+st.Pool, "%s", p.failedOverMessage())
}

// rehearse runs the guards and every step with -WhatIf: nothing moves.
func (p *pass) rehearse(fp failoverPools, synced bool) {
	st := p.pp.Status.Failover
	if st.Phase == drv1alpha1.FailoverPhaseRehearsed {
		return
	}
	problems := p.guards(fp, drv1alpha1.FailoverRehearsal, synced)
	if !p.runSteps(fp, true) && !p.rehearsalStuck {
		return
	}
	for _, s := range st.Steps {
		if s.State == stepFailed || s.State == stepPending {
			problems = append(problems, s.Name+": "+s.Message)
		}
	}
	st.Phase = drv1alpha1.FailoverPhaseRehearsed
	completed := stamp(p.now)
	st.CompletedTime = &completed
	st.RecoveryTime = &metav1.Duration{Duration: p.now.Sub(st.DeclaredTime.Time).Truncate(time.Second)}
	st.Serving = ""
	if len(problems) > 0 {
		st.Message = "rehearsal of a failover of " + st.Pool + " found problems: " + strings.Join(problems, "; ")
		p.event(eventWarning, ReasonRehearsalFoundProblems, "Failover "+st.Pool, "%s", st.Message)
	} else {
		p.event(eventNormal, ReasonRehearsed, "Failover "+st.Pool, "%s", p.rehearsedMessage())
	}
}

// failBack returns the users to their pool once it answers and runs again; the Central Management
// store stays where it is.
func (p *pass) failBack(fp failoverPools) {
	st := p.pp.Status.Failover
	if st.Mode == drv1alpha1.FailoverRehearsal || st.Phase == drv1alpha1.FailoverPhaseFailedBack {
		return
	}
	if fp.failed.FailedOverTo == "" && st.Operation == nil {
		if st.Phase == drv1alpha1.FailoverPhaseFailingBack || st.Phase == drv1alpha1.FailoverPhaseFailedOver || st.Phase == drv1alpha1.FailoverPhaseOutcomeUnknown {
			st.Phase = drv1alpha1.FailoverPhaseFailedBack
			completed := stamp(p.now)
			st.CompletedTime = &completed
			p.event(eventNormal, ReasonFailedBack, "Failback "+st.Pool, "%s's users are served by %s again", st.Pool, st.Pool)
		} else {
			// Refused or stopped before the users moved: nothing to undo.
			st.Phase = drv1alpha1.FailoverPhaseFailedBack
		}
		return
	}
	if st.Phase != drv1alpha1.FailoverPhaseFailingBack {
		st.Phase = drv1alpha1.FailoverPhaseFailingBack
		st.DeclaredTime, st.CompletedTime, st.RecoveryTime = stamp(p.now), nil, nil
		st.Steps = []drv1alpha1.FailoverStepStatus{{Name: drv1alpha1.FailoverStepFailback, State: stepPending}}
	}
	if !p.failedPoolRuns(st.Pool) {
		p.progress(StepWaitingForFailedPool, fmt.Sprintf("failing %s's users back waits until its Front End servers answer and run the Front End service (RTCSRV) again", st.Pool))
		p.wantRequeue(p.r.UnreachableRetry)
		return
	}
	p.runStep(drv1alpha1.FailoverStepFailback, protocol.KindFailbackPool, st.Pool, protocol.PoolFailoverParams{PoolFQDN: st.Pool}, fp.on, false,
		fp.failed.FailedOverTo == "", "Failing "+st.Pool+"'s users back from "+st.SurvivingPool)
}

// failedPoolRuns: every Front End of the failed pool that the pass knows answers, and runs its
// Front End service where the agent can tell.
func (p *pass) failedPoolRuns(pool string) bool {
	n := 0
	for _, s := range p.obs.Servers {
		if s.Pool != pool {
			continue
		}
		if s.Err != nil || s.Server.FrontEnd != "" && s.Server.FrontEnd != protocol.ServiceRunning {
			return false
		}
		n++
	}
	return n > 0
}

// runSteps runs the failover's steps in order and reports whether they are all done. whatIf runs
// them as a rehearsal.
func (p *pass) runSteps(fp failoverPools, whatIf bool) bool {
	st := p.pp.Status.Failover
	failed, surviving := st.Pool, st.SurvivingPool
	disaster := st.Mode == drv1alpha1.FailoverDisaster || !fp.failedAnswers
	cms := strings.ToLower(fp.surviving.CMSPool)
	cmsStep := p.step(drv1alpha1.FailoverStepCMS)
	switch {
	case cmsStep.State == stepSucceeded:
	case cms == "":
		p.setStep(drv1alpha1.FailoverStepCMS, stepPending, "cannot tell where the Central Management store is")
		p.progress(p.failoverReason(), p.failoverWhat()+": cannot tell where the Central Management store is (Get-CsService -CentralManagement)")
		p.rehearsalStuck = whatIf
		return false
	case cms != failed && cmsStep.State == stepRunning:
		p.setStep(drv1alpha1.FailoverStepCMS, stepSucceeded, "the Central Management store is on "+cms+" now")
	case cms != failed:
		p.setStep(drv1alpha1.FailoverStepCMS, stepSkipped, "the Central Management store is on "+cms+", not in the failed pool")
	case !p.runStep(drv1alpha1.FailoverStepCMS, protocol.KindFailoverCMS, surviving, protocol.FailoverCMSParams{ToPoolFQDN: surviving, Disaster: disaster, WhatIf: whatIf},
		fp.on, whatIf, false, "Failing the Central Management store over from "+failed+" to "+surviving):
		return false
	}
	edgeStep := p.step(drv1alpha1.FailoverStepEdge)
	switch edges := fp.failed.EdgePools; {
	case edgeStep.State == stepSucceeded || edgeStep.State == stepSkipped && whatIf:
	case len(edges) == 0 && edgeStep.State == stepRunning:
		p.setStep(drv1alpha1.FailoverStepEdge, stepSucceeded, "no Edge pool uses "+failed+" as its next hop now")
	case len(edges) == 0:
		st.EdgeCommands = nil
		p.setStep(drv1alpha1.FailoverStepEdge, stepSkipped, "no Edge pool uses "+failed+" as its next hop")
	case !p.moveEdges(fp, edges, whatIf):
		return false
	}
	if whatIf && (cms == failed || len(fp.failed.EdgePools) > 0) {
		// Lync refuses Invoke-CsPoolFailOver while the failed pool hosts the CMS or is an Edge
		// pool's next hop; a rehearsal moved neither, so its -WhatIf run would only say that.
		p.setStep(drv1alpha1.FailoverStepPool, stepSkipped, fmt.Sprintf("a failover would then run Invoke-CsPoolFailOver -PoolFqdn %s%s; not run with -WhatIf now: the steps above moved nothing, so Lync would refuse it for them",
			failed, map[bool]string{true: " -DisasterMode", false: ""}[st.Mode == drv1alpha1.FailoverDisaster]))
		return true
	}
	return p.runStep(drv1alpha1.FailoverStepPool, protocol.KindFailoverPool, failed,
		protocol.PoolFailoverParams{PoolFQDN: failed, DisasterMode: st.Mode == drv1alpha1.FailoverDisaster, WhatIf: whatIf},
		fp.on, whatIf, protocol.SameFQDN(fp.failed.FailedOverTo, surviving), "Failing "+failed+"'s users over to "+surviving)
}

// moveEdges points every Edge pool whose next hop is the failed pool at the surviving pool, or,
// unless the spec lets the operator do it, names the commands and waits for the administrator.
func (p *pass) moveEdges(fp failoverPools, edges []string, whatIf bool) bool {
	st := p.pp.Status.Failover
	var commands []string
	for _, e := range edges {
		commands = append(commands, fmt.Sprintf("Set-CsEdgeServer -Identity EdgeServer:%s -Registrar Registrar:%s", e, st.SurvivingPool))
	}
	st.EdgeCommands = commands
	if !p.pp.Spec.Failover.MoveEdgeNextHop {
		msg := fmt.Sprintf("Edge pool(s) %s use %s as next hop: run %s, or set spec.failover.moveEdgeNextHop: true", strings.Join(edges, ", "), st.Pool, strings.Join(commands, "; "))
		if whatIf {
			p.setStep(drv1alpha1.FailoverStepEdge, stepSkipped, "a failover would wait for the administrator: "+msg)
			return true
		}
		p.setStep(drv1alpha1.FailoverStepEdge, stepRunning, msg)
		p.progress(StepWaitingForEdge, msg)
		p.wantRequeue(p.r.UnreachableRetry)
		return false
	}
	for i, e := range edges {
		if whatIf && i > 0 {
			break // one -WhatIf run shows the move; the others are the same command
		}
		if !p.runStep(drv1alpha1.FailoverStepEdge, protocol.KindMoveEdgeNextHop, e, protocol.EdgeNextHopParams{EdgePoolFQDN: e, RegistrarFQDN: st.SurvivingPool, WhatIf: whatIf},
			fp.on, whatIf, false, fmt.Sprintf("Moving the next hop of Edge pool %s from %s to %s", e, st.Pool, st.SurvivingPool)) {
			return false
		}
		if !whatIf {
			// The next Edge pool is a step of its own: it waits for this one to show.
			p.setStep(drv1alpha1.FailoverStepEdge, stepRunning, "moving Edge pools' next hop")
		}
	}
	if whatIf {
		return true
	}
	p.setStep(drv1alpha1.FailoverStepEdge, stepRunning, "waiting for the Edge pools' next hop to show "+st.SurvivingPool)
	return false
}

// runStep runs one failover cmdlet on the surviving pool and reports whether the step is done:
// its effect observed (done), or, for a rehearsal, its -WhatIf run succeeded. A failover cmdlet
// runs once: a failure stalls the pair until the requested-at annotation, and an outcome that
// cannot be known is reported as such.
func (p *pass) runStep(name string, kind protocol.OperationKind, target string, params any, on agentServer, whatIf, done bool, msg string) bool {
	st := p.pp.Status.Failover
	s := failoverSlot(st)
	if done {
		p.setStep(name, stepSucceeded, msg+": done")
		return true
	}
	if step := p.step(name); step.State == stepSucceeded && whatIf {
		return true
	}
	last := st.LastOperation
	if last != nil && last.Kind == string(kind) && protocol.SameFQDN(last.Target, target) && whatIfOf(last) == whatIf && last.Started != nil && !last.Started.Before(&st.DeclaredTime) {
		switch {
		case last.State == string(protocol.StateSucceeded) && whatIf:
			p.setStep(name, stepSucceeded, last.Message)
			return true
		case last.State == string(protocol.StateSucceeded):
			// Ran; its effect shows on a later read.
			p.setStep(name, stepRunning, msg+": "+kindWord(kind)+" succeeded; waiting for the topology to show it")
			p.progress(p.failoverReason(), p.failoverWhat()+": waiting for "+kindWord(kind)+" to show")
			p.wantRequeue(p.r.OperationPollInterval)
			return false
		case *s.failedAttempts > 0 && (last.OutcomeUnknown || last.Retryable):
			// Retryable too: for a cmdlet that is not idempotent, "try again" means "may not have run".
			st.Phase = drv1alpha1.FailoverPhaseOutcomeUnknown
			p.setStep(name, stepFailed, "outcome unknown: "+last.Message)
			if whatIf {
				p.rehearsalStuck = true
				return false
			}
			p.stall(ReasonFailoverOutcomeUnknown, fmt.Sprintf("%s on %s (%s) may or may not have run: %s; it is not sent again on its own. Check %s's state in Lync, then set the %s annotation to go on (the operator reads the state first and runs only what is not done)",
				kind, target, last.Server, last.Message, target, drv1alpha1.RequestedAtAnnotation))
			return false
		case *s.failedAttempts > 0:
			p.setStep(name, stepFailed, last.Message)
			if whatIf {
				p.rehearsalStuck = true
				return false
			}
			p.stall(ReasonFailoverFailed, fmt.Sprintf("%s on %s failed: %s; fix the cause, then set the %s annotation to run it again", kind, target, last.Message, drv1alpha1.RequestedAtAnnotation))
			return false
		}
	}
	if st.Phase == drv1alpha1.FailoverPhaseOutcomeUnknown {
		st.Phase = drv1alpha1.FailoverPhaseFailingOver
		if kind == protocol.KindFailbackPool {
			st.Phase = drv1alpha1.FailoverPhaseFailingBack
		}
	}
	p.setStep(name, stepRunning, msg)
	p.progress(p.failoverReason(), p.failoverWhat()+": "+msg)
	p.intend(s, kind, target, on, params, msg)
	return false
}

func whatIfOf(op *drv1alpha1.OperationStatus) bool {
	var v struct {
		WhatIf bool `json:"whatIf"`
	}
	_ = json.Unmarshal([]byte(op.Params), &v)
	return v.WhatIf
}

func kindWord(kind protocol.OperationKind) string {
	switch kind {
	case protocol.KindFailoverCMS:
		return "the Central Management store failover"
	case protocol.KindMoveEdgeNextHop:
		return "the Edge next hop move"
	case protocol.KindFailbackPool:
		return "Invoke-CsPoolFailBack"
	}
	return "Invoke-CsPoolFailOver"
}

// stepsStarted says whether any step of this failover has run.
func (p *pass) stepsStarted() bool {
	st := p.pp.Status.Failover
	last := st.LastOperation
	return st.Operation != nil || last != nil && last.Started != nil && !last.Started.Before(&st.DeclaredTime)
}

func (p *pass) step(name string) *drv1alpha1.FailoverStepStatus {
	st := p.pp.Status.Failover
	for i := range st.Steps {
		if st.Steps[i].Name == name {
			return &st.Steps[i]
		}
	}
	st.Steps = append(st.Steps, drv1alpha1.FailoverStepStatus{Name: name, State: stepPending})
	return &st.Steps[len(st.Steps)-1]
}

// setStep records a step's state, with its start and end times.
func (p *pass) setStep(name, state, msg string) {
	s := p.step(name)
	if s.State == state && s.Message == msg {
		return
	}
	now := stamp(p.now)
	if s.Started == nil && state != stepPending {
		s.Started = &now
	}
	if state == stepSucceeded || state == stepSkipped || state == stepFailed {
		if s.Finished == nil || s.State != state {
			s.Finished = &now
		}
	}
	s.State, s.Message = state, msg
}

// serving says who serves the failed pool's users.
func serving(pool, failedOverTo string) string {
	if failedOverTo == "" {
		return ""
	}
	return pool + " users on " + strings.ToLower(failedOverTo)
}

// failoverWhat names what is being carried out.
func (p *pass) failoverWhat() string {
	st := p.pp.Status.Failover
	switch {
	case st == nil:
		return "failover"
	case st.Mode == drv1alpha1.FailoverRehearsal:
		return "rehearsing a failover of " + st.Pool
	case p.pp.Spec.Failover == nil:
		return "failing " + st.Pool + " back"
	}
	return fmt.Sprintf("failing %s over to %s (%s)", st.Pool, st.SurvivingPool, st.Mode)
}

func (p *pass) failoverReason() string {
	st := p.pp.Status.Failover
	switch {
	case st != nil && st.Mode == drv1alpha1.FailoverRehearsal:
		return ReasonRehearsing
	case p.pp.Spec.Failover == nil:
		return ReasonFailingBack
	}
	return ReasonFailingOver
}

// rto is Microsoft's recovery time objective for the pair's product.
func (p *pass) rto() (time.Duration, string) {
	for _, pool := range p.obs.pools() {
		if strings.Contains(pool.Pool.Version, "Skype") {
			return rtoSkype, "Skype for Business Server's 15-20m"
		}
	}
	return rtoLync2013, "Lync Server 2013's 30m"
}

func (p *pass) failedOverMessage() string {
	st := p.pp.Status.Failover
	target, name := p.rto()
	msg := fmt.Sprintf("%s's users are served by %s since %s; recovery took %s (target: %s", st.Pool, st.SurvivingPool,
		st.CompletedTime.UTC().Format(time.RFC3339), st.RecoveryTime.Duration, name)
	if st.RecoveryTime.Duration > target {
		msg += ", exceeded"
	}
	msg += ")"
	if w := st.DataLossWindow; w != nil {
		msg += fmt.Sprintf("; data-loss window at the failover: %s", w.Duration)
	} else {
		msg += "; data-loss window at the failover: unknown (the backup status could not be read both ways)"
	}
	return msg + "; remove spec.failover to fail back"
}

func (p *pass) rehearsedMessage() string {
	st := p.pp.Status.Failover
	var would []string
	for _, s := range st.Steps {
		would = append(would, s.Name+": "+s.Message)
	}
	msg := fmt.Sprintf("rehearsal of a failover of %s to %s passed in %s; nothing moved. A failover would: %s", st.Pool, st.SurvivingPool, st.RecoveryTime.Duration, strings.Join(would, "; "))
	if w := st.DataLossWindow; w != nil {
		msg += fmt.Sprintf("; data-loss window now: %s", w.Duration)
	}
	return msg
}

// reportFailover sets the phase and the FailedOver condition from status.failover. The stall, if
// any, is reported by report.
func (p *pass) reportFailover() {
	st := p.pp.Status.Failover
	if st == nil {
		return
	}
	phase := map[drv1alpha1.FailoverPhase]drv1alpha1.Phase{
		drv1alpha1.FailoverPhaseFailingOver: drv1alpha1.PhaseFailingOver, drv1alpha1.FailoverPhaseOutcomeUnknown: drv1alpha1.PhaseFailingOver,
		drv1alpha1.FailoverPhaseFailedOver: drv1alpha1.PhaseFailedOver, drv1alpha1.FailoverPhaseFailingBack: drv1alpha1.PhaseFailingBack,
	}
	if ph, ok := phase[st.Phase]; ok && st.Mode != drv1alpha1.FailoverRehearsal {
		p.failoverPhase = ph
	}
	switch st.Phase {
	case drv1alpha1.FailoverPhaseFailedOver:
		p.conds.True(drv1alpha1.ConditionFailedOver, ReasonFailedOver, p.failedOverMessage())
	case drv1alpha1.FailoverPhaseFailingOver, drv1alpha1.FailoverPhaseOutcomeUnknown:
		p.conds.False(drv1alpha1.ConditionFailedOver, ReasonFailingOver, p.failoverWhat())
	case drv1alpha1.FailoverPhaseFailingBack:
		p.conds.True(drv1alpha1.ConditionFailedOver, ReasonFailingBack, p.failoverWhat()+": "+st.Serving)
	case drv1alpha1.FailoverPhaseRefused:
		p.conds.False(drv1alpha1.ConditionFailedOver, ReasonFailoverRefused, st.Message)
	case drv1alpha1.FailoverPhaseRehearsing:
		p.conds.False(drv1alpha1.ConditionFailedOver, ReasonRehearsing, p.failoverWhat())
	case drv1alpha1.FailoverPhaseRehearsed:
		if st.Message != "" {
			p.conds.False(drv1alpha1.ConditionFailedOver, ReasonRehearsalFoundProblems, st.Message)
		} else {
			p.conds.False(drv1alpha1.ConditionFailedOver, ReasonRehearsed, p.rehearsedMessage())
		}
	case drv1alpha1.FailoverPhaseFailedBack:
		p.conds.Remove(drv1alpha1.ConditionFailedOver)
	}
	if p.pp.Spec.Failover == nil && (st.Mode == drv1alpha1.FailoverRehearsal || st.Phase == drv1alpha1.FailoverPhaseFailedBack || st.Phase == drv1alpha1.FailoverPhaseRefused) {
		p.conds.Remove(drv1alpha1.ConditionFailedOver)
	}
}
