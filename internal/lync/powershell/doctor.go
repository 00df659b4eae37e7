package powershell

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/doctor"
	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// DefaultDiagnoseTimeout bounds the doctor's PowerShell run: a module import may take the
// backend's DefaultStartTimeout, and the probes (Test-CsSetupPermission asks Active Directory)
// some more.
const DefaultDiagnoseTimeout = DefaultStartTimeout + 2*time.Minute

// ErrDiagnoseIncomplete is returned (wrapped) by Diagnose when the doctor's script did not run or
// did not answer: PowerShell is missing, crashed or timed out. The Diagnosis still holds every
// check, those that needed the script UNKNOWN.
var ErrDiagnoseIncomplete = errors.New("the doctor could not read this server through PowerShell")

// DiagnoseOptions configure Diagnose. The fields mean what Options' fields of the same names
// mean, so that doctor takes serve's flags.
type DiagnoseOptions struct {
	Product          string
	Executable       string
	ExtraArgs        []string
	ServerFQDN       string
	BootstrapperPath string
	// Getenv reads the environment for the default Bootstrapper path; os.Getenv when nil.
	Getenv  func(string) string
	Timeout time.Duration // DefaultDiagnoseTimeout when zero
	Logger  *slog.Logger

	procs procs // tests; osProcs when nil
}

// Diagnosis is what Diagnose found.
type Diagnosis struct {
	Checks []doctor.Check
	// ServerFQDN and PoolFQDN are this server and its pool as the topology names them; "" when
	// the doctor could not tell.
	ServerFQDN, PoolFQDN string
	// Identifying are the values seen that identify the organisation (names, accounts, DNs), for
	// a doctor.Masker.
	Identifying []string
}

// Diagnose is `lync-agent doctor`'s look at this Front End server: it runs the doctor's read-only
// script (doctor_script.go) once, in the PowerShell the backend would use, with the backend's
// arguments, loader, prelude and request encoding, then judges the facts against what the backend
// assumes, with the backend's own decoding where there is some (judgeFacts: pure functions).
// Bootstrapper.exe and the boot time are looked at from Go, through the backend's OS part.
//
// The checks, in order: checkOrder (powershell, powershell-stdin, module, powershell-host,
// product, server, pool, edition, version, relationship, pairing, backup-status, sync-interval,
// lyncbackup, lyncbackup-started, cms, edge-next-hop, failover-state, backend-store, front-end,
// boot-time, rights-rtc, rights-setup, rights-admin), then
// bootstrapper and bootstrapper-run. An error wrapping ErrDiagnoseIncomplete comes with every
// check, those that needed the script UNKNOWN; other errors (a bad option) come with none.
func Diagnose(ctx context.Context, opts DiagnoseOptions) (Diagnosis, error) {
	if _, err := lookupProduct(opts.Product); err != nil {
		return Diagnosis{}, fmt.Errorf("doctor: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	exe := opts.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	ps := opts.procs
	if ps == nil {
		ps = osProcs{}
	}
	// The name the backend would give Get-CsComputer (New): --server, else the host name when it
	// is fully qualified; "" leaves it to Get-CsComputer -Local.
	server, source := strings.TrimSuffix(opts.ServerFQDN, "."), "--server"
	if server != "" {
		if err := protocol.ValidateFQDN("ServerFQDN", server); err != nil {
			return Diagnosis{}, fmt.Errorf("doctor: %w", err)
		}
	} else if local := localFQDN(); protocol.ValidateFQDN("host name", local) == nil {
		server, source = local, "the host name"
	}
	input, err := doctorInput(opts.Product)
	if err != nil {
		return Diagnosis{}, fmt.Errorf("doctor: %w", err)
	}
	line, err := encodeRequest(doctorID, doctorOp, map[string]string{"serverFqdn": server})
	if err != nil {
		return Diagnosis{}, fmt.Errorf("doctor: %w", err)
	}
	args := append(append(append([]string{}, hostArgs...), opts.ExtraArgs...), "-Command", "-")
	timeout := orDefault(opts.Timeout, DefaultDiagnoseTimeout)
	facts, runErr := runDoctorScript(ctx, exe, args, input+string(line), timeout, log)

	bootTime, bootErr := ps.bootTime()
	var d Diagnosis
	if runErr != nil {
		d.Checks = notRunChecks(runErr, bootTime, bootErr)
	} else {
		d = judgeFacts(facts, judgeInput{
			product: opts.Product, sent: strings.TrimSuffix(string(line), "\n"),
			serverName: server, serverSource: source, bootTime: bootTime, bootErr: bootErr,
		})
	}
	boot, path := checkBootstrapper(opts.Product, opts.BootstrapperPath, getenv)
	d.Checks = append(d.Checks, boot, checkBootstrapperRun(ps, path, boot.Status == doctor.Pass))
	if server != "" {
		d.Identifying = append(d.Identifying, server)
	}
	if runErr != nil {
		return d, fmt.Errorf("%w: %v", ErrDiagnoseIncomplete, runErr)
	}
	return d, nil
}

// maxDoctorOutput bounds what is kept of the script's stdout and stderr.
const maxDoctorOutput = 8 << 20

// runDoctorScript runs PowerShell once with input on stdin and returns the facts of its reply.
func runDoctorScript(ctx context.Context, exe string, args []string, input string, timeout time.Duration, log *slog.Logger) (*doctorFacts, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdin = strings.NewReader(input)
	var stdout, stderr cappedBuffer
	stdout.max, stderr.max = maxDoctorOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	begin := time.Now()
	log.Debug("doctor: starting PowerShell", "exe", exe)
	runErr := cmd.Run()
	log.Debug("doctor: PowerShell exited", "error", runErr, "duration", time.Since(begin))
	reply, noise := findDoctorReply(stdout.Bytes())
	if reply != nil {
		if !reply.OK {
			we := reply.Error
			if we == nil {
				we = &wireError{Message: "no details"}
			}
			return nil, fmt.Errorf("the doctor's script failed: %s", errText(we))
		}
		var f doctorFacts
		if err := json.Unmarshal(reply.Result, &f); err != nil || f.Doctor != 1 {
			return nil, fmt.Errorf("the doctor's script answered something else: %s", printable(reply.Result, 200))
		}
		return &f, nil
	}
	var why string
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		why = fmt.Sprintf("no answer within %s; PowerShell was stopped", timeout)
	case ctx.Err() != nil:
		why = "stopped: " + ctx.Err().Error()
	case runErr != nil && isNotStarted(runErr):
		why = fmt.Sprintf("cannot start %s: %v", exe, runErr)
	case runErr != nil:
		why = fmt.Sprintf("%s exited without an answer (%v)", exe, runErr)
	default:
		why = exe + " exited without an answer"
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		why += "; stderr: " + oneLineTail(s, 600)
	}
	if noise != "" {
		why += "; stdout: " + oneLineTail(noise, 600)
	}
	return nil, errors.New(why)
}

// findDoctorReply reads the script's stdout as the backend reads a host's (any encoding, BOMs,
// noise lines) and returns the reply to the doctor's request, and the other output.
func findDoctorReply(out []byte) (*wireReply, string) {
	br := bufio.NewReaderSize(decodeOutput(bytes.NewReader(out)), 64<<10)
	var noise []string
	for {
		line, tooLong, err := readBoundedLine(br, maxReplyLine)
		line = trimBOM(line)
		if payload, ok := bytes.CutPrefix(line, []byte(replyMarker)); ok && !tooLong {
			if r, perr := parseReply(payload); perr == nil && r.ID == doctorID && r.malformed == "" {
				return &r, ""
			}
		} else if s := strings.TrimSpace(printable(line, 300)); s != "" && len(noise) < 20 {
			noise = append(noise, s)
		}
		if err != nil {
			return nil, strings.Join(noise, " / ")
		}
	}
}

func isNotStarted(err error) bool {
	var ee *exec.Error
	var pe *os.PathError
	return errors.As(err, &ee) || errors.As(err, &pe)
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func oneLineTail(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// --- The facts the script reports ---

// factProbe is what every probe reports: whether it ran, and the error it caught.
type factProbe struct {
	OK    bool       `json:"ok"`
	Error *wireError `json:"error"`
}

type computerFacts struct {
	factProbe
	Asked    string `json:"asked"`
	Found    bool   `json:"found"`
	Identity string `json:"identity"`
	FQDN     string `json:"fqdn"`
	Pool     string `json:"pool"`
}

type doctorFacts struct {
	Doctor         int    `json:"doctor"`
	PSVersion      string `json:"psVersion"`
	PSEdition      string `json:"psEdition"`
	CLRVersion     string `json:"clrVersion"`
	Is64BitProcess bool   `json:"is64BitProcess"`
	ElapsedMs      int64  `json:"elapsedMs"`
	Stdin          struct {
		factProbe
		Line       string `json:"line"`
		ServerFQDN string `json:"serverFqdn"`
	} `json:"stdin"`
	Module struct {
		factProbe
		Name         string           `json:"name"`
		Version      string           `json:"version"`
		Available    jsonList[string] `json:"available"`
		ImportMs     int64            `json:"importMs"`
		WorkingSetMB int64            `json:"workingSetMB"`
	} `json:"module"`
	ServerVersion struct {
		factProbe
		Text string `json:"text"`
	} `json:"serverVersion"`
	LocalComputer computerFacts `json:"localComputer"`
	NamedComputer computerFacts `json:"namedComputer"`
	Pool          struct {
		factProbe
		Found     bool             `json:"found"`
		FQDN      string           `json:"fqdn"`
		Site      string           `json:"site"`
		Computers jsonList[string] `json:"computers"`
		Services  jsonList[string] `json:"services"`
	} `json:"pool"`
	Topology struct {
		factProbe
		Result json.RawMessage `json:"result"` // Get-AgentTopologyFacts: topologyFacts
	} `json:"topology"`
	Registrar struct {
		factProbe
		Found              bool             `json:"found"`
		Identity           string           `json:"identity"`
		HasBackupRegistrar bool             `json:"hasBackupRegistrar"`
		BackupRegistrar    string           `json:"backupRegistrar"`
		Properties         jsonList[string] `json:"properties"`
	} `json:"registrar"`
	Relationship struct {
		factProbe
		Result json.RawMessage `json:"result"` // Get-AgentRelationship: relationshipResult
		Type   string          `json:"type"`
	} `json:"relationship"`
	BackupStatus struct {
		factProbe
		Count            int                   `json:"count"`
		Type             string                `json:"type"`
		Properties       jsonList[string]      `json:"properties"`
		HasBackupModules bool                  `json:"hasBackupModules"`
		ModuleType       string                `json:"moduleType"`
		ModuleProperties jsonList[string]      `json:"moduleProperties"`
		Modules          jsonList[moduleEntry] `json:"modules"`
	} `json:"backupStatus"`
	BackupConfiguration struct {
		factProbe
		Found               bool             `json:"found"`
		SyncInterval        string           `json:"syncInterval"`
		SyncIntervalType    string           `json:"syncIntervalType"`
		SyncIntervalSeconds float64          `json:"syncIntervalSeconds"`
		CastError           *wireError       `json:"castError"`
		Properties          jsonList[string] `json:"properties"`
		Identities          jsonList[string] `json:"identities"`
	} `json:"backupConfiguration"`
	LyncBackup struct {
		factProbe
		Found        bool             `json:"found"`
		Name         string           `json:"name"`
		Status       string           `json:"status"`
		Properties   jsonList[string] `json:"properties"`
		ByNameError  *wireError       `json:"byNameError"`
		ProcessID    int              `json:"processId"`
		SharedWith   jsonList[string] `json:"sharedWith"`
		Started      string           `json:"started"` // Get-AgentBackupServiceStarted
		ProcessError *wireError       `json:"processError"`
	} `json:"lyncBackup"`
	CMS struct {
		factProbe
		Services jsonList[cmsFact] `json:"services"`
	} `json:"cms"`
	CMSStatus struct {
		factProbe
		Found            bool             `json:"found"`
		ActiveMasterFQDN string           `json:"activeMasterFqdn"`
		Properties       jsonList[string] `json:"properties"`
	} `json:"cmsStatus"`
	EdgePools struct {
		factProbe
		Result *propsResult `json:"result"` // Get-AgentEdgePools
	} `json:"edgePools"`
	FailoverState struct {
		factProbe
		Result *failoverResult `json:"result"` // Get-AgentFailoverState
	} `json:"failoverState"`
	BackendStore struct {
		factProbe
		Result *BackendStore `json:"result"` // Get-AgentBackendStore
	} `json:"backendStore"`
	FrontEnd struct {
		factProbe
		Found  bool   `json:"found"`
		Status string `json:"status"`
	} `json:"frontEnd"`
	BootTime struct {
		factProbe
		LastBootUpTime string `json:"lastBootUpTime"`
	} `json:"bootTime"`
	Account struct {
		factProbe
		Name            string              `json:"name"`
		SID             string              `json:"sid"`
		IsAdministrator bool                `json:"isAdministrator"`
		Groups          jsonList[groupFact] `json:"groups"`
	} `json:"account"`
	SetupPermission struct {
		factProbe
		ComputerDN string `json:"computerDn"`
		ComputerOU string `json:"computerOu"`
		Result     string `json:"result"`
		ResultType string `json:"resultType"`
	} `json:"setupPermission"`
}

type cmsFact struct {
	Identity   string           `json:"identity"`
	PoolFQDN   string           `json:"poolFqdn"`
	HasActive  bool             `json:"hasActive"`
	Active     string           `json:"active"`
	Properties jsonList[string] `json:"properties"`
}

type groupFact struct {
	SID  string `json:"sid"`
	Name string `json:"name"`
}

// --- Judging the facts ---

// Assumptions the checks test, for the JSON report.
const (
	assumePowerShell = "Windows PowerShell 3.0 or later, 64-bit (Lync Server 2013 runs on 3.0; the scripts use only what 3.0 has)"
	assumeStdin      = "UNVERIFIED: Windows PowerShell reads the request lines with [Console]::In after -Command - read the loader line from the same stdin"
	assumeModule     = "the product's management shell module (Lync, or SkypeForBusiness) imports in powershell.exe"
	assumeHost       = "UNVERIFIED: two hosts: the start-up and memory of a second powershell.exe with the module loaded"
	assumeProduct    = "UNVERIFIED: Get-CsServerVersion's wording and version numbers (ServerVersionProduct); --product names the product installed"
	assumeServer     = "the agent names this server as the topology does (--server, else the host name, else Get-CsComputer -Local)"
	assumePool       = "Get-CsPool lists this server among its pool's Computers"
	assumeEdition    = "UNVERIFIED: the topology document (Get-CsTopology -AsXml: Cluster[@Fqdn], Service/InstalledOn) has the pool, and a UserStore service on the pool's own SQL Server instance means Standard Edition"
	assumeVersion    = "UNVERIFIED: the topology document's ServiceVersion of the pool's Registrar and its numbering (ServiceVersionProducts: 6 Lync Server 2013), which must agree with Get-CsServerVersion"
	assumeRelation   = "UNVERIFIED: Get-CsPoolBackupRelationship's property name (RelationshipPoolProperties), and that an unpaired pool answers $null or an empty value rather than throwing"
	assumePairing    = "UNVERIFIED: pairing with Set-CsRegistrar -BackupRegistrar both ways plus Enable-CsTopology equals Topology Builder's Associated backup pool"
	assumeStatus     = "Get-CsBackupServiceStatus answers BackupModules, each with Identity, ExportStatus and ImportStatus, with the known module names and states"
	assumeInterval   = "UNVERIFIED: SyncInterval read from the global collection only; Get-CsBackupServiceConfiguration -Identity global's SyncInterval is a TimeSpan (default 00:02:00, 5 s to 3 h)"
	assumeLyncBackup = "Get-CsWindowsService -Name LYNCBACKUP reads the Backup Service's Status, or tells it is not installed"
	assumeStarted    = "UNVERIFIED: LYNCBACKUP runs in a process of its own, whose start time is when the service started (Get-AgentBackupServiceStarted)"
	assumeCMS        = "UNVERIFIED: Get-CsService -CentralManagement's Active property tells the pool that hosts the active CMS (cmsPool)"
	assumeEdge       = "UNVERIFIED: Get-CsService -EdgeServer shows each Edge pool's next hop in a property of EdgeNextHopProperties (Registrar), the value Set-CsEdgeServer -Registrar writes"
	assumeFailover   = "UNVERIFIED: Get-CsUserPoolInfo for a user homed on the pool names the pool serving the user in UserPoolServingProperties (PrimaryPoolFqdn): the pool itself, or its backup pool while it is failed over (FailedOverTo); only a lab failover can confirm the second half"
	assumeStore      = "UNVERIFIED: a pool's back-end store (its standby CMS, for Invoke-CsManagementServerFailover -BackupSqlServerFqdn -BackupSqlInstanceName) is its UserServer service's UserDatabase (BackendStore)"
	assumeFrontEnd   = "Get-CsWindowsService -Name RTCSRV reads the Front End service's Status (a pool is failed back once it runs again)"
	assumeBootTime   = "the agent reads when this server last started from the OS (procs.bootTime: GetTickCount64 on Windows)"
	assumeRTC        = "the agent's account is in RTCUniversalServerAdmins (topology and backup-service cmdlets)"
	assumeSetup      = "the agent's account may run Enable-CsTopology: Domain Admins, or setup permissions delegated with Grant-CsSetupPermission"
	assumeAdmin      = "the agent's account is a local Administrator (Bootstrapper.exe, Start-CsWindowsService)"
	assumeBoot       = "Bootstrapper.exe is at --bootstrapper, else DefaultBootstrapperPath: <ProgramFiles>\\<product>\\Deployment\\Bootstrapper.exe"
	assumeBootRun    = "UNVERIFIED: the agent finds a Bootstrapper.exe run by its image path (Toolhelp snapshot, OpenProcess, QueryFullProcessImageName)"
)

// Module names the backend and operator know; Skype for Business Server 2019 CU1 adds the two
// ApplicationServer modules.
var knownBackupModules = []string{
	"UserServices.PresenceFocus", "ConfServices.DataConf", protocol.ModuleCMSMaster,
	"ApplicationServer.RGSDataStore", "ApplicationServer.RGSFileStore",
}

// judgeInput is what the judging needs besides the facts.
type judgeInput struct {
	product      string
	sent         string // the request line sent, without its newline
	serverName   string // the name the backend would ask Get-CsComputer for; "" for -Local
	serverSource string // where serverName came from: "--server" or "the host name"
	bootTime     time.Time
	bootErr      error // procs.bootTime's failure
}

// checkOrder is the order of the checks Diagnose returns, with what each assumes.
var checkOrder = []struct{ name, assumption string }{
	{"powershell", assumePowerShell}, {"powershell-stdin", assumeStdin}, {"module", assumeModule},
	{"powershell-host", assumeHost}, {"product", assumeProduct}, {"server", assumeServer}, {"pool", assumePool},
	{"edition", assumeEdition}, {"version", assumeVersion}, {"relationship", assumeRelation}, {"pairing", assumePairing},
	{"backup-status", assumeStatus}, {"sync-interval", assumeInterval}, {"lyncbackup", assumeLyncBackup},
	{"lyncbackup-started", assumeStarted}, {"cms", assumeCMS}, {"edge-next-hop", assumeEdge}, {"failover-state", assumeFailover},
	{"backend-store", assumeStore}, {"front-end", assumeFrontEnd}, {"boot-time", assumeBootTime},
	{"rights-rtc", assumeRTC}, {"rights-setup", assumeSetup}, {"rights-admin", assumeAdmin},
}

// judgeFacts turns the facts into checks, in checkOrder.
func judgeFacts(f *doctorFacts, in judgeInput) Diagnosis {
	checks := map[string]doctor.Check{}
	set := func(c doctor.Check) { checks[c.Name] = c }

	set(judgePowerShell(f))
	set(judgeStdin(f, in.sent))
	set(judgeModule(f, in.product))
	set(judgeHost(f))
	installed, productCheck := judgeProduct(f, in.product)
	set(productCheck)
	server, serverCheck := judgeServer(f, in)
	set(serverCheck)
	set(judgePool(f, server))
	topo, topoErr := decodeTopology(f)
	set(judgeEdition(f, topo, topoErr))
	set(judgeVersion(topo, topoErr, installed))
	backupPool, relCheck := judgeRelationship(f)
	set(relCheck)
	set(judgePairing(f, backupPool))
	set(judgeBackupStatus(f, backupPool))
	set(judgeSyncInterval(f))
	set(judgeLyncBackup(f, backupPool))
	set(judgeLyncBackupStarted(f))
	set(judgeCMS(f))
	set(judgeEdgePools(f))
	set(judgeFailoverState(f))
	set(judgeBackendStore(f))
	set(judgeFrontEnd(f))
	set(judgeBootTime(f, in.bootTime, in.bootErr))
	rtc, setup, admin := judgeRights(f)
	set(rtc)
	set(setup)
	set(admin)

	d := Diagnosis{ServerFQDN: server, PoolFQDN: cleanFQDN(f.Pool.FQDN), Identifying: identifyingValues(f, backupPool)}
	for _, o := range checkOrder {
		d.Checks = append(d.Checks, checks[o.name].About(o.assumption))
	}
	return d
}

// notRunChecks are the checks when the script did not answer: the reason, then UNKNOWN, except
// boot-time, which needs no PowerShell.
func notRunChecks(err error, bootTime time.Time, bootErr error) []doctor.Check {
	var checks []doctor.Check
	for _, o := range checkOrder {
		var c doctor.Check
		switch o.name {
		case "powershell":
			c = doctor.Failed("powershell", err.Error(),
				"run doctor on the Front End server, as the agent's account, with the PowerShell serve uses (--powershell; default powershell.exe, Windows PowerShell); "+
					"if PowerShell started but did not answer, report this line: the agent's PowerShell hosts read their script the same way")
		case "boot-time":
			c = judgeBootTime(&doctorFacts{}, bootTime, bootErr)
		default:
			c = doctor.Unknowns(o.name, "not checked: PowerShell did not answer (see powershell)", "fix powershell first")
		}
		checks = append(checks, c.About(o.assumption))
	}
	return checks
}

func judgePowerShell(f *doctorFacts) doctor.Check {
	major, _ := versionMajorMinor(f.PSVersion)
	edition := f.PSEdition
	if edition == "" {
		edition = "Desktop" // 3.0 and 4.0 have no PSEdition
	}
	bits := "64-bit"
	if !f.Is64BitProcess {
		bits = "32-bit"
	}
	name := "Windows PowerShell"
	if strings.EqualFold(edition, "Core") {
		name = "PowerShell"
	}
	saw := fmt.Sprintf("%s %s (%s, %s, CLR %s)", name, f.PSVersion, edition, bits, f.CLRVersion)
	switch {
	case major < 3:
		return doctor.Failed("powershell", saw, "install Windows Management Framework 3.0 or later: the agent needs Windows PowerShell 3.0")
	case strings.EqualFold(edition, "Core"):
		return doctor.Failed("powershell", saw, "the Lync module needs Windows PowerShell: leave --powershell out (powershell.exe), here and for serve")
	case !f.Is64BitProcess:
		return doctor.Failed("powershell", saw, "the management shell is 64-bit: use the 64-bit powershell.exe (System32, not SysWOW64)")
	}
	return doctor.Passed("powershell", saw)
}

func judgeStdin(f *doctorFacts, sent string) doctor.Check {
	switch {
	case f.Stdin.Error != nil:
		return doctor.Failed("powershell-stdin", "the script ran, but reading the request line after it failed: "+errText(f.Stdin.Error),
			"report this line: the agent's PowerShell hosts read their requests this way")
	case f.Stdin.Line != sent:
		return doctor.Failed("powershell-stdin", fmt.Sprintf("the request line arrived as %q; sent %q", f.Stdin.Line, sent),
			"report this line: the agent's PowerShell hosts read their requests this way")
	}
	return doctor.Passed("powershell-stdin", "the script and the request line after it arrived intact through stdin ([Console]::In after -Command -), as the agent's hosts read theirs")
}

func judgeModule(f *doctorFacts, product string) doctor.Check {
	m := f.Module
	avail := "none"
	if len(m.Available) > 0 {
		avail = strings.Join(m.Available, ", ")
	}
	if m.Error != nil || !m.OK {
		saw := fmt.Sprintf("Import-Module %s failed: %s; management shell modules on this server: %s", m.Name, errText(m.Error), avail)
		fix := "run doctor (and the agent) on a Front End server with the " + productName(product) + " management shell installed"
		for _, a := range m.Available {
			name, _, _ := strings.Cut(a, " ")
			if !strings.EqualFold(name, m.Name) {
				fix = "this server has the " + name + " module: give --product the product it runs (see product), here and for serve"
				break
			}
		}
		return doctor.Failed("module", saw, fix)
	}
	return doctor.Passed("module", fmt.Sprintf("Import-Module %s: version %s loaded in %s", m.Name, m.Version, millis(m.ImportMs)))
}

func judgeHost(f *doctorFacts) doctor.Check {
	if !f.Module.OK {
		return doctor.Unknowns("powershell-host", "not measured: the module did not load (see module)", "fix module first")
	}
	took := time.Duration(f.Module.ImportMs) * time.Millisecond
	saw := fmt.Sprintf("module import %s, PowerShell working set %d MB with the module loaded; the agent keeps two such hosts (reads, writes): about %d MB",
		millis(f.Module.ImportMs), f.Module.WorkingSetMB, 2*f.Module.WorkingSetMB)
	if took > DefaultStartTimeout {
		return doctor.Failed("powershell-host", saw+fmt.Sprintf("; the agent gives a host %s to start", DefaultStartTimeout),
			"report this line: the agent's hosts would time out while importing the module on this server")
	}
	return doctor.Passed("powershell-host", saw+fmt.Sprintf(" (start limit %s)", DefaultStartTimeout))
}

// productName is a product's full name ("Lync Server 2013") from its --product name.
func productName(p string) string {
	if n, ok := products[p]; ok {
		return n.name
	}
	return p
}

// productKey is the --product name of a product's full name; "" for one the agent does not drive.
func productKey(name string) string {
	for k, p := range products {
		if strings.EqualFold(p.name, name) {
			return k
		}
	}
	return ""
}

// judgeProduct reads Get-CsServerVersion as the backend does (ServerVersionProduct), and returns
// the installed product's full name ("" when unknown).
func judgeProduct(f *doctorFacts, product string) (string, doctor.Check) {
	sv := f.ServerVersion
	if sv.Error != nil || !sv.OK {
		return "", probeFailure("product", "Get-CsServerVersion", sv.Error, doctor.Unknown)
	}
	installed := ServerVersionProduct(sv.Text)
	saw := fmt.Sprintf("Get-CsServerVersion: %q", sv.Text)
	key := productKey(installed)
	switch {
	case installed == "":
		return "", doctor.Unknowns("product", saw+": names no product the agent knows",
			"check that this is a Lync Server 2013 or Skype for Business Server 2015/2019 Front End server, and report this line")
	case key == product:
		how := "by its version number"
		if strings.Contains(strings.ToLower(sv.Text), strings.ToLower(installed)) {
			how = "by name"
		}
		return installed, doctor.Passed("product", saw+": "+installed+" ("+how+"), as --product "+product+" says")
	case key == "":
		return installed, doctor.Failed("product", saw+": "+installed+" is not supported",
			"the agent drives Lync Server 2013 and Skype for Business Server 2015 and 2019")
	}
	return installed, doctor.Failed("product", saw+": this server runs "+installed+", not "+productName(product),
		"give --product "+key+", here and for serve")
}

// judgeServer says whether the agent will name this server as the topology does, and returns the
// server's FQDN as the topology names it.
func judgeServer(f *doctorFacts, in judgeInput) (string, doctor.Check) {
	local, named := f.LocalComputer, f.NamedComputer
	localFQDN := cleanFQDN(local.FQDN)
	if local.Error != nil {
		if in.serverName != "" && named.Found {
			return cleanFQDN(named.FQDN), doctor.Passed("server", fmt.Sprintf("Get-CsComputer -Identity %s (%s) finds it in pool %s; Get-CsComputer -Local failed: %s",
				in.serverName, in.serverSource, cleanFQDN(named.Pool), errText(local.Error)))
		}
		return "", probeFailure("server", "Get-CsComputer -Local", local.Error, doctor.Fail)
	}
	if !local.Found || localFQDN == "" {
		return "", doctor.Failed("server", "Get-CsComputer -Local: this computer is not in the topology",
			"run doctor (and the agent) on a Front End server of a published topology")
	}
	if in.serverName == "" {
		return localFQDN, doctor.Passed("server", fmt.Sprintf("Get-CsComputer -Local: this server is %s in pool %s; the agent asks Get-CsComputer -Local too (no --server, and the host name is not fully qualified)",
			localFQDN, cleanFQDN(local.Pool)))
	}
	fix := fmt.Sprintf("give --server %s, here and for serve", localFQDN)
	switch {
	case named.Error != nil:
		return localFQDN, doctor.Failed("server", fmt.Sprintf("the agent would call this server %s (%s), and Get-CsComputer -Identity %s failed: %s; the topology names it %s (Get-CsComputer -Local)",
			in.serverName, in.serverSource, in.serverName, errText(named.Error), localFQDN), fix)
	case !named.Found || !protocol.SameFQDN(cleanFQDN(named.FQDN), localFQDN):
		what := "finds no computer"
		if named.Found {
			what = "finds another computer, " + cleanFQDN(named.FQDN)
		}
		return localFQDN, doctor.Failed("server", fmt.Sprintf("the agent would call this server %s (%s), and Get-CsComputer -Identity %s %s; the topology names this server %s (Get-CsComputer -Local)",
			in.serverName, in.serverSource, in.serverName, what, localFQDN), fix)
	}
	return localFQDN, doctor.Passed("server", fmt.Sprintf("this server is %s in pool %s; the agent calls it %s (%s)", localFQDN, cleanFQDN(local.Pool), in.serverName, in.serverSource))
}

func judgePool(f *doctorFacts, server string) doctor.Check {
	p := f.Pool
	if p.Error != nil || !p.OK {
		return probeFailure("pool", "Get-CsPool", p.Error, doctor.Fail)
	}
	if !p.Found {
		return doctor.Failed("pool", "Get-CsPool answered nothing for this server's pool", "check the published topology, and report this line")
	}
	computers := cleanList(p.Computers)
	saw := fmt.Sprintf("pool %s (site %s) has %d computer(s): %s", cleanFQDN(p.FQDN), siteName(p.Site), len(computers), strings.Join(computers, ", "))
	for _, c := range computers {
		if protocol.SameFQDN(c, server) {
			return doctor.Passed("pool", saw+"; this server is one of them")
		}
	}
	return doctor.Failed("pool", saw+"; "+server+" is not among them",
		"check the published topology (Get-CsPool shows the pool's Front End servers), and report this line")
}

// decodeTopology decodes the backend's topology read as the backend does.
func decodeTopology(f *doctorFacts) (*topologyFacts, error) {
	t := f.Topology
	if t.Error != nil || !t.OK {
		return nil, nil
	}
	var facts topologyFacts
	if err := json.Unmarshal(t.Result, &facts); err != nil {
		return nil, err
	}
	return &facts, nil
}

func judgeEdition(f *doctorFacts, topo *topologyFacts, topoErr error) doctor.Check {
	p := f.Pool
	switch {
	case f.Topology.Error != nil:
		return probeFailure("edition", "Get-CsTopology -AsXml", f.Topology.Error, doctor.Fail)
	case topoErr != nil:
		return doctor.Failed("edition", "the backend cannot decode its read of the topology document: "+topoErr.Error(), "report this line")
	case p.Error != nil || !p.Found:
		return doctor.Unknowns("edition", "not checked: the pool could not be read (see pool)", "fix pool first")
	}
	pool := cleanFQDN(p.FQDN)
	computers := cleanList(p.Computers)
	// A Standard Edition server is a pool of its own: the pool's FQDN is its only server's.
	byShape, shape := protocol.EditionEnterprise, "the pool's FQDN differs from its servers'"
	if len(computers) == 1 && protocol.SameFQDN(computers[0], pool) {
		byShape, shape = protocol.EditionStandard, "the pool's FQDN is its only server's"
	}
	if topo == nil || !topo.Found {
		legacy := editionOf(pool, p.Services)
		return doctor.Failed("edition", fmt.Sprintf("the topology document (Get-CsTopology -AsXml) has no <Cluster> for pool %s: the backend falls back to Get-CsPool's services (%s Edition; %s: %s Edition) and reads no version",
			pool, legacy, shape, byShape), "report this line")
	}
	edition, _, _ := topo.editionAndVersion()
	var roles []string
	for _, s := range topo.Services {
		roles = append(roles, s.Role+"@"+s.On)
	}
	saw := fmt.Sprintf("the topology document's services of pool %s: %s", pool, strings.Join(roles, ", "))
	if edition != byShape {
		return doctor.Failed("edition", fmt.Sprintf("%s: the backend reads %s Edition, but %s: %s Edition", saw, edition, shape, byShape),
			"report this line: the backend's edition reading is wrong here, and it refuses to pair pools of different editions")
	}
	return doctor.Passed("edition", fmt.Sprintf("%s: %s Edition, and %s", saw, edition, shape))
}

// judgeVersion checks the topology document's version numbering against the installed product:
// the backend reads other pools' versions from the document only.
func judgeVersion(topo *topologyFacts, topoErr error, installed string) doctor.Check {
	if topo == nil || topoErr != nil || !topo.Found {
		return doctor.Unknowns("version", "not checked: the pool is not read from the topology document (see edition)", "fix edition first")
	}
	var registrar string
	for _, s := range topo.Services {
		if strings.EqualFold(s.Role, "Registrar") && s.On == "cluster" {
			registrar = s.ServiceVersion
		}
	}
	_, version, err := topo.editionAndVersion()
	saw := fmt.Sprintf("the topology document's Registrar ServiceVersion %q", registrar)
	switch {
	case err != nil:
		return doctor.Failed("version", saw+": "+err.Error(), "report this line: the backend compares pool versions before pairing")
	case version == "":
		return doctor.Unknowns("version", "the topology document lists no Registrar or UserServices service version for this pool", "report this line")
	case installed == "":
		return doctor.Unknowns("version", saw+" reads as "+version+"; Get-CsServerVersion named no product (see product), so it was not compared", "fix product first")
	case version != installed:
		return doctor.Failed("version", fmt.Sprintf("%s reads as %s (ServiceVersionProducts), but this server runs %s", saw, version, installed),
			"report this line: the backend's version numbering is wrong here, and it refuses to pair pools it reads as different versions")
	}
	return doctor.Passed("version", saw+" reads as "+version+", the product installed (Get-CsServerVersion)")
}

// judgeRelationship decodes the backend's own read of Get-CsPoolBackupRelationship as the backend
// does; it returns the backup pool it names ("" when unpaired or unknown).
func judgeRelationship(f *doctorFacts) (string, doctor.Check) {
	r := f.Relationship
	names := strings.Join(RelationshipPoolProperties, " or ")
	if r.Error != nil || !r.OK {
		return "", probeFailure("relationship", "Get-CsPoolBackupRelationship", r.Error, doctor.Unknown)
	}
	var res relationshipResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return "", doctor.Failed("relationship", "the backend cannot decode its read of Get-CsPoolBackupRelationship: "+err.Error(), "report this line")
	}
	pool := cleanFQDN(f.Pool.FQDN)
	backup, err := res.backupPool(doctorOp, pool)
	var re *RelationshipError
	switch {
	case errors.As(err, &re) && re.Err != nil:
		if re.Err.Kind == lync.ErrPermission {
			return "", doctor.Failed("relationship", "Get-CsPoolBackupRelationship was refused: "+errText(res.Error),
				"add the agent's account to RTCUniversalServerAdmins (see rights-rtc), then run doctor again in a new logon session")
		}
		return "", doctor.Unknowns("relationship", "Get-CsPoolBackupRelationship threw "+errText(res.Error)+": "+names+" could not be checked; the backend reads this as 'whether the pool is paired is unknown'",
			"if this pool is not paired, this is how the cmdlet answers an unpaired pool: report this line (the backend must then read it as unpaired); otherwise run doctor on a server of a pool paired in Topology Builder")
	case err != nil:
		return "", doctor.Failed("relationship", strings.TrimPrefix(err.Error(), "powershell "+doctorOp+": "),
			"report this line: the property that holds the backup pool must be added to RelationshipPoolProperties")
	case len(res.Answers) == 0:
		return "", doctor.Unknowns("relationship", "Get-CsPoolBackupRelationship answered nothing: the pool is not paired, and "+names+" could not be checked",
			"run doctor on a server of a pool paired in Topology Builder to check it")
	}
	answer := res.Answers[0]
	keys := make([]string, 0, len(answer))
	for k := range answer {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	what := fmt.Sprintf("answered %s {%s}", firstNonEmpty(r.Type, "an object"), strings.Join(keys, ", "))
	if _, ok := answer[stringAnswer]; ok {
		what = "answered a string (read as the backup pool's FQDN)"
	}
	if backup == "" {
		return "", doctor.Passed("relationship", "Get-CsPoolBackupRelationship "+what+"; the backup pool is empty: the pool is not paired")
	}
	return backup, doctor.Passed("relationship", "Get-CsPoolBackupRelationship "+what+"; the backup pool is "+backup)
}

func judgePairing(f *doctorFacts, backupPool string) doctor.Check {
	r := f.Registrar
	switch {
	case backupPool == "":
		return doctor.Unknowns("pairing", "this pool is not paired (or its pairing could not be read): nothing to compare",
			"pair two lab pools in Topology Builder, then run doctor on one of their servers: it compares the pairing with the Registrar's BackupRegistrar, which the backend writes")
	case r.Error != nil || !r.OK:
		return probeFailure("pairing", "Get-CsService -Registrar", r.Error, doctor.Unknown)
	case !r.Found:
		return doctor.Unknowns("pairing", "the pool has no Registrar service (Get-CsService -Registrar)", "report this line")
	case !r.HasBackupRegistrar:
		return doctor.Unknowns("pairing", fmt.Sprintf("the Registrar service has no BackupRegistrar property (properties: %s)", strings.Join(r.Properties, ", ")),
			"report this line: the backend pairs with Set-CsRegistrar -BackupRegistrar")
	}
	registrar := cleanFQDN(r.BackupRegistrar)
	if !protocol.SameFQDN(registrar, backupPool) {
		shown := registrar
		if shown == "" {
			shown = "empty"
		}
		return doctor.Failed("pairing", fmt.Sprintf("Get-CsPoolBackupRelationship names backup pool %s, but the Registrar's BackupRegistrar is %s: what Set-CsRegistrar -BackupRegistrar writes is not the pairing",
			backupPool, shown), "let the administrator publish pairings in Topology Builder (the PoolPair's topology setting), and report this line")
	}
	return doctor.Passed("pairing", fmt.Sprintf("the Registrar's BackupRegistrar names %s, the backup pool Get-CsPoolBackupRelationship names: what the backend writes reads back as the pairing (Enable-CsTopology's part is not checked)", backupPool))
}

func judgeBackupStatus(f *doctorFacts, backupPool string) doctor.Check {
	s := f.BackupStatus
	if s.Error != nil || !s.OK {
		if s.Error != nil && backupPool == "" && s.Error.Type != skippedType && !isPermission(s.Error) {
			return doctor.Unknowns("backup-status", "Get-CsBackupServiceStatus threw "+errText(s.Error)+" (the pool is not paired, or its pairing is unknown)",
				"run doctor on a server of a paired pool to check its answer")
		}
		return probeFailure("backup-status", "Get-CsBackupServiceStatus", s.Error, doctor.Fail)
	}
	if s.Count == 0 {
		return doctor.Unknowns("backup-status", "Get-CsBackupServiceStatus answered nothing: its shape could not be checked", "run doctor on a server of a paired pool")
	}
	if !s.HasBackupModules {
		return doctor.Failed("backup-status", fmt.Sprintf("Get-CsBackupServiceStatus answered %s {%s}, without BackupModules", s.Type, strings.Join(s.Properties, ", ")),
			"report this line: the backend reads BackupModules")
	}
	if len(s.Modules) == 0 {
		return doctor.Unknowns("backup-status", "Get-CsBackupServiceStatus answered an empty BackupModules: the modules' shape could not be checked",
			"run doctor again once the pool is paired and LYNCBACKUP has run")
	}
	var missing []string
	for _, p := range []string{"Identity", "ExportStatus", "ImportStatus"} {
		if !containsFold(s.ModuleProperties, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return doctor.Failed("backup-status", fmt.Sprintf("BackupModules items are %s {%s}, without %s", s.ModuleType, strings.Join(s.ModuleProperties, ", "), strings.Join(missing, ", ")),
			"report this line: the backend reads Identity, ExportStatus and ImportStatus")
	}
	var shown, unknown []string
	for _, m := range s.Modules {
		exp, imp := normalise(m.ExportStatus, exportStates), normalise(m.ImportStatus, importStates)
		shown = append(shown, fmt.Sprintf("%s %s/%s", m.Identity, exp, imp))
		if !containsFold(knownBackupModules, strings.TrimSpace(m.Identity)) {
			unknown = append(unknown, "module "+m.Identity)
		}
		if !containsFold(exportStates, exp) {
			unknown = append(unknown, "export state "+exp)
		}
		if !containsFold(importStates, imp) {
			unknown = append(unknown, "import state "+imp)
		}
	}
	saw := fmt.Sprintf("%d module(s), export/import: %s", len(s.Modules), strings.Join(shown, ", "))
	if len(unknown) > 0 {
		return doctor.Unknowns("backup-status", saw+"; not known to the agent: "+strings.Join(dedupe(unknown), ", "),
			"report this line: the operator has not been taught these")
	}
	return doctor.Passed("backup-status", saw)
}

func judgeSyncInterval(f *doctorFacts) doctor.Check {
	c := f.BackupConfiguration
	if c.Error != nil || !c.OK {
		return probeFailure("sync-interval", "Get-CsBackupServiceConfiguration -Identity global", c.Error, doctor.Fail)
	}
	if !c.Found {
		return doctor.Failed("sync-interval", "Get-CsBackupServiceConfiguration -Identity global answered nothing", "report this line")
	}
	saw := fmt.Sprintf("SyncInterval %s (%s)", c.SyncInterval, firstNonEmpty(c.SyncIntervalType, "null"))
	d := time.Duration(c.SyncIntervalSeconds * float64(time.Second))
	switch {
	case c.CastError != nil || d <= 0:
		why := "no duration"
		if c.CastError != nil {
			why = "[TimeSpan] failed: " + errText(c.CastError)
		}
		return doctor.Failed("sync-interval", saw+": "+why, "report this line: the backend reads SyncInterval as a TimeSpan to judge a stable backup state")
	case d < 5*time.Second || d > 3*time.Hour:
		return doctor.Unknowns("sync-interval", fmt.Sprintf("%s = %s, outside the documented 5 s to 3 h", saw, d), "check Get-CsBackupServiceConfiguration")
	case len(c.Identities) > 1:
		return doctor.Unknowns("sync-interval", fmt.Sprintf("%s = %s in the global collection, but there are %d collections (%s): the backend reads only the global one",
			saw, d, len(c.Identities), strings.Join(c.Identities, ", ")), "report this line")
	}
	return doctor.Passed("sync-interval", fmt.Sprintf("%s = %s: a backup state counts as stable after two intervals, %s", saw, d, 2*d))
}

func judgeLyncBackup(f *doctorFacts, backupPool string) doctor.Check {
	s := f.LyncBackup
	if s.Error != nil || !s.OK {
		return probeFailure("lyncbackup", "Get-CsWindowsService", s.Error, doctor.Fail)
	}
	byName := ""
	if s.ByNameError != nil {
		byName = "; Get-CsWindowsService -Name LYNCBACKUP threw " + errText(s.ByNameError) + ", and the full list was read instead, as the backend does"
	}
	if !s.Found {
		note := "Bootstrapper installs it once the pool is paired"
		if backupPool != "" {
			note = "the pool is paired: Bootstrapper.exe installs it on this server, a step the operator runs"
		}
		return doctor.Passed("lyncbackup", "LYNCBACKUP is not installed ("+note+")"+byName)
	}
	status := normalise(s.Status, serviceStates)
	if !containsFold(serviceStates, status) {
		return doctor.Unknowns("lyncbackup", fmt.Sprintf("LYNCBACKUP is installed, status %q is not one the agent knows (%s)%s", s.Status, strings.Join(serviceStates, ", "), byName),
			"report this line")
	}
	return doctor.Passed("lyncbackup", "LYNCBACKUP is installed, "+status+byName)
}

// judgeLyncBackupStarted checks that a running LYNCBACKUP has a process of its own, whose start
// the backend reads as the service's: it restarts a service that started before a pairing.
func judgeLyncBackupStarted(f *doctorFacts) doctor.Check {
	s := f.LyncBackup
	switch {
	case !s.OK || !s.Found:
		return doctor.Unknowns("lyncbackup-started", "not checked: LYNCBACKUP is not installed (see lyncbackup)", "run doctor again once it runs")
	case !strings.EqualFold(s.Status, protocol.ServiceRunning):
		return doctor.Unknowns("lyncbackup-started", "not checked: LYNCBACKUP is "+s.Status, "run doctor again while it runs")
	case s.ProcessError != nil:
		return doctor.Failed("lyncbackup-started", "reading LYNCBACKUP's process failed: "+errText(s.ProcessError),
			"report this line: the backend cannot tell when LYNCBACKUP started, so whether it predates a pairing")
	case s.ProcessID <= 0:
		return doctor.Failed("lyncbackup-started", "Win32_Service names no process for the running LYNCBACKUP", "report this line")
	case len(s.SharedWith) > 0:
		return doctor.Failed("lyncbackup-started", fmt.Sprintf("LYNCBACKUP shares process %d with %s: the process's start is not the service's", s.ProcessID, strings.Join(s.SharedWith, ", ")),
			"report this line: the backend reads when LYNCBACKUP started from its process")
	}
	started, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s.Started))
	if err != nil {
		return doctor.Failed("lyncbackup-started", fmt.Sprintf("LYNCBACKUP runs in process %d of its own, but its start time reads as %q", s.ProcessID, s.Started),
			"report this line: the backend cannot tell when LYNCBACKUP started")
	}
	return doctor.Passed("lyncbackup-started", fmt.Sprintf("LYNCBACKUP runs in process %d of its own, started %s", s.ProcessID, started.UTC().Format(time.RFC3339)))
}

func judgeCMS(f *doctorFacts) doctor.Check {
	c := f.CMS
	if c.Error != nil || !c.OK {
		return probeFailure("cms", "Get-CsService -CentralManagement", c.Error, doctor.Unknown)
	}
	if len(c.Services) == 0 {
		return doctor.Unknowns("cms", "Get-CsService -CentralManagement listed nothing", "report this line")
	}
	pool := cleanFQDN(f.Pool.FQDN)
	var entries []cmsEntry
	var shown []string
	withActive := 0
	for _, s := range c.Services {
		e := cmsEntry{PoolFQDN: cleanFQDN(s.PoolFQDN)}
		desc := e.PoolFQDN + " (no Active property)"
		if s.HasActive {
			withActive++
			b, err := strconv.ParseBool(strings.TrimSpace(s.Active))
			if err != nil {
				return doctor.Failed("cms", fmt.Sprintf("Get-CsService -CentralManagement: %s has Active = %q, not a boolean", e.PoolFQDN, s.Active),
					"report this line: the backend reads Active as a boolean")
			}
			e.Active = &b
			desc = fmt.Sprintf("%s Active=%t", e.PoolFQDN, b)
		}
		entries = append(entries, e)
		shown = append(shown, desc)
	}
	saw := "Get-CsService -CentralManagement: " + strings.Join(shown, ", ")
	if withActive == 0 && len(entries) > 1 {
		return doctor.Failed("cms", saw+fmt.Sprintf(" (properties: %s): the backend cannot tell the active CMS from the standby", strings.Join(c.Services[0].Properties, ", ")),
			"report this line: the backend reads Active to find the pool that hosts the active CMS")
	}
	active := cmsPool(entries)
	st := f.CMSStatus
	master := cleanFQDN(st.ActiveMasterFQDN)
	if st.Error != nil || !st.Found || master == "" {
		why := "answered no ActiveMasterFqdn"
		if st.Error != nil {
			why = "failed: " + errText(st.Error)
		}
		return doctor.Unknowns("cms", fmt.Sprintf("%s; the backend reads the active CMS in pool %s; Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus %s, so this was not compared",
			saw, firstNonEmpty(active, "(none)"), why), "run Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus as the agent's account, and report this line")
	}
	if pool == "" {
		return doctor.Unknowns("cms", saw+"; this server's pool is not known (see pool): not compared", "fix pool first")
	}
	backendHere := active != "" && protocol.SameFQDN(active, pool)
	masterHere := containsFQDN(cleanList(f.Pool.Computers), master)
	if active == "" || backendHere != masterHere {
		return doctor.Failed("cms", fmt.Sprintf("%s: the backend reads that this pool %s the active CMS, but ActiveMasterFqdn is %s, %s this pool",
			saw, hostsWord(backendHere), master, insideWord(masterHere)),
			"report this line: the backend's reading of the active CMS (cmsPool) is wrong here")
	}
	return doctor.Passed("cms", fmt.Sprintf("%s; this pool %s the active CMS, as ActiveMasterFqdn %s (%s this pool) agrees", saw, hostsWord(backendHere), master, insideWord(masterHere)))
}

// judgeEdgePools checks the backend's reading of the Edge pools' next hops (EdgeNextHopProperties).
func judgeEdgePools(f *doctorFacts) doctor.Check {
	const cmdlet = "Get-CsService -EdgeServer"
	e := f.EdgePools
	if e.Error != nil || !e.OK || e.Result == nil {
		return probeFailure("edge-next-hop", cmdlet, e.Error, doctor.Unknown)
	}
	if e.Result.Error != nil {
		return probeFailure("edge-next-hop", cmdlet, e.Result.Error, doctor.Unknown)
	}
	edges, err := e.Result.edgePools(doctorOp)
	if err != nil {
		return doctor.Failed("edge-next-hop", err.Error(), "report this line (lync-agent doctor --json)")
	}
	if len(edges) == 0 {
		return doctor.Unknowns("edge-next-hop", cmdlet+" lists no Edge pool: there is no next hop to read or move", "none, unless the topology has Edge pools")
	}
	var shown []string
	for _, x := range edges {
		if !x.Known {
			return doctor.Failed("edge-next-hop", fmt.Sprintf("%s: the Edge pool %s has none of the properties %s (it has %s): the backend cannot read its next hop",
				cmdlet, x.FQDN, strings.Join(EdgeNextHopProperties, ", "), strings.Join(x.Properties, ", ")),
				"report this line: the backend reads an Edge pool's next hop from EdgeNextHopProperties")
		}
		shown = append(shown, x.FQDN+" -> "+firstNonEmpty(x.NextHop, "(empty)"))
	}
	return doctor.Passed("edge-next-hop", cmdlet+": "+strings.Join(shown, ", "))
}

// judgeFailoverState checks the backend's reading of whom this pool's users sign in to
// (FailedOverTo): it can only show the shape of the answer and the reading of a pool that is not
// failed over.
func judgeFailoverState(f *doctorFacts) doctor.Check {
	const cmdlet = "Get-CsUser, Get-CsUserPoolInfo"
	fs := f.FailoverState
	if fs.Error != nil || !fs.OK || fs.Result == nil {
		return probeFailure("failover-state", cmdlet, fs.Error, doctor.Unknown)
	}
	if fs.Result.Error != nil {
		return probeFailure("failover-state", cmdlet, fs.Result.Error, doctor.Unknown)
	}
	pool := cleanFQDN(f.Pool.FQDN)
	if fs.Result.User == "" {
		return doctor.Unknowns("failover-state", fmt.Sprintf("no user is homed on %s (Get-CsUser -Filter RegistrarPool): nothing to read whom its users sign in to from", orNone(pool)),
			"run doctor on a pool that has users to check this reading")
	}
	to, err := fs.Result.failedOverTo(doctorOp, pool)
	if err != nil {
		return doctor.Failed("failover-state", err.Error(), "report this line: the backend reads whom a pool's users sign in to from UserPoolServingProperties")
	}
	if to != "" {
		return doctor.Unknowns("failover-state", fmt.Sprintf("Get-CsUserPoolInfo -Identity %s: the backend reads %s as failed over to %s", fs.Result.User, pool, to),
			fmt.Sprintf("if %s is not failed over, report this line: the backend's reading (FailedOverTo) is wrong here", pool))
	}
	return doctor.Passed("failover-state", fmt.Sprintf("Get-CsUserPoolInfo -Identity %s: the backend reads that %s serves its own users (whether the reading follows a failover needs a lab failover)",
		fs.Result.User, pool))
}

// judgeBackendStore checks that this pool's back-end store reads (BackendStore): a disaster
// failover of the CMS to this pool passes it.
func judgeBackendStore(f *doctorFacts) doctor.Check {
	const cmdlet = "Get-CsService -UserServer, Get-CsService -Identity <UserDatabase>"
	b := f.BackendStore
	if b.Error != nil || !b.OK || b.Result == nil {
		return probeFailure("backend-store", cmdlet, b.Error, doctor.Unknown)
	}
	if cleanFQDN(b.Result.SQLServerFQDN) == "" {
		return doctor.Failed("backend-store", fmt.Sprintf("%s: the pool's UserServer service names no UserDatabase with a SQL Server (%q)", cmdlet, b.Result.UserDatabase),
			"report this line: a disaster failover of the Central Management store to this pool needs its back-end store")
	}
	return doctor.Passed("backend-store", fmt.Sprintf("%s: %s, SQL Server %s, instance %s", cmdlet, b.Result.UserDatabase, cleanFQDN(b.Result.SQLServerFQDN),
		firstNonEmpty(b.Result.SQLInstanceName, "(default)")))
}

func judgeFrontEnd(f *doctorFacts) doctor.Check {
	fe := f.FrontEnd
	if fe.Error != nil || !fe.OK {
		return probeFailure("front-end", "Get-CsWindowsService -Name RTCSRV", fe.Error, doctor.Unknown)
	}
	if !fe.Found {
		return doctor.Failed("front-end", "Get-CsWindowsService -Name RTCSRV finds no Front End service on this server",
			"run the agent on a Front End server")
	}
	return doctor.Passed("front-end", "the Front End service (RTCSRV) is "+normalise(fe.Status, serviceStates))
}

// bootTimeSkew is how far the agent's and Windows' boot times may differ.
const bootTimeSkew = 2 * time.Minute

func judgeBootTime(f *doctorFacts, goTime time.Time, goErr error) doctor.Check {
	if goErr != nil {
		return doctor.Failed("boot-time", "the agent cannot read when this server last started: "+goErr.Error(),
			"report this line: the operator tells a server that rebooted from this")
	}
	saw := "the agent reads the last start as " + goTime.UTC().Format(time.RFC3339)
	b := f.BootTime
	if b.Error != nil || !b.OK {
		why := "was not read"
		if b.Error != nil {
			why = "failed: " + errText(b.Error)
		}
		return doctor.Passed("boot-time", saw+"; Win32_OperatingSystem's LastBootUpTime "+why+", so it was not compared")
	}
	win, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(b.LastBootUpTime))
	if err != nil {
		return doctor.Passed("boot-time", fmt.Sprintf("%s; Win32_OperatingSystem's LastBootUpTime %q could not be read, so it was not compared", saw, b.LastBootUpTime))
	}
	if d := goTime.Sub(win); d > bootTimeSkew || d < -bootTimeSkew {
		return doctor.Failed("boot-time", fmt.Sprintf("%s, but Windows says %s (LastBootUpTime)", saw, win.UTC().Format(time.RFC3339)),
			"report this line: the agent's reading of the boot time is wrong here")
	}
	return doctor.Passed("boot-time", fmt.Sprintf("%s, as Windows does (LastBootUpTime %s)", saw, win.UTC().Format(time.RFC3339)))
}

// Well-known SIDs: BUILTIN\Administrators, and the RID of a domain's Domain Admins.
const (
	sidAdministrators = "S-1-5-32-544"
	ridDomainAdmins   = "-512"
)

func judgeRights(f *doctorFacts) (rtc, setup, admin doctor.Check) {
	a := f.Account
	if a.Error != nil || !a.OK {
		why := "the account running doctor could not be read: " + errText(a.Error)
		fix := "run doctor again; report this line if it persists"
		return doctor.Unknowns("rights-rtc", why, fix), doctor.Unknowns("rights-setup", why, fix), doctor.Unknowns("rights-admin", why, fix)
	}
	who := a.Name
	again := "then start a new logon session (the service: restart it) and run doctor again as that account"
	unnamed := 0
	var rtcGroup, domainAdmins string
	for _, g := range a.Groups {
		switch {
		case g.Name == "":
			unnamed++
		case strings.EqualFold(g.Name, "RTCUniversalServerAdmins") || strings.HasSuffix(strings.ToLower(g.Name), `\rtcuniversalserveradmins`):
			rtcGroup = g.Name
		}
		if strings.HasPrefix(g.SID, "S-1-5-21-") && strings.HasSuffix(g.SID, ridDomainAdmins) {
			domainAdmins = firstNonEmpty(g.Name, g.SID)
		}
	}
	switch {
	case rtcGroup != "":
		rtc = doctor.Passed("rights-rtc", fmt.Sprintf("%s (the account running doctor) is a member of %s", who, rtcGroup))
	case unnamed > 0:
		rtc = doctor.Unknowns("rights-rtc", fmt.Sprintf("%s is not in a group named RTCUniversalServerAdmins, but %d of its %d groups could not be named", who, unnamed, len(a.Groups)),
			"check with: whoami /groups (as the agent's account)")
	default:
		rtc = doctor.Failed("rights-rtc", fmt.Sprintf("%s (the account running doctor) is not a member of RTCUniversalServerAdmins (%d groups in its logon token)", who, len(a.Groups)),
			"add the agent's account to RTCUniversalServerAdmins, "+again)
	}

	sp := f.SetupPermission
	ou := sp.ComputerOU
	result := strings.TrimSpace(sp.Result)
	grant := fmt.Sprintf("Grant-CsSetupPermission -ComputerOU \"%s\" (and on every OU that holds Lync servers)", ou)
	switch {
	case domainAdmins != "":
		setup = doctor.Passed("rights-setup", fmt.Sprintf("%s is a member of %s: Enable-CsTopology needs no delegated setup permissions", who, domainAdmins))
	case sp.Error != nil || !sp.OK:
		setup = doctor.Unknowns("rights-setup", fmt.Sprintf("%s is not a Domain Admin, and Test-CsSetupPermission for this server's OU failed: %s", who, errText(sp.Error)),
			"as a Domain Admin, run Test-CsSetupPermission -ComputerOU <the OU of each Lync server>; if False, "+grant+"; pairing and unpairing run Enable-CsTopology")
	case strings.EqualFold(result, "True"):
		if rtcGroup == "" {
			setup = doctor.Failed("rights-setup", fmt.Sprintf("setup permissions are delegated on %s (Test-CsSetupPermission: True), to RTCUniversalServerAdmins, which %s is not in", ou, who),
				"see rights-rtc")
		} else {
			setup = doctor.Passed("rights-setup", fmt.Sprintf("setup permissions are delegated on %s (Test-CsSetupPermission: True) to RTCUniversalServerAdmins: Enable-CsTopology is allowed", ou))
		}
	case strings.EqualFold(result, "False"):
		setup = doctor.Failed("rights-setup", fmt.Sprintf("%s is not a Domain Admin, and setup permissions are not delegated on %s (Test-CsSetupPermission: False): Enable-CsTopology (pairing, unpairing) would be refused", who, ou),
			grant+", or add the account to Domain Admins, or let the administrator publish pairings in Topology Builder (the PoolPair's topology setting)")
	default:
		setup = doctor.Unknowns("rights-setup", fmt.Sprintf("%s is not a Domain Admin; Test-CsSetupPermission -ComputerOU %s answered %q (%s)", who, ou, result, sp.ResultType),
			"as a Domain Admin, run Test-CsSetupPermission -ComputerOU <the OU of each Lync server>; if False, "+grant)
	}

	inToken := false
	for _, g := range a.Groups {
		inToken = inToken || g.SID == sidAdministrators
	}
	switch {
	case a.IsAdministrator:
		admin = doctor.Passed("rights-admin", who+" is a local Administrator, with the rights in force (elevated)")
	case inToken:
		admin = doctor.Unknowns("rights-admin", who+" is in BUILTIN\\Administrators, but not in force in this session",
			"run doctor from an elevated prompt (Run as administrator); the service runs with the rights in force")
	default:
		admin = doctor.Failed("rights-admin", who+" is not a local Administrator in this session",
			"add the agent's account to the local Administrators group (Bootstrapper.exe, Start-CsWindowsService); if it is a member, run doctor from an elevated prompt (Run as administrator)")
	}
	return rtc, setup, admin
}

// checkBootstrapper looks for Bootstrapper.exe where the backend would run it. It returns the
// path, "" when it could not be told.
func checkBootstrapper(product, path string, getenv func(string) string) (doctor.Check, string) {
	source := "--bootstrapper"
	if path == "" {
		var err error
		if path, err = DefaultBootstrapperPath(product, getenv); err != nil {
			return doctor.Failed("bootstrapper", err.Error(), "give --bootstrapper the path of Bootstrapper.exe (in the Deployment folder of the product's installation), here and for serve").About(assumeBoot), ""
		}
		source = "the default for " + product
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return doctor.Failed("bootstrapper", fmt.Sprintf("Bootstrapper.exe not found at %s (%s): %v", path, source, err),
			"give --bootstrapper the path of Bootstrapper.exe (in the Deployment folder of the product's installation), here and for serve").About(assumeBoot), ""
	case fi.IsDir():
		return doctor.Failed("bootstrapper", path+" is a directory", "give --bootstrapper the path of Bootstrapper.exe itself").About(assumeBoot), ""
	case strings.Contains(path, "~"):
		return doctor.Unknowns("bootstrapper", fmt.Sprintf("found at %s (%s), which looks like an 8.3 short name", path, source),
			"give --bootstrapper the long path: the agent finds a running Bootstrapper by the path Windows reports, which is the long one").About(assumeBoot), path
	}
	return doctor.Passed("bootstrapper", fmt.Sprintf("found at %s (%s)", path, source)).About(assumeBoot), path
}

// checkBootstrapperRun runs the backend's search for a Bootstrapper.exe run, read-only.
func checkBootstrapperRun(ps procs, path string, ok bool) doctor.Check {
	if path == "" || !ok {
		return doctor.Unknowns("bootstrapper-run", "not checked: Bootstrapper.exe's path is not settled (see bootstrapper)", "fix bootstrapper first").About(assumeBootRun)
	}
	p, found, err := ps.find(path)
	switch {
	case err != nil:
		return doctor.Failed("bootstrapper-run", "cannot tell whether Bootstrapper.exe runs: "+err.Error(),
			"the agent refuses to run Bootstrapper.exe while it cannot tell: run it as a local Administrator, and report this line").About(assumeBootRun)
	case found:
		defer p.release()
		return doctor.Passed("bootstrapper-run", fmt.Sprintf("a run of %s is going on (pid %d), found by its image path as the agent finds it: the agent waits for it rather than start another", path, p.pid())).About(assumeBootRun)
	}
	return doctor.Passed("bootstrapper-run", "no Bootstrapper.exe run is going on; the process list could be read").About(assumeBootRun)
}

// identifyingValues are the names the facts hold that identify the organisation.
func identifyingValues(f *doctorFacts, backupPool string) []string {
	var v []string
	v = append(v, f.LocalComputer.FQDN, f.LocalComputer.Pool, f.NamedComputer.FQDN, f.NamedComputer.Pool, f.NamedComputer.Asked,
		f.Stdin.ServerFQDN, f.Pool.FQDN, siteName(f.Pool.Site), backupPool, cleanFQDN(f.Registrar.BackupRegistrar), f.CMSStatus.ActiveMasterFQDN,
		f.Account.Name, f.SetupPermission.ComputerDN, f.SetupPermission.ComputerOU)
	v = append(v, cleanList(f.Pool.Computers)...)
	for _, s := range f.CMS.Services {
		v = append(v, cleanFQDN(s.PoolFQDN), cleanFQDN(s.Identity))
	}
	var rel relationshipResult
	if json.Unmarshal(f.Relationship.Result, &rel) == nil {
		for _, a := range rel.Answers {
			for _, x := range a {
				if x = cleanFQDN(x); protocol.ValidateFQDN("", x) == nil {
					v = append(v, x)
				}
			}
		}
	}
	if r := f.EdgePools.Result; r != nil {
		for _, a := range r.Answers {
			for _, x := range a {
				if x = cleanFQDN(x); protocol.ValidateFQDN("", x) == nil {
					v = append(v, x)
				}
			}
		}
	}
	if r := f.FailoverState.Result; r != nil {
		v = append(v, strings.TrimPrefix(strings.ToLower(r.User), "sip:"), r.User)
		for k, x := range r.Answer {
			if strings.EqualFold(k, "Identity") {
				v = append(v, x)
			} else if x = cleanFQDN(x); protocol.ValidateFQDN("", x) == nil {
				v = append(v, x)
			}
		}
	}
	if r := f.BackendStore.Result; r != nil {
		v = append(v, cleanFQDN(r.SQLServerFQDN), cleanFQDN(r.UserDatabase))
	}
	for _, g := range f.Account.Groups {
		if domain, _, ok := strings.Cut(g.Name, `\`); ok && !strings.EqualFold(domain, "BUILTIN") && !strings.EqualFold(domain, "NT AUTHORITY") {
			v = append(v, domain)
		}
	}
	var out []string
	for _, s := range v {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// --- helpers ---

const skippedType = "Doctor.Skipped"

// probeFailure is the check for a probe that threw: UNKNOWN when it did not run (its pool was not
// known, its cmdlet is missing because the module did not load), FAIL on a permission error,
// otherwise status.
func probeFailure(name, cmdlet string, we *wireError, status doctor.Status) doctor.Check {
	switch {
	case we == nil:
		return doctor.Unknowns(name, cmdlet+" did not report", "report this line")
	case we.Type == skippedType:
		return doctor.Unknowns(name, "not checked: this server's pool is not known (see server)", "fix server first")
	case strings.Contains(we.Type+" "+we.InnerType, "CommandNotFoundException"):
		return doctor.Unknowns(name, cmdlet+" is not available: "+errText(we), "fix module first")
	case isPermission(we):
		return doctor.Failed(name, cmdlet+" was refused: "+errText(we),
			"add the agent's account to RTCUniversalServerAdmins (see rights-rtc), then run doctor again in a new logon session")
	}
	c := doctor.Check{Name: name, Status: status, Saw: cmdlet + " failed: " + errText(we), Fix: "report this line (lync-agent doctor --json)"}
	return c
}

func isPermission(we *wireError) bool {
	return we != nil && errors.Is(classify(doctorOp, we), lync.ErrPermission)
}

// errText is an error as one short line: its type and message.
func errText(we *wireError) string {
	if we == nil {
		return "no error details"
	}
	msg := strings.Join(strings.Fields(we.Message), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	t := we.Type
	if i := strings.LastIndex(t, "."); i >= 0 {
		t = t[i+1:]
	}
	if t == "" {
		return msg
	}
	return t + ": " + msg
}

func versionMajorMinor(v string) (int, int) {
	parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

func millis(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}

func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = cleanFQDN(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func containsFQDN(list []string, s string) bool {
	for _, x := range list {
		if protocol.SameFQDN(x, s) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func hostsWord(b bool) string {
	if b {
		return "hosts"
	}
	return "does not host"
}

func insideWord(b bool) string {
	if b {
		return "a server of"
	}
	return "outside"
}

var _ io.Writer = (*cappedBuffer)(nil)
