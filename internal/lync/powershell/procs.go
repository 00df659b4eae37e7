package powershell

import (
	"os"
	"time"
)

// procs is the OS-specific part of running Bootstrapper.exe: starting a run that outlives the
// agent and can be killed as a whole, and finding a run an earlier agent process started; and
// when the OS last started (a run that asks for a restart waits for one).
// osProcs (procs_windows.go, procs_other.go) is the real one; tests set a fake on the bootstrapper.
type procs interface {
	// start runs exe without arguments, stdin empty, stdout and stderr to out. The process must
	// not die with this one (no console, no process group, no job that ends with the agent), and
	// its kill must end it and every process it started.
	start(exe string, out *os.File) (proc, error)
	// find returns a running process, other than this one, whose image is exe; found is false
	// when there is none. An error means it cannot tell.
	find(exe string) (p proc, found bool, err error)
	// bootTime is when the operating system last started.
	bootTime() (time.Time, error)
}

// proc is one Bootstrapper.exe process.
type proc interface {
	pid() int
	// wait blocks until the process has ended. known is false when the OS cannot tell its exit
	// code: outside Windows, for a process this one did not start.
	wait() (code int, known bool, err error)
	// kill ends the process and every process it started. Only a started proc can: a found one
	// returns an error.
	kill() error
	// release frees what the proc holds (handles). It never stops the process.
	release()
}
