package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// The deployment file (see hack/sim/two-pools.yaml for a commented example). It is decoded strictly:
// an unknown or duplicate key is an error that names its path.
type config struct {
	Product   string          `json:"product"`
	Sites     []string        `json:"sites"`
	CMS       cmsConfig       `json:"cms"`
	Durations durationsConfig `json:"durations"`
	// ReadsWaitForWrites models one PowerShell host per agent: on a server, a read (Pool,
	// BackupStatus, BackupService) waits while that server's agent runs a write (PairPools, Unpair,
	// SyncBackup, StartBackupService, RestartBackupService; not Bootstrapper.exe, a process of its
	// own).
	ReadsWaitForWrites bool         `json:"readsWaitForWrites"`
	Pools              []poolConfig `json:"pools"`
	// EdgePools are the Edge pools of the topology, each with its next hop: the Front End pool its
	// internal traffic goes to (Set-CsEdgeServer -Registrar). The sim serves no endpoint for them.
	EdgePools []edgePoolConfig `json:"edgePools"`
}

type edgePoolConfig struct {
	FQDN string `json:"fqdn"`
	// NextHop is a Front End pool of the file.
	NextHop string `json:"nextHop"`
}

type cmsConfig struct {
	Pool string `json:"pool"`
}

// durationsConfig holds how long each step takes (Go duration strings, "0s" = instant) and the
// figures that drive the backup model.
type durationsConfig struct {
	PairPools          string `json:"pairPools"`
	Bootstrap          string `json:"bootstrap"`
	StartBackupService string `json:"startBackupService"`
	// RestartBackupService is Stop-CsWindowsService then Start-CsWindowsService LYNCBACKUP; default
	// the startBackupService duration. The service is stopped at the start of it.
	RestartBackupService string `json:"restartBackupService"`
	SyncBackup           string `json:"syncBackup"`
	// The failover writes (Invoke-CsManagementServerFailover, Set-CsEdgeServer -Registrar,
	// Invoke-CsPoolFailOver, Invoke-CsPoolFailBack): default 0. A -WhatIf run is instant.
	FailoverCMS     string `json:"failoverCMS"`
	MoveEdgeNextHop string `json:"moveEdgeNextHop"`
	FailoverPool    string `json:"failoverPool"`
	FailbackPool    string `json:"failbackPool"`
	// Read is the latency of every read (Get-CsPool, Get-CsBackupServiceStatus,
	// Get-CsWindowsService): default 0.
	Read string `json:"read"`
	// SyncInterval is LYNCBACKUP's own periodic sync (Set-CsBackupServiceConfiguration -SyncInterval),
	// within Lync's range of 5s to 3h; Deployment.SetSyncInterval changes it at run time.
	SyncInterval string `json:"syncInterval"`
	// ChangeRate is user/conference changes per second arriving in each direction.
	ChangeRate *float64 `json:"changeRate"`
	// BatchCapacity is how many changes one export batch carries: above it the export is NonSteadyState.
	BatchCapacity *int `json:"batchCapacity"`
	// InitialBacklog is the data a direction must ship on its first export (the pool's existing
	// users and conferences); default 5 × batchCapacity so a fresh pair starts NonSteadyState.
	InitialBacklog *int `json:"initialBacklog"`
}

type poolConfig struct {
	FQDN    string `json:"fqdn"`
	Site    string `json:"site"`
	Edition string `json:"edition"`
	Version string `json:"version"`
	// Listen, when set, is the pool's alias: the address its DNS name resolves to, which hands
	// each connection to a random Front End of the pool (DNS round robin). It is not an agent.
	Listen string `json:"listen"`
	// BackupPool is a pairing already published before the sim starts.
	BackupPool string           `json:"backupPool"`
	Faults     poolFaultsConfig `json:"faults"`
	Servers    []serverConfig   `json:"servers"`
}

type poolFaultsConfig struct {
	ExportError []string `json:"exportError"`
	ImportError []string `json:"importError"`
	Unreachable bool     `json:"unreachable"`
}

type serverConfig struct {
	FQDN   string `json:"fqdn"`
	Listen string `json:"listen"`
	// BackupService, when set (Stopped|Running), says the server was already bootstrapped for the
	// pool's pre-existing backupPool: a deployment that is paired and running before the sim starts.
	BackupService string       `json:"backupService"`
	Faults        ServerFaults `json:"faults"`
}

// ServerFaults are the failures a simulated Front End server injects. Counts go down as they are
// used, so a snapshot shows what is left.
type ServerFaults struct {
	// BootstrapFailures: Bootstrapper.exe exits non-zero this many more times, then succeeds.
	BootstrapFailures int `json:"bootstrapFailures,omitempty"`
	// RebootRequired: after the failures, Bootstrapper asks for a restart (exit 3010) this many
	// more times, without finishing: the server is not bootstrapped. Until the server restarts
	// (Deployment.Reboot, which only an administrator does), every further run does nothing and
	// asks for the restart again, without using up a count; the first run after the restart goes
	// on (and asks again while counts are left).
	RebootRequired int `json:"rebootRequired,omitempty"`
	// ServiceWillNotStart: LYNCBACKUP does not start, whether by Start-CsWindowsService, by
	// RestartBackupService (which leaves it stopped) or on its own when the server restarts.
	ServiceWillNotStart bool `json:"serviceWillNotStart,omitempty"`
	// Unreachable: the server's agent endpoint drops connections (see Deployment.Reachable).
	Unreachable bool `json:"unreachable,omitempty"`
}

func (f ServerFaults) validate(field string) error {
	if f.BootstrapFailures < 0 {
		return fmt.Errorf("%s.bootstrapFailures: must not be negative", field)
	}
	if f.RebootRequired < 0 {
		return fmt.Errorf("%s.rebootRequired: must not be negative", field)
	}
	return nil
}

// timing is the validated durationsConfig.
type timing struct {
	PairPools            time.Duration
	Bootstrap            time.Duration
	StartBackupService   time.Duration
	RestartBackupService time.Duration
	SyncBackup           time.Duration
	FailoverCMS          time.Duration
	MoveEdgeNextHop      time.Duration
	FailoverPool         time.Duration
	FailbackPool         time.Duration
	Read                 time.Duration
	// SyncInterval is the file's; the one in force is mutState.SyncInterval (see timingOf).
	SyncInterval   time.Duration
	ChangeRate     float64
	BatchCapacity  int
	InitialBacklog int
}

// Defaults. Step durations default to 0 (instant), which is what unit tests want; demo files set them.
const (
	// DefaultSyncInterval is Lync's default backup service sync interval.
	DefaultSyncInterval = 2 * time.Minute
	// Lync accepts sync intervals from 5 seconds to 3 hours; the deployment file is held to that.
	minSyncInterval = 5 * time.Second
	maxSyncInterval = 3 * time.Hour
	// MinTestSyncInterval is the shortest sync interval SetSyncInterval accepts: shorter than
	// Lync allows (5s), so that tests on the wall clock need not wait for it.
	MinTestSyncInterval    = time.Second
	minRuntimeSyncInterval = MinTestSyncInterval
	DefaultBatchCapacity   = 100
)

// topology is the immutable part of a deployment: what the file says exists.
type topology struct {
	product string
	// cmsPool is where the file puts the active CMS; the one in force is mutState.CMSPool
	// (FailoverCMS moves it).
	cmsPool string
	timing  timing
	// readsWaitForWrites is the file's setting; Deployment.SetReads changes it at run time.
	readsWaitForWrites bool
	pools              []poolFacts
	servers            []serverFacts
	// edgePools are the Edge pools, in file order, with the next hop the file gives them (the one
	// in force is mutState.EdgePools).
	edgePools []edgeFacts
	// names maps a lower-cased FQDN to its canonical spelling (as written in the file).
	names map[string]string
	// poolIndex and serverIndex find facts by canonical FQDN: settle looks pools up on every
	// change, and a scan made large deployments quadratic.
	poolIndex, serverIndex, edgeIndex map[string]int
}

type edgeFacts struct {
	FQDN, NextHop string
}

type poolFacts struct {
	// Listen is the pool alias's address; empty when the pool has no alias.
	FQDN, Site, Edition, Version, Listen string
	Servers                              []string
}

type serverFacts struct {
	FQDN, Pool, Listen string
}

func (t *topology) pool(name string) (*poolFacts, bool) {
	if i, ok := t.poolIndex[name]; ok {
		return &t.pools[i], true
	}
	return nil, false
}

func (t *topology) server(name string) (*serverFacts, bool) {
	if i, ok := t.serverIndex[name]; ok {
		return &t.servers[i], true
	}
	return nil, false
}

func (t *topology) edge(name string) (*edgeFacts, bool) {
	if i, ok := t.edgeIndex[name]; ok {
		return &t.edgePools[i], true
	}
	return nil, false
}

// canonical resolves a name the way DNS compares names (case-insensitive, trailing dot ignored).
func (t *topology) canonical(name string) (string, bool) {
	c, ok := t.names[key(name)]
	return c, ok
}

func key(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// defaultVersion is the version string Get-CsPool reports for each product.
var defaultVersion = map[string]string{
	protocol.ProductLync2013: "Lync Server 2013",
	protocol.ProductSfB2015:  "Skype for Business Server 2015",
	protocol.ProductSfB2019:  "Skype for Business Server 2019",
}

// parseConfig decodes and validates a deployment file. It returns the topology and the initial
// mutable state the file describes.
func parseConfig(data []byte) (*topology, *mutState, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, nil, fmt.Errorf("deployment file: %w", err)
	}
	var raw any
	if err := json.Unmarshal(j, &raw); err != nil {
		return nil, nil, fmt.Errorf("deployment file: %w", err)
	}
	if raw == nil {
		return nil, nil, errors.New("deployment file: empty")
	}
	if err := checkFields("", raw, reflect.TypeFor[config]()); err != nil {
		return nil, nil, fmt.Errorf("deployment file: %w", err)
	}
	var c config
	if err := json.Unmarshal(j, &c); err != nil { // checkFields has caught what a user can get wrong
		return nil, nil, fmt.Errorf("deployment file: %w", err)
	}
	t, st, err := c.build()
	if err != nil {
		return nil, nil, fmt.Errorf("deployment file: %w", err)
	}
	return t, st, nil
}

// checkFields walks the decoded document against the Go type and refuses unknown keys and values
// of the wrong type, naming their full path (pools[1].servers[0].faults): encoding/json's own
// errors name only the key, or a path without indexes.
func checkFields(path string, v any, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil // an empty value: the field keeps its zero value
	}
	typeErr := func(want string) error {
		return fmt.Errorf("%s: must be %s, not %s", orTop(path), want, describe(v))
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return typeErr("a mapping")
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		keys := slices.Sorted(maps.Keys(m)) // the same error every time
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%s: unknown field", join(path, k))
			}
			if err := checkFields(join(path, k), m[k], ft); err != nil {
				return err
			}
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return typeErr("a list")
		}
		for i, sub := range s {
			if err := checkFields(fmt.Sprintf("%s[%d]", path, i), sub, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return typeErr("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return typeErr("true or false")
		}
	case reflect.Int:
		if f, ok := v.(float64); !ok || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
			return typeErr("a whole number")
		}
	case reflect.Float64:
		if _, ok := v.(float64); !ok {
			return typeErr("a number")
		}
	}
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", x)
	default:
		return fmt.Sprintf("%v", x)
	}
}

func orTop(path string) string {
	if path == "" {
		return "(document)"
	}
	return path
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func (c *config) build() (*topology, *mutState, error) {
	t := &topology{product: c.Product, names: map[string]string{}, poolIndex: map[string]int{}, serverIndex: map[string]int{}, edgeIndex: map[string]int{}}
	if c.Product == "" {
		return nil, nil, errors.New("product: required (lync2013, sfb2015 or sfb2019)")
	}
	if _, ok := defaultVersion[c.Product]; !ok {
		return nil, nil, fmt.Errorf("product: %q is not one of %s, %s, %s", c.Product, protocol.ProductLync2013, protocol.ProductSfB2015, protocol.ProductSfB2019)
	}
	tm, err := c.Durations.build()
	if err != nil {
		return nil, nil, err
	}
	t.timing = tm
	t.readsWaitForWrites = c.ReadsWaitForWrites

	sites := map[string]bool{}
	for i, s := range c.Sites {
		if strings.TrimSpace(s) == "" {
			return nil, nil, fmt.Errorf("sites[%d]: must not be empty", i)
		}
		if sites[s] {
			return nil, nil, fmt.Errorf("sites[%d]: duplicate site %q", i, s)
		}
		sites[s] = true
	}
	if len(c.Pools) == 0 {
		return nil, nil, errors.New("pools: at least one pool is required")
	}

	listens := map[string]string{}
	claimName := func(field, name string) error {
		if err := protocol.ValidateFQDN(field, name); err != nil {
			return err
		}
		// The PoolPair API takes lower-case names only; a topology the operator cannot name is of
		// no use to a demo or a test.
		if lower := strings.ToLower(name); lower != name {
			return fmt.Errorf("%s: %q must be in lower case, as a PoolPair names it (%s)", field, name, lower)
		}
		if prev, dup := t.names[key(name)]; dup {
			return fmt.Errorf("%s: %q is already used by another pool or server (%s)", field, name, prev)
		}
		t.names[key(name)] = name
		return nil
	}
	claimListen := func(field, addr string) (string, error) {
		if addr == "" {
			return "127.0.0.1:0", nil // an ephemeral port: tests that never listen need not choose one
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("%s: %q is not host:port: %v", field, addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return "", fmt.Errorf("%s: %q has an invalid port", field, addr)
		}
		if p != 0 {
			if prev, dup := listens[net.JoinHostPort(host, port)]; dup {
				return "", fmt.Errorf("%s: %q is already the listen address of %s", field, addr, prev)
			}
			listens[net.JoinHostPort(host, port)] = field
		}
		return addr, nil
	}

	st := newMutState()
	st.SyncInterval = jsonDuration(tm.SyncInterval)
	type installedAt struct{ field, server, pool string }
	var installed []installedAt
	modules := modulesFor(c.Product)
	for i, p := range c.Pools {
		f := fmt.Sprintf("pools[%d]", i)
		if err := claimName(f+".fqdn", p.FQDN); err != nil {
			return nil, nil, err
		}
		if p.Site == "" {
			return nil, nil, fmt.Errorf("%s.site: required", f)
		}
		if !sites[p.Site] {
			return nil, nil, fmt.Errorf("%s.site: %q is not declared in sites", f, p.Site)
		}
		if p.Edition != protocol.EditionEnterprise && p.Edition != protocol.EditionStandard {
			return nil, nil, fmt.Errorf("%s.edition: %q is not %s or %s", f, p.Edition, protocol.EditionEnterprise, protocol.EditionStandard)
		}
		version := p.Version
		if version == "" {
			version = defaultVersion[c.Product]
		}
		listen := ""
		if p.Listen != "" { // a pool without listen has no alias
			if listen, err = claimListen(f+".listen", p.Listen); err != nil {
				return nil, nil, err
			}
		}
		// A Standard Edition server is a pool of one; Lync 2013 Enterprise pools hold up to 12
		// Front Ends. (Real Standard Edition pools share the server's FQDN; the sim wants distinct
		// names so every endpoint has its own identity.)
		switch {
		case p.Edition == protocol.EditionStandard && len(p.Servers) != 1:
			return nil, nil, fmt.Errorf("%s.servers: a Standard Edition pool has exactly one server, not %d", f, len(p.Servers))
		case len(p.Servers) == 0 || len(p.Servers) > 12:
			return nil, nil, fmt.Errorf("%s.servers: an Enterprise Edition pool has 1 to 12 Front End servers, not %d", f, len(p.Servers))
		}
		pf := poolFacts{FQDN: p.FQDN, Site: p.Site, Edition: p.Edition, Version: version, Listen: listen}
		pm := &poolMut{Unreachable: p.Faults.Unreachable}
		for _, x := range []struct {
			which string
			list  []string
		}{{"exportError", p.Faults.ExportError}, {"importError", p.Faults.ImportError}} {
			for j, m := range x.list {
				if !slices.Contains(modules, m) {
					return nil, nil, fmt.Errorf("%s.faults.%s[%d]: %q is not a backup module of %s (%s)", f, x.which, j, m, c.Product, strings.Join(modules, ", "))
				}
			}
		}
		pm.ExportError = uniqueSorted(p.Faults.ExportError)
		pm.ImportError = uniqueSorted(p.Faults.ImportError)
		for j, s := range p.Servers {
			sf := fmt.Sprintf("%s.servers[%d]", f, j)
			if err := claimName(sf+".fqdn", s.FQDN); err != nil {
				return nil, nil, err
			}
			sl, err := claimListen(sf+".listen", s.Listen)
			if err != nil {
				return nil, nil, err
			}
			if err := s.Faults.validate(sf + ".faults"); err != nil {
				return nil, nil, err
			}
			sm := &serverMut{Faults: s.Faults}
			switch s.BackupService {
			case "":
			case protocol.ServiceStopped, protocol.ServiceRunning:
				// Bootstrapped for the pool's pairing, which is known once every pool is read.
				sm.BackupService = protocol.BackupService{Installed: true, Status: s.BackupService}
				installed = append(installed, installedAt{field: sf + ".backupService", server: s.FQDN, pool: p.FQDN})
			default:
				return nil, nil, fmt.Errorf("%s.backupService: %q is not %s or %s", sf, s.BackupService, protocol.ServiceStopped, protocol.ServiceRunning)
			}
			pf.Servers = append(pf.Servers, s.FQDN)
			t.serverIndex[s.FQDN] = len(t.servers)
			t.servers = append(t.servers, serverFacts{FQDN: s.FQDN, Pool: p.FQDN, Listen: sl})
			st.Servers[s.FQDN] = sm
		}
		t.poolIndex[pf.FQDN] = len(t.pools)
		t.pools = append(t.pools, pf)
		st.Pools[p.FQDN] = pm
	}

	// Cross references, once every name is known.
	isPool := func(name string) (string, bool) {
		c, ok := t.canonical(name)
		if !ok {
			return "", false
		}
		_, ok = t.pool(c)
		return c, ok
	}
	if c.CMS.Pool == "" {
		return nil, nil, errors.New("cms.pool: required (the pool that hosts the Central Management Store)")
	}
	cms, ok := isPool(c.CMS.Pool)
	if !ok {
		return nil, nil, fmt.Errorf("cms.pool: %q is not a pool of this deployment", c.CMS.Pool)
	}
	t.cmsPool = cms
	st.CMSPool = cms
	for i, e := range c.EdgePools {
		f := fmt.Sprintf("edgePools[%d]", i)
		if err := claimName(f+".fqdn", e.FQDN); err != nil {
			return nil, nil, err
		}
		if e.NextHop == "" {
			return nil, nil, fmt.Errorf("%s.nextHop: required (the Front End pool the Edge pool's internal traffic goes to)", f)
		}
		hop, ok := isPool(e.NextHop)
		if !ok {
			return nil, nil, fmt.Errorf("%s.nextHop: %q is not a Front End pool of this deployment", f, e.NextHop)
		}
		t.edgeIndex[e.FQDN] = len(t.edgePools)
		t.edgePools = append(t.edgePools, edgeFacts{FQDN: e.FQDN, NextHop: hop})
		st.EdgePools[e.FQDN] = &edgeMut{NextHop: hop}
	}
	for i, p := range c.Pools {
		if p.BackupPool == "" {
			continue
		}
		f := fmt.Sprintf("pools[%d].backupPool", i)
		b, ok := isPool(p.BackupPool)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %q is not a pool of this deployment", f, p.BackupPool)
		}
		if b == p.FQDN {
			return nil, nil, fmt.Errorf("%s: a pool cannot be paired with itself", f)
		}
		a, _ := t.pool(p.FQDN)
		bf, _ := t.pool(b)
		if err := compatible(a, bf); err != nil {
			return nil, nil, fmt.Errorf("%s: %v", f, err)
		}
		// Topology Builder only writes reciprocal pairings: one side implies the other.
		if other := st.Pools[b].BackupPool; other != "" && other != p.FQDN {
			return nil, nil, fmt.Errorf("%s: %s is already paired with %s", f, b, other)
		}
		if mine := st.Pools[p.FQDN].BackupPool; mine != "" && mine != b {
			return nil, nil, fmt.Errorf("%s: %s is already paired with %s by %s's backupPool", f, p.FQDN, mine, mine)
		}
		st.Pools[p.FQDN].BackupPool = b
		st.Pools[b].BackupPool = p.FQDN
	}
	for _, x := range installed {
		b := st.Pools[x.pool].BackupPool
		if b == "" {
			return nil, nil, fmt.Errorf("%s: the pool has no backupPool, so LYNCBACKUP cannot be installed", x.field)
		}
		sm := st.Servers[x.server]
		sm.BootstrappedFor = b
		if sm.BackupService.Status == protocol.ServiceRunning {
			sm.ServiceServes = b // started after that bootstrap; Parse sets when (the boot time)
		}
	}
	return t, st, nil
}

func (d durationsConfig) build() (timing, error) {
	var tm timing
	for _, x := range []struct {
		field string
		in    string
		out   *time.Duration
	}{
		{"durations.pairPools", d.PairPools, &tm.PairPools},
		{"durations.bootstrap", d.Bootstrap, &tm.Bootstrap},
		{"durations.startBackupService", d.StartBackupService, &tm.StartBackupService},
		{"durations.restartBackupService", d.RestartBackupService, &tm.RestartBackupService},
		{"durations.syncBackup", d.SyncBackup, &tm.SyncBackup},
		{"durations.failoverCMS", d.FailoverCMS, &tm.FailoverCMS},
		{"durations.moveEdgeNextHop", d.MoveEdgeNextHop, &tm.MoveEdgeNextHop},
		{"durations.failoverPool", d.FailoverPool, &tm.FailoverPool},
		{"durations.failbackPool", d.FailbackPool, &tm.FailbackPool},
		{"durations.read", d.Read, &tm.Read},
		{"durations.syncInterval", d.SyncInterval, &tm.SyncInterval},
	} {
		if x.in == "" {
			continue
		}
		v, err := time.ParseDuration(x.in)
		if err != nil {
			return tm, fmt.Errorf("%s: %q is not a Go duration (like 3s or 2m)", x.field, x.in)
		}
		if v < 0 {
			return tm, fmt.Errorf("%s: must not be negative", x.field)
		}
		*x.out = v
	}
	if d.RestartBackupService == "" {
		tm.RestartBackupService = tm.StartBackupService
	}
	if d.SyncInterval == "" {
		tm.SyncInterval = DefaultSyncInterval
	}
	if tm.SyncInterval < minSyncInterval || tm.SyncInterval > maxSyncInterval {
		return tm, fmt.Errorf("durations.syncInterval: %v is outside Lync's range of %v to %v", tm.SyncInterval, minSyncInterval, maxSyncInterval)
	}
	if d.ChangeRate != nil {
		if *d.ChangeRate < 0 || math.IsNaN(*d.ChangeRate) || math.IsInf(*d.ChangeRate, 0) {
			return tm, errors.New("durations.changeRate: must be a non-negative number of changes per second")
		}
		tm.ChangeRate = *d.ChangeRate
	}
	tm.BatchCapacity = DefaultBatchCapacity
	if d.BatchCapacity != nil {
		if *d.BatchCapacity < 1 {
			return tm, errors.New("durations.batchCapacity: must be at least 1")
		}
		tm.BatchCapacity = *d.BatchCapacity
	}
	tm.InitialBacklog = 5 * tm.BatchCapacity
	if d.InitialBacklog != nil {
		if *d.InitialBacklog < 0 {
			return tm, errors.New("durations.initialBacklog: must not be negative")
		}
		tm.InitialBacklog = *d.InitialBacklog
	}
	return tm, nil
}

// compatible applies the pairing rules Lync's tools never enforced: same edition, same version.
func compatible(a, b *poolFacts) error {
	if a.Edition != b.Edition {
		return fmt.Errorf("edition mismatch: %s is %s Edition, %s is %s Edition", a.FQDN, a.Edition, b.FQDN, b.Edition)
	}
	if a.Version != b.Version {
		return fmt.Errorf("version mismatch: %s runs %q, %s runs %q", a.FQDN, a.Version, b.FQDN, b.Version)
	}
	return nil
}
