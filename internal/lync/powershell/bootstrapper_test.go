package powershell

import (
	"context"
	"errors"
	"io/fs"
	"runtime"
	"strings"
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
		{"reboot-code", 3010, false, true, "SQL Server 2012 Native Client"},
		{"reboot-text", 0, true, true, "A restart is required"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			t.Setenv(envBootMode, c.mode)
			if c.wantExit > 255 && runtime.GOOS != "windows" {
				// Exit statuses are 8 bits outside Windows: 3010 arrives as 194.
				c.wantExit &= 0xff
				rebootExitCodes[c.wantExit] = true
				t.Cleanup(func() { delete(rebootExitCodes, c.wantExit) })
			}
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

func TestBootstrapCancelled(t *testing.T) {
	t.Setenv(envBootMode, "hang")
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
	defer cancel()
	if _, err := b.Bootstrap(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
}

func TestBootstrapperMissing(t *testing.T) {
	b, _ := newTestBackend(t, protocol.ProductSfB2019, func(o *Options) { o.BootstrapperPath = "/nonexistent/Deployment/Bootstrapper.exe" })
	_, err := b.Bootstrap(bg)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/Deployment/Bootstrapper.exe") ||
		!strings.Contains(err.Error(), "Skype for Business Server 2019") {
		t.Errorf("err = %v, want not-exist naming the path and product", err)
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
