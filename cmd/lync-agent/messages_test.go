package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agentclient"
)

// TestMistakesGetTheExactMessage: the usual mistakes with each command, and what a person reads.
func TestMistakesGetTheExactMessage(t *testing.T) {
	dir := t.TempDir()
	dep := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(dep, []byte(strings.Replace(deployment, "fqdn: fe01.pool02.contoso.com", "fqdn: FE01.pool02.contoso.com", 1)), 0o644)
	hint := func(cmd string) string {
		return "\nRun 'lync-agent " + cmd + " --help' for its flags, 'lync-agent --help' for an overview.\n"
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown command", []string{"frobnicate"}, exitUsage,
			"lync-agent: unknown command \"frobnicate\" (commands: serve, doctor, service, certs, sim, simctl)\nRun 'lync-agent --help' for an overview.\n"},
		{"certs with a host that is no name", []string{"certs", "--out", filepath.Join(dir, "c1"), "--hosts", "bad host!"}, exitUsage,
			`lync-agent certs: --hosts: "bad host!" is neither an IP address nor a DNS name (letters, digits and hyphens in dot-separated labels, such as fe01.pool01.contoso.com)` + hint("certs")},
		{"certs with a shell character", []string{"certs", "--out", filepath.Join(dir, "c2"), "--hosts", "localhost,fe01.contoso.com;calc"}, exitUsage,
			`lync-agent certs: --hosts: "fe01.contoso.com;calc" is neither an IP address nor a DNS name (letters, digits and hyphens in dot-separated labels, such as fe01.pool01.contoso.com)` + hint("certs")},
		{"certs flag with one dash and no value", []string{"certs", "-out"}, exitUsage,
			"lync-agent certs: --out needs a value" + hint("certs")},
		{"sim with --state and no --journal", []string{"sim", "--deployment", dep, "--tls-dir", dir, "--state", filepath.Join(dir, "state.json")}, exitUsage,
			"lync-agent sim: --state keeps the deployment across restarts, so its agents' journals must persist too: give --journal DIR" + hint("sim")},
		{"sim with no allowed client", []string{"sim", "--deployment", dep, "--tls-dir", dir, "--allowed-clients", ""}, exitUsage,
			"lync-agent sim: --allowed-clients must name at least one client certificate" + hint("sim")},
		{"doctor with an invalid flag value", []string{"doctor", "--show-values=maybe"}, exitUsage,
			`lync-agent doctor: invalid boolean value "maybe" for flag --show-values: parse error` + hint("doctor")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.args...)
			if code != tc.code || out != "" || errOut != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", code, out, errOut, tc.code, tc.stderr)
			}
		})
	}

	// The sim refuses an upper-case name, which a PoolPair could not name.
	tlsDir := filepath.Join(dir, "tls")
	if code, _, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "127.0.0.1"); code != 0 {
		t.Fatal(errOut)
	}
	code, _, errOut := runCmd(t, "sim", "--deployment", dep, "--tls-dir", tlsDir, "--admin-listen", "")
	if want := `pools[1].servers[0].fqdn: "FE01.pool02.contoso.com" must be in lower case, as a PoolPair names it (fe01.pool02.contoso.com)`; code != exitError || !strings.Contains(errOut, want) {
		t.Errorf("sim with an upper-case server: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
}

// TestHelpSpellsFlagsWithTwoDashes: the flag lists spell flags as the usage lines and the README do.
func TestHelpSpellsFlagsWithTwoDashes(t *testing.T) {
	for _, cmd := range []string{"serve", "certs", "sim", "doctor", "simctl"} {
		code, _, errOut := runCmd(t, cmd, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, line := range strings.Split(errOut, "\n") {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") {
				t.Errorf("%s --help lists a flag with one dash: %q", cmd, line)
			}
		}
	}
	_, _, serveHelp := runCmd(t, "serve", "--help")
	if !strings.Contains(serveHelp, "  --allowed-clients names\n") || !strings.Contains(serveHelp, "(default :9443)") {
		t.Errorf("serve --help:\n%s", serveHelp)
	}
}

// TestSimJournalDefaultsToATemporaryDirectory: `sim` without --journal writes nothing where it runs.
func TestSimJournalDefaultsToATemporaryDirectory(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if code, _, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "127.0.0.1"); code != 0 {
		t.Fatal(errOut)
	}
	dep := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(dep, []byte(deployment), 0o644)
	t.Chdir(dir)
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"sim", "--deployment", dep, "--tls-dir", tlsDir, "--admin-listen", "", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	out, _ := io.ReadAll(io.LimitReader(pr, 1))
	if len(out) == 0 {
		t.Fatalf("sim printed nothing; exit %d", <-done)
	}
	go io.Copy(io.Discard, pr)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("sim exited %d", code)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "tls" && e.Name() != "deployment.yaml" {
			t.Errorf("sim left %s in its working directory", e.Name())
		}
	}
}

// TestServeReportsFailedStartChecks: an agent whose PowerShell is missing says so when it starts
// (an error line per failed check) and in /v1/info, instead of only failing the first request.
func TestServeReportsFailedStartChecks(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if code, _, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "127.0.0.1"); code != 0 {
		t.Fatal(errOut)
	}
	client := clientFromDir(t, tlsDir)
	addr := freeAddr(t)
	missing := filepath.Join(dir, "no-such-powershell")
	ctx, cancel := context.WithCancel(t.Context())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--powershell", missing, "--server", "fe01.pool01.contoso.com",
			"--bootstrapper", filepath.Join(dir, "Bootstrapper.exe"),
			"--listen", addr, "--journal", filepath.Join(dir, "journal"), "--allowed-clients", "poolpair-operator",
			"--tls-cert", filepath.Join(tlsDir, "server.crt"), "--tls-key", filepath.Join(tlsDir, "server.key"),
			"--client-ca", filepath.Join(tlsDir, "ca.crt")}, io.Discard, &stderr)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "lync-agent serving") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	log := stderr.String()
	for _, want := range []string{
		`level=ERROR msg="start check" check=powershell status=FAIL saw="cannot start ` + missing,
		`level=ERROR msg="start check" check=bootstrapper status=FAIL`,
		`level=ERROR msg="start check" check=pool-read status=FAIL saw="cannot read which server this is:`,
		`level=ERROR msg="lync-agent serving, but start checks failed: reads and steps that need them fail until they are fixed and the agent is restarted"`,
		`failed="powershell, bootstrapper, pool-read"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("serve's log lacks %q:\n%s", want, log)
		}
	}
	_, err := client.Info(t.Context(), "https://"+addr)
	if !errors.Is(err, agentclient.ErrUnavailable) || !strings.Contains(err.Error(), "start checks that failed: powershell: cannot start "+missing) {
		t.Errorf("/v1/info: %v; want unavailable, naming the failed start check", err)
	}
}
