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
	"strconv"
	"strings"
	"sync"
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
	// BootstrapperPath defaults to the product's Deployment\Bootstrapper.exe.
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
	bootPath := opts.BootstrapperPath
	if bootPath == "" {
		bootPath = p.bootstrapper
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
			path: bootPath, logPath: bootLog, product: p, productName: opts.Product,
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
	FQDN             string             `json:"fqdn"`
	Site             string             `json:"site"`
	Computers        jsonList[string]   `json:"computers"`
	Services         jsonList[string]   `json:"services"`
	RegistrarVersion json.RawMessage    `json:"registrarVersion"`
	BackupPoolFQDN   string             `json:"backupPoolFqdn"`
	CMS              jsonList[cmsEntry] `json:"cms"`
}

type cmsEntry struct {
	PoolFQDN string `json:"poolFqdn"`
	Active   *bool  `json:"active"` // null: the property is not there (UNVERIFIED, see hostsCMS)
}

func (c *cmsEntry) UnmarshalJSON(b []byte) error {
	type plain cmsEntry
	return decodeObject(b, (*plain)(c))
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

// Pool reads one pool: Get-CsPool, Get-CsService, Get-CsPoolBackupRelationship in one call.
func (b *Backend) Pool(ctx context.Context, fqdn string) (protocol.Pool, error) {
	if err := protocol.ValidateFQDN("fqdn", fqdn); err != nil {
		return protocol.Pool{}, invalid("fqdn", err)
	}
	var res poolResult
	if err := b.read.call(ctx, opGetPool, map[string]string{"fqdn": fqdn}, &res); err != nil {
		return protocol.Pool{}, err
	}
	return res.toPool(fqdn)
}

func (r *poolResult) toPool(requested string) (protocol.Pool, error) {
	version, err := versionName(r.RegistrarVersion)
	if err != nil {
		return protocol.Pool{}, fmt.Errorf("powershell %s: decoding the result: %w", opGetPool, err)
	}
	fqdn := firstNonEmpty(cleanFQDN(r.FQDN), requested)
	computers := make([]string, 0, len(r.Computers))
	for _, c := range r.Computers {
		if c = cleanFQDN(c); c != "" {
			computers = append(computers, c)
		}
	}
	return protocol.Pool{
		FQDN:       fqdn,
		Site:       siteName(r.Site),
		Edition:    editionOf(fqdn, r.Services),
		Version:    version,
		Computers:  computers,
		BackupPool: cleanFQDN(r.BackupPoolFQDN),
		HostsCMS:   hostsCMS(fqdn, r.CMS),
	}, nil
}

// BackupStatus reads the backup modules of poolFQDN -> its backup pool (Get-CsBackupServiceStatus).
func (b *Backend) BackupStatus(ctx context.Context, poolFQDN string) (protocol.BackupStatus, error) {
	if err := protocol.ValidateFQDN("poolFqdn", poolFQDN); err != nil {
		return protocol.BackupStatus{}, invalid("poolFqdn", err)
	}
	var res struct {
		PoolFQDN       string                `json:"poolFqdn"`
		BackupPoolFQDN string                `json:"backupPoolFqdn"`
		Modules        jsonList[moduleEntry] `json:"modules"`
	}
	if err := b.read.call(ctx, opGetBackupStatus, map[string]string{"fqdn": poolFQDN}, &res); err != nil {
		return protocol.BackupStatus{}, err
	}
	st := protocol.BackupStatus{
		PoolFQDN:   firstNonEmpty(cleanFQDN(res.PoolFQDN), poolFQDN),
		BackupPool: cleanFQDN(res.BackupPoolFQDN),
		Modules:    make([]protocol.BackupModule, 0, len(res.Modules)),
	}
	for _, m := range res.Modules {
		st.Modules = append(st.Modules, protocol.BackupModule{
			Identity:     strings.TrimSpace(m.Identity),
			ExportStatus: normalise(m.ExportStatus, exportStates),
			ImportStatus: normalise(m.ImportStatus, importStates),
		})
	}
	return st, nil
}

// BackupService reads LYNCBACKUP on this server (Get-CsWindowsService).
func (b *Backend) BackupService(ctx context.Context) (protocol.BackupService, error) {
	var res struct {
		Installed bool   `json:"installed"`
		Status    string `json:"status"`
	}
	if err := b.read.call(ctx, opGetBackupService, nil, &res); err != nil {
		return protocol.BackupService{}, err
	}
	if !res.Installed {
		return protocol.BackupService{}, nil
	}
	return protocol.BackupService{Installed: true, Status: normalise(res.Status, serviceStates)}, nil
}

// StartBackupService starts LYNCBACKUP on this server (Start-CsWindowsService); safe to repeat.
func (b *Backend) StartBackupService(ctx context.Context) error {
	return b.write.call(ctx, opStartBackupService, nil, nil)
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
	if err := checkPairable(primary, backup); err != nil {
		return err
	}
	if !PairingMechanismVerified {
		b.log.Warn("pairing pools with Set-CsRegistrar -BackupRegistrar and Enable-CsTopology; this mechanism is not lab-verified",
			"primary", p.PrimaryFQDN, "backup", p.BackupFQDN)
	}
	return b.write.call(ctx, opPairPools, p, nil)
}

// Unpair removes the pairing of the two pools both ways and enables the topology. Pools not
// paired with each other are left alone (nothing to do); a pool paired with a third pool is a
// lync.ErrConflict.
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
		b.log.Debug("unpair: pools are not paired, nothing to do", "primary", p.PrimaryFQDN, "backup", p.BackupFQDN)
		return nil
	}
	return b.write.call(ctx, opUnpair, p, nil)
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

// Bootstrap runs Bootstrapper.exe, then reads the backup pool the topology names for this
// server's pool. A run already going on (this agent's or an earlier one's) is lync.ErrConflict.
// When ctx ends first, Bootstrap returns and the run goes on; RunningBootstrap finds it.
func (b *Backend) Bootstrap(ctx context.Context) (lync.BootstrapResult, error) {
	res, err := b.boot.run(ctx)
	if err != nil {
		return res, err
	}
	return b.withBackupPool(ctx, res), nil
}

// RunningBootstrap finds a Bootstrapper.exe run going on that no caller in this process waits
// for: one whose Bootstrap caller gave up, or one an earlier agent process started. wait
// judges it as Bootstrap does (exit code, log tail, then the backup pool read).
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
		return b.withBackupPool(ctx, res), nil
	}, true, nil
}

// withBackupPool adds the backup pool the topology names for this server's pool after a run. A
// failure of that read leaves BackupPool empty (the run then counts for no pairing, and
// Bootstrapper is safe to repeat) rather than hiding the run's result.
func (b *Backend) withBackupPool(ctx context.Context, res lync.BootstrapResult) lync.BootstrapResult {
	id, err := b.Identity(ctx)
	if err == nil {
		var pool protocol.Pool
		if pool, err = b.Pool(ctx, id.PoolFQDN); err == nil {
			res.BackupPool = pool.BackupPool
		}
	}
	if err != nil {
		b.log.Warn("Bootstrapper ran, but reading this pool's backup pool failed", "error", err)
	}
	return res
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

// versionName maps the Registrar service's Version to the product name ("" when there is no
// Registrar service: null).
// UNVERIFIED: the numbering (5 = Lync Server 2010, 6 = 2013, 7 = Skype for Business Server 2015,
// 8 = 2019), and the shape: a number or a string, or a System.Version ({"Major":6,...}). An
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
	switch n {
	case 5:
		return "Lync Server 2010", nil
	case 6:
		return "Lync Server 2013", nil
	case 7:
		return "Skype for Business Server 2015", nil
	case 8:
		return "Skype for Business Server 2019", nil
	}
	return "version " + strconv.Itoa(n), nil
}

// hostsCMS: the pool hosts the active Central Management Store.
// UNVERIFIED: Get-CsService -CentralManagement lists the active CMS and a paired pool's standby,
// told apart by Active. Without Active, only a single entry is trusted.
func hostsCMS(fqdn string, cms []cmsEntry) bool {
	withActive := false
	for _, c := range cms {
		if c.Active != nil {
			withActive = true
			if *c.Active && protocol.SameFQDN(cleanFQDN(c.PoolFQDN), fqdn) {
				return true
			}
		}
	}
	return !withActive && len(cms) == 1 && protocol.SameFQDN(cleanFQDN(cms[0].PoolFQDN), fqdn)
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

// BootTime is a stub until the script reads the boot time.
func (b *Backend) BootTime(ctx context.Context) (time.Time, error) {
	return time.Time{}, fmt.Errorf("%w: BootTime is not implemented yet", lync.ErrUnavailable)
}

// RestartBackupService is a stub until the script restarts LYNCBACKUP.
func (b *Backend) RestartBackupService(ctx context.Context) error {
	return fmt.Errorf("%w: RestartBackupService is not implemented yet", lync.ErrUnavailable)
}
