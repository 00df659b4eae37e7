package powershell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// PairingMechanismVerified is false while PairPools and Unpair write the pairing with
// Set-CsRegistrar -BackupRegistrar (both ways) and Enable-CsTopology: LYNC.md's only cmdlet path,
// which no public source confirms equals Topology Builder's "Associated backup pool". Set it to true
// only after a lab check shows Get-CsPoolBackupRelationship and the backup service follow it.
const PairingMechanismVerified = false

// Defaults of Options.
const (
	DefaultExecutable       = "powershell.exe"
	DefaultBootstrapTimeout = 60 * time.Minute
	// DefaultStartTimeout covers process start and the module import, which takes seconds and
	// can take minutes on a busy server.
	DefaultStartTimeout = 3 * time.Minute
	// DefaultCallTimeout bounds one cmdlet call; Enable-CsTopology can take minutes.
	DefaultCallTimeout = 10 * time.Minute
)

// identityTTL is how long Identity's answer is reused: GET /v1/info is frequent, and a server
// moving pools is rare and slow.
const identityTTL = 5 * time.Minute

// Options configure a Backend.
type Options struct {
	// Product is protocol.ProductLync2013, ProductSfB2015 or ProductSfB2019: it picks the module
	// (Lync or SkypeForBusiness) and the Bootstrapper path.
	Product string
	// Executable is the PowerShell to run; default DefaultExecutable (Windows PowerShell 3 or later).
	Executable string
	// ExtraArgs go before "-Command -" (after -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass).
	ExtraArgs []string
	// BootstrapperPath defaults to DefaultBootstrapperPath: the product's Deployment\Bootstrapper.exe
	// under Program Files, read from the environment.
	BootstrapperPath string
	// BootstrapTimeout bounds a run this agent started; at the timeout Bootstrapper and the
	// installers it started are killed.
	BootstrapTimeout time.Duration
	// BootstrapLog receives Bootstrapper's output (a file, so the run outlives the agent; a later
	// agent reads its tail). Default: bootstrapper.log beside the agent's executable.
	BootstrapLog string
	// StartTimeout bounds a host's start and module import; CallTimeout one call. On either the
	// host is killed and the call fails with lync.ErrUnavailable. A ctx that ends first only
	// abandons the call: the host lives on and its late reply is discarded.
	StartTimeout time.Duration
	CallTimeout  time.Duration
	// ServerFQDN is this Front End server as the topology names it. Default: the host name when it
	// is fully qualified or DNS makes it so; otherwise Get-CsComputer -Local decides.
	ServerFQDN string
	Logger     *slog.Logger
}

// Backend is the real lync.Backend: the product's management shell in two long-lived PowerShell
// hosts, one for reads and one for writes, and Bootstrapper.exe. It is safe for concurrent use;
// each host runs one call at a time, so a read never waits behind a write.
type Backend struct {
	product     product
	productName string
	serverFQDN  string
	read        *shell // Identity, Pool, BackupStatus, BackupService
	write       *shell // PairPools, Unpair, SyncBackup, StartBackupService
	boot        *bootstrapper
	log         *slog.Logger

	idMu      sync.Mutex
	id        lync.Identity
	idExpires time.Time

	// warned* make a recurring warning Warn once, then Debug (a pool is read on every pass).
	warnedTopology, warnedVersion, warnedInterval, warnedEdges, warnedFailover atomic.Bool
}

var _ lync.Backend = (*Backend)(nil)

// New checks opts and returns a Backend. Each PowerShell host starts on its first call (the read
// host on the first read, the write host on the first write), and each imports the module once.
func New(opts Options) (*Backend, error) {
	p, err := lookupProduct(opts.Product)
	if err != nil {
		return nil, fmt.Errorf("powershell backend: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("backend", "powershell", "product", opts.Product)
	exe := opts.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	startTimeout := orDefault(opts.StartTimeout, DefaultStartTimeout)
	callTimeout := orDefault(opts.CallTimeout, DefaultCallTimeout)
	var shells [2]*shell
	for i, role := range []string{"read", "write"} {
		if shells[i], err = newShell(role, exe, opts.ExtraArgs, opts.Product, startTimeout, callTimeout, log); err != nil {
			return nil, fmt.Errorf("powershell backend: %w", err)
		}
	}
	// A path that cannot be built fails Bootstrap, not New: the reads need no Bootstrapper.
	bootPath, bootPathErr := opts.BootstrapperPath, error(nil)
	if bootPath == "" {
		bootPath, bootPathErr = DefaultBootstrapperPath(opts.Product, os.Getenv)
	}
	bootLog := opts.BootstrapLog
	if bootLog == "" {
		bootLog = defaultBootstrapLog()
	}
	server := strings.TrimSuffix(opts.ServerFQDN, ".")
	if server != "" {
		if err := protocol.ValidateFQDN("ServerFQDN", server); err != nil {
			return nil, fmt.Errorf("powershell backend: %w", err)
		}
	} else if local := localFQDN(); protocol.ValidateFQDN("host name", local) == nil {
		server = local
	}
	return &Backend{
		product: p, productName: opts.Product, serverFQDN: server, read: shells[0], write: shells[1], log: log,
		boot: &bootstrapper{
			path: bootPath, pathErr: bootPathErr, logPath: bootLog, product: p, productName: opts.Product,
			timeout: orDefault(opts.BootstrapTimeout, DefaultBootstrapTimeout),
			procs:   osProcs{}, log: log,
		},
	}, nil
}

// Close stops the PowerShell hosts. Calls after Close fail with lync.ErrUnavailable. A
// Bootstrapper.exe run goes on.
func (b *Backend) Close() error {
	b.read.close()
	b.write.close()
	return nil
}

// Identity says which server and pool this agent stands for (Get-CsComputer).
func (b *Backend) Identity(ctx context.Context) (lync.Identity, error) {
	b.idMu.Lock()
	if time.Now().Before(b.idExpires) {
		id := b.id
		b.idMu.Unlock()
		return id, nil
	}
	b.idMu.Unlock()
	var res struct {
		ServerFQDN string `json:"serverFqdn"`
		PoolFQDN   string `json:"poolFqdn"`
	}
	if err := b.read.call(ctx, opIdentity, map[string]string{"serverFqdn": b.serverFQDN}, &res); err != nil {
		return lync.Identity{}, err
	}
	id := lync.Identity{
		ServerFQDN: firstNonEmpty(cleanFQDN(res.ServerFQDN), b.serverFQDN),
		PoolFQDN:   cleanFQDN(res.PoolFQDN),
		Product:    b.productName,
		Backend:    "powershell",
	}
	if id.PoolFQDN == "" {
		return lync.Identity{}, fmt.Errorf("powershell %s: Get-CsComputer named no pool for %s: %w", opIdentity, id.ServerFQDN, lync.ErrNotFound)
	}
	b.idMu.Lock()
	b.id, b.idExpires = id, time.Now().Add(identityTTL)
	b.idMu.Unlock()
	return id, nil
}

// poolResult is what Invoke-AgentGetPool answers.
type poolResult struct {
	FQDN          string              `json:"fqdn"`
	Site          string              `json:"site"`
	Computers     jsonList[string]    `json:"computers"`
	Services      jsonList[string]    `json:"services"`
	CMS           jsonList[cmsEntry]  `json:"cms"`
	Relationship  *relationshipResult `json:"relationship"`
	Topology      *topologyFacts      `json:"topology"`
	ServerVersion string              `json:"serverVersion"`
	Edges         *propsResult        `json:"edges"`
	Failover      *failoverResult     `json:"failover"`
}

type cmsEntry struct {
	PoolFQDN string `json:"poolFqdn"`
	Active   *bool  `json:"active"` // null: the property is not there (UNVERIFIED, see cmsPool)
}

func (c *cmsEntry) UnmarshalJSON(b []byte) error {
	type plain cmsEntry
	return decodeObject(b, (*plain)(c))
}

// relationshipResult is Get-AgentRelationship's answer: each object Get-CsPoolBackupRelationship
// answered, as its properties, or the cmdlet's failure.
type relationshipResult struct {
	Answers jsonList[relationshipAnswer] `json:"answers"`
	Error   *wireError                   `json:"error"`
}

// relationshipAnswer is one answered object's properties, each a string (the script casts them):
// a null or another type is an error, never an empty, "unpaired", value.
type relationshipAnswer map[string]string

func (a *relationshipAnswer) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return fmt.Errorf("not an object: %s", printable(b, 80))
	}
	*a = make(relationshipAnswer, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil || string(v) == "null" {
			return fmt.Errorf("%q is %s, want a string", k, printable(v, 40))
		}
		(*a)[k] = s
	}
	return nil
}

func (r *relationshipResult) UnmarshalJSON(b []byte) error {
	type plain relationshipResult
	return decodeObject(b, (*plain)(r))
}

// stringAnswer is the key of an answer that was a string, not an object.
const stringAnswer = "(string)"

// backupPool is the backup pool the answers name for pool: "" when there is no answer ($null) or
// its backup pool property is empty; a *RelationshipError when the cmdlet failed, or answered
// objects none of whose properties is one of RelationshipPoolProperties, or answers that disagree.
func (r *relationshipResult) backupPool(op, pool string) (string, error) {
	if r == nil {
		return "", fmt.Errorf(`powershell %s: decoding the result: "relationship" is null`, op)
	}
	if r.Error != nil {
		return "", relationshipFailure(op, pool, r.Error)
	}
	found := ""
	for i, answer := range r.Answers {
		value, ok := relationshipValue(answer)
		if !ok {
			names := make([]string, 0, len(answer))
			for k := range answer {
				names = append(names, k)
			}
			slices.Sort(names)
			return "", &RelationshipError{Op: op, Pool: pool, Problem: fmt.Sprintf(
				"answered an object with the properties [%s], none of which is one this backend reads (%s: RelationshipPoolProperties)",
				strings.Join(names, ", "), strings.Join(RelationshipPoolProperties, ", "))}
		}
		value = cleanFQDN(value)
		if i == 0 {
			found = value
		} else if !protocol.SameFQDN(value, found) {
			return "", &RelationshipError{Op: op, Pool: pool, Problem: fmt.Sprintf("answered %d relationships that disagree (%q, %q)", len(r.Answers), found, value)}
		}
	}
	return found, nil
}

// relationshipValue is the backup pool property of one answer, by RelationshipPoolProperties.
func relationshipValue(answer relationshipAnswer) (string, bool) {
	for _, name := range RelationshipPoolProperties {
		for k, v := range answer {
			if strings.EqualFold(k, name) {
				return v, true
			}
		}
	}
	v, ok := answer[stringAnswer]
	return v, ok
}

// topologyFacts is Get-AgentTopologyFacts' answer: the pool's <Cluster> in the published topology
// document, and the services installed on it ("cluster") or on one of its SQL Server instances
// ("sql").
type topologyFacts struct {
	Found      bool                      `json:"found"`
	Attributes map[string]string         `json:"attributes"`
	Services   jsonList[topologyService] `json:"services"`
}

type topologyService struct {
	Role           string `json:"role"`
	ServiceVersion string `json:"serviceVersion"`
	RoleVersion    string `json:"roleVersion"`
	On             string `json:"on"`
}

func (t *topologyFacts) UnmarshalJSON(b []byte) error {
	type plain topologyFacts
	return decodeObject(b, (*plain)(t))
}

func (s *topologyService) UnmarshalJSON(b []byte) error {
	type plain topologyService
	return decodeObject(b, (*plain)(s))
}

// moduleEntry is one backup module of Invoke-AgentGetBackupStatus.
type moduleEntry struct {
	Identity     string `json:"identity"`
	ExportStatus string `json:"exportStatus"`
	ImportStatus string `json:"importStatus"`
}

func (m *moduleEntry) UnmarshalJSON(b []byte) error {
	type plain moduleEntry
	return decodeObject(b, (*plain)(m))
}

// Pool reads one pool: Get-CsPool, Get-CsService -CentralManagement, Get-CsPoolBackupRelationship,
// the topology document and Get-CsServerVersion, in one call.
func (b *Backend) Pool(ctx context.Context, fqdn string) (protocol.Pool, error) {
	if err := protocol.ValidateFQDN("fqdn", fqdn); err != nil {
		return protocol.Pool{}, invalid("fqdn", err)
	}
	var res poolResult
	if err := b.read.call(ctx, opGetPool, map[string]string{"fqdn": fqdn}, &res); err != nil {
		return protocol.Pool{}, err
	}
	return b.toPool(&res, fqdn)
}

func (b *Backend) toPool(r *poolResult, requested string) (protocol.Pool, error) {
	if r.Topology == nil {
		return protocol.Pool{}, fmt.Errorf(`powershell %s: decoding the result: "topology" is null`, opGetPool)
	}
	fqdn := firstNonEmpty(cleanFQDN(r.FQDN), requested)
	backup, err := r.Relationship.backupPool(opGetPool, fqdn)
	if err != nil {
		return protocol.Pool{}, err
	}
	computers := make([]string, 0, len(r.Computers))
	local := false
	server := b.localServer()
	for _, c := range r.Computers {
		if c = cleanFQDN(c); c != "" {
			computers = append(computers, c)
			local = local || (server != "" && protocol.SameFQDN(c, server))
		}
	}
	edition, version, err := r.Topology.editionAndVersion()
	if err != nil {
		return protocol.Pool{}, fmt.Errorf("powershell %s: pool %s in the topology document: %w", opGetPool, fqdn, err)
	}
	if !r.Topology.Found {
		// Get-CsPool knows the pool, the document's <Cluster> elements do not: read the edition
		// the older way and leave the version unknown.
		b.warnOnce(&b.warnedTopology, "pool not found in Get-CsTopology -AsXml; edition read from Get-CsPool's services, version unknown", "pool", fqdn)
		edition = editionOf(fqdn, r.Services)
	}
	// This server's own pool: the installed product, as Get-CsServerVersion reports it, over the
	// version the topology document defines the pool with.
	if product := ServerVersionProduct(r.ServerVersion); local && product != "" {
		if version != "" && version != product {
			b.warnOnce(&b.warnedVersion, "Get-CsServerVersion and the topology document disagree on this pool's version; using Get-CsServerVersion",
				"pool", fqdn, "serverVersion", r.ServerVersion, "topology", version)
		}
		version = product
	}
	cms := cmsPool(r.CMS)
	// The failover facts do not fail the read: the pairing steps need none of them, and a
	// failover cmdlet refuses what does not fit by itself. What cannot be read is logged.
	var edgePools []string
	if edges, err := r.Edges.edgePools(opGetPool); err != nil {
		b.warnOnce(&b.warnedEdges, "cannot read the Edge pools' next hops; the pool's Edge pools are left out", "pool", fqdn, "error", err)
	} else {
		edgePools = edgePoolsOf(edges, fqdn)
	}
	failedOverTo, err := r.Failover.failedOverTo(opGetPool, fqdn)
	if err != nil {
		b.warnOnce(&b.warnedFailover, "cannot read whom the pool's users sign in to; failedOverTo is left empty", "pool", fqdn, "error", err)
	}
	return protocol.Pool{
		FQDN:         fqdn,
		Site:         siteName(r.Site),
		Edition:      edition,
		Version:      version,
		Computers:    computers,
		BackupPool:   backup,
		HostsCMS:     cms != "" && protocol.SameFQDN(cms, fqdn),
		CMSPool:      cms,
		FailedOverTo: failedOverTo,
		EdgePools:    edgePools,
	}, nil
}

// localServer is this Front End server's FQDN as far as it is known without a call: the option,
// the host name, or Identity's cached answer.
func (b *Backend) localServer() string {
	if b.serverFQDN != "" {
		return b.serverFQDN
	}
	b.idMu.Lock()
	defer b.idMu.Unlock()
	return b.id.ServerFQDN
}

// warnOnce logs msg at Warn the first time, then at Debug: a pool is read on every pass.
func (b *Backend) warnOnce(flag *atomic.Bool, msg string, args ...any) {
	if flag.CompareAndSwap(false, true) {
		b.log.Warn(msg, args...)
		return
	}
	b.log.Debug(msg, args...)
}

// BackupStatus reads the backup modules of poolFQDN -> its backup pool (Get-CsBackupServiceStatus),
// and the Backup Service's SyncInterval (Get-CsBackupServiceConfiguration).
func (b *Backend) BackupStatus(ctx context.Context, poolFQDN string) (protocol.BackupStatus, error) {
	if err := protocol.ValidateFQDN("poolFqdn", poolFQDN); err != nil {
		return protocol.BackupStatus{}, invalid("poolFqdn", err)
	}
	var res struct {
		PoolFQDN            string                `json:"poolFqdn"`
		Relationship        *relationshipResult   `json:"relationship"`
		Modules             jsonList[moduleEntry] `json:"modules"`
		SyncIntervalSeconds int                   `json:"syncIntervalSeconds"`
		SyncIntervalError   string                `json:"syncIntervalError"`
	}
	if err := b.read.call(ctx, opGetBackupStatus, map[string]string{"fqdn": poolFQDN}, &res); err != nil {
		return protocol.BackupStatus{}, err
	}
	pool := firstNonEmpty(cleanFQDN(res.PoolFQDN), poolFQDN)
	backup, err := res.Relationship.backupPool(opGetBackupStatus, pool)
	if err != nil {
		return protocol.BackupStatus{}, err
	}
	st := protocol.BackupStatus{
		PoolFQDN:   pool,
		BackupPool: backup,
		Modules:    make([]protocol.BackupModule, 0, len(res.Modules)),
	}
	for _, m := range res.Modules {
		st.Modules = append(st.Modules, protocol.BackupModule{
			Identity:     strings.TrimSpace(m.Identity),
			ExportStatus: normalise(m.ExportStatus, exportStates),
			ImportStatus: normalise(m.ImportStatus, importStates),
		})
	}
	// The reference allows 5 s to 3 h; anything else is not a SyncInterval read right.
	switch {
	case res.SyncIntervalError != "":
		b.warnOnce(&b.warnedInterval, "cannot read the Backup Service's SyncInterval", "error", res.SyncIntervalError)
	case res.SyncIntervalSeconds >= 5 && res.SyncIntervalSeconds <= 3*3600:
		st.SyncIntervalSeconds = res.SyncIntervalSeconds
	default:
		b.warnOnce(&b.warnedInterval, "the Backup Service's SyncInterval is out of its documented range (5 s to 3 h); ignored", "seconds", res.SyncIntervalSeconds)
	}
	return st, nil
}

// BackupService reads LYNCBACKUP on this server (Get-CsWindowsService) and, while it runs, when its
// process started (Win32_Service's ProcessId, then that process's StartTime).
func (b *Backend) BackupService(ctx context.Context) (protocol.BackupService, error) {
	var res struct {
		Installed bool   `json:"installed"`
		Status    string `json:"status"`
		Started   string `json:"started"`
	}
	if err := b.read.call(ctx, opGetBackupService, nil, &res); err != nil {
		return protocol.BackupService{}, err
	}
	if !res.Installed {
		return protocol.BackupService{}, nil
	}
	svc := protocol.BackupService{Installed: true, Status: normalise(res.Status, serviceStates)}
	if svc.Status == protocol.ServiceRunning && res.Started != "" {
		started, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(res.Started))
		if err != nil {
			return protocol.BackupService{}, fmt.Errorf(`powershell %s: decoding the result: "started": %w`, opGetBackupService, err)
		}
		started = started.UTC()
		svc.Started = &started
	}
	return svc, nil
}

// StartBackupService starts LYNCBACKUP on this server (Start-CsWindowsService); safe to repeat.
func (b *Backend) StartBackupService(ctx context.Context) error {
	return b.write.call(ctx, opStartBackupService, nil, nil)
}

// RestartBackupService stops LYNCBACKUP on this server and starts it again (Stop-CsWindowsService,
// Start-CsWindowsService), as Microsoft's procedure does after a pairing changes ("Front End pool
// ABC failover procedure in Lync Server 2013", step 24). A stopped service is only started.
func (b *Backend) RestartBackupService(ctx context.Context) error {
	var res struct {
		Before  string `json:"before"`
		Stopped bool   `json:"stopped"`
	}
	if err := b.write.call(ctx, opRestartBackupService, nil, &res); err != nil {
		return err
	}
	b.log.Info("LYNCBACKUP restarted", "statusBefore", res.Before, "stopped", res.Stopped)
	return nil
}

// SyncBackup forces a sync of poolFQDN to its backup pool (Invoke-CsBackupServiceSync).
func (b *Backend) SyncBackup(ctx context.Context, poolFQDN string) error {
	if err := protocol.ValidateFQDN("poolFqdn", poolFQDN); err != nil {
		return invalid("poolFqdn", err)
	}
	return b.write.call(ctx, opSyncBackup, protocol.SyncBackupParams{PoolFQDN: poolFQDN}, nil)
}

// PairPools checks that both pools exist and may pair (not paired elsewhere, same edition and
// version: lync.ErrConflict otherwise, never overwritten), then writes the pairing both ways and
// enables the topology. See PairingMechanismVerified.
func (b *Backend) PairPools(ctx context.Context, p protocol.PairPoolsParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	primary, backup, err := b.poolPair(ctx, p.PrimaryFQDN, p.BackupFQDN)
	if err != nil {
		return err
	}
	// Pairing requires the same product version: a pool whose version is unknown (the topology
	// document does not define it yet) is not paired until it is known.
	for _, x := range []protocol.Pool{primary, backup} {
		if x.Version == "" {
			return fmt.Errorf("cannot tell which product version pool %s runs (the topology document does not define it): %w", x.FQDN, lync.ErrUnavailable)
		}
	}
	if err := checkPairable(primary, backup); err != nil {
		return err
	}
	if !PairingMechanismVerified {
		b.log.Warn("pairing pools with Set-CsRegistrar -BackupRegistrar and Enable-CsTopology; this mechanism is not lab-verified",
			"primary", p.PrimaryFQDN, "backup", p.BackupFQDN)
	}
	return b.write.call(ctx, opPairPools, p, nil)
}

// Unpair removes the pairing of the two pools both ways and enables the topology, then removes the
// user data each pool still holds for the other (Remove-CsUserStoreBackupData, step 21 of "Front End
// pool ABC failover procedure in Lync Server 2013"). Pools not paired with each other in the
// topology get only that clean-up, so a retry after it failed completes it; a pool paired with a
// third pool is a lync.ErrConflict. LYNCBACKUP is not restarted here: that is RestartBackupService,
// on each Front End server of both pools (step 24).
func (b *Backend) Unpair(ctx context.Context, p protocol.UnpairParams) error {
	if err := (&protocol.PairPoolsParams{PrimaryFQDN: p.PrimaryFQDN, BackupFQDN: p.BackupFQDN}).Validate(); err != nil {
		return err
	}
	primary, backup, err := b.poolPair(ctx, p.PrimaryFQDN, p.BackupFQDN)
	if err != nil {
		return err
	}
	for _, x := range [][2]protocol.Pool{{primary, backup}, {backup, primary}} {
		if x[0].BackupPool != "" && !protocol.SameFQDN(x[0].BackupPool, x[1].FQDN) {
			return fmt.Errorf("pool %s is paired with %s, not %s: %w", x[0].FQDN, x[0].BackupPool, x[1].FQDN, lync.ErrConflict)
		}
	}
	if primary.BackupPool == "" && backup.BackupPool == "" {
		b.log.Debug("unpair: pools are not paired in the topology; removing left-over backup user data only", "primary", p.PrimaryFQDN, "backup", p.BackupFQDN)
	} else {
		if !PairingMechanismVerified {
			b.log.Warn("unpairing pools with Set-CsRegistrar -BackupRegistrar $null and Enable-CsTopology; this mechanism is not lab-verified",
				"primary", p.PrimaryFQDN, "backup", p.BackupFQDN)
		}
		if err := b.write.call(ctx, opUnpair, p, nil); err != nil {
			return err
		}
	}
	// The reference defines the data removed as that of a pool "no longer paired": after the
	// association is gone, not before (the ABC procedure runs it first because pool A is gone).
	for _, pool := range []string{primary.FQDN, backup.FQDN} {
		if err := b.write.call(ctx, opRemoveUserStoreBackupData, poolParams{PoolFQDN: pool}, nil); err != nil {
			return fmt.Errorf("the pools are no longer paired, but removing the backup user data pool %s holds failed (Unpair again to retry): %w", pool, err)
		}
	}
	return nil
}

// poolParams are the parameters of an operation on one pool.
type poolParams struct {
	PoolFQDN string `json:"poolFqdn"`
}

func (b *Backend) poolPair(ctx context.Context, a, c string) (protocol.Pool, protocol.Pool, error) {
	pa, err := b.Pool(ctx, a)
	if err != nil {
		return protocol.Pool{}, protocol.Pool{}, err
	}
	pc, err := b.Pool(ctx, c)
	if err != nil {
		return protocol.Pool{}, protocol.Pool{}, err
	}
	return pa, pc, nil
}

// checkPairable applies LYNC.md's rules the tools never enforced.
func checkPairable(a, b protocol.Pool) error {
	for _, x := range [][2]protocol.Pool{{a, b}, {b, a}} {
		if x[0].BackupPool != "" && !protocol.SameFQDN(x[0].BackupPool, x[1].FQDN) {
			return fmt.Errorf("pool %s is already paired with %s: %w", x[0].FQDN, x[0].BackupPool, lync.ErrConflict)
		}
	}
	if a.Edition != "" && b.Edition != "" && a.Edition != b.Edition {
		return fmt.Errorf("pool %s is %s Edition and pool %s is %s Edition: %w", a.FQDN, a.Edition, b.FQDN, b.Edition, lync.ErrConflict)
	}
	if a.Version != "" && b.Version != "" && a.Version != b.Version {
		return fmt.Errorf("pool %s runs %s and pool %s runs %s: %w", a.FQDN, a.Version, b.FQDN, b.Version, lync.ErrConflict)
	}
	return nil
}

// Bootstrap runs Bootstrapper.exe, then judges it by its effect as well as its exit code (see
// verify). A run already going on (this agent's or an earlier one's) is lync.ErrConflict. When ctx
// ends first, Bootstrap returns and the run goes on; RunningBootstrap finds it.
func (b *Backend) Bootstrap(ctx context.Context) (lync.BootstrapResult, error) {
	res, err := b.boot.run(ctx)
	if err != nil {
		return res, err
	}
	return b.verify(ctx, res), nil
}

// RunningBootstrap finds a Bootstrapper.exe run going on that no caller in this process waits
// for: one whose Bootstrap caller gave up, or one an earlier agent process started. wait
// judges it as Bootstrap does (exit code, log tail, then its effect).
func (b *Backend) RunningBootstrap(ctx context.Context) (func(context.Context) (lync.BootstrapResult, error), bool, error) {
	wait, found, err := b.boot.running()
	if err != nil {
		return nil, false, fmt.Errorf("looking for a running Bootstrapper.exe: %w: %w", err, lync.ErrUnavailable)
	}
	if !found {
		return nil, false, nil
	}
	return func(ctx context.Context) (lync.BootstrapResult, error) {
		res, err := wait(ctx)
		if err != nil {
			return res, err
		}
		return b.verify(ctx, res), nil
	}, true, nil
}

// verify completes a run's result from what the server shows after it: the backup pool the
// topology names for this server's pool, and whether LYNCBACKUP is installed. A run that exited as
// a success (or asked for a restart) but left no LYNCBACKUP while the topology names a backup pool
// did not set the pairing up: it has not succeeded, and its LogTail ends saying so. A read that
// fails leaves the exit code's judgment (and BackupPool empty: the run then counts for no
// pairing, and Bootstrapper is safe to repeat) rather than hiding the run's result. For Skype for
// Business Server, a complete run gets the administrator's next step (productNextSteps).
func (b *Backend) verify(ctx context.Context, res lync.BootstrapResult) lync.BootstrapResult {
	server := b.serverFQDN
	id, err := b.Identity(ctx)
	if err == nil {
		server = id.ServerFQDN
		var pool protocol.Pool
		if pool, err = b.Pool(ctx, id.PoolFQDN); err == nil {
			res.BackupPool = pool.BackupPool
		}
	}
	if err != nil {
		b.log.Warn("Bootstrapper ran, but reading this pool's backup pool failed", "error", err)
	}
	if res.BackupPool != "" && (res.Succeeded || res.RebootRequired) {
		svc, err := b.BackupService(ctx)
		switch {
		case err != nil:
			b.log.Warn("Bootstrapper ran, but reading LYNCBACKUP failed; judging the run by its exit code", "error", err)
		case !svc.Installed:
			res.Succeeded = false
			note := fmt.Sprintf("lync-agent: Bootstrapper.exe exited with code %d, but LYNCBACKUP (the Backup Service) is not installed on this server "+
				"although the topology names %s as the backup pool of %s: the run did not set the pairing up", res.ExitCode, res.BackupPool, id.PoolFQDN)
			if res.RebootRequired {
				note = fmt.Sprintf("lync-agent: LYNCBACKUP (the Backup Service) is not installed on this server yet, although the topology names %s "+
					"as the backup pool of %s: restart the server and run Bootstrapper.exe again", res.BackupPool, id.PoolFQDN)
			}
			res.LogTail = strings.TrimLeft(res.LogTail+"\n"+note, "\n")
			b.log.Warn("Bootstrapper ran, but LYNCBACKUP is not installed", "backupPool", res.BackupPool, "exitCode", res.ExitCode)
		}
	}
	if res.Succeeded && !res.RebootRequired {
		res.NextSteps = productNextSteps(b.product, server)
	}
	return res
}

// productNextSteps are the documented steps after a complete Bootstrapper run that are the
// administrator's: for Skype for Business Server, step 9 of "Deploy paired Front End pools for
// disaster recovery in Skype for Business Server" re-applies the cumulative update the server had,
// whose installer is SkypeServerUpdateInstaller.exe. Lync Server 2013's page has no such step.
func productNextSteps(p product, server string) []string {
	if !p.reapplyUpdates {
		return nil
	}
	if server == "" {
		server = "this Front End server"
	}
	return []string{fmt.Sprintf("On %s, re-apply the %s cumulative update that was installed before Bootstrapper.exe ran, if one was "+
		"(run that update's SkypeServerUpdateInstaller.exe), as step 9 of Microsoft's \"Deploy paired Front End pools for disaster "+
		"recovery in Skype for Business Server\" requires after Bootstrapper.", server, p.name)}
}

// BootTime is when this server's operating system last started, read from the OS (procs), not
// through PowerShell.
func (b *Backend) BootTime(ctx context.Context) (time.Time, error) {
	t, err := b.boot.procs.bootTime()
	if err != nil {
		return time.Time{}, fmt.Errorf("reading when this server last started: %w: %w", err, lync.ErrUnavailable)
	}
	return t, nil
}

// --- Deriving the protocol's facts from the cmdlets' output ---

// editionOf: a Standard Edition server hosts its own user database, so its pool lists the service
// UserDatabase:<its own fqdn>; an Enterprise pool's user database is on a separate SQL store.
// UNVERIFIED: from Get-CsPool outputs seen on Standard Edition servers, not from a reference.
func editionOf(fqdn string, services []string) string {
	for _, s := range services {
		if strings.EqualFold(strings.TrimSpace(s), "UserDatabase:"+fqdn) {
			return protocol.EditionStandard
		}
	}
	return protocol.EditionEnterprise
}

// editionAndVersion reads the pool's edition and product version from its services in the
// topology document. A Standard Edition server holds its own user store: the UserStore service is
// installed on a SQL Server instance of the pool's own cluster (the "rtc" instance); an Enterprise
// Edition pool's is on a back end of its own. The version is the ServiceVersion of the pool's
// Registrar service (UserServices without one). "" for both when the document lacks the pool.
func (t *topologyFacts) editionAndVersion() (edition, version string, err error) {
	if !t.Found {
		return "", "", nil
	}
	edition = protocol.EditionEnterprise
	var registrar, userServices string
	for _, s := range t.Services {
		switch {
		case strings.EqualFold(s.Role, "UserStore") && s.On == "sql":
			edition = protocol.EditionStandard
		case strings.EqualFold(s.Role, "Registrar") && s.On == "cluster":
			registrar = s.ServiceVersion
		case strings.EqualFold(s.Role, "UserServices") && s.On == "cluster":
			userServices = s.ServiceVersion
		}
	}
	if v := strings.TrimSpace(firstNonEmpty(registrar, userServices)); v != "" {
		version, err = serviceVersionName(v)
	}
	return edition, version, err
}

// serviceVersionName maps a ServiceVersion of the topology document to the product name
// (ServiceVersionProducts). An unknown number is kept as "version N" so a mismatch still shows;
// anything but a number is an error, not an unknown version (which would let pools of different
// versions pair).
func serviceVersionName(serviceVersion string) (string, error) {
	n, err := strconv.Atoi(strings.TrimSpace(serviceVersion))
	if err != nil {
		return "", fmt.Errorf("ServiceVersion %q is not a number", printable([]byte(serviceVersion), 80))
	}
	if name, ok := ServiceVersionProducts[n]; ok {
		return name, nil
	}
	return "version " + strconv.Itoa(n), nil
}

// versionName maps the Registrar service's Version (Get-CsService -Registrar) to the product name
// ("" when there is no Registrar service: null). The backend reads the version from the topology
// document (serviceVersionName); `lync-agent doctor` compares the two.
// UNVERIFIED: that Version numbers as the topology's ServiceVersion does, and the shape: a number or a string, or a System.Version ({"Major":6,...}). An
// unknown number is kept as "version N" so a mismatch still shows; another shape is an error, not
// an unknown version (which would let pools of different versions pair).
func versionName(raw json.RawMessage) (string, error) {
	var v any
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf(`"registrarVersion": %w`, err)
	}
	var n int
	switch x := v.(type) {
	case float64:
		n = int(x)
	case string:
		x = strings.TrimSpace(x)
		i, err := strconv.Atoi(x)
		if err != nil {
			return x, nil
		}
		n = i
	case map[string]any:
		major, ok := x["Major"].(float64)
		if !ok {
			return "", fmt.Errorf(`"registrarVersion": want a number, a string or a version, got %s`, printable(raw, 80))
		}
		n = int(major)
	default:
		return "", fmt.Errorf(`"registrarVersion": want a number, a string or a version, got %s`, printable(raw, 80))
	}
	if name, ok := ServiceVersionProducts[n]; ok {
		return name, nil
	}
	return "version " + strconv.Itoa(n), nil
}

// cmsPool is the pool that hosts the active Central Management Store ("" when it cannot tell).
// UNVERIFIED: Get-CsService -CentralManagement lists the active CMS and a paired pool's standby,
// told apart by Active. Without Active, only a single entry is trusted.
func cmsPool(cms []cmsEntry) string {
	withActive := false
	for _, c := range cms {
		if c.Active != nil {
			withActive = true
			if *c.Active {
				return cleanFQDN(c.PoolFQDN)
			}
		}
	}
	if !withActive && len(cms) == 1 {
		return cleanFQDN(cms[0].PoolFQDN)
	}
	return ""
}

// hostsCMS: the pool hosts the active Central Management Store.
func hostsCMS(fqdn string, cms []cmsEntry) bool {
	p := cmsPool(cms)
	return p != "" && protocol.SameFQDN(p, fqdn)
}

// siteName drops the "Site:" prefix of a site identity. UNVERIFIED whether Get-CsPool's Site is
// the identity or the display name; both give the same answer here.
func siteName(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 5 && strings.EqualFold(s[:5], "site:") {
		return s[5:]
	}
	return s
}

var (
	exportStates  = []string{protocol.ExportFinalState, protocol.ExportSteadyState, protocol.ExportNonSteadyState, protocol.ExportNotInitialized, protocol.ExportErrorState}
	importStates  = []string{protocol.ImportNormalState, protocol.ImportErrorState}
	serviceStates = []string{protocol.ServiceRunning, protocol.ServiceStopped, protocol.ServiceStartPending, protocol.ServiceStopPending}
)

// normalise spells a known enum value the protocol's way; an unknown one is passed on as is.
func normalise(s string, known []string) string {
	s = strings.TrimSpace(s)
	for _, k := range known {
		if strings.EqualFold(s, k) {
			return k
		}
	}
	return s
}

func cleanFQDN(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i >= 0 { // "Registrar:pool01.contoso.com" and the like
		s = s[i+1:]
	}
	return strings.TrimSuffix(s, ".")
}

// jsonList decodes what ConvertTo-Json makes of a collection in every PowerShell version: an
// array, a lone element (one-item pipelines unroll), null, or {"value":[...],"Count":n}.
type jsonList[T any] []T

func (l *jsonList[T]) UnmarshalJSON(b []byte) error {
	b = []byte(strings.TrimSpace(string(b)))
	switch {
	case len(b) == 0 || string(b) == "null":
		*l = nil
		return nil
	case b[0] == '[':
		var items []T
		err := json.Unmarshal(b, &items)
		*l = items
		return err
	case b[0] == '{':
		var wrapper map[string]json.RawMessage
		if err := json.Unmarshal(b, &wrapper); err == nil {
			if v, ok := wrapper["value"]; ok && len(wrapper) <= 2 && (len(wrapper) == 1 || wrapper["Count"] != nil) {
				var items []T
				err := json.Unmarshal(v, &items)
				*l = items
				return err
			}
		}
	}
	var one T
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*l = []T{one}
	return nil
}

// invalid is a parameter the backend refuses before PowerShell sees it.
func invalid(field string, err error) error {
	var fe *protocol.FieldError
	if errors.As(err, &fe) {
		return fe
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return &protocol.FieldError{Field: field, Reason: msg}
}

// localFQDN is the host name if it is fully qualified, or what DNS makes of it; "" lets
// Get-CsComputer -Local decide.
func localFQDN() string {
	name, err := os.Hostname()
	if err != nil {
		return ""
	}
	name = strings.TrimSuffix(name, ".")
	if strings.Contains(name, ".") {
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cname, err := net.DefaultResolver.LookupCNAME(ctx, name); err == nil {
		if c := strings.TrimSuffix(cname, "."); strings.Contains(c, ".") {
			return c
		}
	}
	return ""
}

// defaultBootstrapLog is bootstrapper.log beside the executable: a directory only
// administrators write to on a Front End, and the same for every agent process.
func defaultBootstrapLog() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(exe), "bootstrapper.log")
	}
	return filepath.Join(os.TempDir(), "lync-agent-bootstrapper.log")
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
