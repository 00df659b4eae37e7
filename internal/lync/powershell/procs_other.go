//go:build !windows

package powershell

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Outside Windows there is no Bootstrapper.exe: this is what the tests (and a Linux build of the
// agent) run. A run is its own process group, so it outlives a Ctrl-C to the agent and kill ends
// what it started. A run of an earlier agent is found by scanning /proc for the executable; the
// OS keeps the exit code of a process only for its parent, so such a run's code is unknown.
type osProcs struct{}

// foundPoll is how often a found (not our child) process is checked for having ended.
const foundPoll = 200 * time.Millisecond

func (osProcs) start(exe string, out *os.File) (proc, error) {
	cmd := exec.Command(exe)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return childProc{cmd}, nil
}

func (osProcs) find(exe string) (proc, bool, error) {
	// /proc/<pid>/exe is absolute, with symbolic links resolved.
	want, err := filepath.Abs(exe)
	if err == nil {
		want, err = filepath.EvalSymlinks(want)
	}
	if err != nil {
		return nil, false, err
	}
	entries, err := os.ReadDir("/proc")
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil // no /proc (macOS, BSD): reports none
	}
	if err != nil {
		return nil, false, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Unreadable (another user's, or gone) and zombie processes have no exe link.
		if image, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || image != want {
			continue
		}
		if start, alive := procStart(pid); alive {
			return foundProc{id: pid, start: start}, true, nil
		}
	}
	return nil, false, nil
}

// bootTime is /proc/stat's btime: when the system booted, in seconds since the epoch. Without
// /proc (macOS, BSD) it is an error.
func (osProcs) bootTime() (time.Time, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	return parseBtime(f)
}

// parseBtime reads the btime line of /proc/stat.
func parseBtime(r io.Reader) (time.Time, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "btime ")
		if !ok {
			continue
		}
		secs, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil || secs <= 0 {
			return time.Time{}, fmt.Errorf("/proc/stat: btime %q", rest)
		}
		return time.Unix(secs, 0).UTC(), nil
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, err
	}
	return time.Time{}, errors.New("/proc/stat has no btime line")
}

// childProc is a run this process started.
type childProc struct{ cmd *exec.Cmd }

func (p childProc) pid() int { return p.cmd.Process.Pid }

func (p childProc) wait() (int, bool, error) {
	err := p.cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return -1, false, err
	}
	return p.cmd.ProcessState.ExitCode(), true, nil // -1 when killed by a signal
}

func (p childProc) kill() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

func (childProc) release() {}

// foundProc is a run of an earlier agent: watched through /proc, its start time telling it apart
// from a later process that reuses its pid.
type foundProc struct {
	id    int
	start string
}

func (p foundProc) pid() int { return p.id }

func (p foundProc) wait() (int, bool, error) {
	for {
		if start, alive := procStart(p.id); !alive || start != p.start {
			return -1, false, nil
		}
		time.Sleep(foundPoll)
	}
}

func (p foundProc) kill() error {
	return errors.New("a Bootstrapper.exe run started by another process cannot be stopped here")
}

func (foundProc) release() {}

// procStart is the start time of pid (field 22 of /proc/pid/stat), and whether it is running
// (present and not a zombie).
func procStart(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// The command name (field 2) is in parentheses and may hold spaces: split after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}
