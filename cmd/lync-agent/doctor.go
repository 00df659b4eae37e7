package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/doctor"
	"github.com/lync-dr/poolpair-operator/internal/lync/powershell"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Exit codes of doctor, besides exitOK and exitUsage.
const (
	// exitDoctorFail: at least one check failed.
	exitDoctorFail = 1
	// exitDoctorIncomplete: PowerShell did not run or answer, so the Lync checks are UNKNOWN.
	exitDoctorIncomplete = 3
)

// exitCode is an error that sets a command's exit code; run prints msg, when there is one.
type exitCode struct {
	code int
	msg  string
}

func (e *exitCode) Error() string { return e.msg }

const doctorSynopsis = `doctor [serve flags] [--show-values] [--json]

Checks whether this Front End server is what the agent assumes, with read-only commands only: one
PowerShell run (the module's import, Get-Cs* cmdlets, Test-CsSetupPermission), then Bootstrapper.exe,
the TLS files, the listen address and the journal directory (where it creates and removes an empty
file). Prints one line per check, PASS, FAIL or UNKNOWN, what it saw and, when it did not pass, what
to do.

Give it the flags you give serve (or the same --config): it checks those files and that address.
Run it on the Front End server, as the account the agent runs as, from an elevated prompt: the
rights it checks are those of the account running it. Values that identify your organisation
(server, pool and domain names, accounts, SIDs) are masked unless --show-values; --json writes
the same checks as JSON, to attach to a bug report.

Exit status: 0 no check failed, 1 a check failed, 2 a usage error, 3 PowerShell did not run or
answer (the Lync checks are UNKNOWN).`

// doctorFlags are doctor's own flags, besides serve's.
type doctorFlags struct {
	showValues bool
	json       bool
}

// parseDoctorConfig parses doctor's command line: serve's flags (and its --config file) plus
// doctor's own. The TLS files are not required: a missing one is an UNKNOWN check.
func parseDoctorConfig(args []string, stderr io.Writer) (*serveConfig, doctorFlags, error) {
	var c serveConfig
	var d doctorFlags
	fs := newFlagSet("doctor", doctorSynopsis, stderr)
	serveFlags(fs, &c)
	fs.BoolVar(&d.showValues, "show-values", false, "show server, pool, domain and account names instead of masking them")
	fs.BoolVar(&d.json, "json", false, "write the checks as JSON (for a bug report)")
	if err := parseFlags(fs, args); err != nil {
		return nil, d, err
	}
	if fs.NArg() > 0 {
		return nil, d, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if c.Config != "" {
		if err := applyConfigFile(fs, c.Config); err != nil {
			return nil, d, err
		}
	}
	return &c, d, validateDoctor(&c, fs)
}

// validateDoctor applies serve's rules to the flags doctor uses.
func validateDoctor(c *serveConfig, fs *flag.FlagSet) error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: --listen %q: %v (for example :9443 or 10.0.0.5:9443)", errUsage, c.Listen, err)
	}
	switch c.Product {
	case protocol.ProductLync2013, protocol.ProductSfB2015, protocol.ProductSfB2019:
	default:
		return fmt.Errorf("%w: --product %q: must be lync2013, sfb2015 or sfb2019", errUsage, c.Product)
	}
	if c.Backend != "powershell" || c.Deployment != "" {
		return fmt.Errorf("%w: doctor checks a real Front End server: --backend sim and --deployment have nothing to check", errUsage)
	}
	if c.Server != "" {
		if err := protocol.ValidateFQDN("--server", c.Server); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	_, err := parseLevel(c.LogLevel)
	return err
}

func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, d, err := parseDoctorConfig(args, stderr)
	if err != nil {
		return err
	}
	return runDoctor(ctx, c, d, stdout, stderr)
}

// runDoctor runs every check, writes the report and returns the exit status as an *exitCode.
func runDoctor(ctx context.Context, c *serveConfig, d doctorFlags, stdout, stderr io.Writer) error {
	logger, err := newLogger(c.LogLevel, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "lync-agent doctor: reading this server through PowerShell, read-only (importing the module can take a minute)...")
	diag, diagErr := powershell.Diagnose(ctx, powershell.DiagnoseOptions{
		Product: c.Product, Executable: c.PowerShell, ServerFQDN: c.Server, BootstrapperPath: c.Bootstrapper, Logger: logger,
	})
	if diagErr != nil && !errors.Is(diagErr, powershell.ErrDiagnoseIncomplete) {
		return diagErr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	tlsRes := doctor.CheckTLS(doctor.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, ClientCA: c.ClientCA, AllowedClients: splitList(c.AllowedClients)}, time.Now())
	_, port, _ := net.SplitHostPort(c.Listen)
	checks := append(diag.Checks, tlsRes.Checks...)
	checks = append(checks,
		doctor.CheckServerName(tlsRes.Cert, diag.ServerFQDN, port),
		doctor.CheckListen(ctx, c.Listen, tlsRes.Cert),
		doctor.CheckJournal(c.Journal))

	if !d.showValues {
		m := doctor.NewMasker()
		m.Add(diag.Identifying...)
		m.Add(tlsRes.Names...)
		m.Add(localIdentifying()...)
		checks = m.MaskChecks(checks)
	}
	report := doctor.Report{
		Tool: "lync-agent doctor", AgentVersion: version, Product: c.Product, OS: runtime.GOOS + "/" + runtime.GOARCH,
		Time: time.Now().UTC().Truncate(time.Second), Masked: !d.showValues, Checks: checks,
	}
	if diagErr != nil {
		report.Incomplete = "PowerShell did not run or answer: the Lync checks are UNKNOWN (see the powershell check)"
	}
	sum := doctor.Summarize(checks)
	if d.json {
		if err := doctor.WriteJSON(stdout, report); err != nil {
			return err
		}
	} else {
		if err := doctor.WriteText(stdout, checks); err != nil {
			return err
		}
		masked := "values masked (--show-values shows them)"
		if d.showValues {
			masked = "values shown"
		}
		fmt.Fprintf(stdout, "lync-agent doctor %s, %s: %s; %s\n", version, c.Product, sum, masked)
	}
	switch {
	case diagErr != nil:
		return &exitCode{exitDoctorIncomplete, "PowerShell did not run or answer, so the Lync checks are UNKNOWN: fix the powershell check and run doctor again"}
	case sum.Fail > 0:
		return &exitCode{exitDoctorFail, fmt.Sprintf("%d check(s) failed: each FAIL line says what to do", sum.Fail)}
	}
	return nil
}

// localIdentifying are this machine's and this account's names, as the environment has them.
func localIdentifying() []string {
	var v []string
	if h, err := os.Hostname(); err == nil {
		v = append(v, h)
	}
	for _, k := range []string{"COMPUTERNAME", "USERDOMAIN", "USERDNSDOMAIN", "USERNAME", "USER"} {
		v = append(v, os.Getenv(k))
	}
	return v
}
