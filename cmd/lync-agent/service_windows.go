//go:build windows

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

const (
	defaultServiceName = "lync-agent"
	// passwordEnv holds the service account's password at install, so it never appears in a
	// command line or the shell history.
	passwordEnv = "LYNC_AGENT_PASSWORD"
)

const serviceSynopsis = `service install [--name NAME] [--account DOMAIN\user] -- [serve flags]
       lync-agent service uninstall|start|stop [--name NAME]

install registers lync-agent as a Windows service (automatic start, restart on failure) that runs
"lync-agent serve" with the flags after "--" (file paths are made absolute). The service runs as
--account (a member of RTCUniversalServerAdmins and of the local Administrators; password from the
LYNC_AGENT_PASSWORD environment variable, none for a gMSA ending in $), or LocalSystem without one.
It logs to the Application event log under the service name. Run from an elevated prompt.`

func serviceCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: service needs a subcommand: install, uninstall, start or stop", errUsage)
	}
	sub, rest := args[0], args[1:]
	var serveArgs []string
	for i, a := range rest {
		if a == "--" {
			rest, serveArgs = rest[:i], rest[i+1:]
			break
		}
	}
	var name, account string
	fs := newFlagSet("service "+sub, serviceSynopsis, stderr)
	fs.StringVar(&name, "name", defaultServiceName, "service `name` (also the event log source)")
	if sub == "install" {
		fs.StringVar(&account, "account", "", "`account` to run as, DOMAIN\\user or DOMAIN\\gmsa$ (default LocalSystem)")
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	switch sub {
	case "install":
		return installService(name, account, serveArgs, stdout, stderr)
	case "uninstall":
		return uninstallService(name, stdout)
	case "start":
		return startService(name, stdout)
	case "stop":
		return stopService(ctx, name, stdout)
	case "run":
		// The service control manager's entry point (see installService); not for people.
		return runService(name, serveArgs)
	}
	return fmt.Errorf("%w: unknown service subcommand %q", errUsage, sub)
}

func installService(name, account string, serveArgs []string, stdout, stderr io.Writer) error {
	// Validate now (config file included) rather than at the first service start.
	if _, _, err := parseServeConfig(serveArgs, stderr); err != nil {
		return fmt.Errorf("serve flags after --: %w", err)
	}
	// Record only what the command line said, so later edits of a --config file take effect.
	var given serveConfig
	fs := newFlagSet("serve", "serve [flags]", stderr)
	serveFlags(fs, &given)
	if err := parseFlags(fs, serveArgs); err != nil {
		return err
	}
	args, err := absoluteServeArgs(fs)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(name); err == nil {
		s.Close()
		return fmt.Errorf("service %q already exists; uninstall it first", name)
	}
	cfg := mgr.Config{
		DisplayName:  "Lync DR agent (poolpair-operator)",
		Description:  "Lets poolpair-operator pair Lync / Skype for Business Front End pools for disaster recovery over mutual TLS.",
		StartType:    mgr.StartAutomatic,
		ErrorControl: mgr.ErrorNormal,
	}
	if account == "" {
		fmt.Fprintln(stderr, "lync-agent service install: no --account, so the service runs as LocalSystem, which reaches Lync as this "+
			"computer's account (DOMAIN\\COMPUTER$): that account would need RTCUniversalServerAdmins. Prefer --account with a "+
			"group managed service account (DOMAIN\\name$) or a service user in RTCUniversalServerAdmins and the local Administrators.")
	} else {
		cfg.ServiceStartName = account
		cfg.Password = os.Getenv(passwordEnv)
		if cfg.Password == "" && !strings.HasSuffix(account, "$") {
			return fmt.Errorf("set %s to the password of %s (only a gMSA, ending in $, has none)", passwordEnv, account)
		}
	}
	svcArgs := append([]string{"service", "run", "--name", name, "--"}, args...)
	s, err := m.CreateService(name, exe, cfg, svcArgs...)
	if err != nil {
		return fmt.Errorf("create service %q: %w", name, err)
	}
	defer s.Close()
	// Restart after a crash: 10 s, 30 s, then every minute; the failure count resets daily.
	_ = s.SetRecoveryActions([]mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 10 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}, 24*60*60)
	if err := eventlog.InstallAsEventCreate(name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		// An existing source (a reinstall) is fine; anything else undoes the install.
		if !strings.Contains(err.Error(), "exists") {
			_ = s.Delete()
			return fmt.Errorf("register event log source %q: %w", name, err)
		}
	}
	fmt.Fprintf(stdout, "installed service %q: %s %s\n", name, exe, strings.Join(svcArgs, " "))
	fmt.Fprintf(stdout, "start it with: lync-agent service start --name %s\n", name)
	return nil
}

// absoluteServeArgs rebuilds the serve flags given, with file paths made absolute.
func absoluteServeArgs(fs *flag.FlagSet) ([]string, error) {
	isPath := map[string]bool{}
	for _, p := range pathFlags {
		isPath[p] = true
	}
	var args []string
	var err error
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if isPath[f.Name] && v != "" {
			abs, aerr := filepath.Abs(v)
			if aerr != nil && err == nil {
				err = aerr
			}
			v = abs
		}
		args = append(args, "--"+f.Name+"="+v)
	})
	return args, err
}

// openService opens an installed service through the service control manager; close releases both.
func openService(name string) (s *mgr.Service, close func(), err error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the service control manager (run as Administrator): %w", err)
	}
	s, err = m.OpenService(name)
	if err != nil {
		_ = m.Disconnect()
		return nil, nil, fmt.Errorf("service %q: %w", name, err)
	}
	return s, func() { s.Close(); _ = m.Disconnect() }, nil
}

func uninstallService(name string, stdout io.Writer) error {
	s, closeService, err := openService(name)
	if err != nil {
		return err
	}
	defer closeService()
	if status, err := s.Query(); err == nil && status.State != svc.Stopped {
		_, _ = s.Control(svc.Stop)
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("delete service %q: %w", name, err)
	}
	_ = eventlog.Remove(name)
	fmt.Fprintf(stdout, "uninstalled service %q (its journal stays on disk)\n", name)
	return nil
}

func startService(name string, stdout io.Writer) error {
	s, closeService, err := openService(name)
	if err != nil {
		return err
	}
	defer closeService()
	if err := s.Start(); err != nil {
		return fmt.Errorf("start service %q: %w", name, err)
	}
	fmt.Fprintf(stdout, "started service %q; see the Application event log for its messages\n", name)
	return nil
}

func stopService(ctx context.Context, name string, stdout io.Writer) error {
	s, closeService, err := openService(name)
	if err != nil {
		return err
	}
	defer closeService()
	status, err := s.Control(svc.Stop)
	if err != nil {
		return fmt.Errorf("stop service %q: %w", name, err)
	}
	// Running operations get closeGrace to finish; wait a little longer than that.
	deadline := time.Now().Add(closeGrace + 15*time.Second)
	for status.State != svc.Stopped {
		if time.Now().After(deadline) {
			return fmt.Errorf("service %q did not stop in time (state %d)", name, status.State)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		if status, err = s.Query(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "stopped service %q\n", name)
	return nil
}

// runAsServiceIfNeeded runs the process as a service when the service control manager started it.
func runAsServiceIfNeeded() (bool, int) {
	isService, err := svc.IsWindowsService()
	if err != nil || !isService {
		return false, 0
	}
	args := os.Args[1:]
	// Installed command line: service run --name NAME -- <serve flags>.
	name := defaultServiceName
	var serveArgs []string
	for i, a := range args {
		if a == "--name" && i+1 < len(args) {
			name = args[i+1]
		}
		if a == "--" {
			serveArgs = args[i+1:]
			break
		}
	}
	if err := runService(name, serveArgs); err != nil {
		return true, exitError
	}
	return true, exitOK
}

// agentService adapts runServe to the service control manager.
type agentService struct {
	cfg    *serveConfig
	logger *slog.Logger
	err    error
}

func runService(name string, serveArgs []string) error {
	elog, err := eventlog.Open(name)
	if err != nil {
		return err
	}
	defer elog.Close()
	c, _, err := parseServeConfig(serveArgs, io.Discard)
	if err != nil {
		_ = elog.Error(eventError, "lync-agent: invalid service configuration: "+usageMessage(err)+
			" (reinstall the service with corrected flags: lync-agent service uninstall, then service install)")
		return err
	}
	level, _ := parseLevel(c.LogLevel)
	logger := slog.New(newEventLogHandler(elog, level))
	s := &agentService{cfg: c, logger: logger}
	if err := svc.Run(name, s); err != nil {
		_ = elog.Error(eventError, "lync-agent: service failed: "+err.Error())
		return err
	}
	return s.err
}

// Execute runs the agent until the service control manager says stop or shutdown.
func (s *agentService) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, s.cfg, s.logger) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case err := <-done:
			// The agent ended on its own: a failure (port taken, bad certificate); let the recovery
			// actions restart it.
			if err != nil {
				s.err = err
				s.logger.Error("lync-agent failed", "err", err)
				return true, 1
			}
			return false, 0
		case r := <-requests:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32((closeGrace + 10*time.Second) / time.Millisecond)}
				cancel()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					s.logger.Error("lync-agent stopped with an error", "err", err)
				}
				return false, 0
			}
		}
	}
}
