package powershell

// The fakes: the test binary re-executes itself as a fake powershell.exe or a fake
// Bootstrapper.exe (GO_WANT_FAKE_LYNC=1; the PowerShell arguments tell the two apart). Each test
// runs the fake Bootstrapper through a hard link of its own (a distinct image path, as the agent
// finds a running Bootstrapper by its path).
//
// The fake PowerShell reads the bootstrap input up to the sentinel and checks it byte for byte
// against the product's script (and, independently, the module name and every operation); a wrong
// script gets an error as its id 0 reply, so every call fails. Then it answers requests with what
// the real script makes of the cmdlets' output. Its behaviour is set by FAKE_* variables read at
// start, and it appends what it sees (start, import, each request line with its pid) to FAKE_LOG.
// The deployment it answers for (pairings, LYNCBACKUP) lives in FAKE_STATE, shared by the read
// and the write host as the real deployment is.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const (
	envFake       = "GO_WANT_FAKE_LYNC"
	envLog        = "FAKE_LOG"
	envProduct    = "FAKE_PWSH_PRODUCT"     // the product whose script the fake expects
	envStartDelay = "FAKE_PWSH_START_DELAY" // process start + module import, e.g. 300ms
	envImportFail = "FAKE_PWSH_IMPORT_FAIL" // 1: Import-Module fails
	envErrorOn    = "FAKE_PWSH_ERROR_ON"    // op=kind[,op=kind]: permission, permission-ad, notfound, cmdlet, unavailable
	envDieOn      = "FAKE_PWSH_DIE_ON"      // op[,op]: the process exits when it receives op
	envDelayOn    = "FAKE_PWSH_DELAY_ON"    // op=duration: answer op late (a slow write: SyncBackup=60s)
	envNoise      = "FAKE_PWSH_NOISE"       // 1: banners, warnings, junk marker lines, stale replies, a huge line
	envLyncBackup = "FAKE_PWSH_LYNCBACKUP"  // Running (default), Stopped, absent
	envState      = "FAKE_STATE"            // file holding the fake deployment's state
	envBootMode   = "FAKE_BOOTSTRAPPER_MODE"
	envBootExit   = "FAKE_BOOTSTRAPPER_EXIT"    // mode wait: the exit code (default 0)
	envBootGo     = "FAKE_BOOTSTRAPPER_RELEASE" // mode wait: the run ends once this file exists
	// fakeMaxRun bounds every fake Bootstrapper and installer, so none outlives a failed test long.
	fakeMaxRun = 2 * time.Minute
)

// Independent of scripts.go: what each product must import, and the operations every script must
// define and dispatch.
var (
	wantModule = map[string]string{
		protocol.ProductLync2013: "Lync",
		protocol.ProductSfB2015:  "SkypeForBusiness",
		protocol.ProductSfB2019:  "SkypeForBusiness",
	}
	wantOps   = []string{"Identity", "GetPool", "GetBackupStatus", "GetBackupService", "StartBackupService", "SyncBackup", "PairPools", "Unpair"}
	wantArgs  = []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", "-"}
	testExe   string
	quietLogs = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
)

func TestMain(m *testing.M) {
	if os.Getenv(envFake) == "1" {
		if slices.Contains(os.Args[1:], "-NonInteractive") {
			os.Exit(fakePowerShell())
		}
		os.Exit(fakeBootstrapper())
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testExe = exe
	os.Setenv(envFake, "1") // children only: this process has already branched
	os.Exit(m.Run())
}

// --- fake powershell.exe ---

type fakeHost struct {
	out      *bufio.Writer
	product  string
	state    fakeState
	noisy    bool
	hugeSent bool
}

// fakeState is the deployment as the cmdlets change it.
type fakeState struct {
	Backup     map[string]string `json:"backup"`
	LyncBackup string            `json:"lyncBackup"`
}

// load reads the shared state, if there is one yet; save replaces it atomically (rename).
func (f *fakeHost) load() {
	if b, err := os.ReadFile(os.Getenv(envState)); err == nil {
		var st fakeState
		if json.Unmarshal(b, &st) == nil {
			f.state = st
		}
	}
}

func (f *fakeHost) save() {
	path := os.Getenv(envState)
	if path == "" {
		return
	}
	b, _ := json.Marshal(f.state)
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

func fakePowerShell() int {
	logEvent("start %d", os.Getpid())
	f := &fakeHost{
		out: bufio.NewWriter(os.Stdout), product: os.Getenv(envProduct), noisy: os.Getenv(envNoise) == "1",
		state: fakeState{
			Backup:     map[string]string{"pool03.contoso.com": "pool04.contoso.com", "pool04.contoso.com": "pool03.contoso.com"},
			LyncBackup: envOr(envLyncBackup, "Running"),
		},
	}
	if d, err := time.ParseDuration(os.Getenv(envStartDelay)); err == nil {
		time.Sleep(d)
	}
	if f.noisy {
		f.raw("Windows PowerShell\r\nCopyright (C) 2016 Microsoft Corporation. All rights reserved.\r\n\r\n")
	}
	in := bufio.NewReader(os.Stdin)
	var got strings.Builder
	for {
		line, err := in.ReadString('\n')
		got.WriteString(line)
		if strings.TrimRight(line, "\r\n") == bootstrapSentinel {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake: stdin ended before the bootstrap sentinel")
			return 3
		}
	}
	if problem := checkBootstrap(f.product, os.Args[1:], got.String()); problem != "" {
		logEvent("script-mismatch %s", problem)
		f.reply(0, nil, &wireError{Type: "FakePowerShell.ScriptMismatch", Message: problem})
		return 5
	}
	module := wantModule[f.product]
	if os.Getenv(envImportFail) == "1" {
		logEvent("import-failed %s", module)
		f.reply(0, nil, &wireError{
			Type:     "System.IO.FileNotFoundException",
			Message:  fmt.Sprintf("The specified module '%s' was not loaded because no valid module file was found in any module directory.", module),
			Category: "ResourceUnavailable", ErrorID: "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand",
		})
		return 2
	}
	logEvent("import %s", module)
	f.reply(0, map[string]any{"module": module, "psVersion": "5.1.14393.4583"}, nil)

	errorOn := parsePairs(os.Getenv(envErrorOn))
	delayOn := parsePairs(os.Getenv(envDelayOn))
	for {
		line, err := in.ReadString('\n')
		if strings.TrimSpace(line) != "" {
			logEvent("req %d %s", os.Getpid(), strings.TrimRight(line, "\r\n"))
			f.serve(line, errorOn, delayOn)
		}
		if err != nil {
			return 0
		}
	}
}

func (f *fakeHost) serve(line string, errorOn, delayOn map[string]string) {
	var req struct {
		ID     int64           `json:"id"`
		Op     string          `json:"op"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		f.reply(-1, nil, &wireError{Type: "System.ArgumentException", Message: "bad request line: " + err.Error()})
		return
	}
	if slices.Contains(strings.Split(os.Getenv(envDieOn), ","), req.Op) {
		fmt.Fprintln(os.Stderr, "fake: powershell.exe crashed (0xc0000005)")
		os.Exit(255)
	}
	if d, ok := delayOn[req.Op]; ok {
		dur, _ := time.ParseDuration(d)
		time.Sleep(dur)
	}
	if f.noisy {
		f.noise()
	}
	if kind, ok := errorOn[req.Op]; ok {
		f.reply(req.ID, nil, cannedError(kind))
		return
	}
	var p map[string]any
	_ = json.Unmarshal(req.Params, &p)
	f.load()
	result, werr := f.answer(req.Op, p)
	if werr == nil && (req.Op == "PairPools" || req.Op == "Unpair" || req.Op == "StartBackupService") {
		f.save()
	}
	f.reply(req.ID, result, werr)
}

func (f *fakeHost) noise() {
	f.raw("WARNING: Machine is not up to date with the latest topology.\r\n")
	f.raw("\r\n")
	f.raw(replyMarker + "this is not JSON\r\n")
	f.raw("text before the marker " + replyMarker + `{"id":1,"ok":true,"result":null}` + "\r\n")
	f.raw(replyMarker + `{"id":0,"ok":true,"result":{"module":"Evil"}}` + "\r\n")
	f.raw(replyMarker + `{"id":987654,"ok":true,"result":{"fqdn":"evil.contoso.com","installed":false}}` + "\r\n")
	if !f.hugeSent { // once per process: a line over the reader's bound
		f.hugeSent = true
		f.raw(strings.Repeat("x", maxReplyLine+1024) + "\r\n")
	}
}

// Canned topology: what Invoke-AgentGetPool makes of Get-CsPool and friends, including the shapes
// Windows PowerShell produces for collections (lone element unrolled, {"value":[...]} wrapper).
var fakePools = map[string]map[string]any{
	"pool01.contoso.com": {
		"fqdn": "pool01.contoso.com", "site": "Site:EMEA",
		"computers": []string{"fe01.contoso.com", "fe02.contoso.com"},
		"services": []string{"Registrar:pool01.contoso.com", "UserServer:pool01.contoso.com", "WebServer:pool01.contoso.com",
			"ConferencingServer:pool01.contoso.com", "CentralManagement:pool01.contoso.com"},
	},
	"pool02.contoso.com": {
		"fqdn": "POOL02.contoso.com", "site": "Site:APAC",
		"computers": map[string]any{"value": []string{"fe03.contoso.com"}, "Count": 1},
		"services":  []string{"Registrar:pool02.contoso.com", "UserServer:pool02.contoso.com"},
	},
	"se01.contoso.com": {
		"fqdn": "se01.contoso.com", "site": "EMEA",
		"computers": "se01.contoso.com",
		"services":  []string{"Registrar:se01.contoso.com", "UserServer:se01.contoso.com", "UserDatabase:se01.contoso.com"},
	},
	"pool03.contoso.com": {"fqdn": "pool03.contoso.com", "site": "Site:AMER", "computers": []string{"fe05.contoso.com"}, "services": []string{"Registrar:pool03.contoso.com"}},
	"pool04.contoso.com": {"fqdn": "pool04.contoso.com", "site": "Site:AMER", "computers": []string{"fe06.contoso.com"}, "services": []string{"Registrar:pool04.contoso.com"}},
}

var fakeComputers = map[string]string{
	"fe01.contoso.com": "pool01.contoso.com", "fe02.contoso.com": "pool01.contoso.com",
	"fe03.contoso.com": "pool02.contoso.com", "se01.contoso.com": "se01.contoso.com",
}

func (f *fakeHost) answer(op string, p map[string]any) (any, *wireError) {
	str := func(k string) string { s, _ := p[k].(string); return s }
	switch op {
	case "Identity":
		server := str("serverFqdn")
		if server == "" {
			server = "fe01.contoso.com" // Get-CsComputer -Local
		}
		pool, ok := fakeComputers[strings.ToLower(server)]
		if !ok {
			return nil, notFound(`Cannot find computer "` + server + `" in the topology.`)
		}
		return map[string]any{"serverFqdn": server, "poolFqdn": pool}, nil
	case "GetPool":
		fqdn := str("fqdn")
		pool, ok := fakePools[strings.ToLower(fqdn)]
		if !ok {
			return nil, notFound(`Cannot find pool "` + fqdn + `" in the topology.`)
		}
		res := map[string]any{}
		for k, v := range pool {
			res[k] = v
		}
		res["registrarVersion"] = map[string]any{protocol.ProductLync2013: 6, protocol.ProductSfB2015: 7, protocol.ProductSfB2019: "8"}[f.product]
		res["backupPoolFqdn"] = f.state.Backup[strings.ToLower(fqdn)]
		res["cms"] = []map[string]any{{"poolFqdn": "pool01.contoso.com", "active": true}, {"poolFqdn": "pool02.contoso.com", "active": false}}
		return res, nil
	case "GetBackupStatus":
		fqdn := strings.ToLower(str("fqdn"))
		if _, ok := fakePools[fqdn]; !ok {
			return nil, notFound(`Cannot find pool "` + fqdn + `".`)
		}
		cms := "FinalState"
		if fqdn != "pool01.contoso.com" {
			cms = "NotInitialized" // not the CMS pool
		}
		return map[string]any{"poolFqdn": fqdn, "backupPoolFqdn": f.state.Backup[fqdn], "modules": []map[string]string{
			{"identity": "UserServices.PresenceFocus", "exportStatus": "FinalState", "importStatus": "NormalState"},
			{"identity": "ConfServices.DataConf", "exportStatus": "NonSteadyState", "importStatus": "NormalState"},
			{"identity": "CentralMgmt.CMSMaster", "exportStatus": cms, "importStatus": "NormalState"},
		}}, nil
	case "GetBackupService":
		if f.state.LyncBackup == "absent" {
			return map[string]any{"installed": false, "status": ""}, nil
		}
		return map[string]any{"installed": true, "status": f.state.LyncBackup}, nil
	case "StartBackupService":
		if f.state.LyncBackup == "absent" {
			return nil, &wireError{Type: "System.InvalidOperationException", Message: "Cannot find any service with service name 'LYNCBACKUP'."}
		}
		f.state.LyncBackup = "Running"
		return nil, nil
	case "SyncBackup":
		fqdn := strings.ToLower(str("poolFqdn"))
		if _, ok := fakePools[fqdn]; !ok {
			return nil, notFound(`Cannot find pool "` + fqdn + `".`)
		}
		if f.state.Backup[fqdn] == "" {
			return nil, &wireError{Type: "Microsoft.Rtc.Management.Hadr.BackupServiceException", Message: "Pool " + fqdn + " has no backup pool."}
		}
		return nil, nil
	case "PairPools":
		a, b := strings.ToLower(str("primaryFqdn")), strings.ToLower(str("backupFqdn"))
		f.state.Backup[a], f.state.Backup[b] = b, a
		return nil, nil
	case "Unpair":
		delete(f.state.Backup, strings.ToLower(str("primaryFqdn")))
		delete(f.state.Backup, strings.ToLower(str("backupFqdn")))
		return nil, nil
	}
	return nil, &wireError{Type: "System.ArgumentException", Message: "unknown operation: " + op}
}

func notFound(msg string) *wireError {
	return &wireError{Type: "System.Management.Automation.ItemNotFoundException", Message: msg, Category: "ObjectNotFound"}
}

func cannedError(kind string) *wireError {
	switch kind {
	case "permission": // WCF call to the backup service / CMS without RTCUniversalServerAdmins
		return &wireError{Type: "System.ServiceModel.Security.SecurityAccessDeniedException", Message: "Access is denied.",
			Detail: "Access is denied. | Access is denied.", InnerType: "System.ServiceModel.FaultException",
			Category: "NotSpecified", ErrorID: "System.ServiceModel.Security.SecurityAccessDeniedException,Microsoft.Rtc.Management.Hadr.GetBackupServiceStatusCmdlet"}
	case "permission-ad":
		return &wireError{Type: "Microsoft.Rtc.Management.ADConnect.ADOperationException",
			Message:  `Active Directory operation failed on "dc01.contoso.com". You cannot retry this operation: "Insufficient access rights to perform the operation`,
			Category: "InvalidOperation"}
	case "notfound":
		return notFound(`Cannot find "Registrar:pool09.contoso.com" because it does not exist.`)
	case "unavailable":
		return &wireError{Type: "System.ServiceModel.EndpointNotFoundException", Message: "There was no endpoint listening at net.tcp://fe01.contoso.com:444/."}
	default: // cmdlet
		return &wireError{Type: "Microsoft.Rtc.Management.Deployment.DeploymentException",
			Message: "Enable-CsTopology failed: the topology has validation errors. See the log for details.", Category: "InvalidOperation"}
	}
}

func (f *fakeHost) reply(id int64, result any, werr *wireError) {
	r := map[string]any{"id": id, "ok": werr == nil}
	if werr != nil {
		r["error"] = werr
	} else {
		r["result"] = result
	}
	b, _ := json.Marshal(r)
	f.raw(replyMarker + string(b) + "\r\n") // CRLF, as on Windows
}

func (f *fakeHost) raw(s string) {
	f.out.WriteString(s)
	f.out.Flush()
}

// checkBootstrap says what is wrong with the bootstrap input, or "".
func checkBootstrap(product string, args []string, got string) string {
	if !slices.Equal(args, wantArgs) {
		return fmt.Sprintf("arguments %q, want %q", args, wantArgs)
	}
	want, err := bootstrapInput(product)
	if err != nil {
		return err.Error()
	}
	if got != want {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		return fmt.Sprintf("bootstrap input differs from the %s script at byte %d", product, i)
	}
	first, _, _ := strings.Cut(got, "\n")
	if first != loaderScript {
		return "the first line is not the loader"
	}
	module := wantModule[product]
	if !strings.Contains(got, "Import-Module -Name '"+module+"' -ErrorAction Stop") {
		return "the script does not import " + module
	}
	for other := range map[string]bool{"Lync": true, "SkypeForBusiness": true} {
		if other != module && strings.Contains(got, "Import-Module -Name '"+other+"'") {
			return "the script also imports " + other
		}
	}
	for _, op := range wantOps {
		if !strings.Contains(got, "\nfunction Invoke-Agent"+op+" {\n") {
			return "no function Invoke-Agent" + op
		}
		if !strings.Contains(got, "'"+op+"'") || !strings.Contains(got, "= 'Invoke-Agent"+op+"'") {
			return "operation " + op + " is not in the dispatch table"
		}
	}
	return ""
}

// --- fake Bootstrapper.exe ---

func fakeBootstrapper() int {
	if os.Getenv(envBootMode) == "installer" { // started by mode hang-child
		logEvent("installer-pid %d", os.Getpid())
		time.Sleep(fakeMaxRun)
		return 0
	}
	logEvent("bootstrapper args=%d", len(os.Args)-1)
	logEvent("bootstrapper-pid %d", os.Getpid())
	code := fakeBootstrapperRun()
	logEvent("bootstrapper-exit %d", code)
	return code
}

func fakeBootstrapperRun() int {
	say := func(lines ...string) {
		for _, l := range lines {
			fmt.Print(l + "\r\n")
		}
	}
	say("Checking prerequisites for Lync Server 2013...", "Prerequisite satisfied: Windows PowerShell 3.0",
		"Installing Lync Server 2013 - Core Components...")
	switch os.Getenv(envBootMode) {
	case "fail":
		fmt.Fprint(os.Stderr, "Error: Cannot read the topology from the Central Management Store.\r\n")
		say("Bootstrapper encountered an error. See the log C:\\RTCReplicaRoot\\Bootstrap.html.")
		return 1
	case "reboot-code":
		say("Installing Microsoft SQL Server 2012 Native Client...")
		return 3010
	case "reboot-text":
		say("Installing Windows Fabric...", "A restart is required to complete the installation. Run Bootstrapper again after the restart.")
		return 0
	case "hang":
		time.Sleep(fakeMaxRun)
		return 0
	case "hang-child": // an installer that hangs too: a timeout must end both
		installer := exec.Command(os.Args[0])
		installer.Env = append(os.Environ(), envBootMode+"=installer")
		installer.Stdout = os.Stdout
		if err := installer.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		time.Sleep(fakeMaxRun)
		return 0
	case "wait": // until the test releases it: a run that outlives whoever started it
		for end := time.Now().Add(fakeMaxRun); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(os.Getenv(envBootGo)); err == nil {
				break
			}
		}
		say("Bootstrapper completed successfully.")
		code, _ := strconv.Atoi(os.Getenv(envBootExit))
		return code
	case "flood":
		for i := range 5000 {
			say(fmt.Sprintf("line %04d %s", i, strings.Repeat("=", 150)))
		}
		return 0
	}
	say("Enabling roles on this server...", "No restart is required.", "Bootstrapper completed successfully.")
	return 0
}

// --- helpers ---

func logEvent(format string, args ...any) {
	path := os.Getenv(envLog)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parsePairs(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// fakeLog reads what the fakes recorded.
type fakeLog struct{ path string }

func (l fakeLog) lines() []string {
	b, _ := os.ReadFile(l.path)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (l fakeLog) count(prefix string) int {
	n := 0
	for _, line := range l.lines() {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

type loggedRequest struct {
	Raw    string
	PID    int            // the host process that received it
	ID     int64          `json:"id"`
	Op     string         `json:"op"`
	Params map[string]any `json:"params"`
}

func (l fakeLog) requests(t testing.TB) []loggedRequest {
	t.Helper()
	var out []loggedRequest
	for _, line := range l.lines() {
		rest, ok := strings.CutPrefix(line, "req ")
		if !ok {
			continue
		}
		pid, raw, _ := strings.Cut(rest, " ")
		var r loggedRequest
		r.PID, _ = strconv.Atoi(pid)
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatalf("request line %q is not JSON: %v", raw, err)
		}
		r.Raw = raw
		out = append(out, r)
	}
	return out
}

func (l fakeLog) ops(t testing.TB) []string {
	var ops []string
	for _, r := range l.requests(t) {
		ops = append(ops, r.Op)
	}
	return ops
}

// pid is the number logged after prefix ("bootstrapper-pid "), 0 if none.
func (l fakeLog) pid(prefix string) int {
	for _, line := range l.lines() {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			n, _ := strconv.Atoi(rest)
			return n
		}
	}
	return 0
}

// newTestBackend returns a Backend on the fake PowerShell for product, and the fake's log.
// FAKE_* variables must be set (t.Setenv) before the first call starts a host. Its Bootstrapper
// is a link of its own to the test binary, and any fake Bootstrapper still running on it when
// the test ends is killed.
func newTestBackend(t testing.TB, product string, mod func(*Options)) (*Backend, fakeLog) {
	t.Helper()
	dir := t.TempDir()
	log := fakeLog{path: filepath.Join(dir, "fake.log")}
	t.Setenv(envLog, log.path)
	t.Setenv(envProduct, product)
	t.Setenv(envState, filepath.Join(dir, "state.json"))
	opts := Options{
		Product: product, Executable: testExe, BootstrapperPath: fakeBootstrapperExe(t, dir), ServerFQDN: "fe01.contoso.com",
		BootstrapLog: filepath.Join(dir, "bootstrapper.log"),
		StartTimeout: 30 * time.Second, CallTimeout: 30 * time.Second, Logger: quietLogs,
	}
	if mod != nil {
		mod(&opts)
	}
	b, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, log
}

// fakeBootstrapperExe links the test binary as dir/Bootstrapper.exe (copies it if it cannot).
func fakeBootstrapperExe(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "Bootstrapper.exe")
	if err := os.Link(testExe, path); err != nil {
		b, err := os.ReadFile(testExe)
		if err == nil {
			err = os.WriteFile(path, b, 0o755)
		}
		if err != nil {
			t.Fatalf("making the fake Bootstrapper.exe: %v", err)
		}
	}
	t.Cleanup(func() { killFakeBootstrappers(t, path) }) // before the directory goes
	return path
}

// killFakeBootstrappers kills the processes this test started from path (they outlive Bootstrap
// calls by design) and waits until none is left.
func killFakeBootstrappers(t testing.TB, path string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; {
		p, found, err := osProcs{}.find(path)
		if err != nil || !found {
			return
		}
		if proc, err := os.FindProcess(p.pid()); err == nil {
			_ = proc.Kill()
			_ = proc.Release()
		}
		p.release()
		if time.Now().After(end) {
			t.Errorf("fake Bootstrapper pid %d is still running", p.pid())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor waits until cond holds, failing the test after limit: for what another process does.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s", limit, what)
		}
	}
}

// syncBuffer collects log output from the host's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
