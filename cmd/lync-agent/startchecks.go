package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/doctor"
	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/lync/powershell"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// startDoctorChecks are the checks of `lync-agent doctor` without which the agent cannot work at
// all; the others (rights, pairing, the backup service) concern one step or one state, and are
// reported by that step when it runs.
var startDoctorChecks = []string{"powershell", "module", "product", "bootstrapper"}

// poolReadTimeout bounds the start's read of this server's pool: the first read starts the
// backend's PowerShell host and imports the Lync module.
const poolReadTimeout = powershell.DefaultStartTimeout + time.Minute

// startChecks checks, before the agent serves, what it needs: its TLS files, and for the
// PowerShell backend PowerShell itself, the Lync module, the product and Bootstrapper.exe (the
// doctor's own checks), then a read of this server and its pool through the backend it will
// serve with. Each check is logged on its own line; a FAIL at error level, which the service
// writes to the Windows Event Log. The agent serves either way, and reports them in /v1/info.
func startChecks(ctx context.Context, c *serveConfig, backend lync.Backend, logger *slog.Logger) []doctor.Check {
	tlsRes := doctor.CheckTLS(doctor.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, ClientCA: c.ClientCA, AllowedClients: splitList(c.AllowedClients)}, time.Now())
	checks := tlsRes.Checks
	if c.Backend == "powershell" {
		diag, err := powershell.Diagnose(ctx, powershell.DiagnoseOptions{
			Product: c.Product, Executable: c.PowerShell, ServerFQDN: c.Server, BootstrapperPath: c.Bootstrapper, Logger: logger,
		})
		if err != nil && !errors.Is(err, powershell.ErrDiagnoseIncomplete) {
			checks = append(checks, doctor.Failed("powershell", err.Error(), "run lync-agent doctor with the serve flags: its lines say what to change"))
		}
		for _, ch := range diag.Checks {
			if slices.Contains(startDoctorChecks, ch.Name) {
				checks = append(checks, ch)
			}
		}
	}
	read, server := readOwnPool(ctx, backend)
	_, port, _ := net.SplitHostPort(c.Listen)
	checks = append(checks, read, doctor.CheckServerName(tlsRes.Cert, server, port))
	for _, ch := range checks {
		logCheck(logger, ch)
	}
	return checks
}

// readOwnPool reads this server's identity and its pool through the backend, as the operator's
// first requests will, and returns the check and this server's FQDN ("" when unknown).
func readOwnPool(ctx context.Context, backend lync.Backend) (doctor.Check, string) {
	ctx, cancel := context.WithTimeout(ctx, poolReadTimeout)
	defer cancel()
	const fix = "run lync-agent doctor with the serve flags, as the service's account: its lines say what to fix; then restart the agent"
	id, err := backend.Identity(ctx)
	if err != nil {
		return doctor.Failed("pool-read", "cannot read which server this is: "+err.Error(), fix), ""
	}
	pool, err := backend.Pool(ctx, id.PoolFQDN)
	if err != nil {
		return doctor.Failed("pool-read", fmt.Sprintf("this is %s, but reading its pool %s failed: %v", id.ServerFQDN, id.PoolFQDN, err), fix), id.ServerFQDN
	}
	return doctor.Passed("pool-read", fmt.Sprintf("this is %s, a Front End of %s (%s, %d Front End server(s))",
		id.ServerFQDN, pool.FQDN, pool.Edition, len(pool.Computers))), id.ServerFQDN
}

// logCheck logs one start check at the level its status calls for.
func logCheck(logger *slog.Logger, ch doctor.Check) {
	attrs := []any{"check", ch.Name, "status", string(ch.Status), "saw", ch.Saw}
	switch ch.Status {
	case doctor.Pass:
		logger.Info("start check", attrs...)
	case doctor.Fail:
		logger.Error("start check", append(attrs, "fix", ch.Fix)...)
	default:
		logger.Warn("start check", append(attrs, "fix", ch.Fix)...)
	}
}

// wireChecks are the checks as /v1/info reports them.
func wireChecks(checks []doctor.Check) []protocol.StartCheck {
	out := make([]protocol.StartCheck, len(checks))
	for i, ch := range checks {
		out[i] = protocol.StartCheck{Name: ch.Name, Status: string(ch.Status), Saw: ch.Saw}
		if ch.Status != doctor.Pass {
			out[i].Fix = ch.Fix
		}
	}
	return out
}
