package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// MaxBodyBytes bounds every request body the agent reads.
const MaxBodyBytes = 64 << 10

// MaxOperationIDLength bounds operation ids; the operator's keys
// (<uid>/<step>/<target>/<generation>/<attempt>) stay well below it.
const MaxOperationIDLength = 512

// dnsLabel is an RFC 1123 label. Upper case is accepted because Windows reports names as typed;
// comparisons are case-insensitive (see SameFQDN).
var (
	fqdnPattern        = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)+$`)
	operationIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)
)

// ValidateFQDN checks that s is a fully qualified RFC 1123 DNS name (at least two labels). Nothing
// a shell or PowerShell would interpret can pass.
func ValidateFQDN(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: required", field)
	}
	if len(s) > 253 || !fqdnPattern.MatchString(s) {
		return fmt.Errorf("%s: %q is not a fully qualified RFC 1123 DNS name", field, s)
	}
	return nil
}

// SameFQDN compares DNS names the way DNS does: case-insensitively, ignoring a trailing dot.
func SameFQDN(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// ValidateOperationID checks an operation id.
func ValidateOperationID(id string) error {
	if id == "" {
		return fmt.Errorf("id: required")
	}
	if len(id) > MaxOperationIDLength || !operationIDPattern.MatchString(id) {
		return fmt.Errorf("id: must be at most %d characters of letters, digits and . _ : / -", MaxOperationIDLength)
	}
	return nil
}

// FieldError is a validation failure that names the offending parameter.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// DecodeParams strictly decodes and validates an operation's parameters: unknown fields, trailing
// data and invalid values are refused, naming the parameter. It returns one of *PairPoolsParams,
// *UnpairParams, *SyncBackupParams, *FailoverCMSParams, *EdgeNextHopParams, *PoolFailoverParams
// (FailoverPool and FailbackPool), or nil for the kinds that take none.
func (r *OperationRequest) DecodeParams() (any, error) {
	if err := ValidateOperationID(r.ID); err != nil {
		return nil, err
	}
	var target any
	switch r.Kind {
	case KindPairPools:
		target = &PairPoolsParams{}
	case KindUnpair:
		target = &UnpairParams{}
	case KindSyncBackup:
		target = &SyncBackupParams{}
	case KindFailoverCMS:
		target = &FailoverCMSParams{}
	case KindMoveEdgeNextHop:
		target = &EdgeNextHopParams{}
	case KindFailoverPool, KindFailbackPool:
		target = &PoolFailoverParams{}
	case KindBootstrap, KindStartBackupService, KindRestartBackupService:
		target = &struct{}{}
	case "":
		return nil, &FieldError{Field: "kind", Reason: "required"}
	default:
		return nil, &FieldError{Field: "kind", Reason: fmt.Sprintf("unknown operation kind %q", r.Kind)}
	}
	raw := bytes.TrimSpace(r.Params)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(target); err != nil {
		return nil, &FieldError{Field: "params", Reason: err.Error()}
	}
	if dec.More() {
		return nil, &FieldError{Field: "params", Reason: "trailing data after the parameters object"}
	}
	switch p := target.(type) {
	case *PairPoolsParams:
		return p, p.Validate()
	case *UnpairParams:
		return p, validatePoolPair(p.PrimaryFQDN, p.BackupFQDN)
	case *SyncBackupParams:
		return p, fieldErr("params.poolFqdn", ValidateFQDN("poolFqdn", p.PoolFQDN))
	case *FailoverCMSParams:
		return p, p.Validate()
	case *EdgeNextHopParams:
		return p, p.Validate()
	case *PoolFailoverParams:
		return p, p.validate(r.Kind)
	}
	return nil, nil
}

// Validate checks FailoverCMS parameters.
func (p *FailoverCMSParams) Validate() error {
	return fieldErr("params.toPoolFqdn", ValidateFQDN("toPoolFqdn", p.ToPoolFQDN))
}

// Validate checks MoveEdgeNextHop parameters: two names, and not the same one (an Edge pool is
// never its own next hop).
func (p *EdgeNextHopParams) Validate() error {
	if err := ValidateFQDN("edgePoolFqdn", p.EdgePoolFQDN); err != nil {
		return fieldErr("params.edgePoolFqdn", err)
	}
	if err := ValidateFQDN("registrarFqdn", p.RegistrarFQDN); err != nil {
		return fieldErr("params.registrarFqdn", err)
	}
	if SameFQDN(p.EdgePoolFQDN, p.RegistrarFQDN) {
		return &FieldError{Field: "params.registrarFqdn", Reason: "the next hop of an Edge pool is a Front End pool, not the Edge pool itself"}
	}
	return nil
}

// ValidateFailover checks FailoverPool parameters.
func (p *PoolFailoverParams) ValidateFailover() error { return p.validate(KindFailoverPool) }

// ValidateFailback checks FailbackPool parameters: disasterMode is failover's only
// (Invoke-CsPoolFailBack -DisasterMode gives up what the failed-over users did on the backup pool,
// and the agent never runs it).
func (p *PoolFailoverParams) ValidateFailback() error { return p.validate(KindFailbackPool) }

func (p *PoolFailoverParams) validate(kind OperationKind) error {
	if err := ValidateFQDN("poolFqdn", p.PoolFQDN); err != nil {
		return fieldErr("params.poolFqdn", err)
	}
	if kind == KindFailbackPool && p.DisasterMode {
		return &FieldError{Field: "params.disasterMode", Reason: "failover only: a failback runs against a pool that answers again"}
	}
	return nil
}

// IsFailover reports whether kind is one of the failover kinds (FailoverCMS, MoveEdgeNextHop,
// FailoverPool, FailbackPool): an administrator's declaration, never repeated on a guess.
func IsFailover(kind OperationKind) bool {
	switch kind {
	case KindFailoverCMS, KindMoveEdgeNextHop, KindFailoverPool, KindFailbackPool:
		return true
	}
	return false
}

// WhatIf reports whether decoded parameters (as DecodeParams returns them) ask for a rehearsal.
func WhatIf(params any) bool {
	switch p := params.(type) {
	case *FailoverCMSParams:
		return p.WhatIf
	case *EdgeNextHopParams:
		return p.WhatIf
	case *PoolFailoverParams:
		return p.WhatIf
	}
	return false
}

// Validate checks PairPools parameters.
func (p *PairPoolsParams) Validate() error {
	if err := validatePoolPair(p.PrimaryFQDN, p.BackupFQDN); err != nil {
		return err
	}
	if v := p.VoiceFailover; v != nil {
		if err := validateSeconds("params.voiceFailover.failureDetectionIntervalSeconds", v.FailureDetectionIntervalSeconds); err != nil {
			return err
		}
		if err := validateSeconds("params.voiceFailover.failbackDetectionIntervalSeconds", v.FailbackDetectionIntervalSeconds); err != nil {
			return err
		}
	}
	return nil
}

// Voice failover detection intervals accepted, in seconds (0 = the product default).
const (
	MinDetectionIntervalSeconds = 30
	MaxDetectionIntervalSeconds = 24 * 60 * 60
)

func validateSeconds(field string, v int) error {
	if v == 0 {
		return nil
	}
	if v < MinDetectionIntervalSeconds || v > MaxDetectionIntervalSeconds {
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be between %d and %d seconds", MinDetectionIntervalSeconds, MaxDetectionIntervalSeconds)}
	}
	return nil
}

func validatePoolPair(primary, backup string) error {
	if err := ValidateFQDN("primaryFqdn", primary); err != nil {
		return fieldErr("params.primaryFqdn", err)
	}
	if err := ValidateFQDN("backupFqdn", backup); err != nil {
		return fieldErr("params.backupFqdn", err)
	}
	if SameFQDN(primary, backup) {
		return &FieldError{Field: "params.backupFqdn", Reason: "a pool cannot be paired with itself"}
	}
	return nil
}

func fieldErr(field string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return &FieldError{Field: field, Reason: msg}
}
