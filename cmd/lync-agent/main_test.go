package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// deployment has no listen addresses, so every endpoint gets a free loopback port.
const deployment = `
product: lync2013
sites: [Redmond, Dublin]
cms: {pool: pool01.contoso.com}
durations: {pairPools: 0s, bootstrap: 0s, startBackupService: 0s, syncBackup: 0s, syncInterval: 20s}
pools:
  - fqdn: pool01.contoso.com
    site: Redmond
    edition: Enterprise
    version: Lync Server 2013
    servers:
      - fqdn: fe01.pool01.contoso.com
  - fqdn: pool02.contoso.com
    site: Dublin
    edition: Enterprise
    version: Lync Server 2013
    servers:
      - fqdn: fe01.pool02.contoso.com
`

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpNamesWhatAnAdministratorNeeds(t *testing.T) {
	code, out, _ := runCmd(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"serve", "service install", "certs", "sim", "simctl", "9443", "RTCUniversalServerAdmins", "local Administrator", "New-NetFirewallRule", "Event Log"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
	if code, out, _ := runCmd(t, "--version"); code != 0 || !strings.HasPrefix(out, "lync-agent ") {
		t.Errorf("--version: %d %q", code, out)
	}
	if code, _, errOut := runCmd(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "serve", "--help"); code != 0 || !strings.Contains(errOut, "-allowed-clients") {
		t.Errorf("serve --help: %d %q", code, errOut)
	}
}

func TestServiceIsWindowsOnlyElsewhere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has the service command")
	}
	code, _, errOut := runCmd(t, "service", "install")
	if code != exitError || !strings.Contains(errOut, "Windows-only") {
		t.Errorf("service on %s: %d %q", runtime.GOOS, code, errOut)
	}
}

// TestServeValidatesFlags: each mistake gets the exact message a person reads, and the usage hint.
func TestServeValidatesFlags(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badKey, []byte("listen: :9443\nrun-script: calc.exe\n"), 0o644)
	tls := []string{"--tls-cert", "a.crt", "--tls-key", "a.key", "--client-ca", "ca.crt", "--allowed-clients", "poolpair-operator"}
	const hint = "\nRun 'lync-agent serve --help' for its flags, 'lync-agent --help' for an overview.\n"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no certificate", nil, "--tls-cert is required: the agent serves only HTTPS with client certificates"},
		{"no allowed clients", tls[:6], "--allowed-clients is required: give the name (Subject CN or DNS name) of the operator's client certificate, " +
			"for example --allowed-clients poolpair-operator. Without it any certificate --client-ca signed would be let in to drive Lync, " +
			"and an enterprise CA signs every machine's certificate"},
		{"blank allowed clients", append(tls[:6:6], "--allowed-clients", " , "), "--allowed-clients is required: give the name"},
		{"bad listen", append([]string{"--listen", "9443"}, tls...), `--listen "9443": address 9443: missing port in address (for example :9443 or 10.0.0.5:9443)`},
		{"bad product", append([]string{"--product", "lync2010"}, tls...), `--product "lync2010": must be lync2013, sfb2015 or sfb2019`},
		{"bad backend", append([]string{"--backend", "ssh"}, tls...), `--backend "ssh": must be powershell or sim`},
		{"sim without deployment", append([]string{"--backend", "sim"}, tls...), "--backend sim needs --deployment FILE and --server FQDN (which server of the deployment this agent is)"},
		{"deployment with powershell", append([]string{"--deployment", "x.yaml"}, tls...), "--deployment is for --backend sim"},
		{"hostile server name", append([]string{"--server", "fe01; whoami"}, tls...), `--server: "fe01; whoami" is not a fully qualified RFC 1123 DNS name`},
		{"bad log level", append([]string{"--log-level", "loud"}, tls...), `--log-level: "loud" is not debug, info, warn or error`},
		{"unknown flag", []string{"--execute", "calc"}, "unknown flag --execute"},
		{"unknown config key", []string{"--config", badKey}, "--config " + badKey + `: unknown key "run-script" (keys are the serve flag names)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, append([]string{"serve"}, tc.args...)...)
			if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "lync-agent serve: "+tc.want) || !strings.HasSuffix(errOut, hint) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d and stderr starting:\nlync-agent serve: %s", code, out, errOut, exitUsage, tc.want)
			}
		})
	}
	// Files that do not exist are reported by name (exit 1, after validation passed), and a start
	// that fails leaves no journal behind.
	journal := filepath.Join(dir, "j")
	code, _, errOut := runCmd(t, append([]string{"serve", "--journal", journal}, tls...)...)
	if want := "lync-agent serve: --tls-cert: open a.crt: no such file or directory\n"; code != exitError || errOut != want {
		t.Errorf("missing cert file: exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed start left %s behind: %v", journal, err)
	}
}

func TestServeConfigFileAndFlagPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(`
listen: 127.0.0.1:9555
tls-cert: /etc/lync-agent/server.crt
tls-key: /etc/lync-agent/server.key
client-ca: /etc/lync-agent/ca.crt
allowed-clients: [poolpair-operator, backup-operator]
product: sfb2019
log-level: debug
`), 0o644)
	c, _, err := parseServeConfig([]string{"--config", path, "--product", "sfb2015"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9555" || c.TLSCert != "/etc/lync-agent/server.crt" || c.AllowedClients != "poolpair-operator,backup-operator" || c.LogLevel != "debug" {
		t.Errorf("config file not applied: %+v", c)
	}
	if c.Product != "sfb2015" {
		t.Errorf("flag did not win over the file: product %q", c.Product)
	}
}

// TestCertsThenServeSim: certificates from `lync-agent certs` work for `serve --backend sim`,
// and the agent answers the operator's client.
func TestCertsThenServeSim(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	code, out, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "127.0.0.1,localhost")
	if code != 0 {
		t.Fatalf("certs: %d %s", code, errOut)
	}
	t.Log(strings.TrimSpace(out))
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"} {
		if _, err := os.Stat(filepath.Join(tlsDir, f)); err != nil {
			t.Error(err)
		}
	}
	if code, _, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "localhost"); code != exitError || !strings.Contains(errOut, "--force") {
		t.Errorf("certs over an existing CA: %d %q", code, errOut)
	}
	client := clientFromDir(t, tlsDir)

	depFile := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(depFile, []byte(deployment), 0o644)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--backend", "sim", "--deployment", depFile, "--server", "fe01.pool02.contoso.com",
			"--listen", addr, "--journal", filepath.Join(dir, "journal"), "--allowed-clients", "poolpair-operator",
			"--tls-cert", filepath.Join(tlsDir, "server.crt"), "--tls-key", filepath.Join(tlsDir, "server.key"),
			"--client-ca", filepath.Join(tlsDir, "ca.crt")}, io.Discard, &stderr)
	}()
	info, err := waitInfo(t, client, "https://"+addr, done)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if info.ServerFQDN != "fe01.pool02.contoso.com" || info.Backend != "sim" || info.AgentVersion != version {
		t.Errorf("info %+v", info)
	}
	// The start checks of the sim backend: the TLS files, a read of its own pool, the name.
	var checks []string
	for _, c := range info.StartChecks {
		checks = append(checks, c.Name+"="+c.Status)
	}
	if got, want := strings.Join(checks, " "), "tls-cert=PASS tls-key=PASS client-ca=PASS tls-chain=PASS pool-read=PASS tls-name=FAIL"; got != want {
		t.Errorf("start checks in /v1/info: %s, want %s", got, want)
	}
	if log := stderr.String(); !strings.Contains(log, `msg="start check" check=pool-read status=PASS saw="this is fe01.pool02.contoso.com, a Front End of pool02.contoso.com (Enterprise, 1 Front End server(s))"`) {
		t.Errorf("serve did not log the pool read:\n%s", log)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve exited %d: %s", code, stderr.String())
	}
}

// TestSimServesEveryEndpointAndSimctlInjectsFaults runs `lync-agent sim` in-process, reads its
// ready lines, and drives it with `lync-agent simctl`.
func TestSimServesEveryEndpointAndSimctlInjectsFaults(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if code, _, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "127.0.0.1"); code != 0 {
		t.Fatal(errOut)
	}
	// Both pools with an alias (their DNS name): four endpoints, two of them agents' aliases.
	dep := strings.Replace(deployment, "  - fqdn: pool01.contoso.com\n", "  - fqdn: pool01.contoso.com\n    listen: 127.0.0.1:0\n", 1)
	dep = strings.Replace(dep, "  - fqdn: pool02.contoso.com\n", "  - fqdn: pool02.contoso.com\n    listen: 127.0.0.1:0\n", 1)
	depFile := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(depFile, []byte(dep), 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"sim", "--deployment", depFile, "--tls-dir", tlsDir, "--journal", filepath.Join(dir, "journal"),
			"--admin-listen", "127.0.0.1:0", "--log-level", "warn"}, pw, &stderr)
		pw.Close()
		done <- code
	}()
	endpoints := map[string]string{}
	var admin string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if line == "ready" {
			break
		}
		f := strings.Fields(line)
		switch f[0] {
		case "pool", "server":
			endpoints[f[1]] = f[len(f)-1]
		case "admin":
			admin = f[1]
		}
	}
	go io.Copy(io.Discard, pr)
	if len(endpoints) != 4 || admin == "" {
		t.Fatalf("endpoints %v admin %q; stderr %s", endpoints, admin, stderr.String())
	}
	client := clientFromDir(t, tlsDir)
	for fqdn, url := range endpoints {
		info, err := client.Info(t.Context(), url)
		if err != nil || (info.ServerFQDN != fqdn && info.PoolFQDN != fqdn) {
			t.Errorf("%s at %s: %+v %v", fqdn, url, info, err)
		}
	}

	simctl := func(args ...string) (int, string, string) {
		return runCmd(t, append([]string{"simctl", "--admin", admin, "--tls-dir", tlsDir}, args...)...)
	}
	fe := "fe01.pool01.contoso.com"
	if code, out, errOut := simctl("unreachable", fe, "true"); code != 0 {
		t.Fatalf("simctl unreachable: %d %s %s", code, out, errOut)
	}
	if _, err := client.Info(t.Context(), endpoints[fe]); !errors.Is(err, agentclient.ErrUnavailable) {
		t.Errorf("unreachable server answered: %v", err)
	}
	if code, _, errOut := simctl("unreachable", fe, "false"); code != 0 {
		t.Fatal(errOut)
	}
	if _, err := client.Info(t.Context(), endpoints[fe]); err != nil {
		t.Errorf("reachable again: %v", err)
	}
	if code, _, errOut := simctl("export-error", "pool02.contoso.com", "on"); code != 0 {
		t.Errorf("export-error: %s", errOut)
	}
	// The sim's own refusals come through with their reason (LYNCBACKUP is not installed before
	// a Bootstrapper run).
	if code, _, errOut := simctl("stop-service", fe); code != exitError || !strings.Contains(errOut, "LYNCBACKUP") {
		t.Errorf("stop-service before bootstrap: %d %q", code, errOut)
	}
	if code, out, errOut := simctl("state"); code != 0 || !strings.Contains(out, "pool02.contoso.com") {
		t.Errorf("state: %d %s", code, errOut)
	}
	if code, _, errOut := simctl("unreachable", "nosuch.contoso.com", "true"); code != exitError || !strings.Contains(errOut, "NotFound") {
		t.Errorf("unknown endpoint: %d %q", code, errOut)
	}
	if code, _, errOut := simctl("unreachable", fe, "maybe"); code != exitUsage {
		t.Errorf("bad value: %d %q", code, errOut)
	}
	// Kill and restart an agent: a kept-alive connection is cut, the agent answers again.
	if _, err := client.Info(t.Context(), endpoints[fe]); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := simctl("restart-agent", fe); code != 0 || !strings.Contains(out, "ok: restart-agent "+fe) {
		t.Errorf("restart-agent: %d %s %s", code, out, errOut)
	}
	if info, err := client.Info(t.Context(), endpoints[fe]); err != nil && !errors.Is(err, agentclient.ErrUnavailable) || err == nil && info.ServerFQDN != fe {
		t.Errorf("after restart-agent: %+v %v", info, err)
	}
	if info, err := client.Info(t.Context(), endpoints[fe]); err != nil || info.ServerFQDN != fe {
		t.Errorf("restarted agent: %+v %v", info, err)
	}
	if code, _, errOut := simctl("restart-agent", "pool01.contoso.com"); code != exitError || !strings.Contains(errOut, "alias") {
		t.Errorf("restart-agent of a pool: %d %q", code, errOut)
	}
	if code, _, errOut := simctl("reads", "250ms", "true"); code != 0 {
		t.Errorf("reads: %d %q", code, errOut)
	}
	if code, out, _ := simctl("state"); code != 0 || !strings.Contains(out, `"latency": "250ms"`) || !strings.Contains(out, `"timeline"`) {
		t.Errorf("state after reads: %s", out)
	}
	if code, _, errOut := simctl("reads", "soon", "true"); code != exitUsage {
		t.Errorf("reads with a bad latency: %d %q", code, errOut)
	}
	// The sync interval, reported in every backup status.
	if code, out, errOut := simctl("set-sync-interval", "30s"); code != 0 || !strings.Contains(out, "ok: set-sync-interval 30s") {
		t.Errorf("set-sync-interval: %d %s %s", code, out, errOut)
	}
	if code, out, _ := simctl("state"); code != 0 || !strings.Contains(out, `"syncInterval": "30s"`) || !strings.Contains(out, `"syncIntervalSeconds": 30`) {
		t.Errorf("state after set-sync-interval: %s", out)
	}
	if code, _, errOut := simctl("set-sync-interval", "100ms"); code != exitError || !strings.Contains(errOut, "Invalid") {
		t.Errorf("set-sync-interval out of range: %d %q", code, errOut)
	}
	if code, _, errOut := simctl("set-sync-interval", "soon"); code != exitUsage {
		t.Errorf("set-sync-interval with a bad duration: %d %q", code, errOut)
	}
	// Reboot a server: its agent goes down with it and answers again.
	if code, out, errOut := simctl("reboot", fe); code != 0 || !strings.Contains(out, "ok: reboot "+fe) {
		t.Errorf("reboot: %d %s %s", code, out, errOut)
	}
	if info, err := client.Info(t.Context(), endpoints[fe]); err != nil && !errors.Is(err, agentclient.ErrUnavailable) || err == nil && info.ServerFQDN != fe {
		t.Errorf("after reboot: %+v %v", info, err)
	}
	if srv, err := client.Server(t.Context(), endpoints[fe]); err != nil || srv.BootTime == nil || time.Since(*srv.BootTime) > time.Minute {
		t.Errorf("rebooted server: %+v %v", srv, err)
	}
	if code, _, errOut := simctl("reboot", "pool01.contoso.com"); code != exitError || !strings.Contains(errOut, "alias") {
		t.Errorf("reboot of a pool: %d %q", code, errOut)
	}
	if code, _, errOut := simctl("reboot"); code != exitUsage {
		t.Errorf("reboot without a server: %d %q", code, errOut)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("sim exited %d: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sim did not stop")
	}
}

func TestSimPortInUseFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if code, _, errOut := runCmd(t, "certs", "--out", tlsDir, "--hosts", "127.0.0.1"); code != 0 {
		t.Fatal(errOut)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeAddr(t)
	dep := strings.Replace(deployment, "  - fqdn: pool02.contoso.com\n", "  - fqdn: pool02.contoso.com\n    listen: "+busy.Addr().String()+"\n", 1)
	dep = strings.Replace(dep, "  - fqdn: pool01.contoso.com\n", "  - fqdn: pool01.contoso.com\n    listen: "+free+"\n", 1)
	depFile := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(depFile, []byte(dep), 0o644)
	code, _, errOut := runCmd(t, "sim", "--deployment", depFile, "--tls-dir", tlsDir, "--journal", filepath.Join(dir, "j"), "--admin-listen", "")
	if code != exitError || !strings.Contains(errOut, busy.Addr().String()) || !strings.Contains(errOut, "pool02.contoso.com") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if c, err := net.DialTimeout("tcp", free, time.Second); err == nil {
		c.Close()
		t.Errorf("pool01's listener %s left open", free)
	}
}

func clientFromDir(t *testing.T, dir string) *agentclient.Client {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The files must also be what a stock TLS stack accepts.
	if _, err := tls.X509KeyPair(read("client.crt"), read("client.key")); err != nil {
		t.Fatal(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(read("ca.crt")) {
		t.Fatal("ca.crt unusable")
	}
	c, err := agentclient.New(agentclient.Config{CertPEM: read("client.crt"), KeyPEM: read("client.key"), CAPEM: read("ca.crt"), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// freeAddr returns a loopback address nothing listens on (a small race with other processes is
// accepted in tests).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitInfo polls until the agent at url answers, or the command ends.
func waitInfo(t *testing.T, c *agentclient.Client, url string, done <-chan int) (protocol.Info, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			return protocol.Info{}, fmt.Errorf("the command exited %d", code)
		default:
		}
		info, err := c.Info(t.Context(), url)
		if err == nil {
			return info, nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return protocol.Info{}, fmt.Errorf("agent never answered: %v", last)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
