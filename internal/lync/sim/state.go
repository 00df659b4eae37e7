package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// mutState is everything that changes while the sim runs: what Lync itself would keep across an
// agent restart (topology pairings, installed services, the backup service's progress) plus the
// sim's own counters, timeline and remaining faults. It is what the state file holds.
type mutState struct {
	FormatVersion   int                   `json:"formatVersion"`
	TopologyVersion int                   `json:"topologyVersion"`
	Pools           map[string]*poolMut   `json:"pools"`
	Servers         map[string]*serverMut `json:"servers"`
	Counts          map[string]int        `json:"counts"`
	Timeline        []Execution           `json:"timeline,omitempty"`
}

const stateFormatVersion = 1

type poolMut struct {
	BackupPool    string                  `json:"backupPool,omitempty"`
	VoiceFailover *protocol.VoiceFailover `json:"voiceFailover,omitempty"`
	Unreachable   bool                    `json:"unreachable,omitempty"`
	ExportError   []string                `json:"exportError,omitempty"`
	ImportError   []string                `json:"importError,omitempty"`
	// Backup is the direction from this pool to its backup pool.
	Backup direction `json:"backup"`
}

type serverMut struct {
	BackupService protocol.BackupService `json:"backupService"`
	// BootstrappedFor is the backup pool the topology named when Bootstrapper last succeeded here:
	// LYNCBACKUP replicates to that partner until Bootstrapper runs again.
	BootstrappedFor string        `json:"bootstrappedFor,omitempty"`
	LastBootstrap   *BootstrapRun `json:"lastBootstrap,omitempty"`
	Faults          ServerFaults  `json:"faults"`
}

// BootstrapRun is the last Bootstrapper.exe run on a simulated server.
type BootstrapRun struct {
	Finished       time.Time `json:"finished"`
	ExitCode       int       `json:"exitCode"`
	Succeeded      bool      `json:"succeeded"`
	RebootRequired bool      `json:"rebootRequired,omitempty"`
	BackupPool     string    `json:"backupPool,omitempty"`
}

func newMutState() *mutState {
	return &mutState{
		FormatVersion:   stateFormatVersion,
		TopologyVersion: 1,
		Pools:           map[string]*poolMut{},
		Servers:         map[string]*serverMut{},
		Counts:          map[string]int{},
	}
}

// clone deep-copies the state, so a mutation works on a copy that replaces the original only once
// it is persisted. Copied field by field: a JSON round trip per change made a deployment of
// thousands of pools spend most of its time here.
func (s *mutState) clone() *mutState {
	c := &mutState{
		FormatVersion:   s.FormatVersion,
		TopologyVersion: s.TopologyVersion,
		Pools:           make(map[string]*poolMut, len(s.Pools)),
		Servers:         make(map[string]*serverMut, len(s.Servers)),
		Counts:          make(map[string]int, len(s.Counts)),
	}
	for k, p := range s.Pools {
		cp := *p
		if p.VoiceFailover != nil {
			v := *p.VoiceFailover
			cp.VoiceFailover = &v
		}
		cp.ExportError, cp.ImportError = cloneStrings(p.ExportError), cloneStrings(p.ImportError)
		c.Pools[k] = &cp
	}
	for k, sv := range s.Servers {
		cs := *sv
		if sv.LastBootstrap != nil {
			b := *sv.LastBootstrap
			cs.LastBootstrap = &b
		}
		c.Servers[k] = &cs
	}
	for k, n := range s.Counts {
		c.Counts[k] = n
	}
	c.Timeline = cloneTimeline(s.Timeline)
	return c
}

// cloneStrings copies a list, keeping an empty one nil as the state file does.
func cloneStrings(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	return slices.Clone(in)
}

// readStateFile loads a state file written by writeStateFile; found is false when there is none.
// A file that does not match the deployment file is an error rather than silently half-applied.
func readStateFile(path string, t *topology) (st *mutState, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	st = &mutState{}
	if err := dec.Decode(st); err != nil {
		return nil, true, fmt.Errorf("state file %s: %w", path, err)
	}
	if st.FormatVersion != stateFormatVersion {
		return nil, true, fmt.Errorf("state file %s: format version %d, want %d", path, st.FormatVersion, stateFormatVersion)
	}
	mismatch := func(what string) error {
		return fmt.Errorf("state file %s does not match the deployment file (%s); delete it to start afresh", path, what)
	}
	if len(st.Pools) != len(t.pools) || len(st.Servers) != len(t.servers) {
		return nil, true, mismatch("different number of pools or servers")
	}
	poolName := func(name string) bool {
		_, ok := t.pool(name)
		return name == "" || ok
	}
	for _, p := range t.pools {
		pm, ok := st.Pools[p.FQDN]
		if !ok || pm == nil {
			return nil, true, mismatch("no state for pool " + p.FQDN)
		}
		if !poolName(pm.BackupPool) || !poolName(pm.Backup.Partner) {
			return nil, true, mismatch("pool " + p.FQDN + " names an unknown backup pool")
		}
	}
	for _, s := range t.servers {
		sm, ok := st.Servers[s.FQDN]
		if !ok || sm == nil {
			return nil, true, mismatch("no state for server " + s.FQDN)
		}
		if !poolName(sm.BootstrappedFor) {
			return nil, true, mismatch("server " + s.FQDN + " names an unknown backup pool")
		}
		if !slices.Contains([]string{"", protocol.ServiceStopped, protocol.ServiceRunning}, sm.BackupService.Status) {
			return nil, true, mismatch("server " + s.FQDN + " has backup service status " + sm.BackupService.Status)
		}
	}
	if st.Counts == nil {
		st.Counts = map[string]int{}
	}
	for i, x := range st.Timeline {
		if x.Finished == nil && x.Outcome != "" || x.Finished != nil && !slices.Contains([]string{OutcomeSucceeded, OutcomeFailed, OutcomeInterrupted}, x.Outcome) {
			return nil, true, fmt.Errorf("state file %s: timeline[%d] has finished %v with outcome %q", path, i, x.Finished, x.Outcome)
		}
	}
	return st, true, nil
}

// writeStateFile replaces path atomically: a crash leaves either the old or the new state, never a
// torn file.
func writeStateFile(path string, st *mutState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // not supported on every platform (Windows); the rename is still atomic
		d.Close()
	}
	return nil
}

// State is a read-only snapshot of the whole deployment, as GET /sim/v1/state returns it.
type State struct {
	Product         string        `json:"product"`
	Now             time.Time     `json:"now"`
	TopologyVersion int           `json:"topologyVersion"`
	CMSPool         string        `json:"cmsPool"`
	Pools           []PoolState   `json:"pools"`
	Servers         []ServerState `json:"servers"`
	// Counts are the operations called, keyed "<Kind>/<target>" (see Deployment.Counts).
	Counts map[string]int `json:"counts"`
	// Timeline is every execution of an operation, in the order they started (see Execution).
	Timeline []Execution `json:"timeline"`
	// Bootstrapping lists the servers where Bootstrapper.exe runs now.
	Bootstrapping []string `json:"bootstrapping,omitempty"`
	// Reads are the read settings in force.
	Reads ReadSettings `json:"reads"`
}

// ReadSettings are how reads behave (durations.read, readsWaitForWrites, Deployment.SetReads).
type ReadSettings struct {
	// Latency is a Go duration: how long every read takes.
	Latency string `json:"latency"`
	// WaitForWrites: a read on a server waits while that server's agent runs a write.
	WaitForWrites bool `json:"waitForWrites"`
}

// PoolState is one pool: its topology facts, faults and the backup direction to its partner.
type PoolState struct {
	protocol.Pool
	Listen        string                  `json:"listen"`
	Unreachable   bool                    `json:"unreachable,omitempty"`
	VoiceFailover *protocol.VoiceFailover `json:"voiceFailover,omitempty"`
	ExportError   []string                `json:"exportError,omitempty"`
	ImportError   []string                `json:"importError,omitempty"`
	// Backup is what Get-CsBackupServiceStatus reports now for the direction to the backup pool.
	Backup protocol.BackupStatus `json:"backup"`
	// BackupActive is true while the direction replicates (paired both ways, LYNCBACKUP running on
	// a bootstrapped server of each pool); Backlog is the changes waiting to be exported.
	BackupActive bool    `json:"backupActive"`
	Backlog      float64 `json:"backlog"`
}

// ServerState is one Front End server.
type ServerState struct {
	FQDN            string                 `json:"fqdn"`
	Pool            string                 `json:"pool"`
	Listen          string                 `json:"listen"`
	BackupService   protocol.BackupService `json:"backupService"`
	BootstrappedFor string                 `json:"bootstrappedFor,omitempty"`
	LastBootstrap   *BootstrapRun          `json:"lastBootstrap,omitempty"`
	// Faults are what is left of the server's faults.
	Faults ServerFaults `json:"faults"`
}
