//go:build windows

package powershell

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// osProcs runs Bootstrapper.exe in a Job Object, so a timeout ends it and the installers it
// started (TerminateJobObject), and finds a run of an earlier agent by its image path.
//
// The process is created suspended, put in the job, then resumed: nothing it starts can escape
// the job by starting before the assignment (os/exec cannot create a process suspended, hence
// windows.CreateProcess). The job has no JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: when the agent
// exits, its handle closes and the run goes on.
type osProcs struct{}

// waitedAccess is all a found process is opened for: waiting on it and reading its image and
// exit code.
const waitedAccess = windows.SYNCHRONIZE | windows.PROCESS_QUERY_LIMITED_INFORMATION

func (osProcs) start(exe string, out *os.File) (proc, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("creating a job object: %w", err)
	}
	pi, err := createSuspended(exe, out)
	if err != nil {
		windows.CloseHandle(job)
		return nil, err
	}
	defer windows.CloseHandle(pi.Thread)
	p := &winProc{h: pi.Process, job: job, id: pi.ProcessId}
	if err := windows.AssignProcessToJobObject(job, pi.Process); err != nil {
		_ = windows.TerminateProcess(pi.Process, 1)
		p.release()
		return nil, fmt.Errorf("putting %s in a job object: %w", exe, err)
	}
	if _, err := windows.ResumeThread(pi.Thread); err != nil {
		_ = windows.TerminateJobObject(job, 1)
		p.release()
		return nil, fmt.Errorf("resuming %s: %w", exe, err)
	}
	return p, nil
}

// createSuspended starts exe suspended, with no window and a process group of its own (a Ctrl-C
// or console close of the agent does not reach it), inheriting only NUL as stdin and out as
// stdout and stderr.
func createSuspended(exe string, out *os.File) (*windows.ProcessInformation, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	self := windows.CurrentProcess()
	var inherit [2]windows.Handle // inheritable copies: stdin, stdout+stderr
	for i, f := range []*os.File{null, out} {
		if err := windows.DuplicateHandle(self, windows.Handle(f.Fd()), self, &inherit[i], 0, true, windows.DUPLICATE_SAME_ACCESS); err != nil {
			return nil, err
		}
		defer windows.CloseHandle(inherit[i])
	}
	attrs, err := windows.NewProcThreadAttributeList(1)
	if err != nil {
		return nil, err
	}
	defer attrs.Delete()
	// Only these two handles are inherited, whatever else is inheritable in the agent.
	if err := attrs.Update(windows.PROC_THREAD_ATTRIBUTE_HANDLE_LIST, unsafe.Pointer(&inherit[0]), unsafe.Sizeof(inherit)); err != nil {
		return nil, err
	}
	si := windows.StartupInfoEx{ProcThreadAttributeList: attrs.List()}
	si.Cb = uint32(unsafe.Sizeof(si))
	si.Flags = windows.STARTF_USESTDHANDLES
	si.StdInput, si.StdOutput, si.StdErr = inherit[0], inherit[1], inherit[1]
	exeW, err := windows.UTF16PtrFromString(exe)
	if err != nil {
		return nil, err
	}
	cmdLine, err := windows.UTF16PtrFromString(windows.EscapeArg(exe))
	if err != nil {
		return nil, err
	}
	flags := uint32(windows.CREATE_SUSPENDED | windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_NO_WINDOW | windows.EXTENDED_STARTUPINFO_PRESENT)
	var pi windows.ProcessInformation
	if err := windows.CreateProcess(exeW, cmdLine, nil, nil, true, flags, nil, nil, &si.StartupInfo, &pi); err != nil {
		return nil, err
	}
	return &pi, nil
}

func (osProcs) find(exe string) (proc, bool, error) {
	want, err := filepath.Abs(exe)
	if err != nil {
		return nil, false, err
	}
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return nil, false, fmt.Errorf("listing processes: %w", err)
	}
	defer windows.CloseHandle(snap)
	self := windows.GetCurrentProcessId()
	var e windows.ProcessEntry32
	e.Size = uint32(unsafe.Sizeof(e))
	for err = windows.Process32First(snap, &e); err == nil; err = windows.Process32Next(snap, &e) {
		name := windows.UTF16ToString(e.ExeFile[:])
		if e.ProcessID == self || !strings.EqualFold(name, filepath.Base(want)) {
			continue
		}
		h, err := windows.OpenProcess(waitedAccess, false, e.ProcessID)
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			continue // ended since the snapshot
		}
		if err != nil {
			// A Bootstrapper.exe we may not look at could be ours: say we cannot tell.
			return nil, false, fmt.Errorf("opening %s (pid %d): %w", name, e.ProcessID, err)
		}
		// The image path, read from the handle, so a reused pid cannot mislead.
		if image, err := imagePath(h); err != nil || !strings.EqualFold(filepath.Clean(image), filepath.Clean(want)) || exited(h) {
			windows.CloseHandle(h)
			continue
		}
		return &winProc{h: h, id: e.ProcessID}, true, nil
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return nil, false, fmt.Errorf("listing processes: %w", err)
	}
	return nil, false, nil
}

// getTickCount64 is kernel32's GetTickCount64 (not wrapped by x/sys/windows): the milliseconds
// since the system started.
var getTickCount64 = windows.NewLazySystemDLL("kernel32.dll").NewProc("GetTickCount64")

// bootTime is now minus GetTickCount64, to the second (the two reads are not simultaneous, and
// the tick count moves in 10-16 ms steps: rounding keeps the answer stable between calls).
func (osProcs) bootTime() (time.Time, error) {
	if err := getTickCount64.Find(); err != nil {
		return time.Time{}, err
	}
	lo, hi, _ := getTickCount64.Call()
	ms := uint64(lo)
	if unsafe.Sizeof(lo) == 4 { // 386: the 64-bit result comes in EDX:EAX
		ms |= uint64(hi) << 32
	}
	now := time.Now()
	return now.Add(-time.Duration(ms) * time.Millisecond).Round(time.Second).UTC(), nil
}

func imagePath(h windows.Handle) (string, error) {
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return "", err
	}
	return windows.UTF16ToString(buf[:n]), nil
}

func exited(h windows.Handle) bool {
	ev, err := windows.WaitForSingleObject(h, 0)
	return err == nil && ev == windows.WAIT_OBJECT_0
}

// winProc is a process handle, with the job it runs in when this process started it. The open
// handle keeps the exit code readable after the process ends.
type winProc struct {
	h   windows.Handle
	job windows.Handle // 0 for a found process
	id  uint32
}

func (p *winProc) pid() int { return int(p.id) }

func (p *winProc) wait() (int, bool, error) {
	if _, err := windows.WaitForSingleObject(p.h, windows.INFINITE); err != nil {
		return -1, false, err
	}
	var code uint32
	if err := windows.GetExitCodeProcess(p.h, &code); err != nil {
		return -1, false, err
	}
	return int(int32(code)), true, nil
}

func (p *winProc) kill() error {
	if p.job == 0 {
		return errors.New("a Bootstrapper.exe run started by another process cannot be stopped here")
	}
	return windows.TerminateJobObject(p.job, 1)
}

func (p *winProc) release() {
	windows.CloseHandle(p.h)
	if p.job != 0 {
		windows.CloseHandle(p.job) // no kill-on-close: the run goes on
	}
}
