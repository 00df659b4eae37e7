package main

import (
	"context"
	"fmt"
	"io"

	"github.com/lync-dr/poolpair-operator/internal/agent/simrun"
)

func simCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o simrun.RunOptions
	var allowed, logLevel string
	fs := newFlagSet("sim", "sim --deployment FILE --tls-dir DIR [flags]\n\n"+
		"Serves every pool and Front End server of a simulated deployment, each as its own agent on\n"+
		"its own HTTPS listener (addresses from the deployment file), plus the sim admin API that\n"+
		"simctl talks to. Prints one line per endpoint, then \"ready\". Ctrl+C stops it.", stderr)
	fs.StringVar(&o.DeploymentFile, "deployment", "", "simulated deployment `file` (YAML; see hack/sim/two-pools.yaml)")
	fs.StringVar(&o.TLSDir, "tls-dir", "", "`directory` with ca.crt, server.crt and server.key (lync-agent certs writes them)")
	fs.StringVar(&o.JournalDir, "journal", "sim-journal", "`directory` for the agents' journals, one subdirectory per endpoint")
	fs.StringVar(&o.StateFile, "state", "", "`file` keeping the simulated deployment's state across restarts (default: none)")
	fs.StringVar(&o.AdminListen, "admin-listen", "127.0.0.1:19440", "`address` of the sim admin API (empty: none)")
	fs.StringVar(&allowed, "allowed-clients", "", "comma-separated client certificate `names` allowed in (default: any the CA signed)")
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
	logger, err := newLogger(logLevel, stderr)
	if err != nil {
		return err
	}
	o.AllowedClients = splitList(allowed)
	o.Logger = logger
	o.Version = version
	return simrun.RunSim(ctx, o, stdout)
}
