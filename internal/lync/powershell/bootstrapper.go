package powershell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
)

const (
	// logTailLines and logTailBytes bound BootstrapResult.LogTail.
	logTailLines = 20
	logTailBytes = 4 << 10
	// outputKeep is how much of the end of Bootstrapper's log is read to judge a run.
	outputKeep = 64 << 10
)

// Reboot detection. UNVERIFIED: Bootstrapper's own exit codes and wording are not documented.
// We assume it follows Windows Installer's convention (3010 ERROR_SUCCESS_REBOOT_REQUIRED,
// 1641 ERROR_SUCCESS_REBOOT_INITIATED) and/or says so in its output ("A restart is required",
// "reboot is pending", "must restart"), ignoring lines that say none is needed.
const (
	exitRebootRequired  = 3010
	exitRebootInitiated = 1641
)

var (
	rebootText   = regexp.MustCompile(`(?i)\b(restart|reboot)\b.{0,60}\b(required|needed|pending)\b|\b(requires?|needs?|must)\b.{0,20}\b(restart|reboot)`)
	noRebootText = regexp.MustCompile(`(?i)\bno(t)?\b.{0,30}\b(restart|reboot)|\b(restart|reboot)\b.{0,30}\bnot\b`)
)

// bootstrapper runs the product's Bootstrapper.exe directly: no shell, no arguments.
//
// A run is a process of its own that outlives the agent: its output goes to a file (a pipe would
// break when the agent exits), a caller that gives up (ctx) leaves it running, and only the
// per-run timeout kills it, with everything it started. At most one run goes on per server: a
// Bootstrap call while one runs fails with lync.ErrConflict, whether this process started (or
// adopted) it or an earlier agent process did.
type bootstrapper struct {
	path        string
	pathErr     error  // why there is no default path (DefaultBootstrapperPath), when path is ""
	logPath     string // Bootstrapper's stdout and stderr, truncated at each start
	product     product
	productName string
	timeout     time.Duration
	procs       procs // the OS part; tests set a fake
	log         *slog.Logger

	mu  sync.Mutex // guards cur and every bootRun.waiters; held from looking for a run to starting one
	cur *bootRun   // the run this process started or adopted, until it has ended
}

// bootRun is one run, watched to its end by supervise.
type bootRun struct {
	pid     int
	adopted bool          // started by an earlier agent process
	done    chan struct{} // closed when the run has ended and res, err are set
	res     lync.BootstrapResult
	err     error
	// waiters counts the callers waiting for the result, and a claim by running not yet waited
	// on: RunningBootstrap only hands out a run nobody in this process waits for.
	waiters int
}

// procExit is what proc.wait said.
type procExit struct {
	code  int
	known bool
	err   error
}

// run starts a run and waits for its outcome. A non-zero exit is a result, not an error; errors
// are for a run that could not start (lync.ErrConflict when one is already running), did not
// finish (timeout: lync.ErrUnavailable, with what it printed), or that the caller stopped
// waiting for (ctx: the run goes on; running finds it).
func (bs *bootstrapper) run(ctx context.Context) (lync.BootstrapResult, error) {
	if bs.pathErr != nil {
		return lync.BootstrapResult{}, fmt.Errorf("Bootstrapper.exe of %s (%s): %w", bs.product.name, bs.productName, bs.pathErr)
	}
	if _, err := os.Stat(bs.path); err != nil {
		return lync.BootstrapResult{}, fmt.Errorf("Bootstrapper.exe of %s (%s) not found at %s (set lync-agent's --bootstrapper to "+
			"where it is installed): %w", bs.product.name, bs.productName, bs.path, err)
	}
	bs.mu.Lock()
	r, err := bs.startLocked()
	bs.mu.Unlock()
	if err != nil {
		return lync.BootstrapResult{}, err
	}
	return bs.await(ctx, r)
}

func (bs *bootstrapper) startLocked() (*bootRun, error) {
	if r := bs.cur; r != nil {
		return nil, fmt.Errorf("Bootstrapper.exe is already running on this server (pid %d): %w", r.pid, lync.ErrConflict)
	}
	p, found, err := bs.procs.find(bs.path)
	if err != nil {
		// Starting anyway could double a run: refuse, and let a retry look again.
		return nil, fmt.Errorf("cannot tell whether Bootstrapper.exe is already running: %v: %w", err, lync.ErrUnavailable)
	}
	if found {
		p.release()
		return nil, fmt.Errorf("Bootstrapper.exe is already running on this server (pid %d), started by an earlier agent process: %w",
			p.pid(), lync.ErrConflict)
	}
	out, err := openLog(bs.logPath)
	if err != nil {
		return nil, fmt.Errorf("opening Bootstrapper.exe's log: %w", err)
	}
	p, err = bs.procs.start(bs.path, out)
	out.Close() // the run has its own handle
	if err != nil {
		if errors.Is(err, os.ErrPermission) || strings.Contains(strings.ToLower(err.Error()), "elevation") {
			return nil, fmt.Errorf("starting %s: %w: %w (%s)", bs.path, err, lync.ErrPermission, PermissionHintBootstrapper)
		}
		return nil, fmt.Errorf("starting %s: %w", bs.path, err)
	}
	bs.log.Info("Bootstrapper.exe started", "path", bs.path, "pid", p.pid(), "timeout", bs.timeout, "log", bs.logPath)
	return bs.track(p, false), nil
}

// running claims the run in progress that nobody in this process waits for: this process's own
// run whose caller gave up, or one an earlier agent process left (adopted, then watched like our
// own). The returned wait must be called; found is false when no run goes on, or when this
// process already waits for it.
func (bs *bootstrapper) running() (wait func(context.Context) (lync.BootstrapResult, error), found bool, err error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	r := bs.cur
	switch {
	case r != nil && r.waiters > 0:
		return nil, false, nil
	case r != nil:
		r.waiters++
	default:
		p, found, err := bs.procs.find(bs.path)
		if err != nil || !found {
			return nil, false, err
		}
		bs.log.Info("Bootstrapper.exe started by an earlier agent process is still running; waiting for it", "pid", p.pid())
		r = bs.track(p, true)
	}
	claimed := true
	return func(ctx context.Context) (lync.BootstrapResult, error) {
		bs.mu.Lock()
		if !claimed { // called again after giving up: a waiter again
			r.waiters++
		}
		claimed = false
		bs.mu.Unlock()
		return bs.await(ctx, r)
	}, true, nil
}

// track makes p the current run, with one waiter (the caller), and watches it to its end.
// Called with mu held.
func (bs *bootstrapper) track(p proc, adopted bool) *bootRun {
	r := &bootRun{pid: p.pid(), adopted: adopted, done: make(chan struct{}), waiters: 1}
	bs.cur = r
	go bs.supervise(r, p)
	return r
}

// await waits for r's outcome until ctx ends; the run goes on either way.
func (bs *bootstrapper) await(ctx context.Context, r *bootRun) (lync.BootstrapResult, error) {
	defer func() {
		bs.mu.Lock()
		r.waiters--
		bs.mu.Unlock()
	}()
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return lync.BootstrapResult{ExitCode: -1}, fmt.Errorf("stopped waiting for Bootstrapper.exe (pid %d), which goes on running: %w", r.pid, ctx.Err())
	}
}

// supervise waits for the run to end and records its outcome. A run this process started is
// killed, with everything it started, at the timeout; an adopted one is not (its job, the only
// way to reach its installers, closed with the agent that started it), so it is waited for.
func (bs *bootstrapper) supervise(r *bootRun, p proc) {
	defer p.release()
	exited := make(chan procExit, 1)
	go func() {
		code, known, err := p.wait()
		exited <- procExit{code, known, err}
	}()
	var deadline <-chan time.Time
	if !r.adopted {
		timer := time.NewTimer(bs.timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	var x procExit
	timedOut := false
	select {
	case x = <-exited:
	case <-deadline:
		timedOut = true
		bs.log.Warn("Bootstrapper.exe did not finish in time; stopping it and the installers it started", "pid", r.pid, "timeout", bs.timeout)
		if err := p.kill(); err != nil {
			bs.log.Error("stopping Bootstrapper.exe failed", "pid", r.pid, "error", err)
		}
		x = <-exited
	}
	res, err := bs.judge(r, x, timedOut)
	bs.mu.Lock()
	r.res, r.err = res, err
	bs.cur = nil
	bs.mu.Unlock()
	close(r.done)
}

// judge turns an ended run into its outcome, its log tail read from the log file.
func (bs *bootstrapper) judge(r *bootRun, x procExit, timedOut bool) (lync.BootstrapResult, error) {
	output := readTail(bs.logPath, outputKeep)
	res := lync.BootstrapResult{ExitCode: -1, LogTail: logTail(output)}
	switch {
	case timedOut:
		return res, fmt.Errorf("Bootstrapper.exe did not finish within %s and was stopped, with the installers it started: %w", bs.timeout, lync.ErrUnavailable)
	case x.err != nil:
		return res, fmt.Errorf("waiting for Bootstrapper.exe (pid %d): %v: %w", r.pid, x.err, lync.ErrUnavailable)
	case !x.known:
		// Succeeded or not, nobody can tell: a retryable failure makes the operator run it again,
		// which is safe.
		return res, fmt.Errorf("Bootstrapper.exe (pid %d), started by an earlier agent process, has ended, but its exit code cannot be read on this OS: %w",
			r.pid, lync.ErrUnavailable)
	}
	res.ExitCode = x.code
	// 3010 and 1641 are Windows Installer's successes that need a restart: a run that asks for
	// one did what it could (Backend.verify then checks its effect).
	res.Succeeded = x.code == 0 || x.code == exitRebootRequired || x.code == exitRebootInitiated
	res.RebootRequired = rebootRequired(x.code, output)
	bs.log.Info("Bootstrapper.exe finished", "pid", r.pid, "adopted", r.adopted, "exitCode", res.ExitCode,
		"succeeded", res.Succeeded, "rebootRequired", res.RebootRequired)
	return res, nil
}

// openLog truncates the log for a new run.
func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
}

// readTail is the last n bytes of the file at path ("" if it cannot be read).
func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, io.SeekStart); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.ToValidUTF8(string(b), "?")
}

// rebootRequired says whether a run that ended with code and printed output asks for a restart.
func rebootRequired(code int, output string) bool {
	return code == exitRebootRequired || code == exitRebootInitiated || asksForReboot(output)
}

func asksForReboot(output string) bool {
	for _, line := range strings.Split(output, "\n") {
		if rebootText.MatchString(line) && !noRebootText.MatchString(line) {
			return true
		}
	}
	return false
}

// logTail is the last logTailLines non-blank lines of output, at most logTailBytes.
func logTail(output string) string {
	lines := strings.Split(strings.ReplaceAll(output, "\r\n", "\n"), "\n")
	var kept []string
	size := 0
	for i := len(lines) - 1; i >= 0 && len(kept) < logTailLines; i-- {
		line := strings.TrimRight(lines[i], " \t\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if size+len(line)+1 > logTailBytes {
			if len(kept) == 0 { // one huge line: keep its end
				kept = append(kept, strings.ToValidUTF8(line[len(line)-logTailBytes:], ""))
			}
			break
		}
		size += len(line) + 1
		kept = append(kept, line)
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	return strings.Join(kept, "\n")
}
