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
	// SyncInterval is the Backup Service's SyncInterval (Set-CsBackupServiceConfiguration), global
	// to the deployment: Lync's configuration, so it survives a restart of the sim process.
	SyncInterval jsonDuration `json:"syncInterval"`
	// CMSPool is the pool that hosts the active Central Management store: the file's cms.pool
	// until FailoverCMS moves it to that pool's backup pool.
	CMSPool string `json:"cmsPool"`
	// EdgePools holds each Edge pool's next hop in force (Set-CsEdgeServer -Registrar).
	EdgePools map[string]*edgeMut `json:"edgePools,omitempty"`
}

// stateFormatVersion 2 added boot times, pending restarts, what a running LYNCBACKUP serves, the
// backup data each pool holds and the sync interval: a version 1 file cannot say what they were.
// Version 3 added failover: the active CMS pool, the pools failed over, the Edge pools' next hops
// and stopped Front End services. A version 2 file is read as a deployment where none of that
// happened (the file's CMS pool and next hops, no pool failed over, every Front End running).
const stateFormatVersion = 3

// edgeMut is an Edge pool's state.
type edgeMut struct {
	// NextHop is the Front End pool the Edge pool's internal traffic goes to.
	NextHop string `json:"nextHop"`
}

type poolMut struct {
	BackupPool    string                  `json:"backupPool,omitempty"`
	VoiceFailover *protocol.VoiceFailover `json:"voiceFailover,omitempty"`
	Unreachable   bool                    `json:"unreachable,omitempty"`
	ExportError   []string                `json:"exportError,omitempty"`
	ImportError   []string                `json:"importError,omitempty"`
	// Backup is the direction from this pool to its backup pool.
	Backup direction `json:"backup"`
	// BackupDataOf lists the pools whose user data this pool stores as their backup pool (sorted).
	// A pool starts holding its partner's data when the partner's direction first replicates to
	// it. Lync does not delete it when the pairing changes (it is only no longer updated):
	// Remove-CsUserStoreBackupData does, which the sim's Unpair models.
	BackupDataOf []string `json:"backupDataOf,omitempty"`
	// FailedOverTo is the pool whose Front Ends serve this pool's users since FailoverPool, until
	// FailbackPool; "" while the pool serves its own.
	FailedOverTo string `json:"failedOverTo,omitempty"`
}

type serverMut struct {
	// BackupService is LYNCBACKUP as Get-CsWindowsService shows it; Started is set while Running.
	BackupService protocol.BackupService `json:"backupService"`
	// BootstrappedFor is the backup pool the topology named when Bootstrapper last succeeded here:
	// the machine is configured for that partner until Bootstrapper runs again.
	BootstrappedFor string `json:"bootstrappedFor,omitempty"`
	// ServiceServes is the partner the running LYNCBACKUP loaded when it started (the server's
	// BootstrappedFor then); "" when it is not running. A running service keeps serving it until
	// it is restarted, whatever the topology or Bootstrapper change meanwhile.
	ServiceServes string        `json:"serviceServes,omitempty"`
	LastBootstrap *BootstrapRun `json:"lastBootstrap,omitempty"`
	// BootTime is when the server's operating system last started: the deployment's start, then
	// each Reboot.
	BootTime time.Time `json:"bootTime"`
	// RebootRequested is when a Bootstrapper run asked for a restart (exit 3010) that has not
	// happened yet; nil when no restart is pending. Reboot clears it.
	RebootRequested *time.Time   `json:"rebootRequested,omitempty"`
	Faults          ServerFaults `json:"faults"`
	// FrontEndStopped is true while the Front End service (RTCSRV) is stopped (SetFrontEnd); a
	// restart of the server starts it again, as an automatic-start service.
	FrontEndStopped bool `json:"frontEndStopped,omitempty"`
}

// BootstrapRun is the last Bootstrapper.exe run on a simulated server.
type BootstrapRun struct {
	Finished       time.Time `json:"finished"`
	ExitCode       int       `json:"exitCode"`
	Succeeded      bool      `json:"succeeded"`
	RebootRequired bool      `json:"rebootRequired,omitempty"`
	BackupPool     string    `json:"backupPool,omitempty"`
	// NextSteps are the administrator's steps after a successful run (lync.BootstrapResult.NextSteps).
	NextSteps []string `json:"nextSteps,omitempty"`
}

// jsonDuration is a time.Duration written as a Go duration string ("2m0s") in the state file.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string like \"2m0s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = jsonDuration(v)
	return nil
}

func newMutState() *mutState {
	return &mutState{
		FormatVersion:   stateFormatVersion,
		TopologyVersion: 1,
		Pools:           map[string]*poolMut{},
		Servers:         map[string]*serverMut{},
		Counts:          map[string]int{},
		EdgePools:       map[string]*edgeMut{},
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
		SyncInterval:    s.SyncInterval,
		CMSPool:         s.CMSPool,
		EdgePools:       make(map[string]*edgeMut, len(s.EdgePools)),
	}
	for k, e := range s.EdgePools {
		ce := *e
		c.EdgePools[k] = &ce
	}
	for k, p := range s.Pools {
		cp := *p
		if p.VoiceFailover != nil {
			v := *p.VoiceFailover
			cp.VoiceFailover = &v
		}
		cp.ExportError, cp.ImportError = cloneStrings(p.ExportError), cloneStrings(p.ImportError)
		cp.BackupDataOf = cloneStrings(p.BackupDataOf)
		c.Pools[k] = &cp
	}
	for k, sv := range s.Servers {
		cs := *sv
		if sv.LastBootstrap != nil {
			b := *sv.LastBootstrap
			b.NextSteps = cloneStrings(b.NextSteps)
			cs.LastBootstrap = &b
		}
		cs.BackupService.Started = cloneTime(sv.BackupService.Started)
		cs.RebootRequested = cloneTime(sv.RebootRequested)
		c.Servers[k] = &cs
	}
	for k, n := range s.Counts {
		c.Counts[k] = n
	}
	c.Timeline = cloneTimeline(s.Timeline)
	return c
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
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
	switch st.FormatVersion {
	case stateFormatVersion:
	case 2:
		// Before failover: nothing of it happened yet.
		st.FormatVersion = stateFormatVersion
		st.CMSPool = t.cmsPool
		st.EdgePools = map[string]*edgeMut{}
		for _, e := range t.edgePools {
			st.EdgePools[e.FQDN] = &edgeMut{NextHop: e.NextHop}
		}
	default:
		return nil, true, fmt.Errorf("state file %s: format version %d, want %d (or 2)", path, st.FormatVersion, stateFormatVersion)
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
		for _, o := range pm.BackupDataOf {
			if o == "" || o == p.FQDN || !poolName(o) {
				return nil, true, fmt.Errorf("state file %s: pools[%q].backupDataOf: %q is not another pool of the deployment", path, p.FQDN, o)
			}
		}
		if pm.FailedOverTo == p.FQDN || !poolName(pm.FailedOverTo) {
			return nil, true, fmt.Errorf("state file %s: pools[%q].failedOverTo: %q is not another pool of the deployment", path, p.FQDN, pm.FailedOverTo)
		}
	}
	if _, ok := t.pool(st.CMSPool); !ok {
		return nil, true, fmt.Errorf("state file %s: cmsPool: %q is not a pool of the deployment", path, st.CMSPool)
	}
	if len(st.EdgePools) != len(t.edgePools) {
		return nil, true, mismatch("different number of Edge pools")
	}
	for _, e := range t.edgePools {
		em, ok := st.EdgePools[e.FQDN]
		if !ok || em == nil {
			return nil, true, mismatch("no state for Edge pool " + e.FQDN)
		}
		if _, ok := t.pool(em.NextHop); !ok {
			return nil, true, fmt.Errorf("state file %s: edgePools[%q].nextHop: %q is not a pool of the deployment", path, e.FQDN, em.NextHop)
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
		field := func(name string) string { return fmt.Sprintf("state file %s: servers[%q].%s", path, s.FQDN, name) }
		running := sm.BackupService.Status == protocol.ServiceRunning
		switch {
		case sm.BootTime.IsZero():
			return nil, true, fmt.Errorf("%s: required", field("bootTime"))
		case !poolName(sm.ServiceServes):
			return nil, true, fmt.Errorf("%s: %q is not a pool of the deployment", field("serviceServes"), sm.ServiceServes)
		case running != (sm.BackupService.Started != nil):
			return nil, true, fmt.Errorf("%s: set exactly when the service is Running (status %q)", field("backupService.started"), sm.BackupService.Status)
		case !running && sm.ServiceServes != "":
			return nil, true, fmt.Errorf("%s: set while the service is not Running (status %q)", field("serviceServes"), sm.BackupService.Status)
		case sm.RebootRequested != nil && sm.RebootRequested.Before(sm.BootTime):
			return nil, true, fmt.Errorf("%s: %s is before the boot time %s: a restart clears it", field("rebootRequested"), stamp(*sm.RebootRequested), stamp(sm.BootTime))
		}
	}
	if si := time.Duration(st.SyncInterval); si < minRuntimeSyncInterval || si > maxSyncInterval {
		return nil, true, fmt.Errorf("state file %s: syncInterval: %v is outside %v to %v", path, si, minRuntimeSyncInterval, maxSyncInterval)
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
	Product         string    `json:"product"`
	Now             time.Time `json:"now"`
	TopologyVersion int       `json:"topologyVersion"`
	// CMSPool is the pool that hosts the active Central Management store now.
	CMSPool string        `json:"cmsPool"`
	Pools   []PoolState   `json:"pools"`
	Servers []ServerState `json:"servers"`
	// Counts are the operations called, keyed "<Kind>/<target>" (see Deployment.Counts).
	Counts map[string]int `json:"counts"`
	// Timeline is every execution of an operation, in the order they started (see Execution).
	Timeline []Execution `json:"timeline"`
	// Bootstrapping lists the servers where Bootstrapper.exe runs now.
	Bootstrapping []string `json:"bootstrapping,omitempty"`
	// Reads are the read settings in force.
	Reads ReadSettings `json:"reads"`
	// SyncInterval is the Backup Service's SyncInterval in force (a Go duration), for every pool.
	SyncInterval string `json:"syncInterval"`
	// EdgePools are the Edge pools, in file order, with their next hop in force.
	EdgePools []EdgePoolState `json:"edgePools,omitempty"`
}

// EdgePoolState is one Edge pool.
type EdgePoolState struct {
	FQDN string `json:"fqdn"`
	// NextHop is the Front End pool its internal traffic goes to (Set-CsEdgeServer -Registrar).
	NextHop string `json:"nextHop"`
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
	// BackupDataOf lists the pools whose user data this pool stores as a backup pool (sorted; empty
	// when none): its partner's once that direction has replicated, and an earlier partner's
	// until Unpair removes it (Remove-CsUserStoreBackupData). A pairing changed out of band
	// (SetBackupPool) leaves it behind, as Lync does.
	BackupDataOf []string `json:"backupDataOf,omitempty"`
}

// ServerState is one Front End server.
type ServerState struct {
	FQDN   string `json:"fqdn"`
	Pool   string `json:"pool"`
	Listen string `json:"listen"`
	// BackupService is what Get-CsWindowsService reports (Started set while Running).
	BackupService protocol.BackupService `json:"backupService"`
	// BootstrappedFor is the partner Bootstrapper last configured the machine for.
	BootstrappedFor string `json:"bootstrappedFor,omitempty"`
	// BackupServiceServes is the partner the running LYNCBACKUP loaded when it started ("" when it
	// does not run). BackupServiceStale is true while it runs and its pool is paired with another
	// partner (or it started before the server was bootstrapped for the current one): the pool's
	// backup is then broken in both directions until RestartBackupService (or a reboot).
	BackupServiceServes string        `json:"backupServiceServes,omitempty"`
	BackupServiceStale  bool          `json:"backupServiceStale,omitempty"`
	LastBootstrap       *BootstrapRun `json:"lastBootstrap,omitempty"`
	// BootTime is when the server last started (the deployment's start, then each Reboot).
	BootTime time.Time `json:"bootTime"`
	// RebootPending is true from a Bootstrapper run that asked for a restart (exit 3010) until
	// the server restarts (Reboot); RebootRequested is when the run asked.
	RebootPending   bool       `json:"rebootPending,omitempty"`
	RebootRequested *time.Time `json:"rebootRequested,omitempty"`
	// Faults are what is left of the server's faults.
	Faults ServerFaults `json:"faults"`
	// FrontEnd is the state of the Front End service (RTCSRV), as FrontEndService reads it.
	FrontEnd string `json:"frontEnd"`
}
