package powershell

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestBootstrap(t *testing.T) {
	cases := []struct {
		mode                string
		wantExit            int
		succeeded, rebooted bool
		tailHas             string
	}{
		{"ok", 0, true, false, "Bootstrapper completed successfully."},
		{"fail", 1, false, false, "Cannot read the topology from the Central Management Store."},
		{"reboot-code", 3010, true, true, "SQL Server 2012 Native Client"},
		{"reboot-text", 0, true, true, "A restart is required"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			if c.wantExit > 255 && runtime.GOOS != "windows" {
				t.Skip("exit statuses have 8 bits outside Windows (3010 arrives as 194): TestBootstrapRebootSignals runs 3010 and 1641 through the procs seam")
			}
			t.Setenv(envBootMode, c.mode)
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			res, err := b.Bootstrap(bg)
			if err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			if res.ExitCode != c.wantExit || res.Succeeded != c.succeeded || res.RebootRequired != c.rebooted {
				t.Errorf("result = exit %d succeeded %v reboot %v; want %d %v %v", res.ExitCode, res.Succeeded, res.RebootRequired, c.wantExit, c.succeeded, c.rebooted)
			}
			if !strings.Contains(res.LogTail, c.tailHas) {
				t.Errorf("LogTail %q lacks %q", res.LogTail, c.tailHas)
			}
			if res.BackupPool != "" { // pool01 is not paired in the fake
				t.Errorf("BackupPool = %q", res.BackupPool)
			}
			if n := log.count("bootstrapper args=0"); n != 1 {
				t.Errorf("Bootstrapper must run once without arguments; log: %v", log.lines())
			}
		})
	}
}

func TestBootstrapReadsBackupPool(t *testing.T) {
	t.Setenv(envBootMode, "ok")
	b, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.ServerFQDN = "fe01.contoso.com" })
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	res, err := b.Bootstrap(bg)
	if err != nil || res.BackupPool != "pool02.contoso.com" {
		t.Errorf("Bootstrap = %+v, %v; want BackupPool pool02.contoso.com", res, err)
	}
}

func TestBootstrapLogTailIsBounded(t *testing.T) {
	t.Setenv(envBootMode, "flood")
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	res, err := b.Bootstrap(bg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(res.LogTail, "\n")
	if len(res.LogTail) > logTailBytes || len(lines) > logTailLines {
		t.Errorf("LogTail: %d bytes, %d lines", len(res.LogTail), len(lines))
	}
	if !strings.HasPrefix(lines[len(lines)-1], "line 4999 ") {
		t.Errorf("LogTail does not end with the last line: %q", lines[len(lines)-1])
	}
}

func TestBootstrapTimeout(t *testing.T) {
	t.Setenv(envBootMode, "hang")
	b, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.BootstrapTimeout = 500 * time.Millisecond })
	begin := time.Now()
	res, err := b.Bootstrap(bg)
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "did not finish within 500ms") {
		t.Fatalf("err = %v, want ErrUnavailable naming the timeout", err)
	}
	if res.ExitCode != -1 || res.Succeeded || !strings.Contains(res.LogTail, "Core Components") {
		t.Errorf("result = %+v", res)
	}
	if d := time.Since(begin); d > 15*time.Second {
		t.Errorf("took %s", d)
	}
}

// startWaitingRun starts Bootstrap on a fake Bootstrapper that runs until release is called, and
// returns once the fake runs, with the Bootstrap call's outcome channel and the run's pid.
func startWaitingRun(t *testing.T, b *Backend, log fakeLog, ctx context.Context) (<-chan error, int, func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := b.Bootstrap(ctx)
		done <- err
	}()
	waitFor(t, 10*time.Second, "the fake Bootstrapper to start", func() bool { return log.pid("bootstrapper-pid ") != 0 })
	releaseFile := os.Getenv(envBootGo)
	return done, log.pid("bootstrapper-pid "), func() {
		if err := os.WriteFile(releaseFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// atOnce is the ctx of a call that must fail at once: a run it wrongly starts does not hold the
// test up for long.
func atOnce(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setWaitingMode makes the fake Bootstrapper run until released, then exit with code.
func setWaitingMode(t *testing.T, code int) {
	t.Setenv(envBootMode, "wait")
	t.Setenv(envBootExit, strconv.Itoa(code))
	t.Setenv(envBootGo, filepath.Join(t.TempDir(), "release"))
}

// runningPID is a running process of the image path (the fake Bootstrapper) as the OS sees it, or 0.
func runningPID(t *testing.T, path string) int {
	t.Helper()
	p, found, err := osProcs{}.find(path)
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	if !found {
		return 0
	}
	p.release()
	return p.pid()
}

func TestSecondBootstrapDuringARunConflicts(t *testing.T) {
	setWaitingMode(t, 0)
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	first, _, release := startWaitingRun(t, b, log, bg)
	_, err := b.Bootstrap(atOnce(t))
	if !errors.Is(err, lync.ErrConflict) {
		t.Fatalf("second Bootstrap during a run = %v, want ErrConflict", err)
	}
	// Nobody else waits for the first run, so RunningBootstrap must not hand it out.
	if _, found, err := b.RunningBootstrap(bg); found || err != nil {
		t.Errorf("RunningBootstrap while Bootstrap waits for the run = found %v, %v; want not found", found, err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatalf("first Bootstrap: %v", err)
	}
	if n := log.count("bootstrapper-pid "); n != 1 {
		t.Errorf("Bootstrapper started %d times, want once", n)
	}
}

func TestBootstrapCancelledRunGoesOn(t *testing.T) {
	setWaitingMode(t, 0)
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	ctx, stopAgent := context.WithCancel(bg)
	done, pid, release := startWaitingRun(t, b, log, ctx)
	stopAgent()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "goes on running") {
		t.Fatalf("Bootstrap after its ctx ended = %v, want Canceled saying the run goes on", err)
	}
	if got := runningPID(t, b.boot.path); got != pid || log.count("bootstrapper-exit") != 0 {
		t.Fatalf("the run was stopped with its caller: running pid %d, want %d; log %v", got, pid, log.lines())
	}
	if _, err := b.Bootstrap(atOnce(t)); !errors.Is(err, lync.ErrConflict) {
		t.Fatalf("Bootstrap while the abandoned run goes on = %v, want ErrConflict", err)
	}

	wait, found, err := b.RunningBootstrap(bg)
	if err != nil || !found {
		t.Fatalf("RunningBootstrap = found %v, %v; want the abandoned run", found, err)
	}
	if _, again, _ := b.RunningBootstrap(bg); again {
		t.Errorf("RunningBootstrap handed out the same run twice")
	}
	release()
	res, err := wait(bg)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if res.ExitCode != 0 || !res.Succeeded || !strings.Contains(res.LogTail, "completed successfully") || res.BackupPool != "pool02.contoso.com" {
		t.Errorf("result = %+v; want judged as Bootstrap does: exit 0, the log, backup pool pool02", res)
	}
	if _, found, err := b.RunningBootstrap(bg); found || err != nil {
		t.Errorf("RunningBootstrap after the run ended = found %v, %v", found, err)
	}
	if n := log.count("bootstrapper-pid "); n != 1 {
		t.Errorf("Bootstrapper started %d times, want once", n)
	}
}

func TestRunningBootstrapWithoutARun(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	wait, found, err := b.RunningBootstrap(bg)
	if found || err != nil || wait != nil {
		t.Errorf("RunningBootstrap = %v, %v, %v; want not found", wait != nil, found, err)
	}
	if n := log.count("bootstrapper"); n != 0 {
		t.Errorf("a Bootstrapper ran: %v", log.lines())
	}
}

// An agent stops during a run (its Bootstrap ctx ends) and a new agent process starts: it finds
// the run by the OS's process list, refuses a second one, and waits for the first to end.
func TestRunOfAnEarlierAgentIsFoundNotDoubled(t *testing.T) {
	setWaitingMode(t, 0)
	old, log := newTestBackend(t, protocol.ProductLync2013, nil)
	ctx, stopAgent := context.WithCancel(bg)
	done, pid, release := startWaitingRun(t, old, log, ctx)
	stopAgent()
	<-done
	old.Close()

	restarted, _ := newTestBackend(t, protocol.ProductLync2013, func(o *Options) {
		o.BootstrapperPath, o.BootstrapLog = old.boot.path, old.boot.logPath
	})
	if _, err := restarted.Bootstrap(atOnce(t)); !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "earlier agent process") {
		t.Fatalf("Bootstrap beside the earlier agent's run = %v, want ErrConflict", err)
	}
	wait, found, err := restarted.RunningBootstrap(bg)
	if err != nil || !found {
		t.Fatalf("RunningBootstrap = found %v, %v; want the earlier agent's run", found, err)
	}
	if _, err := restarted.Bootstrap(atOnce(t)); !errors.Is(err, lync.ErrConflict) {
		t.Fatalf("Bootstrap while the adopted run goes on = %v, want ErrConflict", err)
	}
	// Still running: wait must not return before the run ends.
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	if _, err := wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait before the run ended = %v, want DeadlineExceeded", err)
	}
	cancel()
	release()
	res, err := wait(bg)
	if runtime.GOOS == "windows" {
		if err != nil || !res.Succeeded || !strings.Contains(res.LogTail, "completed successfully") {
			t.Errorf("wait = %+v, %v; want the run's success", res, err)
		}
	} else if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "exit code cannot be read") ||
		!strings.Contains(res.LogTail, "completed successfully") {
		// Outside Windows only a parent reads an exit code: a retryable failure, with the log.
		t.Errorf("wait = %+v, %v; want ErrUnavailable for an unknown exit code, with the log tail", res, err)
	}
	if got := runningPID(t, old.boot.path); got != 0 {
		t.Errorf("pid %d still runs after wait returned (the run was %d)", got, pid)
	}
	if n := log.count("bootstrapper-pid "); n != 1 {
		t.Errorf("Bootstrapper started %d times, want once", n)
	}
}

// fakeProcs stands for the OS: a run left by an earlier agent (orphan), or a run it starts
// (started, after writing output to the log), each ending when the test says, with an exit code
// as Windows reports it (32 bits, where a process status elsewhere has 8).
type fakeProcs struct {
	findErr error
	orphan  *fakeProc
	started *fakeProc
	output  string
	starts  atomic.Int32
	booted  time.Time // bootTime's answer; zero: an error
}

type fakeProc struct {
	code  int
	ended chan struct{}
}

func (f *fakeProcs) start(_ string, out *os.File) (proc, error) {
	f.starts.Add(1)
	if f.started == nil {
		return nil, errors.New("the test allows no new run")
	}
	if _, err := out.WriteString(f.output); err != nil {
		return nil, err
	}
	return f.started, nil
}

func (f *fakeProcs) find(string) (proc, bool, error) {
	if f.findErr != nil {
		return nil, false, f.findErr
	}
	if f.orphan == nil {
		return nil, false, nil
	}
	select {
	case <-f.orphan.ended:
		return nil, false, nil
	default:
		return f.orphan, true, nil
	}
}

func (f *fakeProcs) bootTime() (time.Time, error) {
	if f.booted.IsZero() {
		return time.Time{}, errors.New("no boot time here")
	}
	return f.booted, nil
}

func (p *fakeProc) pid() int { return 4242 }
func (p *fakeProc) wait() (int, bool, error) {
	<-p.ended
	return p.code, true, nil
}
func (p *fakeProc) kill() error { return errors.New("not ours") }
func (p *fakeProc) release()    {}

func TestRunOfAnEarlierAgentIsJudgedAsBootstrapDoes(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	fake := &fakeProcs{orphan: &fakeProc{code: 3010, ended: make(chan struct{})}}
	b.boot.procs = fake
	// What the earlier agent's run wrote to the log.
	if err := os.WriteFile(b.boot.logPath, []byte("Installing Windows Fabric...\r\nA restart is required to complete the installation.\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bootstrap(atOnce(t)); !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "pid 4242") {
		t.Fatalf("Bootstrap = %v, want ErrConflict naming pid 4242", err)
	}
	wait, found, err := b.RunningBootstrap(bg)
	if err != nil || !found {
		t.Fatalf("RunningBootstrap = found %v, %v", found, err)
	}
	close(fake.orphan.ended)
	res, err := wait(bg)
	want := lync.BootstrapResult{ExitCode: 3010, Succeeded: true, RebootRequired: true, BackupPool: "pool02.contoso.com",
		LogTail: "Installing Windows Fabric...\nA restart is required to complete the installation."}
	if err != nil || !reflect.DeepEqual(res, want) {
		t.Errorf("wait = %+v, %v\nwant %+v", res, err, want)
	}
	if n := fake.starts.Load(); n != 0 {
		t.Errorf("%d runs started beside the earlier agent's", n)
	}
}

func TestBootstrapRefusesWhenItCannotTellWhetherOneRuns(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	fake := &fakeProcs{findErr: errors.New("Access is denied.")}
	b.boot.procs = fake
	if _, err := b.Bootstrap(bg); !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "Access is denied") {
		t.Errorf("Bootstrap = %v, want ErrUnavailable with the reason", err)
	}
	if _, found, err := b.RunningBootstrap(bg); found || !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("RunningBootstrap = found %v, %v; want ErrUnavailable", found, err)
	}
	if n := fake.starts.Load(); n != 0 {
		t.Errorf("%d runs started without knowing", n)
	}
}

func TestBootstrapTimeoutEndsItsInstallers(t *testing.T) {
	t.Setenv(envBootMode, "hang-child")
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.BootstrapTimeout = 2 * time.Second })
	_, err := b.Bootstrap(bg)
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "did not finish within 2s") {
		t.Fatalf("err = %v, want the timeout", err)
	}
	installer := log.pid("installer-pid ")
	if installer == 0 {
		t.Fatalf("the installer never started: %v", log.lines())
	}
	waitFor(t, 10*time.Second, "Bootstrapper and its installer to end", func() bool { return runningPID(t, b.boot.path) == 0 })
}

func TestBootstrapperMissing(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductSfB2019, func(o *Options) { o.BootstrapperPath = "/nonexistent/Deployment/Bootstrapper.exe" })
	_, err := b.Bootstrap(bg)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/Deployment/Bootstrapper.exe") ||
		!strings.Contains(err.Error(), "Skype for Business Server 2019") || !strings.Contains(err.Error(), "--bootstrapper") {
		t.Errorf("err = %v, want not-exist naming the path, the product and how to set it", err)
	}
}

// Bootstrapper's reboot signals on every OS: its real exit codes (3010, 1641) and wording, from a
// run the procs seam starts, judged as Bootstrap judges its own runs.
func TestBootstrapRebootSignals(t *testing.T) {
	cases := []struct {
		name              string
		code              int
		output            string
		succeeded, reboot bool
	}{
		{"3010 ERROR_SUCCESS_REBOOT_REQUIRED", 3010, "Installing Microsoft SQL Server 2012 Native Client...\r\n", true, true},
		{"1641 ERROR_SUCCESS_REBOOT_INITIATED", 1641, "Installing Windows Fabric...\r\n", true, true},
		{"0 saying a restart is required", 0, "Installing Windows Fabric...\r\nA restart is required to complete the installation.\r\n", true, true},
		{"0 saying a reboot is pending", 0, "Reboot pending: yes\r\nBootstrapper completed successfully.\r\n", true, true},
		{"0 saying none is needed", 0, "No restart is required.\r\nBootstrapper completed successfully.\r\n", true, false},
		{"1 failed", 1, "Bootstrapper encountered an error.\r\n", false, false},
		{"194 (3010 cut to 8 bits) is not a reboot code", 194, "Installing...\r\n", false, false},
		{"3011 is not a reboot code", 3011, "Installing...\r\n", false, false},
	}
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ended := make(chan struct{})
			close(ended)
			fake := &fakeProcs{started: &fakeProc{code: c.code, ended: ended}, output: c.output}
			b.boot.procs = fake
			res, err := b.Bootstrap(bg)
			if err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			if res.ExitCode != c.code || res.Succeeded != c.succeeded || res.RebootRequired != c.reboot {
				t.Errorf("result = exit %d succeeded %v reboot %v; want %d %v %v", res.ExitCode, res.Succeeded, res.RebootRequired, c.code, c.succeeded, c.reboot)
			}
			if want := logTail(c.output); res.LogTail != want {
				t.Errorf("LogTail = %q, want %q", res.LogTail, want)
			}
			if n := fake.starts.Load(); n != 1 {
				t.Errorf("%d runs started, want 1", n)
			}
		})
	}
	if n := log.count("bootstrapper"); n != 0 {
		t.Errorf("a real Bootstrapper ran beside the seam: %v", log.lines())
	}
}

func TestRebootRequired(t *testing.T) {
	for _, c := range []struct {
		code   int
		output string
		want   bool
	}{
		{3010, "", true},
		{1641, "", true},
		{3010, "No restart is required.", true}, // the code alone is enough
		{0, "", false},
		{1, "", false},
		{194, "", false},
		{1641 & 0xff, "", false},
		{0, "Installing...\nThe computer must restart to finish.\n", true},
		{0, "Restart not required", false},
	} {
		if got := rebootRequired(c.code, c.output); got != c.want {
			t.Errorf("rebootRequired(%d, %q) = %v, want %v", c.code, c.output, got, c.want)
		}
	}
}

func TestRebootDetection(t *testing.T) {
	for text, want := range map[string]bool{
		"A restart is required to complete the installation.": true,
		"Reboot pending: yes":                  true,
		"The computer must restart to finish.": true,
		"No restart is required.":              false,
		"Restart not required":                 false,
		"Installing Windows Fabric...":         false,
	} {
		if got := asksForReboot(text); got != want {
			t.Errorf("asksForReboot(%q) = %v, want %v", text, got, want)
		}
	}
}
