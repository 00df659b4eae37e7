package powershell

// The doctor's tests. Its fake PowerShell is this test binary too: when a test names a facts file
// in FAKE_DOCTOR_FACTS, a child started with GO_WANT_FAKE_LYNC=1 becomes the doctor's fake
// (init below, before TestMain's dispatch to the backend's fake). The fake checks the arguments
// and the script byte for byte against the reviewed copy (testdata/doctor-<product>.golden),
// checks the request line, and answers the facts file, as the real script would have found them.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/lync-dr/poolpair-operator/internal/doctor"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const (
	envDoctorFacts   = "FAKE_DOCTOR_FACTS"   // the facts file the fake answers (set: the child is the doctor's fake)
	envDoctorProduct = "FAKE_DOCTOR_PRODUCT" // the product whose script the fake expects
	envDoctorServer  = "FAKE_DOCTOR_SERVER"  // the serverFqdn the request line must carry
	// envDoctorMode: "" answers the facts; crash (the loader's error, exit 4), silent (exit 0,
	// a banner only), script-error (an ok:false reply), utf16 (the answer in UTF-16LE), hang.
	envDoctorMode = "FAKE_DOCTOR_MODE"
	// requestPlaceholder in a facts file's stdin.line is replaced by the request line received.
	requestPlaceholder = "$REQUEST"
)

func init() {
	if os.Getenv(envFake) == "1" && os.Getenv(envDoctorFacts) != "" {
		os.Exit(fakeDoctor())
	}
}

func doctorGoldenName(product string) string { return "doctor-" + product + ".golden" }

// fakeDoctor is the doctor's fake powershell.exe.
func fakeDoctor() int {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	reply := func(ok bool, result any, problem string) {
		env := map[string]any{"id": 1, "ok": ok}
		if ok {
			env["result"] = result
		} else {
			env["error"] = map[string]string{"type": "FakePowerShell.ScriptMismatch", "message": problem}
		}
		b, _ := json.Marshal(env)
		line := wireMarker + string(b) + "\r\n"
		if os.Getenv(envDoctorMode) == "utf16" {
			units := append([]uint16{0xFEFF}, utf16.Encode([]rune("Windows PowerShell\r\n"+line))...)
			for _, u := range units {
				out.Write([]byte{byte(u), byte(u >> 8)})
			}
			return
		}
		out.WriteString("Windows PowerShell\r\nCopyright (C) 2012 Microsoft Corporation. All rights reserved.\r\n\r\n" + line)
	}
	product := os.Getenv(envDoctorProduct)
	in := bufio.NewReader(os.Stdin)
	problem := ""
	if !slices.Equal(os.Args[1:], wantArgs) {
		problem = fmt.Sprintf("arguments %q, want %q", os.Args[1:], wantArgs)
	}
	var script string
	if problem == "" {
		script, problem = readReviewed(in, doctorGoldenName(product), "the doctor's script")
	}
	if problem == "" {
		problem = checkDoctorScript(product, script)
	}
	request, _ := in.ReadString('\n')
	request = strings.TrimRight(request, "\r\n")
	if problem == "" {
		problem = checkDoctorRequest(request, os.Getenv(envDoctorServer))
	}
	if problem != "" {
		reply(false, nil, problem)
		return 5
	}
	switch os.Getenv(envDoctorMode) {
	case "crash":
		fmt.Fprint(os.Stderr, "lync-agent: bootstrap script failed: At line:1 char:1 Unexpected token.\r\n")
		return 4
	case "silent":
		out.WriteString("Windows PowerShell\r\n")
		return 0
	case "script-error":
		reply(false, nil, "ConvertTo-Json: the object is too deep")
		return 0
	case "hang":
		time.Sleep(time.Minute)
		return 0
	}
	b, err := os.ReadFile(os.Getenv(envDoctorFacts))
	if err != nil {
		reply(false, nil, err.Error())
		return 6
	}
	var facts map[string]any
	if err := json.Unmarshal(b, &facts); err != nil {
		reply(false, nil, "facts file: "+err.Error())
		return 6
	}
	if stdin, ok := facts["stdin"].(map[string]any); ok && stdin["line"] == requestPlaceholder {
		stdin["line"] = request
	}
	reply(true, facts, "")
	return 0
}

// doctorAllowed are the only commands the doctor's script may name: reads, and the session's own
// helpers. A write (Set-, Start-, Enable-, Invoke-, Remove-Cs...) is refused even in a function
// the script never calls.
var doctorAllowed = map[string]bool{
	"Get-CsServerVersion": true, "Get-CsComputer": true, "Get-CsPool": true, "Get-CsService": true,
	"Get-CsPoolBackupRelationship": true, "Get-CsBackupServiceStatus": true, "Get-CsBackupServiceConfiguration": true,
	"Get-CsWindowsService": true, "Get-CsManagementStoreReplicationStatus": true, "Get-CsTopology": true,
	"Get-CsUser": true, "Get-CsUserPoolInfo": true,
	"Test-CsSetupPermission": true, "Get-Module": true, "Import-Module": true, "Get-WmiObject": true, "Get-Process": true,
	"ConvertTo-Json": true, "ConvertFrom-Json": true, "New-Object": true, "Where-Object": true,
	"Remove-TypeData": true, // the session's own type data, not the server
}

var (
	psCommand  = regexp.MustCompile(`\b[A-Z][a-z]+-[A-Z][A-Za-z]+\b`)
	psFunction = regexp.MustCompile(`(?m)^function ([A-Za-z]+-[A-Za-z]+) \{$`)
	// Constructs Windows PowerShell 3.0 does not have.
	notPS3 = map[string]*regexp.Regexp{
		"::new()":           regexp.MustCompile(`::new\(`),
		"?. or ?[":          regexp.MustCompile(`\?\.|\?\[`),
		"??":                regexp.MustCompile(`\?\?`),
		"ternary":           regexp.MustCompile(`\)\s*\?\s*\S+\s*:\s`),
		"class":             regexp.MustCompile(`(?m)^\s*(class|enum)\s+\w+`),
		"-AsHashtable":      regexp.MustCompile(`(?i)-AsHashtable`),
		"&& or ||":          regexp.MustCompile(`&&|\|\|`),
		"ForEach -Parallel": regexp.MustCompile(`(?i)-Parallel`),
	}
)

// checkDoctorScript says what is wrong with the doctor's script, or "": checks independent of
// doctor_script.go and the reviewed copy (a careless -update cannot pass them).
func checkDoctorScript(product, script string) string {
	module, ok := wantModule[product]
	if !ok {
		return "unknown product " + product
	}
	first, body, _ := strings.Cut(script, "\n")
	if !strings.Contains(first, "'"+wireSentinel+"'") || !strings.Contains(first, "[ScriptBlock]::Create(") {
		return "the first line is not a loader that reads up to the sentinel"
	}
	if !strings.HasSuffix(script, "\n"+wireSentinel+"\n") || strings.Count(script, "\n"+wireSentinel+"\n") != 1 {
		return "the script does not end with the sentinel, once"
	}
	if !strings.Contains(body, "[Console]::Out.WriteLine('"+wireMarker+"' + $json)") {
		return "the reply is not written after the marker " + wireMarker
	}
	if strings.Count(body, "Import-Module") != 1 || !strings.Contains(body, "Import-Module -Name $doctorModule -ErrorAction Stop") ||
		strings.Count(body, "\n$doctorModule = '"+module+"'\n") != 1 {
		return "the script must import " + module + ", once"
	}
	if !strings.Contains(body, "[Console]::In.ReadLine()") || !strings.Contains(body, "ConvertFrom-Json -InputObject $line") {
		return "the script does not read its request line from stdin"
	}
	defined := map[string]bool{}
	for _, m := range psFunction.FindAllStringSubmatch(body, -1) {
		defined[m[1]] = true
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, cmd := range psCommand.FindAllString(line, -1) {
			if !doctorAllowed[cmd] && !defined[cmd] {
				return fmt.Sprintf("the doctor's script names %s, which is neither a read nor a function it defines: %q", cmd, strings.TrimSpace(line))
			}
		}
	}
	for name, re := range notPS3 {
		if loc := re.FindStringIndex(body); loc != nil {
			return fmt.Sprintf("%s is not Windows PowerShell 3.0: %q", name, body[max(0, loc[0]-40):min(len(body), loc[1]+40)])
		}
	}
	for i, r := range script {
		if r > 0x7e || (r < 0x20 && r != '\n') {
			return fmt.Sprintf("character %q at %d: keep the script ASCII without tabs or CR", r, i)
		}
	}
	return ""
}

// checkDoctorRequest checks the request line the doctor sends after its script.
func checkDoctorRequest(line, server string) string {
	var req struct {
		ID     *int              `json:"id"`
		Op     string            `json:"op"`
		Params map[string]string `json:"params"`
	}
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		return fmt.Sprintf("request line %q: %v", line, err)
	}
	if req.ID == nil || *req.ID != 1 || req.Op != "Doctor" || req.Params["serverFqdn"] != server {
		return fmt.Sprintf("request line %q, want id 1, op Doctor, serverFqdn %q", line, server)
	}
	return ""
}

// The doctor's input of each product equals its reviewed copy in testdata. It embeds the
// backend's loader and prelude: after changing those, review and update both copies:
//
//	go test ./internal/lync/powershell -run 'TestBootstrapGolden|TestDoctorGolden' -update
func TestDoctorGolden(t *testing.T) {
	checkGolden(t, doctorGoldenName, doctorInput, "the doctor's script (doctor_script.go, or the backend's loader or prelude)",
		"TestBootstrapGolden|TestDoctorGolden")
}

// The reviewed copies pass the checks that depend on neither them nor the code: read-only,
// Windows PowerShell 3.0, every helper it calls defined.
func TestDoctorScriptIsReadOnly(t *testing.T) {
	for product := range wantModule {
		b, err := os.ReadFile(filepath.Join("testdata", doctorGoldenName(product)))
		if err != nil {
			t.Fatal(err)
		}
		if problem := checkDoctorScript(product, string(b)); problem != "" {
			t.Errorf("%s: %s", product, problem)
		}
	}
	// The checks themselves catch what they are for.
	good, err := doctorInput(protocol.ProductLync2013)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"a write":          strings.Replace(good, "$facts['elapsedMs']", "Enable-CsTopology | Out-Null\n$facts['elapsedMs']", 1),
		"a missing helper": strings.Replace(good, "function Get-DoctorFirst {", "function Get-DoctorFirstX {", 1),
		"PowerShell 7":     strings.Replace(good, "$doctorId = 1\n", "$doctorId = $null ?? 1\n", 1),
		"a ::new()":        strings.Replace(good, "$doctorId = 1\n", "$doctorId = [int]::new()\n", 1),
		"a second import":  strings.Replace(good, "$doctorId = 1\n", "$doctorId = 1\nImport-Module SkypeForBusiness\n", 1),
	} {
		if checkDoctorScript(protocol.ProductLync2013, bad) == "" {
			t.Errorf("%s passes the checks", name)
		}
	}
}

// doctorProcs is the OS part for the doctor's tests: a boot time, and a Bootstrapper run or none.
type doctorProcs struct {
	procs    // the rest is not used by the doctor
	boot     time.Time
	bootErr  error
	runPID   int
	findErr  error
	released bool
}

func (p *doctorProcs) bootTime() (time.Time, error) { return p.boot, p.bootErr }

func (p *doctorProcs) find(string) (proc, bool, error) {
	if p.findErr != nil || p.runPID == 0 {
		return nil, false, p.findErr
	}
	return &doctorProc{id: p.runPID, owner: p}, true, nil
}

type doctorProc struct {
	proc
	id    int
	owner *doctorProcs
}

func (p *doctorProc) pid() int { return p.id }
func (p *doctorProc) release() { p.owner.released = true }

var fixtureBoot = time.Date(2026, 7, 1, 6, 0, 0, 0, time.UTC)

// diagnoseFixture runs Diagnose against the fake answering a facts file of testdata.
func diagnoseFixture(t *testing.T, facts, product, server string, ps *doctorProcs) (Diagnosis, error) {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", facts))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envDoctorFacts, abs)
	t.Setenv(envDoctorProduct, product)
	t.Setenv(envDoctorServer, server)
	boot := filepath.Join(t.TempDir(), "Bootstrapper.exe")
	if err := os.WriteFile(boot, []byte("MZ"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ps == nil {
		ps = &doctorProcs{boot: fixtureBoot}
	}
	return Diagnose(t.Context(), DiagnoseOptions{
		Product: product, Executable: testExe, ServerFQDN: server, BootstrapperPath: boot,
		Logger: quietLogs, Timeout: 30 * time.Second, procs: ps,
	})
}

func statuses(checks []doctor.Check) map[string]doctor.Status {
	m := map[string]doctor.Status{}
	for _, c := range checks {
		m[c.Name] = c.Status
	}
	return m
}

func findCheck(t *testing.T, checks []doctor.Check, name string) doctor.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q", name)
	return doctor.Check{}
}

var wantCheckNames = []string{"powershell", "powershell-stdin", "module", "powershell-host", "product", "server", "pool",
	"edition", "version", "relationship", "pairing", "backup-status", "sync-interval", "lyncbackup", "lyncbackup-started",
	"cms", "edge-next-hop", "failover-state", "backend-store", "front-end", "boot-time", "rights-rtc", "rights-setup", "rights-admin",
	"bootstrapper", "bootstrapper-run"}

func TestDiagnosePassingServer(t *testing.T) {
	ps := &doctorProcs{boot: fixtureBoot}
	d, err := diagnoseFixture(t, "doctor-pass.json", protocol.ProductLync2013, "fe01.contoso.com", ps)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range d.Checks {
		names = append(names, c.Name)
		if c.Status != doctor.Pass {
			t.Errorf("%s: %s %s -> %s", c.Name, c.Status, c.Saw, c.Fix)
		}
		if c.Assumption == "" {
			t.Errorf("%s names no assumption", c.Name)
		}
	}
	if !slices.Equal(names, wantCheckNames) {
		t.Errorf("checks %q\nwant    %q", names, wantCheckNames)
	}
	if d.ServerFQDN != "fe01.contoso.com" || d.PoolFQDN != "pool01.contoso.com" {
		t.Errorf("server %q pool %q", d.ServerFQDN, d.PoolFQDN)
	}
	for _, want := range []string{"fe01.contoso.com", "pool01.contoso.com", "pool02.contoso.com", "CONTOSO\\svc-lyncagent", "Redmond",
		"OU=Lync Servers,DC=contoso,DC=com"} {
		if !slices.Contains(d.Identifying, want) {
			t.Errorf("identifying values lack %q: %q", want, d.Identifying)
		}
	}
	for name, want := range map[string]string{
		"relationship":   "BackupPoolFqdn, PoolFqdn}; the backup pool is pool02.contoso.com",
		"pairing":        "BackupRegistrar names pool02.contoso.com",
		"version":        `ServiceVersion "6" reads as Lync Server 2013`,
		"edition":        "Enterprise Edition",
		"cms":            "this pool hosts the active CMS",
		"rights-setup":   "Test-CsSetupPermission: True",
		"edge-next-hop":  "edge01.contoso.com -> pool01.contoso.com",
		"failover-state": "pool01.contoso.com serves its own users",
		"backend-store":  "SQL Server sql01.contoso.com, instance rtc",
		"front-end":      "RTCSRV) is Running",
	} {
		if c := findCheck(t, d.Checks, name); !strings.Contains(c.Saw, want) {
			t.Errorf("%s: %q does not say %q", name, c.Saw, want)
		}
	}
	// A run going on is found, and its handle released.
	ps.runPID = 4711
	d, err = diagnoseFixture(t, "doctor-pass.json", protocol.ProductLync2013, "fe01.contoso.com", ps)
	if c := findCheck(t, d.Checks, "bootstrapper-run"); err != nil || c.Status != doctor.Pass || !strings.Contains(c.Saw, "pid 4711") || !ps.released {
		t.Errorf("a run going on: %v %+v released=%v", err, c, ps.released)
	}
}

func TestDiagnoseFailingServer(t *testing.T) {
	d, err := diagnoseFixture(t, "doctor-fail.json", protocol.ProductLync2013, "fe01.corp.contoso.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The failing fixture's Bootstrapper is found; look for one that is not.
	want := map[string]doctor.Status{
		"powershell": doctor.Pass, "powershell-stdin": doctor.Fail, "module": doctor.Pass, "powershell-host": doctor.Fail,
		"product": doctor.Fail, "server": doctor.Fail, "pool": doctor.Fail, "edition": doctor.Fail, "version": doctor.Fail,
		"relationship": doctor.Fail, "pairing": doctor.Unknown, "backup-status": doctor.Fail, "sync-interval": doctor.Fail,
		"lyncbackup": doctor.Pass, "lyncbackup-started": doctor.Fail, "cms": doctor.Fail, "boot-time": doctor.Fail,
		"edge-next-hop": doctor.Fail, "failover-state": doctor.Fail, "backend-store": doctor.Fail, "front-end": doctor.Fail,
		"rights-rtc": doctor.Fail, "rights-setup": doctor.Fail, "rights-admin": doctor.Fail,
		"bootstrapper": doctor.Pass, "bootstrapper-run": doctor.Pass,
	}
	got := statuses(d.Checks)
	for name, w := range want {
		if got[name] != w {
			c := findCheck(t, d.Checks, name)
			t.Errorf("%s: %s, want %s (%s -> %s)", name, got[name], w, c.Saw, c.Fix)
		}
	}
	for name, say := range map[string][]string{
		"product":            {"Skype for Business Server 2015", "give --product sfb2015"},
		"server":             {"fe01.corp.contoso.com (--server)", "finds no computer", "give --server fe01.contoso.com"},
		"relationship":       {"[PartnerPool, PoolFqdn]", "RelationshipPoolProperties"},
		"lyncbackup-started": {"shares process 1880 with RTCSRV, RTCCLSAGT"},
		"rights-rtc":         {"CONTOSO\\jdoe", "RTCUniversalServerAdmins"},
		"rights-setup":       {"Test-CsSetupPermission: False", `Grant-CsSetupPermission -ComputerOU "OU=Skype Servers,OU=Paris,DC=contoso,DC=com"`},
		"edition":            {"UserStore@sql", "Standard Edition", "Enterprise Edition"},
		"sync-interval":      {"[TimeSpan] failed"},
		"cms":                {"cannot tell the active CMS"},
		"edge-next-hop":      {"edge03.contoso.com has none of the properties Registrar", "NextHopPool", "EdgeNextHopProperties"},
		"failover-state":     {"Get-CsUserPoolInfo -Identity sip:jdoe@contoso.com", "[Identity, RegistrarPool]", "UserPoolServingProperties"},
		"backend-store":      {"names no UserDatabase"},
		"front-end":          {"finds no Front End service"},
	} {
		c := findCheck(t, d.Checks, name)
		for _, s := range say {
			if !strings.Contains(c.Saw+" -> "+c.Fix, s) {
				t.Errorf("%s: %q -> %q does not say %q", name, c.Saw, c.Fix, s)
			}
		}
	}
}

func TestDiagnoseEveryProductSendsItsScript(t *testing.T) {
	for product := range wantModule {
		d, err := diagnoseFixture(t, "doctor-pass.json", product, "fe01.contoso.com", nil)
		if err != nil {
			t.Fatalf("%s: %v", product, err)
		}
		// The fixture is a Lync Server 2013 server: other products fail the product check, which
		// shows the script reached the fake and was accepted.
		wantStatus := doctor.Fail
		if product == protocol.ProductLync2013 {
			wantStatus = doctor.Pass
		}
		if c := findCheck(t, d.Checks, "product"); c.Status != wantStatus {
			t.Errorf("%s: product %s %s", product, c.Status, c.Saw)
		}
	}
}

func TestDiagnoseWhenPowerShellDoesNotAnswer(t *testing.T) {
	cases := []struct {
		name, mode, exe string
		timeout         time.Duration
		say             string
	}{
		{"missing executable", "", filepath.Join(t.TempDir(), "powershell.exe"), 0, "cannot start"},
		{"loader fails", "crash", "", 0, "bootstrap script failed"},
		{"no answer", "silent", "", 0, "exited without an answer; stdout: Windows PowerShell"},
		{"script error", "script-error", "", 0, "the doctor's script failed: ScriptMismatch: ConvertTo-Json"},
		{"hangs", "hang", "", 700 * time.Millisecond, "no answer within 700ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			abs, _ := filepath.Abs(filepath.Join("testdata", "doctor-pass.json"))
			t.Setenv(envDoctorFacts, abs)
			t.Setenv(envDoctorProduct, protocol.ProductLync2013)
			t.Setenv(envDoctorServer, "fe01.contoso.com")
			t.Setenv(envDoctorMode, c.mode)
			exe := c.exe
			if exe == "" {
				exe = testExe
			}
			d, err := Diagnose(t.Context(), DiagnoseOptions{
				Product: protocol.ProductLync2013, Executable: exe, ServerFQDN: "fe01.contoso.com",
				BootstrapperPath: filepath.Join(t.TempDir(), "missing.exe"), Timeout: c.timeout, Logger: quietLogs,
				procs: &doctorProcs{boot: fixtureBoot},
			})
			if !errors.Is(err, ErrDiagnoseIncomplete) || !strings.Contains(err.Error(), c.say) {
				t.Fatalf("error %v, want ErrDiagnoseIncomplete saying %q", err, c.say)
			}
			got := statuses(d.Checks)
			if len(d.Checks) != len(wantCheckNames) || got["powershell"] != doctor.Fail || got["module"] != doctor.Unknown ||
				got["boot-time"] != doctor.Pass || got["bootstrapper"] != doctor.Fail || got["bootstrapper-run"] != doctor.Unknown {
				t.Errorf("checks %v", got)
			}
			if c := findCheck(t, d.Checks, "powershell"); !strings.Contains(c.Saw, c.Saw) || c.Fix == "" {
				t.Errorf("powershell: %+v", c)
			}
		})
	}
}

func TestDiagnoseReadsUTF16(t *testing.T) {
	t.Setenv(envDoctorMode, "utf16")
	d, err := diagnoseFixture(t, "doctor-pass.json", protocol.ProductLync2013, "fe01.contoso.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := findCheck(t, d.Checks, "powershell-stdin"); c.Status != doctor.Pass {
		t.Errorf("%+v", c)
	}
}

func TestDiagnoseRefusesBadOptions(t *testing.T) {
	for _, o := range []DiagnoseOptions{
		{Product: "lync2010"},
		{Product: protocol.ProductLync2013, ServerFQDN: "fe01; whoami"},
	} {
		if _, err := Diagnose(context.Background(), o); err == nil || errors.Is(err, ErrDiagnoseIncomplete) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// --- the judging, fact by fact ---

func passFacts(t *testing.T) *doctorFacts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "doctor-pass.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f doctorFacts
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

func TestJudgePowerShell(t *testing.T) {
	for _, c := range []struct {
		version, edition string
		is64             bool
		want             doctor.Status
		say              string
	}{
		{"3.0", "", true, doctor.Pass, "Windows PowerShell 3.0 (Desktop, 64-bit"},
		{"5.1.17763.1", "Desktop", true, doctor.Pass, "5.1.17763.1"},
		{"2.0", "", true, doctor.Fail, "Windows Management Framework 3.0"},
		{"7.4.2", "Core", true, doctor.Fail, "leave --powershell out"},
		{"5.1", "Desktop", false, doctor.Fail, "64-bit powershell.exe"},
	} {
		f := &doctorFacts{PSVersion: c.version, PSEdition: c.edition, Is64BitProcess: c.is64, CLRVersion: "4.0"}
		got := judgePowerShell(f)
		if got.Status != c.want || !strings.Contains(got.Saw+" "+got.Fix, c.say) {
			t.Errorf("%s %s 64=%v: %+v", c.version, c.edition, c.is64, got)
		}
	}
}

func TestJudgeModuleNamesTheOtherProduct(t *testing.T) {
	f := passFacts(t)
	f.Module.OK = false
	f.Module.Error = &wireError{Type: "System.IO.FileNotFoundException", Message: "The specified module 'Lync' was not loaded because no valid module file was found in any module directory."}
	f.Module.Available = []string{"SkypeForBusiness 7.0.0.0"}
	c := judgeModule(f, protocol.ProductLync2013)
	if c.Status != doctor.Fail || !strings.Contains(c.Saw, "FileNotFoundException: The specified module") ||
		!strings.Contains(c.Fix, "SkypeForBusiness module: give --product") {
		t.Errorf("%+v", c)
	}
	if h := judgeHost(f); h.Status != doctor.Unknown {
		t.Errorf("host without a module: %+v", h)
	}
}

func TestJudgeServerNames(t *testing.T) {
	f := passFacts(t)
	// No --server and a short host name: Get-CsComputer -Local decides, as the backend does.
	_, c := judgeServer(f, judgeInput{})
	if c.Status != doctor.Pass || !strings.Contains(c.Saw, "asks Get-CsComputer -Local too") {
		t.Errorf("no name: %+v", c)
	}
	f.NamedComputer = computerFacts{factProbe: factProbe{OK: true}, Asked: "fe02.contoso.com", Found: true, FQDN: "fe02.contoso.com", Pool: "pool01.contoso.com"}
	if _, c := judgeServer(f, judgeInput{serverName: "fe02.contoso.com", serverSource: "the host name"}); c.Status != doctor.Fail ||
		!strings.Contains(c.Saw, "finds another computer, fe02.contoso.com") {
		t.Errorf("another computer: %+v", c)
	}
	f.LocalComputer = computerFacts{factProbe: factProbe{Error: &wireError{Type: "System.UnauthorizedAccessException", Message: "Access is denied."}}}
	if _, c := judgeServer(f, judgeInput{}); c.Status != doctor.Fail || !strings.Contains(c.Fix, "RTCUniversalServerAdmins") {
		t.Errorf("refused: %+v", c)
	}
}

func TestJudgeRelationship(t *testing.T) {
	rel := func(result string) *doctorFacts {
		f := passFacts(t)
		f.Relationship.Result = json.RawMessage(result)
		return f
	}
	for _, c := range []struct {
		name, result string
		want         doctor.Status
		pool, say    string
	}{
		{"paired", `{"answers":[{"BackupPoolFqdn":"pool02.contoso.com"}],"error":null}`, doctor.Pass, "pool02.contoso.com", "the backup pool is pool02.contoso.com"},
		{"other case", `{"answers":[{"backuppoolfqdn":"Registrar:pool02.contoso.com"}],"error":null}`, doctor.Pass, "pool02.contoso.com", "backuppoolfqdn"},
		{"unpaired, empty", `{"answers":[{"BackupPoolFqdn":""}],"error":null}`, doctor.Pass, "", "the pool is not paired"},
		{"unpaired, nothing", `{"answers":[],"error":null}`, doctor.Unknown, "", "could not be checked"},
		{"a string", `{"answers":[{"(string)":"pool02.contoso.com"}],"error":null}`, doctor.Pass, "pool02.contoso.com", "answered a string"},
		{"unknown names", `{"answers":[{"Partner":"pool02.contoso.com"}],"error":null}`, doctor.Fail, "", "[Partner]"},
		{"disagree", `{"answers":[{"BackupPoolFqdn":"pool02.contoso.com"},{"BackupPoolFqdn":"pool03.contoso.com"}],"error":null}`, doctor.Fail, "", "disagree"},
		{"throws", `{"answers":[],"error":{"type":"System.InvalidOperationException","innerType":"","message":"No backup relationship is defined for pool01.contoso.com.","detail":"","category":"InvalidOperation","errorId":"x"}}`, doctor.Unknown, "", "how the cmdlet answers an unpaired pool"},
		{"refused", `{"answers":[],"error":{"type":"System.UnauthorizedAccessException","innerType":"","message":"Access is denied.","detail":"","category":"PermissionDenied","errorId":"x"}}`, doctor.Fail, "", "RTCUniversalServerAdmins"},
		{"broken", `{"answers":[{"BackupPoolFqdn":null}],"error":null}`, doctor.Fail, "", "cannot decode"},
	} {
		pool, got := judgeRelationship(rel(c.result))
		if got.Status != c.want || pool != c.pool || !strings.Contains(got.Saw+" -> "+got.Fix, c.say) {
			t.Errorf("%s: %q %+v", c.name, pool, got)
		}
	}
}

func TestJudgePairing(t *testing.T) {
	f := passFacts(t)
	if c := judgePairing(f, "pool02.contoso.com"); c.Status != doctor.Pass {
		t.Errorf("%+v", c)
	}
	f.Registrar.BackupRegistrar = "Registrar:pool09.contoso.com"
	if c := judgePairing(f, "pool02.contoso.com"); c.Status != doctor.Fail || !strings.Contains(c.Saw, "pool09.contoso.com") {
		t.Errorf("%+v", c)
	}
	f.Registrar.HasBackupRegistrar = false
	if c := judgePairing(f, "pool02.contoso.com"); c.Status != doctor.Unknown {
		t.Errorf("%+v", c)
	}
	if c := judgePairing(f, ""); c.Status != doctor.Unknown || !strings.Contains(c.Fix, "Topology Builder") {
		t.Errorf("%+v", c)
	}
}

func TestJudgeBackupStatus(t *testing.T) {
	f := passFacts(t)
	f.BackupStatus.Modules = append(f.BackupStatus.Modules, moduleEntry{Identity: "ApplicationServer.RGSDataStore", ExportStatus: "finalstate", ImportStatus: "NormalState"})
	if c := judgeBackupStatus(f, "pool02.contoso.com"); c.Status != doctor.Pass || !strings.Contains(c.Saw, "RGSDataStore FinalState/NormalState") {
		t.Errorf("2019 CU1 module: %+v", c)
	}
	f.BackupStatus.Modules = append(f.BackupStatus.Modules, moduleEntry{Identity: "Future.Module", ExportStatus: "Paused", ImportStatus: "NormalState"})
	if c := judgeBackupStatus(f, "pool02.contoso.com"); c.Status != doctor.Unknown || !strings.Contains(c.Saw, "export state Paused, module Future.Module") {
		t.Errorf("unknown module: %+v", c)
	}
	f.BackupStatus.ModuleProperties = []string{"Identity", "State"}
	if c := judgeBackupStatus(f, "pool02.contoso.com"); c.Status != doctor.Fail || !strings.Contains(c.Saw, "without ExportStatus, ImportStatus") {
		t.Errorf("shape: %+v", c)
	}
	f.BackupStatus.OK, f.BackupStatus.Error = false, &wireError{Type: "System.InvalidOperationException", Message: "Pool has no backup pool."}
	if c := judgeBackupStatus(f, ""); c.Status != doctor.Unknown {
		t.Errorf("unpaired pool throwing: %+v", c)
	}
	if c := judgeBackupStatus(f, "pool02.contoso.com"); c.Status != doctor.Fail {
		t.Errorf("paired pool throwing: %+v", c)
	}
	f.BackupStatus.Error = &wireError{Type: skippedType}
	if c := judgeBackupStatus(f, ""); c.Status != doctor.Unknown || !strings.Contains(c.Saw, "pool is not known") {
		t.Errorf("skipped: %+v", c)
	}
	f.BackupStatus.Error = &wireError{Type: "System.Management.Automation.CommandNotFoundException", Message: "The term 'Get-CsBackupServiceStatus' is not recognized"}
	if c := judgeBackupStatus(f, "pool02.contoso.com"); c.Status != doctor.Unknown || !strings.Contains(c.Fix, "fix module first") {
		t.Errorf("no module: %+v", c)
	}
}

func TestJudgeCMS(t *testing.T) {
	f := passFacts(t)
	// The active master in the other pool contradicts this pool's Active=True.
	f.CMSStatus.ActiveMasterFQDN = "fe01.pool02.contoso.com"
	if c := judgeCMS(f); c.Status != doctor.Fail || !strings.Contains(c.Saw, "outside this pool") {
		t.Errorf("%+v", c)
	}
	// A single entry without Active is trusted, as the backend does.
	f = passFacts(t)
	f.CMS.Services = f.CMS.Services[:1]
	f.CMS.Services[0].HasActive, f.CMS.Services[0].Active = false, ""
	if c := judgeCMS(f); c.Status != doctor.Pass {
		t.Errorf("%+v", c)
	}
	f.CMSStatus.OK, f.CMSStatus.Error = false, &wireError{Type: "System.Exception", Message: "boom"}
	if c := judgeCMS(f); c.Status != doctor.Unknown || !strings.Contains(c.Saw, "not compared") {
		t.Errorf("%+v", c)
	}
	f = passFacts(t)
	f.CMS.Services[0].Active = "yes please"
	if c := judgeCMS(f); c.Status != doctor.Fail || !strings.Contains(c.Saw, "not a boolean") {
		t.Errorf("%+v", c)
	}
}

func TestJudgeRights(t *testing.T) {
	f := passFacts(t)
	// A Domain Admin needs no delegated setup permissions.
	f.Account.Groups = append(f.Account.Groups, groupFact{SID: "S-1-5-21-1004336348-1177238915-682003330-512", Name: "CONTOSO\\Domain Admins"})
	f.SetupPermission.Result = "False"
	if _, setup, _ := judgeRights(f); setup.Status != doctor.Pass || !strings.Contains(setup.Saw, "Domain Admins") {
		t.Errorf("domain admin: %+v", setup)
	}
	// Delegated, but the account is not in RTCUniversalServerAdmins; some groups have no name.
	f = passFacts(t)
	f.Account.Groups = []groupFact{{SID: "S-1-5-32-544", Name: "BUILTIN\\Administrators"}, {SID: "S-1-5-21-9-9-9-1999", Name: ""}}
	f.Account.IsAdministrator = false
	rtc, setup, admin := judgeRights(f)
	if rtc.Status != doctor.Unknown || !strings.Contains(rtc.Saw, "1 of its 2 groups could not be named") {
		t.Errorf("rtc: %+v", rtc)
	}
	if setup.Status != doctor.Fail || setup.Fix != "see rights-rtc" {
		t.Errorf("setup: %+v", setup)
	}
	if admin.Status != doctor.Unknown || !strings.Contains(admin.Fix, "elevated prompt") {
		t.Errorf("admin: %+v", admin)
	}
	// Test-CsSetupPermission failed or answered something else: cannot tell.
	f = passFacts(t)
	f.SetupPermission.OK, f.SetupPermission.Error = false, &wireError{Type: "System.Runtime.InteropServices.COMException", Message: "The specified domain either does not exist or could not be contacted."}
	if _, setup, _ := judgeRights(f); setup.Status != doctor.Unknown {
		t.Errorf("setup failed: %+v", setup)
	}
	f = passFacts(t)
	f.SetupPermission.Result = "Microsoft.Rtc.SyntheticTransactions.TaskOutput"
	if _, setup, _ := judgeRights(f); setup.Status != doctor.Unknown || !strings.Contains(setup.Saw, "TaskOutput") {
		t.Errorf("setup answer: %+v", setup)
	}
	f.Account.OK, f.Account.Error = false, &wireError{Message: "no token"}
	if rtc, setup, admin := judgeRights(f); rtc.Status != doctor.Unknown || setup.Status != doctor.Unknown || admin.Status != doctor.Unknown {
		t.Errorf("no account: %v %v %v", rtc, setup, admin)
	}
}

func TestJudgeSyncIntervalAndBootTime(t *testing.T) {
	f := passFacts(t)
	if c := judgeSyncInterval(f); c.Status != doctor.Pass || !strings.Contains(c.Saw, "= 2m0s") || !strings.Contains(c.Saw, "4m0s") {
		t.Errorf("%+v", c)
	}
	f.BackupConfiguration.Identities = []string{"Global", "Site:Dublin"}
	if c := judgeSyncInterval(f); c.Status != doctor.Unknown || !strings.Contains(c.Saw, "2 collections (Global, Site:Dublin)") {
		t.Errorf("%+v", c)
	}
	f.BackupConfiguration.SyncIntervalSeconds = 4 * 3600
	if c := judgeSyncInterval(f); c.Status != doctor.Unknown {
		t.Errorf("%+v", c)
	}
	if c := judgeBootTime(f, fixtureBoot, nil); c.Status != doctor.Pass || !strings.Contains(c.Saw, "as Windows does") {
		t.Errorf("%+v", c)
	}
	if c := judgeBootTime(f, time.Time{}, errors.New("GetTickCount64: not found")); c.Status != doctor.Fail {
		t.Errorf("%+v", c)
	}
	f.BootTime.OK = false
	if c := judgeBootTime(f, fixtureBoot, nil); c.Status != doctor.Pass || !strings.Contains(c.Saw, "not compared") {
		t.Errorf("%+v", c)
	}
}

func TestCheckBootstrapper(t *testing.T) {
	env := map[string]string{"ProgramFiles": `D:\Program Files`}
	c, path := checkBootstrapper(protocol.ProductSfB2019, "", func(k string) string { return env[k] })
	if c.Status != doctor.Fail || path != "" || !strings.Contains(c.Saw, `D:\Program Files\Skype for Business Server 2019\Deployment\Bootstrapper.exe (the default for sfb2019)`) {
		t.Errorf("default: %+v", c)
	}
	c, _ = checkBootstrapper(protocol.ProductLync2013, "", func(string) string { return "" })
	if c.Status != doctor.Fail || !strings.Contains(c.Saw, "ProgramFiles") {
		t.Errorf("no environment: %+v", c)
	}
	dir := t.TempDir()
	short := filepath.Join(dir, "MICROS~1.EXE")
	os.WriteFile(short, []byte("MZ"), 0o755)
	if c, path := checkBootstrapper(protocol.ProductLync2013, short, nil); c.Status != doctor.Unknown || path != short {
		t.Errorf("short name: %+v", c)
	}
	if c, _ := checkBootstrapper(protocol.ProductLync2013, dir, nil); c.Status != doctor.Fail {
		t.Errorf("a directory: %+v", c)
	}
	if c := checkBootstrapperRun(&doctorProcs{findErr: errors.New("opening Bootstrapper.exe (pid 9): Access is denied.")}, short, true); c.Status != doctor.Fail {
		t.Errorf("cannot tell: %+v", c)
	}
}

// The report masks what the facts hold that identifies the organisation.
func TestDiagnosisMasks(t *testing.T) {
	d, err := diagnoseFixture(t, "doctor-pass.json", protocol.ProductLync2013, "fe01.contoso.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := doctor.NewMasker()
	m.Add(d.Identifying...)
	var out strings.Builder
	doctor.WriteText(&out, m.MaskChecks(d.Checks))
	text := out.String()
	for _, secret := range []string{"contoso", "CONTOSO", "svc-lyncagent", "Redmond", "fe01", "pool02", "Lync Servers", "S-1-5-21-1004336348"} {
		if strings.Contains(text, secret) {
			t.Errorf("the masked report shows %q:\n%s", secret, text)
		}
	}
	for _, kept := range []string{"RTCUniversalServerAdmins", "BackupPoolFqdn", "Lync Server 2013", "UserServices.PresenceFocus"} {
		if !strings.Contains(text, kept) {
			t.Errorf("the masked report lost %q", kept)
		}
	}
	t.Log("\n" + text)
}
