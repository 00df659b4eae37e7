//go:build unix

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/localrun"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
)

// result is what one run found.
type result struct {
	converged bool
	elapsed   time.Duration
	kills     int
	restarts  int
	dupLines  []string // sim.Duplicates
	overlaps  []string // Bootstrap on more Front Ends of a pool at once than maxParallelPerPool
	notes     []string // anything else worth saying (a crash, a failed restart, the state unreadable)
	failure   string   // on non-convergence: the conditions and the manager log tail
}

func (r result) duplicates() int { return len(r.dupLines) + len(r.overlaps) }

func (r result) String(i, n int) string {
	state := "converged"
	if !r.converged {
		state = "NOT converged"
	}
	line := fmt.Sprintf("run %d/%d: %s in %.1fs, manager kills %d, agent restarts %d, duplicates %d",
		i, n, state, r.elapsed.Seconds(), r.kills, r.restarts, r.duplicates())
	if len(r.overlaps) > 0 {
		line += fmt.Sprintf(" (%d of them maxParallelPerPool violations)", len(r.overlaps))
	}
	var b strings.Builder
	b.WriteString(line)
	for _, group := range [][]string{r.dupLines, r.overlaps, r.notes} {
		for _, l := range group {
			b.WriteString("\n" + indent(l))
		}
	}
	if r.failure != "" {
		b.WriteString("\n" + strings.TrimRight(r.failure, "\n"))
	}
	return b.String()
}

// run is one run in progress.
type run struct {
	*harness
	i         int
	dir       string
	rng       *rand.Rand
	key       client.ObjectKey
	admin     string // the sim admin API's URL
	probe     string // the manager's readyz URL
	frontEnds []string
	sim       *localrun.Proc
	manager   *localrun.Proc
	mgrArgs   []string
	mgrStarts int
	events    *os.File
	created   time.Time
	res       result
	// goal is what the pair must reach besides Synced (a failover leg); nil: Synced.
	goal func(*drv1alpha1.PoolPair) bool
}

func (h *harness) runOnce(ctx context.Context, i int) result {
	r := &run{harness: h, i: i, dir: filepath.Join(chaosDir, fmt.Sprintf("run-%02d", i)),
		rng: rand.New(rand.NewPCG(h.seed, uint64(i))),
		key: client.ObjectKey{Namespace: fmt.Sprintf("chaos-%02d", i), Name: "chaos"}}
	for _, p := range h.tmpl.pools {
		r.frontEnds = append(r.frontEnds, p.servers...)
	}
	defer r.cleanup()
	if err := r.start(ctx); err != nil {
		r.res.failure = indent("setup failed: " + err.Error())
		return r.res
	}
	r.inject(ctx)
	r.converge(ctx)
	if r.mode == "failover" && r.res.converged {
		r.failoverRoundTrip(ctx)
	}
	r.check(ctx)
	return r.res
}

// failoverRoundTrip declares a planned failover of the first pool (which hosts the CMS and is the
// Edge pool's next hop), kills the manager at random moments until it is failed over, then
// removes the declaration and does the same until it is failed back and synced again.
func (r *run) failoverRoundTrip(ctx context.Context) {
	pool := r.tmpl.pools[0].fqdn
	for _, leg := range []struct {
		name  string
		patch string
		done  func(*drv1alpha1.PoolPair) bool
	}{
		{"failed over", fmt.Sprintf(`{"spec":{"failover":{"pool":%q,"mode":"Planned","moveEdgeNextHop":true}}}`, pool),
			func(pp *drv1alpha1.PoolPair) bool { return pp.Status.Phase == drv1alpha1.PhaseFailedOver }},
		{"failed back and synced", `{"spec":{"failover":null}}`, func(pp *drv1alpha1.PoolPair) bool {
			return pp.Status.Failover != nil && pp.Status.Failover.Phase == drv1alpha1.FailoverPhaseFailedBack && localrun.ProgressOf(pp).Synced()
		}},
	} {
		pp := &drv1alpha1.PoolPair{ObjectMeta: metav1.ObjectMeta{Name: r.key.Name, Namespace: r.key.Namespace}}
		if err := r.client.Patch(ctx, pp, client.RawPatch(types.MergePatchType, []byte(leg.patch))); err != nil {
			r.res.failure = indent("declaring the failover leg " + leg.name + ": " + err.Error())
			r.res.converged = false
			return
		}
		r.event("patched %s; waiting until %s", leg.patch, leg.name)
		r.res.converged = false
		r.goal = leg.done
		r.inject(ctx)
		r.converge(ctx)
		if !r.res.converged {
			return
		}
	}
}

// start writes the run's deployment, starts the sim and the manager and creates the PoolPair.
func (r *run) start(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	ev, err := os.Create(filepath.Join(r.dir, "events.log"))
	if err != nil {
		return err
	}
	r.events = ev
	ports, err := localrun.FreePorts(3 + len(r.frontEnds) + len(r.tmpl.pools))
	if err != nil {
		return err
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	r.admin = "https://" + adminAddr
	r.probe = fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2])
	listen := map[string]string{}
	next := 3
	for _, p := range r.tmpl.pools {
		listen[p.fqdn] = fmt.Sprintf("127.0.0.1:%d", ports[next])
		next++
		for _, s := range p.servers {
			listen[s] = fmt.Sprintf("127.0.0.1:%d", ports[next])
			next++
		}
	}
	dep, err := r.tmpl.deployment(listen)
	if err != nil {
		return err
	}
	depFile := filepath.Join(r.dir, "deployment.yaml")
	if err := os.WriteFile(depFile, dep, 0o644); err != nil {
		return err
	}
	r.sim, err = localrun.Start(localrun.Spec{Name: "sim", Path: "bin/lync-agent",
		Args: []string{"sim", "--deployment", depFile, "--tls-dir", r.certs,
			"--journal", filepath.Join(r.dir, "journal"), "--state", filepath.Join(r.dir, "sim-state.json"),
			"--admin-listen", adminAddr},
		LogPath: filepath.Join(r.dir, "sim.log"), ReadyLine: "ready"})
	if err != nil {
		return err
	}
	if err := r.sim.WaitReady(ctx, startupTimeout); err != nil {
		return err
	}
	r.mgrArgs = []string{"--agent-tls-dir", r.mgrTLS, "--default-tls-namespaces", r.key.Namespace,
		"--metrics-secure=false", "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2])}
	if err := r.startManager(); err != nil {
		return err
	}
	if err := r.waitManagerReady(ctx); err != nil {
		return err
	}
	return r.createPoolPair(ctx, listen)
}

func (r *run) createPoolPair(ctx context.Context, listen map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.key.Namespace}}
	if err := r.client.Create(ctx, ns); err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns.Name, err)
	}
	pool := func(p poolInfo) drv1alpha1.PoolSpec {
		spec := drv1alpha1.PoolSpec{FQDN: p.fqdn, AgentEndpoint: "https://" + listen[p.fqdn]}
		for _, s := range p.servers {
			spec.Servers = append(spec.Servers, drv1alpha1.ServerSpec{FQDN: s, AgentEndpoint: "https://" + listen[s]})
		}
		return spec
	}
	dur := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	pp := &drv1alpha1.PoolPair{
		TypeMeta:   metav1.TypeMeta{APIVersion: drv1alpha1.GroupVersion.String(), Kind: "PoolPair"},
		ObjectMeta: metav1.ObjectMeta{Name: r.key.Name, Namespace: r.key.Namespace},
		Spec: drv1alpha1.PoolPairSpec{
			Primary:   pool(r.tmpl.pools[0]),
			Backup:    pool(r.tmpl.pools[1]),
			Bootstrap: drv1alpha1.BootstrapSpec{MaxParallelPerPool: 1},
			Sync:      drv1alpha1.SyncSpec{StableFor: dur(time.Second), CheckInterval: dur(10 * time.Second), Timeout: dur(30 * time.Minute)},
		},
	}
	if b, err := yaml.Marshal(pp); err == nil {
		_ = os.WriteFile(filepath.Join(r.dir, "poolpair.yaml"), b, 0o644)
	}
	if err := r.client.Create(ctx, pp); err != nil {
		return fmt.Errorf("creating poolpair %s: %w", r.key, err)
	}
	r.created = time.Now()
	r.event("created poolpair %s", r.key)
	return nil
}

// inject kills the manager (and in agents mode restarts Front End agents) at random moments until
// the faults are used up or the pair reached its goal (synced, or a failover leg).
func (r *run) inject(ctx context.Context) {
	agents := r.mode == "agents"
	// Each call (in failover mode, each leg) has its own budget of faults.
	kills0, restarts0 := r.res.kills, r.res.restarts
	killsLeft := func() bool { return r.res.kills-kills0 < maxKills }
	restartsLeft := func() bool { return r.res.restarts-restarts0 < maxRestarts }
	for killsLeft() || agents && restartsLeft() {
		wait := faultMin + time.Duration(r.rng.Int64N(int64(faultMax-faultMin)))
		if r.poll(ctx, wait) {
			return
		}
		now, synced := r.observe(ctx) // once more: the pair may have synced since the last poll
		if synced {
			return
		}
		killManager := !agents || !restartsLeft() || killsLeft() && r.rng.IntN(2) == 0
		if killManager {
			r.res.kills++
			r.event("kill -9 the manager (kill %d) while %s", r.res.kills, now)
			r.manager.Kill()
			if err := r.startManager(); err != nil {
				r.res.notes = append(r.res.notes, "restarting the manager: "+err.Error())
				return
			}
			continue
		}
		fe := r.frontEnds[r.rng.IntN(len(r.frontEnds))]
		r.res.restarts++
		r.event("restart the agent of %s (restart %d) while %s", fe, r.res.restarts, now)
		if err := r.restart.restart(ctx, r.admin, fe); err != nil {
			r.res.notes = append(r.res.notes, fmt.Sprintf("restarting the agent of %s: %v", fe, err))
			r.event("restart failed: %v", err)
		}
	}
}

// converge waits, without faults, for the pair to be Synced and Ready.
func (r *run) converge(ctx context.Context) {
	if r.res.converged || r.res.failure != "" {
		return
	}
	r.event("faults done; waiting up to %s for Synced", convergeTimeout)
	if !r.poll(ctx, convergeTimeout) {
		r.res.elapsed = time.Since(r.created)
	}
}

// poll watches the PoolPair for d. It returns done when the pair is synced (r.res.converged) or the
// run cannot go on (r.res.failure). A manager that exits by itself is restarted at once and noted.
func (r *run) poll(ctx context.Context, d time.Duration) (done bool) {
	deadline := time.Now().Add(d)
	for {
		if _, synced := r.observe(ctx); synced {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-ctx.Done():
			return true
		case <-r.sim.Done():
			r.res.failure = indent(r.sim.ExitError().Error()+"; the end of "+r.sim.LogPath+":") + "\n" + r.sim.LogTail(20)
			return true
		case <-r.manager.Done():
			now, _ := r.observe(ctx)
			msg := fmt.Sprintf("the manager exited by itself (%v) while %s; restarted it (log %s)", r.manager.ExitError(), now, r.manager.LogPath)
			r.res.notes = append(r.res.notes, msg)
			r.event("%s", msg)
			if err := r.startManager(); err != nil {
				r.res.failure = indent("restarting the manager: " + err.Error())
				return true
			}
		case <-time.After(min(left, 200*time.Millisecond)):
		}
	}
}

// check reads the sim's timeline and counts what ran more than once; on non-convergence it keeps
// the conditions and the manager log tail.
func (r *run) check(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if !r.res.converged && r.res.failure == "" {
		var pp drv1alpha1.PoolPair
		var conds string
		if err := r.client.Get(ctx, r.key, &pp); err != nil {
			conds = indent(fmt.Sprintf("(cannot read poolpair %s: %v)", r.key, err))
		} else {
			conds = indent("poolpair "+r.key.String()+": "+localrun.ProgressOf(&pp).String()) + "\n" + localrun.Conditions(&pp)
		}
		r.res.failure = conds + indent("the end of "+r.manager.LogPath+":") + "\n" + r.manager.LogTail(20)
	}
	if r.sim == nil || !alive(r.sim) {
		r.res.notes = append(r.res.notes, "the sim is not running: its timeline cannot be read")
		r.res.converged = false
		return
	}
	time.Sleep(time.Second) // let a step started at the moment of Synced show in the timeline
	st, raw, err := simState(ctx, r.admin, r.certs)
	if raw != nil {
		_ = os.WriteFile(filepath.Join(r.dir, "sim-state-final.json"), raw, 0o644)
	}
	if err != nil {
		r.res.notes = append(r.res.notes, "reading the sim's timeline: "+err.Error())
		r.res.converged = false // D is unknown, so the run cannot pass
		return
	}
	r.res.dupLines = sim.Duplicates(st.Timeline)
	for _, p := range r.tmpl.pools {
		if n := sim.MaxConcurrent(st.Timeline, "Bootstrap", p.servers); n > 1 {
			r.res.overlaps = append(r.res.overlaps, fmt.Sprintf(
				"maxParallelPerPool violated: Bootstrapper ran on %d Front Ends of %s at once (maxParallelPerPool 1)", n, p.fqdn))
		}
	}
	for _, l := range append(append([]string{}, r.res.dupLines...), r.res.overlaps...) {
		r.event("duplicate: %s", l)
	}
}

// cleanup deletes the PoolPair (while the manager can still remove its finalizer), stops the
// manager and the sim, and deletes the namespace.
func (r *run) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !r.created.IsZero() {
		pp := &drv1alpha1.PoolPair{ObjectMeta: metav1.ObjectMeta{Name: r.key.Name, Namespace: r.key.Namespace}}
		if err := r.client.Delete(ctx, pp); err == nil {
			gone := false
			for deadline := time.Now().Add(10 * time.Second); !gone && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				gone = apierrors.IsNotFound(r.client.Get(ctx, r.key, &drv1alpha1.PoolPair{}))
			}
			if !gone { // the next run's manager must not find it
				_ = r.client.Patch(ctx, pp, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
			}
		}
	}
	if r.manager != nil {
		r.manager.Stop(stopGrace)
	}
	if r.sim != nil {
		r.sim.Stop(stopGrace)
	}
	if r.client != nil {
		// Without kube-controller-manager the namespace stays Terminating; it is empty by now.
		_ = r.client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.key.Namespace}})
	}
	if r.events != nil {
		r.events.Close()
	}
}

func (r *run) startManager() error {
	r.mgrStarts++
	log := filepath.Join(r.dir, "manager.log")
	if f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "---- chaos: manager start %d at %s ----\n", r.mgrStarts, time.Now().Format(time.RFC3339Nano))
		f.Close()
	}
	p, err := localrun.Start(localrun.Spec{Name: "manager", Path: "bin/manager", Args: r.mgrArgs,
		Env: []string{"KUBECONFIG=" + r.cp.Kubeconfig}, LogPath: log})
	if err != nil {
		return err
	}
	r.manager = p
	return nil
}

// waitManagerReady polls the manager's readyz, failing at once if it exits.
func (r *run) waitManagerReady(ctx context.Context) error {
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(startupTimeout); time.Now().Before(deadline); {
		if resp, err := hc.Get(r.probe); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.manager.Done():
			return fmt.Errorf("%w; the end of %s:\n%s", r.manager.ExitError(), r.manager.LogPath, r.manager.LogTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the manager did not answer %s within %s; the end of %s:\n%s", r.probe, startupTimeout, r.manager.LogPath, r.manager.LogTail(20))
}

// observe reads the PoolPair and returns its progress line; once it is synced (Ready True, phase
// Synced) it records the run as converged.
func (r *run) observe(ctx context.Context) (progress string, synced bool) {
	var pp drv1alpha1.PoolPair
	if err := r.client.Get(ctx, r.key, &pp); err != nil {
		return fmt.Sprintf("(cannot read the poolpair: %v)", err), false
	}
	p := localrun.ProgressOf(&pp)
	reached := p.Synced()
	if r.goal != nil {
		reached = r.goal(&pp)
	}
	if reached && !r.res.converged {
		r.res.converged, r.res.elapsed = true, time.Since(r.created)
		r.event("reached: %s", p)
	}
	return p.String(), reached
}

func (r *run) event(format string, args ...any) {
	if r.events == nil {
		return
	}
	at := time.Duration(0)
	if !r.created.IsZero() {
		at = time.Since(r.created)
	}
	fmt.Fprintf(r.events, "[%7.2fs] %s\n", at.Seconds(), fmt.Sprintf(format, args...))
}

func alive(p *localrun.Proc) bool {
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}
