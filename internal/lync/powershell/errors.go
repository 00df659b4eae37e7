package powershell

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/lync-dr/poolpair-operator/internal/lync"
)

// Permission hints, appended to a permission error: each names what the step that failed needs.
const (
	// PermissionHint is for reads and the Backup Service cmdlets (Get-CsPool, Get-CsTopology,
	// Get-CsBackupServiceStatus, Invoke-CsBackupServiceSync): "Configuring and monitoring the Backup
	// Service in Lync Server 2013" makes RTCUniversalServerAdmins the only group that may run
	// Get-CsBackupServiceStatus by default.
	PermissionHint = "the account running lync-agent needs membership of RTCUniversalServerAdmins " +
		"(Lync's topology reads and the Backup Service cmdlets; without it they fail with a WCF access error)"
	// PermissionHintService is for stopping and starting LYNCBACKUP on this server.
	PermissionHintService = "the account running lync-agent needs membership of RTCUniversalServerAdmins and local " +
		"Administrator rights on this server to stop and start LYNCBACKUP (Stop-CsWindowsService, Start-CsWindowsService)"
	// PermissionHintTopology is for the topology writes (PairPools, Unpair): Enable-CsTopology needs
	// setup permissions, which domain preparation does not give RTCUniversalServerAdmins
	// (Grant-CsSetupPermission's reference).
	PermissionHintTopology = "the account running lync-agent needs membership of RTCUniversalServerAdmins and setup " +
		"permissions to enable the topology (Enable-CsTopology): membership of Domain Admins, or the rights that " +
		"Grant-CsSetupPermission -ComputerOU \"<OU of the Lync servers' computer accounts>\" gives RTCUniversalServerAdmins " +
		"(run once for each OU that holds Lync Server computers)"
	// PermissionHintBootstrapper is for running Bootstrapper.exe.
	PermissionHintBootstrapper = "lync-agent must run with local Administrator rights on this server to run Bootstrapper.exe"
)

// permissionHint is the hint for a permission failure of op.
func permissionHint(op string) string {
	switch op {
	case opPairPools, opUnpair:
		return PermissionHintTopology
	case opStartBackupService, opRestartBackupService:
		return PermissionHintService
	}
	return PermissionHint
}

// CmdletError is a failure the PowerShell host reported for one operation: the exception thrown by
// a cmdlet, as the host's catch block saw it. Kind is lync.ErrPermission, lync.ErrNotFound,
// lync.ErrUnavailable, lync.ErrConflict (Invoke-CsPoolFailOver refusing a pool an Edge pool uses
// as next hop), or nil for any other cmdlet failure; errors.Is sees it through Unwrap.
type CmdletError struct {
	Op       string // the agent operation, e.g. "GetPool"
	Type     string // .NET exception type, e.g. System.UnauthorizedAccessException
	Message  string // the exception's message
	Detail   string // messages of the exception and its inner exceptions, " | "-joined
	Category string // PowerShell ErrorCategory, e.g. PermissionDenied
	ErrorID  string // FullyQualifiedErrorId
	Kind     error
}

func (e *CmdletError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Type
	}
	s := fmt.Sprintf("powershell %s: %s", e.Op, msg)
	switch {
	case e.Kind == lync.ErrPermission:
		s += " (" + permissionHint(e.Op) + ")"
	case e.Kind == lync.ErrConflict && e.Op == opFailoverPool:
		s += " (" + EdgeNextHopHint + ")"
	}
	return s
}

func (e *CmdletError) Unwrap() error { return e.Kind }

// RelationshipError is a failure of Get-CsPoolBackupRelationship, or an answer it gave that names no
// backup pool the backend can read: whether the pool is paired is unknown. It is never
// lync.ErrNotFound (the pool is in the topology: Get-CsPool found it) and never read as "unpaired".
// Err is the cmdlet's failure (with its Kind: permission, unavailable or none), or nil for an
// answer of an unknown shape.
type RelationshipError struct {
	Op      string // the agent operation, e.g. "GetPool"
	Pool    string
	Problem string // what was wrong, when Err is nil
	Err     *CmdletError
}

func (e *RelationshipError) Error() string {
	s := fmt.Sprintf("powershell %s: Get-CsPoolBackupRelationship -PoolFqdn %s ", e.Op, e.Pool)
	if e.Err == nil {
		return s + e.Problem + "; whether the pool is paired is unknown"
	}
	msg := e.Err.Message
	if msg == "" {
		msg = e.Err.Type
	}
	s += "failed, so whether the pool is paired is unknown: " + msg
	if e.Err.Kind == lync.ErrPermission {
		s += " (" + PermissionHint + ")"
	}
	return s
}

func (e *RelationshipError) Unwrap() error {
	if e.Err == nil {
		return nil
	}
	return e.Err
}

// relationshipFailure is the error for Get-CsPoolBackupRelationship's failure in op: classified
// like any cmdlet's, except that "not found" does not mean the pool is not in the topology.
func relationshipFailure(op, pool string, we *wireError) error {
	ce := classify(op, we)
	if ce.Kind == lync.ErrNotFound {
		ce.Kind = nil
	}
	return &RelationshipError{Op: op, Pool: pool, Err: ce}
}

// wireError is the error object of a reply line (ConvertTo-AgentError in scripts.go).
type wireError struct {
	Type      string `json:"type"`
	InnerType string `json:"innerType"`
	Message   string `json:"message"`
	Detail    string `json:"detail"`
	Category  string `json:"category"`
	ErrorID   string `json:"errorId"`
}

var (
	// A missing RTCUniversalServerAdmins membership surfaces as a WCF or Active Directory access
	// error from the management store, with one of these texts.
	permissionText = regexp.MustCompile(`(?i)access is denied|access denied|insufficient access rights|` +
		`not authorized|unauthorized|does not have (the )?(required )?permission|rtcuniversalserveradmins`)
	notFoundText = regexp.MustCompile(`(?i)cannot find|could not be found|was not found|does not exist|not found in the topology`)
	// Invoke-CsPoolFailOver's refusal of a pool an Edge pool uses as its next hop, as "Failing
	// over and failing back a pool" quotes it: "This Front-end pool ... is specified in topology
	// as the next hop for the Edge server."
	edgeNextHopText = regexp.MustCompile(`(?i)next hop for the Edge`)
)

// EdgeNextHopHint is added to Invoke-CsPoolFailOver's refusal of a pool an Edge pool still uses
// as its next hop.
const EdgeNextHopHint = "move the Edge pool's next hop to the surviving pool first (the MoveEdgeNextHop step: " +
	"Set-CsEdgeServer -Identity EdgeServer:<Edge pool> -Registrar Registrar:<surviving pool>)"

// Exception types that mean "try again later": the management store or a WCF endpoint is out of
// reach, or the module's cmdlets are missing from the session.
var unavailableTypes = []string{
	"CommandNotFoundException",
	"EndpointNotFoundException",
	"CommunicationException",
	"ServerTooBusyException",
	"TimeoutException",
}

// classify turns a reply's error into a *CmdletError with its Kind.
func classify(op string, we *wireError) *CmdletError {
	e := &CmdletError{Op: op, Type: we.Type, Message: strings.TrimSpace(we.Message), Detail: we.Detail,
		Category: we.Category, ErrorID: we.ErrorID}
	types := we.Type + " " + we.InnerType
	text := we.Message + " | " + we.Detail
	switch {
	case strings.Contains(types, "UnauthorizedAccessException"),
		strings.Contains(types, "SecurityAccessDeniedException"),
		we.Category == "PermissionDenied",
		permissionText.MatchString(text):
		e.Kind = lync.ErrPermission
	case op == opFailoverPool && edgeNextHopText.MatchString(text):
		e.Kind = lync.ErrConflict
	case containsAny(types, unavailableTypes):
		e.Kind = lync.ErrUnavailable
	case strings.Contains(types, "ItemNotFoundException"),
		we.Category == "ObjectNotFound",
		notFoundText.MatchString(text):
		e.Kind = lync.ErrNotFound
	}
	return e
}

// importError is the error for a host whose module import failed (the id 0 reply).
func importError(p product, productName string, we *wireError) error {
	return fmt.Errorf("cannot import PowerShell module %q for %s (%s); is the %s management shell installed "+
		"on this server? %s: %s: %w", p.module, p.name, productName, p.name, we.Type, strings.TrimSpace(we.Message), lync.ErrUnavailable)
}

// unavailable is an error that says the host could not answer; a retry may succeed.
func unavailable(op, format string, args ...any) error {
	return fmt.Errorf("powershell %s: %s: %w", op, fmt.Sprintf(format, args...), lync.ErrUnavailable)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
