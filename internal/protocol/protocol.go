// Package protocol holds the wire types of the lync-agent HTTP API (version 1) and the validation
// both sides apply to them. It is shared by the agent (internal/agent) and the operator's client
// (internal/agentclient), and imports neither Kubernetes nor PowerShell code.
package protocol

import (
	"encoding/json"
	"strings"
	"time"
)

// APIPrefix is the path prefix of every endpoint of this protocol version.
const APIPrefix = "/v1"

// Products the agent can drive. The product picks the PowerShell module and the Bootstrapper path.
const (
	ProductLync2013 = "lync2013"
	ProductSfB2015  = "sfb2015"
	ProductSfB2019  = "sfb2019"
)

// Pool editions as reported by the topology.
const (
	EditionEnterprise = "Enterprise"
	EditionStandard   = "Standard"
)

// Info answers GET /v1/info: who this agent is. There is no pool-level agent: every agent runs on
// one Front End server, and a client that reached it through a pool's DNS name (or any other
// address) checks ServerFQDN before it trusts the answer with an operation.
type Info struct {
	// ServerFQDN is the Front End server the agent runs on.
	ServerFQDN string `json:"serverFqdn"`
	// PoolFQDN is the pool the server belongs to.
	PoolFQDN     string `json:"poolFqdn"`
	Product      string `json:"product"`
	AgentVersion string `json:"agentVersion"`
	// Backend is "powershell" or "sim".
	Backend string `json:"backend"`
	// StartChecks are the checks the agent made of its server when it started (those of
	// `lync-agent doctor` it cannot work without, and a read of its own pool). A FAIL says what
	// will not work and what to do; the agent checks again when it is restarted.
	StartChecks []StartCheck `json:"startChecks,omitempty"`
}

// StartCheck is one of the agent's start checks.
type StartCheck struct {
	Name string `json:"name"`
	// Status is PASS, FAIL or UNKNOWN.
	Status string `json:"status"`
	// Saw is what the agent saw.
	Saw string `json:"saw"`
	// Fix is what to do, when it did not pass.
	Fix string `json:"fix,omitempty"`
}

// StartCheckFail is the Status of a failed start check.
const StartCheckFail = "FAIL"

// Pool answers GET /v1/pools/{fqdn}: the topology's facts about one Front End pool.
type Pool struct {
	FQDN    string `json:"fqdn"`
	Site    string `json:"site"`
	Edition string `json:"edition"`
	// Version is the product version of the pool's servers (for example "Lync Server 2013").
	// Pairing requires equal versions.
	Version string `json:"version"`
	// Computers are the pool's Front End servers.
	Computers []string `json:"computers"`
	// BackupPool is the pool this pool is paired with in the published topology; empty when unpaired.
	BackupPool string `json:"backupPool,omitempty"`
	// HostsCMS is true when this pool hosts the active Central Management Store.
	HostsCMS bool `json:"hostsCms"`
	// CMSPool is the pool that hosts the active Central Management Store of the deployment (this
	// pool or another); empty when the agent cannot tell. Topology writes of one deployment are
	// serialized on it.
	CMSPool string `json:"cmsPool,omitempty"`
	// FailedOverTo is the pool that serves this pool's users after Invoke-CsPoolFailOver of this
	// pool, until Invoke-CsPoolFailBack; empty while the pool serves its own users.
	FailedOverTo string `json:"failedOverTo,omitempty"`
	// EdgePools are the Edge pools whose next hop (registrar) is this pool.
	EdgePools []string `json:"edgePools,omitempty"`
}

// Export and import states of one backup module in one direction (Get-CsBackupServiceStatus).
const (
	ExportFinalState     = "FinalState"
	ExportSteadyState    = "SteadyState"
	ExportNonSteadyState = "NonSteadyState"
	ExportNotInitialized = "NotInitialized"
	ExportErrorState     = "ErrorState"
	ImportNormalState    = "NormalState"
	ImportErrorState     = "ErrorState"
)

// ModuleCMSMaster is the Central Management Store module; on the pool that does not host the CMS
// its export is NotInitialized, and that is normal.
const ModuleCMSMaster = "CentralMgmt.CMSMaster"

// BackupModule is one module's state in the backup status of a pool.
type BackupModule struct {
	Identity     string `json:"identity"`
	ExportStatus string `json:"exportStatus"`
	ImportStatus string `json:"importStatus"`
}

// BackupStatus answers GET /v1/pools/{fqdn}/backup-status: the direction from PoolFQDN to its
// backup pool.
type BackupStatus struct {
	PoolFQDN   string         `json:"poolFqdn"`
	BackupPool string         `json:"backupPool,omitempty"`
	Modules    []BackupModule `json:"modules"`
	// SyncIntervalSeconds is the Backup Service's SyncInterval that applies to the pool
	// (Get-CsBackupServiceConfiguration; Lync's default is 120): the state is only stable once it
	// has held for intervals, not for a moment. 0 when the agent could not read it.
	SyncIntervalSeconds int `json:"syncIntervalSeconds,omitempty"`
}

// Windows service states of LYNCBACKUP as Get-CsWindowsService reports them.
const (
	ServiceRunning      = "Running"
	ServiceStopped      = "Stopped"
	ServiceStartPending = "StartPending"
	ServiceStopPending  = "StopPending"
)

// BackupService is the LYNCBACKUP Windows service on one server.
type BackupService struct {
	Installed bool `json:"installed"`
	// Status is one of the Service* constants; empty when not installed.
	Status string `json:"status,omitempty"`
	// Started is when the running service's process started; nil when it is not running or the
	// agent cannot tell. A service started before the server was bootstrapped for its pool's
	// current pairing still serves the old partner: Microsoft's procedure restarts it.
	Started *time.Time `json:"started,omitempty"`
}

// BootstrapRun is the outcome of the last Bootstrapper.exe run on a server, from the agent's journal.
type BootstrapRun struct {
	OperationID string    `json:"operationId"`
	Finished    time.Time `json:"finished"`
	ExitCode    int       `json:"exitCode"`
	Succeeded   bool      `json:"succeeded"`
	// RebootRequired is true when Bootstrapper asked for a reboot and a second run (exit code
	// 3010 or 1641, or its own wording). Such a run succeeded as far as it went; the server is
	// bootstrapped only once it has restarted and a second run succeeded.
	RebootRequired bool `json:"rebootRequired,omitempty"`
	// BackupPool is the backup pool the published topology named for this server's pool when the
	// run finished: a run only counts for a pairing it has seen.
	BackupPool string `json:"backupPool,omitempty"`
	// NextSteps are documented steps after Bootstrapper that are the administrator's, never the
	// agent's (for Skype for Business Server: re-apply the installed cumulative update), each a
	// sentence naming the server and the command.
	NextSteps []string `json:"nextSteps,omitempty"`
}

// Server answers GET /v1/server: the Front End server the agent runs on.
type Server struct {
	FQDN          string        `json:"fqdn"`
	PoolFQDN      string        `json:"poolFqdn"`
	BackupService BackupService `json:"backupService"`
	LastBootstrap *BootstrapRun `json:"lastBootstrap,omitempty"`
	// BootTime is when the server's operating system last started; nil when the agent cannot tell.
	BootTime *time.Time `json:"bootTime,omitempty"`
	// RebootPending is true while the last Bootstrapper run asked for a restart and the server has
	// not restarted since (BootTime is before the run finished). Nothing but the administrator
	// restarts a Front End server.
	RebootPending bool `json:"rebootPending,omitempty"`
	// ActiveOperations are the operations this agent has not finished (Pending or Running),
	// without their params: a client that lost its record of one finds it here and adopts it
	// instead of starting another.
	ActiveOperations []ActiveOperation `json:"activeOperations,omitempty"`
	// FrontEnd is the state of the server's Front End service (RTCSRV): Running, Stopped, ...;
	// empty when the agent cannot tell. A failed pool is failed back only once it runs again.
	FrontEnd string `json:"frontEnd,omitempty"`
}

// ActiveOperation is an operation an agent is running or about to run.
type ActiveOperation struct {
	ID   string        `json:"id"`
	Kind OperationKind `json:"kind"`
	// Target is what it acts on: the server's FQDN for Bootstrap and StartBackupService, the pool
	// for SyncBackup, "<a>,<b>" (sorted, lower case) for PairPools and Unpair; for the failover
	// kinds (lower case) the pool the CMS moves to (FailoverCMS), the Edge pool (MoveEdgeNextHop),
	// the failed pool (FailoverPool, FailbackPool). A rehearsal (whatIf) has the same target as the
	// real step: they are told apart by their ids, never merged by target.
	Target  string         `json:"target"`
	State   OperationState `json:"state"`
	Started *time.Time     `json:"started,omitempty"`
}

// OperationKind is one of the fixed set of steps an agent performs. There is no other way to make an
// agent run anything.
type OperationKind string

const (
	KindPairPools          OperationKind = "PairPools"
	KindBootstrap          OperationKind = "Bootstrap"
	KindStartBackupService OperationKind = "StartBackupService"
	// KindRestartBackupService stops and starts LYNCBACKUP (Stop-CsWindowsService,
	// Start-CsWindowsService): a service that ran before a pairing changed does not pick up its
	// new partner until it restarts.
	KindRestartBackupService OperationKind = "RestartBackupService"
	KindSyncBackup           OperationKind = "SyncBackup"
	KindUnpair               OperationKind = "Unpair"

	// The failover kinds run only when an administrator declares a failover (spec.failover), on a
	// Front End of the surviving pool. None of their cmdlets is idempotent.

	// KindFailoverCMS makes the standby Central Management store in ToPoolFQDN active
	// (Invoke-CsManagementServerFailover; -Force in a disaster).
	KindFailoverCMS OperationKind = "FailoverCMS"
	// KindMoveEdgeNextHop points an Edge pool at another registrar pool
	// (Set-CsEdgeServer -Identity EdgeServer:<edge pool> -Registrar Registrar:<pool>).
	KindMoveEdgeNextHop OperationKind = "MoveEdgeNextHop"
	// KindFailoverPool lets the failed pool's users sign in to its backup pool
	// (Invoke-CsPoolFailOver -PoolFqdn <failed> [-DisasterMode]).
	KindFailoverPool OperationKind = "FailoverPool"
	// KindFailbackPool returns them to their own pool (Invoke-CsPoolFailBack -PoolFqdn <failed>).
	KindFailbackPool OperationKind = "FailbackPool"
)

// Kinds lists every operation kind.
var Kinds = []OperationKind{KindPairPools, KindBootstrap, KindStartBackupService, KindRestartBackupService, KindSyncBackup, KindUnpair,
	KindFailoverCMS, KindMoveEdgeNextHop, KindFailoverPool, KindFailbackPool}

// FailoverCMSParams are the parameters of a FailoverCMS operation.
type FailoverCMSParams struct {
	// ToPoolFQDN is the pool whose standby Central Management store becomes active: the surviving
	// pool, paired with the pool that hosts the CMS. The agent runs on one of its Front Ends.
	ToPoolFQDN string `json:"toPoolFqdn"`
	// Disaster is set when the pool that hosts the CMS does not answer (-Force).
	Disaster bool `json:"disaster,omitempty"`
	// WhatIf runs the cmdlet with -WhatIf: nothing changes (a rehearsal).
	WhatIf bool `json:"whatIf,omitempty"`
}

// EdgeNextHopParams are the parameters of a MoveEdgeNextHop operation.
type EdgeNextHopParams struct {
	// EdgePoolFQDN is the Edge pool whose next hop moves.
	EdgePoolFQDN string `json:"edgePoolFqdn"`
	// RegistrarFQDN is its new next hop: the surviving Front End pool.
	RegistrarFQDN string `json:"registrarFqdn"`
	// WhatIf changes nothing (a rehearsal).
	WhatIf bool `json:"whatIf,omitempty"`
}

// PoolFailoverParams are the parameters of FailoverPool and FailbackPool.
type PoolFailoverParams struct {
	// PoolFQDN is the failed pool: its users move to its backup pool on failover and return on
	// failback.
	PoolFQDN string `json:"poolFqdn"`
	// DisasterMode is set when the failed pool does not answer (-DisasterMode); failover only.
	DisasterMode bool `json:"disasterMode,omitempty"`
	// WhatIf runs the cmdlet with -WhatIf: nothing changes (a rehearsal).
	WhatIf bool `json:"whatIf,omitempty"`
}

// VoiceFailover are the optional voice resiliency settings written with a pairing
// (Set-CsRegistrar -EnableAutomaticFailover -FailureDetectionInterval -FailbackDetectionInterval).
type VoiceFailover struct {
	Enabled bool `json:"enabled"`
	// FailureDetectionIntervalSeconds and FailbackDetectionIntervalSeconds are whole seconds.
	FailureDetectionIntervalSeconds  int `json:"failureDetectionIntervalSeconds,omitempty"`
	FailbackDetectionIntervalSeconds int `json:"failbackDetectionIntervalSeconds,omitempty"`
}

// PairPoolsParams are the parameters of a PairPools operation.
type PairPoolsParams struct {
	PrimaryFQDN   string         `json:"primaryFqdn"`
	BackupFQDN    string         `json:"backupFqdn"`
	VoiceFailover *VoiceFailover `json:"voiceFailover,omitempty"`
}

// UnpairParams are the parameters of an Unpair operation.
type UnpairParams struct {
	PrimaryFQDN string `json:"primaryFqdn"`
	BackupFQDN  string `json:"backupFqdn"`
}

// SyncBackupParams are the parameters of a SyncBackup operation.
type SyncBackupParams struct {
	PoolFQDN string `json:"poolFqdn"`
}

// OperationRequest is the body of POST /v1/operations. Params is decoded strictly into the kind's
// parameter type; Bootstrap and StartBackupService take none ({} or absent).
type OperationRequest struct {
	ID     string          `json:"id"`
	Kind   OperationKind   `json:"kind"`
	Params json.RawMessage `json:"params,omitempty"`
}

// OperationList answers GET /v1/operations: the operations the agent's journal holds, newest
// first, at most the request's ?limit= of them.
type OperationList struct {
	Operations []Operation `json:"operations"`
}

// OperationState is the lifecycle state of an operation.
type OperationState string

const (
	StatePending   OperationState = "Pending"
	StateRunning   OperationState = "Running"
	StateSucceeded OperationState = "Succeeded"
	StateFailed    OperationState = "Failed"
)

// Done reports whether the state is final.
func (s OperationState) Done() bool { return s == StateSucceeded || s == StateFailed }

// Operation answers POST /v1/operations (202) and GET /v1/operations/{id}.
type Operation struct {
	ID      string          `json:"id"`
	Kind    OperationKind   `json:"kind"`
	Params  json.RawMessage `json:"params,omitempty"`
	State   OperationState  `json:"state"`
	Message string          `json:"message,omitempty"`
	// Started and Finished are nil until the operation starts and finishes.
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Retryable is true on a failure that may succeed when tried again (an interrupted run, a
	// transient backend error); false when the same request would fail the same way.
	Retryable bool `json:"retryable,omitempty"`
	// OutcomeUnknown is true on a failure after which nobody can tell whether the step took effect
	// (the agent stopped or timed out while its cmdlet ran): its state must be read before anything
	// is tried again.
	OutcomeUnknown bool `json:"outcomeUnknown,omitempty"`
}

// Error codes of the Error body, each with its HTTP status.
const (
	CodeInvalid      = "Invalid"      // 400
	CodeUnauthorized = "Unauthorized" // 401
	CodeForbidden    = "Forbidden"    // 403
	CodeNotFound     = "NotFound"     // 404
	CodeConflict     = "Conflict"     // 409
	CodeUnavailable  = "Unavailable"  // 503
	CodeInternal     = "Internal"     // 500
)

// CodeMethodNotAllowed (405): the path is an endpoint, but not for this method; the answer's
// Allow header lists the methods it takes.
const CodeMethodNotAllowed = "MethodNotAllowed"

// Error is the body of every non-2xx answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Operation, on a 409 Conflict, is the operation already in flight that the request collided
	// with (another of that kind on that target, or another topology write): the client adopts it
	// instead of starting one of its own.
	Operation *ActiveOperation `json:"operation,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// PairTarget is the target of PairPools and Unpair: order-independent, since pairing A with B and
// B with A touch the same association.
func PairTarget(a, b string) string {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if b < a {
		a, b = b, a
	}
	return a + "," + b
}
