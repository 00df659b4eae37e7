package simrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
)

// RunOptions are the settings of `lync-agent sim`.
type RunOptions struct {
	// DeploymentFile is the sim's YAML deployment file.
	DeploymentFile string
	// TLSDir holds ca.crt, server.crt and server.key.
	TLSDir string
	// JournalDir holds one journal directory per Front End server's agent.
	JournalDir string
	// StateFile, when set, persists the simulated deployment's state across restarts.
	StateFile string
	// AdminListen is the address of the sim admin API; empty serves none.
	AdminListen    string
	AllowedClients []string
	// ListenOverride replaces endpoints' listen addresses (see StartSim).
	ListenOverride func(sim.Endpoint) string
	Logger         *slog.Logger
	Version        string
	// Ready, when set, is called with the runner once every endpoint listens.
	Ready func(*SimRunner)
}

// RunSim loads the deployment, serves every endpoint (the servers' agents, the pools' aliases and
// the admin API), prints one line per endpoint ("pool   FQDN  URL" for an alias, "server FQDN
// (POOL)  URL" for an agent, "admin  URL") and then "ready" to out, and serves until ctx ends.
func RunSim(ctx context.Context, o RunOptions, out io.Writer) error {
	if o.DeploymentFile == "" {
		return errors.New("--deployment is required")
	}
	if o.TLSDir == "" {
		return errors.New("--tls-dir is required")
	}
	if o.JournalDir == "" {
		return errors.New("--journal is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	tlsFiles, err := LoadTLSDir(o.TLSDir)
	if err != nil {
		return err
	}
	tlsFiles.AllowedClients = o.AllowedClients
	var simOpts []sim.Option
	if o.StateFile != "" {
		simOpts = append(simOpts, sim.WithStateFile(o.StateFile))
	}
	d, err := sim.Load(o.DeploymentFile, simOpts...)
	if err != nil {
		return err
	}
	// The deployment is this process's: its Bootstrapper runs end with it (after the agents).
	defer d.Close()
	r, err := StartSim(ctx, d, tlsFiles, o.JournalDir, o.ListenOverride, WithLogger(o.Logger), WithVersion(o.Version))
	if err != nil {
		return err
	}
	defer r.Stop()
	adminURL := ""
	if o.AdminListen != "" {
		if adminURL, err = r.ServeAdmin(o.AdminListen); err != nil {
			return err
		}
	}
	for _, e := range r.List() {
		if e.Kind == sim.KindPool {
			fmt.Fprintf(out, "pool   %s  %s\n", e.FQDN, e.URL)
		} else {
			fmt.Fprintf(out, "server %s (%s)  %s\n", e.FQDN, e.Pool, e.URL)
		}
	}
	if adminURL != "" {
		fmt.Fprintf(out, "admin  %s\n", adminURL)
	}
	fmt.Fprintln(out, "ready")
	if o.Ready != nil {
		o.Ready(r)
	}
	<-ctx.Done()
	return nil
}
