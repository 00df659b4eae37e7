package powershell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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
	// outputKeep is how much of Bootstrapper's output is held while it runs (it can write a lot).
	outputKeep = 64 << 10
	// bootstrapWaitDelay bounds the wait for output pipes held open by Bootstrapper's children
	// (msiexec) after it exits or is killed.
	bootstrapWaitDelay = 10 * time.Second
)

// Reboot detection. UNVERIFIED: Bootstrapper's own exit codes and wording are not documented.
// We assume it follows Windows Installer's convention (3010 ERROR_SUCCESS_REBOOT_REQUIRED,
// 1641 ERROR_SUCCESS_REBOOT_INITIATED) and/or says so in its output ("A restart is required",
// "reboot is pending", "must restart"), ignoring lines that say none is needed.
var (
	rebootExitCodes = map[int]bool{3010: true, 1641: true}
	rebootText      = regexp.MustCompile(`(?i)\b(restart|reboot)\b.{0,60}\b(required|needed|pending)\b|\b(requires?|needs?|must)\b.{0,20}\b(restart|reboot)`)
	noRebootText    = regexp.MustCompile(`(?i)\bno(t)?\b.{0,30}\b(restart|reboot)|\b(restart|reboot)\b.{0,30}\bnot\b`)
)

// bootstrapper runs the product's Bootstrapper.exe directly: no shell, no arguments.
type bootstrapper struct {
	path        string
	product     product
	productName string
	timeout     time.Duration
	sem         chan struct{} // one run at a time on this server
	log         *slog.Logger
}

// run returns the run's outcome. A non-zero exit is a result, not an error; errors are for a run
// that could not happen or did not finish (timeout: lync.ErrUnavailable, with what it printed).
func (bs *bootstrapper) run(ctx context.Context) (lync.BootstrapResult, error) {
	if _, err := os.Stat(bs.path); err != nil {
		return lync.BootstrapResult{}, fmt.Errorf("Bootstrapper.exe of %s (%s) not found at %s: %w",
			bs.product.name, bs.productName, bs.path, err)
	}
	select {
	case bs.sem <- struct{}{}:
	case <-ctx.Done():
		return lync.BootstrapResult{}, fmt.Errorf("waiting for a running Bootstrapper.exe: %w", ctx.Err())
	}
	defer func() { <-bs.sem }()

	runCtx, cancel := context.WithTimeout(ctx, bs.timeout)
	defer cancel()
	out := &tailBuffer{max: outputKeep}
	cmd := exec.CommandContext(runCtx, bs.path)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = bootstrapWaitDelay
	begin := time.Now()
	bs.log.Info("running Bootstrapper.exe", "path", bs.path, "timeout", bs.timeout)
	err := cmd.Run()
	output := out.String()
	res := lync.BootstrapResult{ExitCode: -1, LogTail: logTail(output)}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.ExitCode = -1
		return res, fmt.Errorf("Bootstrapper.exe was stopped: %w", ctx.Err())
	case runCtx.Err() != nil:
		// Killing Bootstrapper does not kill the installers it started (no job object here).
		res.ExitCode = -1
		return res, fmt.Errorf("Bootstrapper.exe did not finish within %s and was stopped: %w", bs.timeout, lync.ErrUnavailable)
	case err != nil && !errors.As(err, &exitErr):
		if errors.Is(err, os.ErrPermission) || strings.Contains(strings.ToLower(err.Error()), "elevation") {
			return res, fmt.Errorf("starting %s: %w: %w (run lync-agent as local Administrator)", bs.path, err, lync.ErrPermission)
		}
		return res, fmt.Errorf("starting %s: %w", bs.path, err)
	}
	res.Succeeded = res.ExitCode == 0
	res.RebootRequired = rebootExitCodes[res.ExitCode] || asksForReboot(output)
	bs.log.Info("Bootstrapper.exe finished", "exitCode", res.ExitCode, "succeeded", res.Succeeded,
		"rebootRequired", res.RebootRequired, "duration", time.Since(begin).Round(time.Second))
	return res, nil
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

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.buf), "?")
}
