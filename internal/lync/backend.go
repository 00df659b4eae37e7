// Package lync defines the Backend the agent drives: the Lync Server (or Skype for Business Server)
// deployment as seen from one Front End server. Implementations: powershell (the real Lync
// Management Shell and Bootstrapper.exe) and sim (a simulated deployment for demos and tests).
package lync

import (
	"context"
	"errors"

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

// Identity says which server (and pool) a Backend stands for.
type Identity struct {
	// ServerFQDN is empty for a pool-level endpoint (the sim serves those).
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
}

// Backend is everything the agent asks of a Lync deployment. Reads must be quick and safe to call
// often; writes are idempotent where Lync allows it (Bootstrapper, Start-CsWindowsService and
// Invoke-CsBackupServiceSync are safe to repeat). Every method honours ctx cancellation.
type Backend interface {
	Identity(ctx context.Context) (Identity, error)
	// Pool reads one pool's topology facts and its backup relationship (Get-CsPool,
	// Get-CsPoolBackupRelationship). ErrNotFound when the pool is not in the topology.
	Pool(ctx context.Context, fqdn string) (protocol.Pool, error)
	// BackupStatus reads the backup modules of the direction from poolFQDN to its backup pool
	// (Get-CsBackupServiceStatus).
	BackupStatus(ctx context.Context, poolFQDN string) (protocol.BackupStatus, error)
	// BackupService reads the LYNCBACKUP service on this server (Get-CsWindowsService).
	BackupService(ctx context.Context) (protocol.BackupService, error)

	// PairPools writes the backup association both ways and publishes and enables the topology.
	PairPools(ctx context.Context, p protocol.PairPoolsParams) error
	// Unpair removes the backup association between the two pools and publishes the topology.
	Unpair(ctx context.Context, p protocol.UnpairParams) error
	// Bootstrap runs Bootstrapper.exe on this server. A run that exits non-zero is a result with
	// Succeeded false, not an error; errors are for runs that could not happen.
	Bootstrap(ctx context.Context) (BootstrapResult, error)
	// StartBackupService starts LYNCBACKUP on this server (Start-CsWindowsService).
	StartBackupService(ctx context.Context) error
	// SyncBackup forces a backup sync of poolFQDN to its backup pool (Invoke-CsBackupServiceSync).
	SyncBackup(ctx context.Context, poolFQDN string) error
}
