//go:build unix

package localrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec says how to start a child process.
type Spec struct {
	// Name is what messages call the process ("sim", "manager").
	Name string
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	Dir string
	// LogPath receives the process's stdout and stderr; it is appended to, so a restarted process
	// keeps its earlier output.
	LogPath string
	// ReadyLine, when set, is a line of output that says the process is ready (see WaitReady).
	ReadyLine string
}

// Proc is a running child process. It runs in its own process group: a Ctrl-C at the terminal
// reaches only the parent, which then stops its children in order, and stopping the group also
// ends anything the child started.
type Proc struct {
	Spec
	cmd   *exec.Cmd
	log   *os.File
	ready chan struct{}
	done  chan struct{}
	err   error // how the process ended; read after done is closed
}

// Start starts the process described by s.
func Start(s Spec) (*Proc, error) {
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening its log: %w", s.Name, err)
	}
	p := &Proc{Spec: s, log: logFile, ready: make(chan struct{}), done: make(chan struct{})}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), s.Env...)
	// One writer for both streams: exec then calls it from one goroutine at a time.
	w := &lineWatcher{out: logFile, want: s.ReadyLine, seen: func() { close(p.ready) }}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild holding the output pipe open must not keep Wait from returning.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", s.Name, s.Path, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (and process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitError describes how the process ended; call it after Done is closed.
func (p *Proc) ExitError() error {
	if p.err == nil {
		return fmt.Errorf("%s exited", p.Name)
	}
	return fmt.Errorf("%s exited: %w", p.Name, p.err)
}

// WaitReady waits for the ReadyLine. It fails at once, with the end of the log, if the process
// exits first, and after timeout if the line never comes.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%w before it was ready; the end of %s:\n%s", p.ExitError(), p.LogPath, p.LogTail(20))
	case <-t.C:
		return fmt.Errorf("%s did not print %q within %s; the end of %s:\n%s", p.Name, p.ReadyLine, timeout, p.LogPath, p.LogTail(20))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop asks the process group to end (SIGTERM), waits up to grace, then kills it (SIGKILL).
// It returns when the process has exited; calling it again is harmless.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		p.signalGroup(syscall.SIGKILL) // whatever the process left behind in its group
		return
	default:
	}
	p.signalGroup(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.signalGroup(syscall.SIGKILL)
		<-p.done
	}
	p.signalGroup(syscall.SIGKILL)
}

// Kill ends the process group at once (SIGKILL), as a crash or a power cut would, and waits for it.
func (p *Proc) Kill() {
	p.signalGroup(syscall.SIGKILL)
	<-p.done
}

func (p *Proc) signalGroup(sig syscall.Signal) {
	// The group id is the leader's pid (Setpgid). ESRCH means the group is already gone.
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		fmt.Fprintf(os.Stderr, "localrun: signalling %s (process group %d): %v\n", p.Name, p.cmd.Process.Pid, err)
	}
}

// LogTail returns the last n lines of the process's log.
func (p *Proc) LogTail(n int) string { return FileTail(p.LogPath, n) }

// FileTail returns the last n lines of a file, or a note saying why it cannot.
func FileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// lineWatcher copies output to the log and calls seen once, at the first line equal to want.
type lineWatcher struct {
	out     *os.File
	want    string
	seen    func()
	once    sync.Once
	partial []byte
}

func (w *lineWatcher) Write(b []byte) (int, error) {
	n, err := w.out.Write(b)
	if w.want == "" {
		return n, err
	}
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break // no complete line yet: keep the rest for the next write
		}
		line := strings.TrimSpace(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
		if line == w.want {
			w.once.Do(w.seen)
			w.want, w.partial = "", nil // nothing more to look for
			break
		}
	}
	return n, err
}
