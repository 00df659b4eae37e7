// Package lync defines the Backend the agent drives: the Lync Server (or Skype for Business Server)
// deployment as seen from one Front End server. Implementations: powershell (the real Lync
// Management Shell and Bootstrapper.exe) and sim (a simulated deployment for demos and tests).
package lync

import (
	"context"
	"errors"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Errors a Backend returns (wrapped with context); the agent maps them to HTTP statuses.
var (
	// ErrNotFound: the pool or object does not exist in the topology (404).
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the backend cannot answer now (PowerShell host down, server unreachable) and a
	// retry may succeed (503).
	ErrUnavailable = errors.New("backend unavailable")
	// ErrPermission: the account lacks the rights (RTCUniversalServerAdmins, local Administrator).
	ErrPermission = errors.New("permission denied")
	// ErrConflict: the request contradicts the deployment (a pool already paired with a third pool,
	// an edition mismatch); retrying will not help until a human changes something (409).
	ErrConflict = errors.New("conflict")
)

// Identity says which Front End server (and pool) a Backend stands for.
type Identity struct {
	ServerFQDN string
	PoolFQDN   string
	Product    string
	// Backend is "powershell" or "sim".
	Backend string
}

// BootstrapResult is the outcome of one Bootstrapper.exe run.
type BootstrapResult struct {
	ExitCode       int
	Succeeded      bool
	RebootRequired bool
	// LogTail is the end of Bootstrapper's output, for the operation's message on failure.
	LogTail string
	// BackupPool is the backup pool the topology named for this server's pool after the run.
	BackupPool string
	// NextSteps are the documented steps after the run that are the administrator's (see
	// protocol.BootstrapRun.NextSteps).
	NextSteps []string
}

// Backend is everything the agent asks of a Lync deployment. Reads must be quick and safe to call
// often; writes are idempotent where Lync allows it (Bootstrapper, Start-CsWindowsService and
// Invoke-CsBackupServiceSync are safe to repeat). Every method honours ctx cancellation.
type Backend interface {
	// Failover: the steps of a declared failover, and their reads.
	Failover
	Identity(ctx context.Context) (Identity, error)
	// Pool reads one pool's topology facts and its backup relationship (Get-CsPool,
	// Get-CsPoolBackupRelationship). ErrNotFound when the pool is not in the topology.
	Pool(ctx context.Context, fqdn string) (protocol.Pool, error)
	// BackupStatus reads the backup modules of the direction from poolFQDN to its backup pool
	// (Get-CsBackupServiceStatus).
	BackupStatus(ctx context.Context, poolFQDN string) (protocol.BackupStatus, error)
	// BackupService reads the LYNCBACKUP service on this server (Get-CsWindowsService), with when
	// its process started.
	BackupService(ctx context.Context) (protocol.BackupService, error)
	// BootTime reads when this server's operating system last started.
	BootTime(ctx context.Context) (time.Time, error)

	// PairPools writes the backup association both ways and publishes and enables the topology.
	PairPools(ctx context.Context, p protocol.PairPoolsParams) error
	// Unpair removes the backup association between the two pools and publishes the topology.
	Unpair(ctx context.Context, p protocol.UnpairParams) error
	// Bootstrap runs Bootstrapper.exe on this server. A run that exits non-zero is a result with
	// Succeeded false, not an error; errors are for runs that could not happen. The run is a
	// process of its own: when ctx ends (the agent stops) Bootstrap returns, but the run goes on
	// until it ends by itself, and RunningBootstrap finds it. A Bootstrap call while a run is in
	// progress on the server (this process's or an earlier one's) fails with ErrConflict; it never
	// starts a second run.
	Bootstrap(ctx context.Context) (BootstrapResult, error)
	// RunningBootstrap finds a Bootstrapper.exe run in progress on this server that the calling
	// process is not already waiting for, typically one that outlived an earlier agent process.
	// found is false when none runs. wait blocks until the run ends (or ctx ends) and judges it as
	// Bootstrap would.
	RunningBootstrap(ctx context.Context) (wait func(ctx context.Context) (BootstrapResult, error), found bool, err error)
	// StartBackupService starts LYNCBACKUP on this server (Start-CsWindowsService).
	StartBackupService(ctx context.Context) error
	// RestartBackupService stops and starts LYNCBACKUP on this server (Stop-CsWindowsService, then
	// Start-CsWindowsService), so that it picks up a changed pairing.
	RestartBackupService(ctx context.Context) error
	// SyncBackup forces a backup sync of poolFQDN to its backup pool (Invoke-CsBackupServiceSync).
	SyncBackup(ctx context.Context, poolFQDN string) error
}

// Failover is what the agent asks of a deployment when an administrator declares a failover or a
// failback (Microsoft's "Failing over and failing back a pool": the Central Management store
// first when the failed pool hosts it, then the Edge pool's next hop, then the pool). Both real
// backends (powershell, sim) implement it; it is an interface of its own, beside Backend, so that
// a Backend that does not (a test double) still is one: the agent refuses failover operations on
// it.
//
// None of the writes is idempotent, and none is retried on a guess: each checks first what Lync
// itself would refuse and returns an error wrapping ErrConflict that says what and why (ErrNotFound
// for a name the topology does not have, ErrUnavailable when a pool it needs does not answer, and
// ErrPermission for missing rights). On success each returns a one-line message of what was done.
// With whatIf, nothing changes: the checks run, the cmdlet runs with -WhatIf where it has one, and
// the message says what would happen ("what if: ...") or the error what would be refused. The
// reads that show the outcome are Pool (FailedOverTo, EdgePools, CMSPool) and FrontEndService.
type Failover interface {
	// FailoverCMS makes the standby Central Management store of toPool active
	// (Invoke-CsManagementServerFailover, run on a Front End of toPool, which must be the backup
	// pool of the pool that hosts the CMS). disaster is for a CMS pool that does not answer
	// (-Force, with the backup pool's back-end SQL Server store).
	FailoverCMS(ctx context.Context, toPool string, disaster, whatIf bool) (string, error)
	// MoveEdgeNextHop makes registrar (a Front End pool) the next hop of edgePool
	// (Set-CsEdgeServer -Identity EdgeServer:<edgePool> -Registrar Registrar:<registrar>). It is
	// the one idempotent write here: an Edge pool that already uses registrar is left alone.
	MoveEdgeNextHop(ctx context.Context, edgePool, registrar string, whatIf bool) (string, error)
	// FailoverPool lets pool's users sign in to its backup pool (Invoke-CsPoolFailOver -PoolFqdn
	// <pool> [-DisasterMode]); disasterMode when pool does not answer.
	FailoverPool(ctx context.Context, pool string, disasterMode, whatIf bool) (string, error)
	// FailbackPool returns pool's users to it (Invoke-CsPoolFailBack -PoolFqdn <pool>), once it
	// answers again with its Front End service running.
	FailbackPool(ctx context.Context, pool string, whatIf bool) (string, error)
	// FrontEndService reads the state of this server's Front End service (RTCSRV):
	// protocol.ServiceRunning, ServiceStopped, ...
	FrontEndService(ctx context.Context) (string, error)
}
