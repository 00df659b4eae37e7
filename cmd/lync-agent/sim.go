package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/lync-dr/poolpair-operator/internal/agent/simrun"
	"github.com/lync-dr/poolpair-operator/internal/devcerts"
)

func simCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o simrun.RunOptions
	var allowed, logLevel string
	fs := newFlagSet("sim", "sim --deployment FILE --tls-dir DIR [flags]\n\n"+
		"Serves a simulated deployment: every Front End server as its own agent, with its own journal,\n"+
		"on its own HTTPS listener; every pool with a listen address as an alias that hands each\n"+
		"connection to a random Front End of the pool (DNS round robin; not an agent); plus the sim\n"+
		"admin API that simctl talks to (addresses from the deployment file). Prints one line per\n"+
		"endpoint, then \"ready\". Ctrl+C stops it.", stderr)
	fs.StringVar(&o.DeploymentFile, "deployment", "", "simulated deployment `file` (YAML; see hack/sim/two-pools.yaml)")
	fs.StringVar(&o.TLSDir, "tls-dir", "", "`directory` with ca.crt, server.crt and server.key (lync-agent certs writes them)")
	fs.StringVar(&o.JournalDir, "journal", "", "`directory` for the agents' journals, one subdirectory per Front End server (default: a temporary directory removed at exit; required with --state)")
	fs.StringVar(&o.StateFile, "state", "", "`file` keeping the simulated deployment's state across restarts (default: none)")
	fs.StringVar(&o.AdminListen, "admin-listen", "127.0.0.1:19440", "`address` of the sim admin API (empty: none)")
	fs.StringVar(&allowed, "allowed-clients", devcerts.DefaultClientCN, "comma-separated client certificate `names` let in (the development client certificate's by default)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if o.DeploymentFile == "" || o.TLSDir == "" {
		return fmt.Errorf("%w: --deployment and --tls-dir are required", errUsage)
	}
	if o.AllowedClients = splitList(allowed); len(o.AllowedClients) == 0 {
		return fmt.Errorf("%w: --allowed-clients must name at least one client certificate", errUsage)
	}
	if o.JournalDir == "" {
		// A journal that outlives the run must go with the --state it describes.
		if o.StateFile != "" {
			return fmt.Errorf("%w: --state keeps the deployment across restarts, so its agents' journals must persist too: give --journal DIR", errUsage)
		}
		dir, err := os.MkdirTemp("", "lync-agent-sim-journal-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.JournalDir = dir
	}
	logger, err := newLogger(logLevel, stderr)
	if err != nil {
		return err
	}
	o.Logger = logger
	o.Version = version
	return simrun.RunSim(ctx, o, stdout)
}
