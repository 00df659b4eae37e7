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
// *UnpairParams, *SyncBackupParams, or nil for the kinds that take none.
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
	}
	return nil, nil
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
