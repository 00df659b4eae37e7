// Command lync-agent runs on every Lync Server 2013 / Skype for Business Server Front End server and
// lets poolpair-operator pair Front End pools for disaster recovery over a mutual-TLS JSON API. It
// also serves a simulated deployment for demos and tests, makes development certificates, and
// installs itself as a Windows service. `lync-agent --help` says how.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// errUsage marks an error in the command line: the usage is printed after it and the exit code is 2.
var errUsage = errors.New("usage")

func main() {
	// Started by the Windows service control manager: run as a service, not as a console command.
	if handled, code := runAsServiceIfNeeded(); handled {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code. Tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprintf(stdout, "lync-agent %s (%s/%s, %s)\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
		return exitOK
	case "serve":
		err = serveCommand(ctx, rest, stdout, stderr)
	case "sim":
		err = simCommand(ctx, rest, stdout, stderr)
	case "simctl":
		err = simctlCommand(ctx, rest, stdout, stderr)
	case "certs":
		err = certsCommand(rest, stdout, stderr)
	case "service":
		err = serviceCommand(ctx, rest, stdout, stderr)
	case "doctor":
		err = doctorCommand(ctx, rest, stdout, stderr)
	default:
		// Only the error: the whole usage would scroll it away.
		fmt.Fprintf(stderr, "lync-agent: unknown command %q (commands: serve, doctor, service, certs, sim, simctl)\nRun 'lync-agent --help' for an overview.\n", cmd)
		return exitUsage
	}
	var ec *exitCode
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ec):
		if ec.msg != "" {
			fmt.Fprintf(stderr, "lync-agent %s: %s\n", args[0], ec.msg)
		}
		return ec.code
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "lync-agent %s: %s\nRun 'lync-agent %s --help' for its flags, 'lync-agent --help' for an overview.\n", args[0], usageMessage(err), args[0])
		return exitUsage
	}
	fmt.Fprintf(stderr, "lync-agent %s: %v\n", args[0], err)
	return exitError
}

// usageMessage is a usage error's text without its errUsage marker.
func usageMessage(err error) string {
	return strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
}
