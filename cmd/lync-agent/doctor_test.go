package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/doctor"
)

// envDoctorFacts names a facts file of internal/lync/powershell/testdata: a child of this test
// binary started with it is a fake powershell.exe that answers the doctor's request with those
// facts, as the real script would have found them. (The script itself is held to its reviewed
// copy by the powershell package's tests.)
const envDoctorFacts = "LYNC_AGENT_TEST_DOCTOR_FACTS"

func init() {
	if path := os.Getenv(envDoctorFacts); path != "" {
		os.Exit(fakeDoctorPowerShell(path))
	}
}

func fakeDoctorPowerShell(path string) int {
	var request string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			request = line // the request line follows the script
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var facts map[string]any
	if err := json.Unmarshal(b, &facts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if stdin, ok := facts["stdin"].(map[string]any); ok && stdin["line"] == "$REQUEST" {
		stdin["line"] = request
	}
	// This machine's boot time is not the fixture's: leave Windows' reading out.
	facts["bootTime"] = map[string]any{"ok": false, "error": nil, "lastBootUpTime": ""}
	out, _ := json.Marshal(map[string]any{"id": 1, "ok": true, "result": facts})
	fmt.Printf("Windows PowerShell\r\n<<LYNCAGENT>>%s\r\n", out)
	return 0
}

// doctorSetup makes what serve's flags name: certificates for host, a Bootstrapper.exe, a journal
// directory and a free port; it returns those flags.
func doctorSetup(t *testing.T, facts, host string) []string {
	t.Helper()
	dir := t.TempDir()
	b, err := devcerts.Generate([]string{host}, "")
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := b.WriteDir(tlsDir); err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(dir, "Bootstrapper.exe")
	os.WriteFile(boot, []byte("MZ"), 0o755)
	abs, err := filepath.Abs(filepath.Join("..", "..", "internal", "lync", "powershell", "testdata", facts))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envDoctorFacts, abs)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--powershell", exe, "--bootstrapper", boot, "--journal", filepath.Join(dir, "journal"),
		"--listen", freeAddr(t), "--product", "lync2013",
		"--tls-cert", filepath.Join(tlsDir, "server.crt"), "--tls-key", filepath.Join(tlsDir, "server.key"),
		"--client-ca", filepath.Join(tlsDir, "ca.crt"), "--allowed-clients", "poolpair-operator"}
}

func TestDoctorPassingServer(t *testing.T) {
	flags := append(doctorSetup(t, "doctor-pass.json", "fe01.contoso.com"), "--server", "fe01.contoso.com")
	code, out, errOut := runCmd(t, append([]string{"doctor"}, flags...)...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	summary := lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "PASS ") {
			t.Errorf("not a PASS: %s", l)
		}
	}
	for _, name := range []string{"powershell ", "module ", "relationship ", "rights-setup ", "bootstrapper ", "tls-cert ", "tls-key ",
		"client-ca ", "tls-chain ", "tls-name ", "listen ", "journal "} {
		if !strings.Contains(out, " "+name) {
			t.Errorf("no %s line", name)
		}
	}
	if !strings.Contains(summary, "33 PASS, 0 FAIL, 0 UNKNOWN; values masked") {
		t.Errorf("summary %q", summary)
	}
	if strings.Contains(strings.ToLower(out), "contoso") || strings.Contains(out, "svc-lyncagent") {
		t.Errorf("identifying values shown:\n%s", out)
	}
	t.Log("\n" + out)

	// --show-values shows them; --json writes the same checks.
	_, out, _ = runCmd(t, append([]string{"doctor", "--show-values"}, flags...)...)
	if !strings.Contains(out, "pool pool01.contoso.com (site Redmond)") || !strings.Contains(out, `CONTOSO\svc-lyncagent`) {
		t.Errorf("--show-values:\n%s", out)
	}
	code, out, _ = runCmd(t, append([]string{"doctor", "--json"}, flags...)...)
	var r doctor.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != exitOK {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	if !r.Masked || r.Product != "lync2013" || len(r.Checks) != 33 || r.Summary.Pass != 33 || r.Incomplete != "" ||
		strings.Contains(strings.ToLower(out), "contoso") || r.Checks[0].Assumption == "" {
		t.Errorf("--json report: %+v", r)
	}
}

func TestDoctorFailingServer(t *testing.T) {
	flags := append(doctorSetup(t, "doctor-fail.json", "fe09.contoso.com"), "--server", "fe01.corp.contoso.com")
	code, out, errOut := runCmd(t, append([]string{"doctor"}, flags...)...)
	if code != exitDoctorFail || !strings.Contains(errOut, "check(s) failed") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"FAIL    product ", "give --product sfb2015", "FAIL    rights-rtc ", "UNKNOWN pairing ",
		"PASS    tls-cert ", "FAIL    tls-name ", "the server certificate is for f***.c***.com~"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(strings.ToLower(out), "contoso") || strings.Contains(out, "jdoe") || strings.Contains(out, "Paris") {
		t.Errorf("identifying values shown:\n%s", out)
	}
	t.Log("\n" + out)
}

func TestDoctorWithoutPowerShell(t *testing.T) {
	flags := doctorSetup(t, "doctor-pass.json", "fe01.contoso.com")
	flags = append(flags, "--powershell", filepath.Join(t.TempDir(), "powershell.exe"), "--json")
	code, out, errOut := runCmd(t, append([]string{"doctor"}, flags...)...)
	if code != exitDoctorIncomplete || !strings.Contains(errOut, "PowerShell did not run or answer") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var r doctor.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Incomplete == "" || r.Checks[0].Name != "powershell" || r.Checks[0].Status != doctor.Fail || !strings.Contains(r.Checks[0].Saw, "cannot start") {
		t.Errorf("%+v", r.Checks[0])
	}
	// The checks that need no PowerShell were still made.
	for _, c := range r.Checks {
		if c.Name == "tls-cert" && c.Status != doctor.Pass {
			t.Errorf("%+v", c)
		}
	}
}

func TestDoctorFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		mention string
	}{
		{"bad product", []string{"--product", "lync2010"}, exitUsage, "--product"},
		{"sim", []string{"--backend", "sim"}, exitUsage, "real Front End server"},
		{"bad listen", []string{"--listen", "9443"}, exitUsage, "--listen"},
		{"hostile server", []string{"--server", "fe01; whoami"}, exitUsage, "--server"},
		{"unknown flag", []string{"--fix-everything"}, exitUsage, "-fix-everything"},
		{"argument", []string{"now"}, exitUsage, `unexpected argument "now"`},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, exitError, "--config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, append([]string{"doctor"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.mention) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, errOut, tc.code, tc.mention)
			}
		})
	}
	code, _, errOut := runCmd(t, "doctor", "--help")
	if code != exitOK || !strings.Contains(errOut, "-show-values") || !strings.Contains(errOut, "-tls-cert") || !strings.Contains(errOut, "Exit status") {
		t.Errorf("doctor --help: %d %q", code, errOut)
	}
	if _, out, _ := runCmd(t, "--help"); !strings.Contains(out, "lync-agent doctor") {
		t.Errorf("--help does not name doctor")
	}
}

// The TLS flags are optional: what is not given is not checked.
func TestDoctorWithoutTLSFlags(t *testing.T) {
	flags := doctorSetup(t, "doctor-pass.json", "fe01.contoso.com")
	flags = append(flags[:10:10], "--server", "fe01.contoso.com") // up to --product lync2013
	code, out, _ := runCmd(t, append([]string{"doctor"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "UNKNOWN tls-cert ") || !strings.Contains(out, "--tls-cert not given") {
		t.Errorf("exit %d\n%s", code, out)
	}
}
