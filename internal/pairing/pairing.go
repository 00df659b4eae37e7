// Package pairing holds the rules of a Lync pool pairing as pure functions: what counts as a
// healthy backup direction, which milestones an observation meets, the phase they add up to, the
// operation keys and the retry backoff. The controller feeds it observations; nothing here talks
// to an agent or to Kubernetes.
package pairing

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Milestones are the pairing runbook's checkpoints, in order.
type Milestones struct {
	TopologyPublished    bool
	Bootstrapped         bool
	BackupServiceRunning bool
	BackupSynced         bool
}

// Reached counts the milestones met in order: the phase is the last of them.
func (m Milestones) Reached() int {
	n := 0
	for _, met := range []bool{m.TopologyPublished, m.Bootstrapped, m.BackupServiceRunning, m.BackupSynced} {
		if !met {
			break
		}
		n++
	}
	return n
}

// Paired reports whether the topology names each pool as the other's backup.
func Paired(primary, backup protocol.Pool) bool {
	return protocol.SameFQDN(primary.BackupPool, backup.FQDN) && protocol.SameFQDN(backup.BackupPool, primary.FQDN)
}

// PairedElsewhere returns the third pool that pool is paired with instead of partner, or "".
func PairedElsewhere(pool protocol.Pool, partner string) string {
	if pool.BackupPool == "" || protocol.SameFQDN(pool.BackupPool, partner) {
		return ""
	}
	return pool.BackupPool
}

// ServerBootstrapped reports whether Bootstrapper.exe succeeded on the server after the pairing
// with partner was published (the agent records the backup pool the topology named when the run
// finished) and the backup service was installed by it.
// A run that asked for a restart is not enough: the server is bootstrapped once it has restarted
// and a second run succeeded.
func ServerBootstrapped(s protocol.Server, partner string) bool {
	b := s.LastBootstrap
	return b != nil && b.Succeeded && !b.RebootRequired && protocol.SameFQDN(b.BackupPool, partner) && s.BackupService.Installed
}

// BackupServiceStale reports whether LYNCBACKUP runs on the server since before its last
// Bootstrapper run finished: a service that ran before the pairing changed does not pick up its
// new partner until it restarts (Microsoft's procedures stop and start it). A start time the
// agent cannot read is not taken as stale.
func BackupServiceStale(s protocol.Server) bool {
	svc, b := s.BackupService, s.LastBootstrap
	return svc.Status == protocol.ServiceRunning && svc.Started != nil && b != nil && svc.Started.Before(b.Finished)
}

// DirectionHealth says whether one direction of backup synchronization is healthy (LYNC.md: every
// module exports FinalState or SteadyState, CMSMaster may be NotInitialized on the pool that does
// not host the CMS, and every module imports NormalState) and, if not, why.
func DirectionHealth(status protocol.BackupStatus, fromHostsCMS bool) (healthy bool, reason string) {
	if len(status.Modules) == 0 {
		return false, "no backup modules reported yet"
	}
	var problems []string
	for _, m := range status.Modules {
		switch {
		case m.ExportStatus == protocol.ExportFinalState || m.ExportStatus == protocol.ExportSteadyState:
		case m.ExportStatus == protocol.ExportNotInitialized && m.Identity == protocol.ModuleCMSMaster && !fromHostsCMS:
		default:
			problems = append(problems, fmt.Sprintf("%s export %s", m.Identity, orUnknown(m.ExportStatus)))
		}
		if m.ImportStatus != protocol.ImportNormalState {
			problems = append(problems, fmt.Sprintf("%s import %s", m.Identity, orUnknown(m.ImportStatus)))
		}
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, ", ")
	}
	return true, ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// OperationID is the idempotency key of a step: <uid>/<kind>/<target>/<sequence>. It is recorded
// in status before the request is sent, so a restart re-sends the same id and the agent answers
// with the operation it already has. A pair target "a,b" is written "a:b", as ids take no commas.
func OperationID(uid, kind, target string, sequence int64) string {
	return fmt.Sprintf("%s/%s/%s/%d", uid, kind, strings.ReplaceAll(strings.ToLower(target), ",", ":"), sequence)
}

// NextSequence is the sequence of a slot's next operation: above the last one it used, and at
// least the current time in milliseconds, so that ids never repeat even when the status that
// remembered the last sequence was wiped.
func NextSequence(last int64, now time.Time) int64 {
	return max(last+1, now.UnixMilli())
}

// Backoff is a capped exponential retry delay with jitter.
type Backoff struct {
	Base  time.Duration
	Cap   time.Duration
	Limit int32 // failed attempts after which a step is stalled
}

// DefaultBackoff: 10s, 20s, 40s ... capped at 10 minutes; stalled after 8 failures in a row
// (about 35 minutes of trying).
var DefaultBackoff = Backoff{Base: 10 * time.Second, Cap: 10 * time.Minute, Limit: 8}

// Delay is the wait after the given number of consecutive failures (1 = the first). The jitter
// (up to +20%) is derived from seed and failures, not from a random source, so a restarted manager
// computes the same retry time from the status it reads back.
func (b Backoff) Delay(failures int32, seed string) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := b.Base
	for i := int32(1); i < failures && d < b.Cap; i++ {
		d *= 2
	}
	d = min(d, b.Cap)
	h := fnv.New32a()
	_, _ = fmt.Fprintf(h, "%s/%d", seed, failures)
	jitter := time.Duration(h.Sum32()%1000) * d / 5000
	return d + jitter
}

// Exhausted reports whether the retry limit is reached.
func (b Backoff) Exhausted(failures int32) bool {
	return b.Limit > 0 && failures >= b.Limit
}
