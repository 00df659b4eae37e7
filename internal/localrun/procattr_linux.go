package localrun

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig: if the demo or the test binary dies without cleaning up (SIGKILL, a test timeout),
	// the kernel kills the child too instead of leaving it holding its ports.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
