package powershell

// A Bootstrapper run judged by its effect as well as its exit code, the administrator's next step
// after it for Skype for Business Server, where Bootstrapper.exe is looked for, and the boot time.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// runWith makes Bootstrap's next run end at once with code and output (the procs seam).
func runWith(b *Backend, code int, output string) {
	ended := make(chan struct{})
	close(ended)
	b.boot.procs = &fakeProcs{started: &fakeProc{code: code, ended: ended}, output: output}
}

func TestBootstrapJudgedByItsEffect(t *testing.T) {
	cases := []struct {
		name              string
		paired            bool
		lyncBackup        string
		code              int
		output            string
		succeeded, reboot bool
		tailEnds          string
	}{
		{"paired, installed", true, "Stopped", 0, "Bootstrapper completed successfully.\r\n", true, false, "completed successfully."},
		{"paired, not installed", true, "absent", 0, "Bootstrapper completed successfully.\r\n", false, false,
			"lync-agent: Bootstrapper.exe exited with code 0, but LYNCBACKUP (the Backup Service) is not installed on this server although the topology names pool02.contoso.com as the backup pool of pool01.contoso.com: the run did not set the pairing up"},
		{"paired, not installed, restart asked", true, "absent", 3010, "Installing Windows Fabric...\r\n", false, true,
			"lync-agent: LYNCBACKUP (the Backup Service) is not installed on this server yet, although the topology names pool02.contoso.com as the backup pool of pool01.contoso.com: restart the server and run Bootstrapper.exe again"},
		{"unpaired, not installed", false, "absent", 0, "Bootstrapper completed successfully.\r\n", true, false, "completed successfully."},
		{"paired, not installed, failed anyway", true, "absent", 1, "Bootstrapper encountered an error.\r\n", false, false, "encountered an error."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(envLyncBackup, c.lyncBackup)
			b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
			if c.paired {
				if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
					t.Fatal(err)
				}
			}
			runWith(b, c.code, c.output)
			res, err := b.Bootstrap(bg)
			if err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			if res.Succeeded != c.succeeded || res.RebootRequired != c.reboot || res.ExitCode != c.code {
				t.Errorf("result = %+v; want succeeded %v, reboot %v", res, c.succeeded, c.reboot)
			}
			if !strings.HasSuffix(res.LogTail, c.tailEnds) {
				t.Errorf("LogTail = %q, want it to end with %q", res.LogTail, c.tailEnds)
			}
			if want := map[bool]string{true: "pool02.contoso.com", false: ""}[c.paired]; res.BackupPool != want {
				t.Errorf("BackupPool = %q, want %q", res.BackupPool, want)
			}
		})
	}
}

// The real (fake) Bootstrapper installs LYNCBACKUP for a paired pool: the run succeeded.
func TestBootstrapThatInstallsTheBackupService(t *testing.T) {
	t.Setenv(envLyncBackup, "absent")
	t.Setenv(envBootMode, "ok")
	t.Setenv(envBootInstalls, "1")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	res, err := b.Bootstrap(bg)
	if err != nil || !res.Succeeded || res.BackupPool != "pool02.contoso.com" {
		t.Fatalf("Bootstrap = %+v, %v", res, err)
	}
	if log.count("bootstrapper-installed") != 1 {
		t.Errorf("the fake did not install LYNCBACKUP: %v", log.lines())
	}
	if svc, err := b.BackupService(bg); err != nil || svc != (protocol.BackupService{Installed: true, Status: protocol.ServiceStopped}) {
		t.Errorf("BackupService = %+v, %v", svc, err)
	}
}

// A reading that fails after the run leaves the exit code's judgment.
func TestBootstrapEffectUnreadable(t *testing.T) {
	t.Setenv(envFault, opGetBackupService+"=unavailable")
	b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	runWith(b, 0, "Bootstrapper completed successfully.\r\n")
	if res, err := b.Bootstrap(bg); err != nil || !res.Succeeded || res.BackupPool != "pool02.contoso.com" {
		t.Errorf("Bootstrap = %+v, %v", res, err)
	}
}

func TestBootstrapNextSteps(t *testing.T) {
	sentence := func(product string) string {
		return "On fe01.contoso.com, re-apply the " + product + " cumulative update that was installed before Bootstrapper.exe ran, if one was " +
			"(run that update's SkypeServerUpdateInstaller.exe), as step 9 of Microsoft's \"Deploy paired Front End pools for disaster " +
			"recovery in Skype for Business Server\" requires after Bootstrapper."
	}
	cases := []struct {
		product string
		code    int
		output  string
		want    []string
	}{
		{protocol.ProductSfB2019, 0, "done\r\n", []string{sentence("Skype for Business Server 2019")}},
		{protocol.ProductSfB2015, 0, "done\r\n", []string{sentence("Skype for Business Server 2015")}},
		{protocol.ProductLync2013, 0, "done\r\n", nil},                                        // no such step for Lync Server 2013
		{protocol.ProductSfB2019, 3010, "done\r\n", nil},                                      // the restart and second run come first
		{protocol.ProductSfB2019, 0, "A restart is required to complete the setup.\r\n", nil}, // likewise
		{protocol.ProductSfB2019, 1, "failed\r\n", nil},
	}
	for _, c := range cases {
		b, _ := newTestBackend(t, c.product, nil)
		runWith(b, c.code, c.output)
		res, err := b.Bootstrap(bg)
		if err != nil {
			t.Fatalf("%s exit %d: %v", c.product, c.code, err)
		}
		if strings.Join(res.NextSteps, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s exit %d: NextSteps = %q, want %q", c.product, c.code, res.NextSteps, c.want)
		}
	}
}

// Without Options.BootstrapperPath, Bootstrapper.exe is looked for under Program Files as the
// environment names it; the error names the path tried and how to set another.
func TestBootstrapperPathFromTheEnvironment(t *testing.T) {
	t.Setenv("ProgramFiles", `E:\Program Files`)
	b, _ := newTestBackend(t, protocol.ProductSfB2019, func(o *Options) { o.BootstrapperPath = "" })
	want := `E:\Program Files\Skype for Business Server 2019\Deployment\Bootstrapper.exe`
	if b.boot.path != want {
		t.Errorf("path = %q, want %q", b.boot.path, want)
	}
	if _, err := b.Bootstrap(bg); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--bootstrapper") {
		t.Errorf("Bootstrap = %v, want an error naming %s and --bootstrapper", err, want)
	}

	t.Setenv("ProgramFiles", "")
	t.Setenv("SystemDrive", "")
	b, _ = newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.BootstrapperPath = "" })
	if _, err := b.Pool(bg, "pool01.contoso.com"); err != nil {
		t.Errorf("reads need no Bootstrapper: %v", err)
	}
	if _, err := b.Bootstrap(bg); err == nil || !strings.Contains(err.Error(), "--bootstrapper") || !strings.Contains(err.Error(), "Lync Server 2013") {
		t.Errorf("Bootstrap = %v, want an error saying to set --bootstrapper", err)
	}
}

func TestBootTimeThroughTheSeam(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	booted := time.Date(2024, 5, 1, 6, 30, 0, 0, time.UTC)
	b.boot.procs = &fakeProcs{booted: booted}
	if got, err := b.BootTime(bg); err != nil || !got.Equal(booted) {
		t.Errorf("BootTime = %s, %v; want %s", got, err, booted)
	}
	b.boot.procs = &fakeProcs{}
	if _, err := b.BootTime(bg); !errors.Is(err, lync.ErrUnavailable) {
		t.Errorf("BootTime without an answer = %v, want ErrUnavailable", err)
	}
	if n := len(log.requests(t)); n != 0 {
		t.Errorf("BootTime went through PowerShell (%d requests)", n)
	}
}
