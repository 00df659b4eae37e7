package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/lync/powershell"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
)

// newBackend builds the Backend serve drives, and what releases it.
func newBackend(c *serveConfig, logger *slog.Logger) (lync.Backend, func(), error) {
	switch c.Backend {
	case "sim":
		d, err := sim.Load(c.Deployment)
		if err != nil {
			return nil, nil, fmt.Errorf("--deployment: %w", err)
		}
		b, err := d.Backend(c.Server)
		if err != nil {
			return nil, nil, fmt.Errorf("--server: %w", err)
		}
		return b, func() {}, nil
	default:
		b, err := powershell.New(powershell.Options{
			Product:          c.Product,
			Executable:       c.PowerShell,
			BootstrapperPath: c.Bootstrapper,
			ServerFQDN:       c.Server,
			// Beside the journal: the next agent process reads a run's log from there.
			BootstrapLog: filepath.Join(c.Journal, "bootstrapper.log"),
			Logger:       logger,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("powershell backend: %w", err)
		}
		return b, func() { _ = b.Close() }, nil
	}
}
