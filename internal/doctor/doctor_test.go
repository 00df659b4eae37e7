package doctor

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
)

// The examples of Masker's documentation.
func TestMaskerExamples(t *testing.T) {
	m := NewMasker()
	m.Add("fe01.pool01.contoso.com", `CONTOSO\svc-lyncagent`)
	for in, want := range map[string]string{
		"fe01.pool01.contoso.com": "f***.p***.c***.com~69ec",
		`CONTOSO\svc-lyncagent`:   `C***~11f0\s***~a451`,
		"S-1-5-21-1-2-3-512":      "S-1-5-21-***~ba10-512",
	} {
		if got := m.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMasker(t *testing.T) {
	m := NewMasker()
	m.Add("fe01.pool01.contoso.com", `CONTOSO\svc-lyncagent`, "OU=Lync Servers,DC=contoso,DC=com", "Redmond", "Administrator", "")
	for _, c := range []struct{ in, want string }{
		{"fe01.pool01.contoso.com", "f***.p***.c***.com~"},
		{"server FE01.POOL01.CONTOSO.COM.", "server F***.P***.C***.COM~"},
		{`CONTOSO\svc-lyncagent is not a member`, `C***~`},
		{"OU=Lync Servers,DC=contoso,DC=com", "OU=L***~"},
		{"site Redmond", "site R***~"},
		// Names under the domain are masked though never registered; other domains are not.
		{"ActiveMasterFqdn fe07.contoso.com, www.microsoft.com", "f***.c***.com~"},
		{"group S-1-5-21-1004336348-1177238915-682003330-512", "S-1-5-21-***~"},
	} {
		got := m.Mask(c.in)
		if !strings.Contains(got, c.want) {
			t.Errorf("Mask(%q) = %q, want it to contain %q", c.in, got, c.want)
		}
		for _, secret := range []string{"contoso", "CONTOSO", "pool01", "svc-lyncagent", "Lync Servers", "Redmond", "1004336348"} {
			if strings.Contains(got, secret) {
				t.Errorf("Mask(%q) = %q shows %q", c.in, got, secret)
			}
		}
	}
	// Kept: what identifies no one, and the shape.
	for _, keep := range []string{
		"www.microsoft.com", "a local Administrator", "BUILTIN\\Administrators", "UserServices.PresenceFocus FinalState",
		"Lync Server 2013 (5.0.8308.0)", "S-1-5-32-544", "RID -512", "Microsoft.Rtc.Management.Hadr.BackupService.BackupRelation",
	} {
		if got := m.Mask(keep); got != keep {
			t.Errorf("Mask(%q) = %q, want it unchanged", keep, got)
		}
	}
	// Stable, and two values stay apart.
	a, b := m.Mask("fe01.contoso.com"), m.Mask("fe02.contoso.com")
	if a == b || a != NewMasker().withName("contoso.com").Mask("fe01.contoso.com") {
		t.Errorf("fe01 %q, fe02 %q", a, b)
	}
	// A value inside a longer name is not replaced on its own.
	m2 := NewMasker()
	m2.AddWord("pool")
	if got := m2.Mask("pool01 and pool-x and the pool"); got != "pool01 and pool-x and the p***~"+shortHash("pool") {
		t.Errorf("%q", got)
	}
	var nilMasker *Masker
	if nilMasker.Mask("x.contoso.com") != "x.contoso.com" {
		t.Error("a nil Masker masks")
	}
}

func (m *Masker) withName(n string) *Masker { m.AddName(n); return m }

func TestWriteTextAndJSON(t *testing.T) {
	checks := []Check{
		Passed("module", "Import-Module Lync: loaded").About("the module loads"),
		Failed("rights-rtc", "not a member\r\nof RTCUniversalServerAdmins", "add it"),
		Unknowns("pairing", "not paired", "pair two lab pools"),
	}
	var out bytes.Buffer
	if err := WriteText(&out, checks); err != nil {
		t.Fatal(err)
	}
	want := "PASS    module      Import-Module Lync: loaded\n" +
		"FAIL    rights-rtc  not a member of RTCUniversalServerAdmins -> add it\n" +
		"UNKNOWN pairing     not paired -> pair two lab pools\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := WriteJSON(&out, Report{Tool: "lync-agent doctor", Checks: checks}); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Summary != (Summary{1, 1, 1}) || r.Checks[0].Assumption != "the module loads" {
		t.Errorf("%v %+v", err, r)
	}
}

// certFiles writes a development bundle, and returns the paths of its server and CA files.
func certFiles(t *testing.T, hosts ...string) (b *devcerts.Bundle, cert, key, ca string) {
	t.Helper()
	b, err := devcerts.Generate(hosts, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return b, filepath.Join(dir, devcerts.ServerCertFile), filepath.Join(dir, devcerts.ServerKeyFile), filepath.Join(dir, devcerts.CACertFile)
}

func byName(checks []Check) map[string]Check {
	m := map[string]Check{}
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}

func TestCheckTLS(t *testing.T) {
	_, cert, key, ca := certFiles(t, "fe01.contoso.com", "10.0.0.5")
	res := CheckTLS(TLSFiles{Cert: cert, Key: key, ClientCA: ca, AllowedClients: []string{"poolpair-operator"}}, time.Now())
	for _, c := range res.Checks {
		if c.Status != Pass {
			t.Errorf("%s: %s %s", c.Name, c.Status, c.Saw)
		}
	}
	if res.Cert == nil || !strings.Contains(byName(res.Checks)["client-ca"].Saw, "clients let in: poolpair-operator") ||
		!strings.Contains(strings.Join(res.Names, " "), "fe01.contoso.com") {
		t.Errorf("%+v", res)
	}
	if c := CheckServerName(res.Cert, "fe01.contoso.com", "9443"); c.Status != Pass || !strings.Contains(c.Saw, "https://fe01.contoso.com:9443") {
		t.Errorf("%+v", c)
	}
	if c := CheckServerName(res.Cert, "fe02.contoso.com", "9443"); c.Status != Fail || !strings.Contains(c.Saw, "fe01.contoso.com, 10.0.0.5") {
		t.Errorf("%+v", c)
	}
	if c := CheckServerName(res.Cert, "", "9443"); c.Status != Unknown {
		t.Errorf("%+v", c)
	}

	// Nothing given: nothing checked. A missing file: FAIL.
	res = CheckTLS(TLSFiles{}, time.Now())
	for _, c := range res.Checks {
		if c.Status != Unknown {
			t.Errorf("nothing given, %s: %s %s", c.Name, c.Status, c.Saw)
		}
	}
	res = CheckTLS(TLSFiles{Cert: filepath.Join(t.TempDir(), "none.crt"), Key: key, ClientCA: ca}, time.Now())
	if m := byName(res.Checks); m["tls-cert"].Status != Fail || m["tls-key"].Status != Unknown || m["tls-chain"].Status != Unknown {
		t.Errorf("missing cert: %+v", res.Checks)
	}

	// The key of another certificate; a CA from another bundle; certificates that are not PEM.
	_, cert2, key2, ca2 := certFiles(t, "fe01.contoso.com")
	m := byName(CheckTLS(TLSFiles{Cert: cert, Key: key2, ClientCA: ca2}, time.Now()).Checks)
	if m["tls-key"].Status != Fail || !strings.Contains(m["tls-key"].Saw, "does not match") {
		t.Errorf("wrong key: %+v", m["tls-key"])
	}
	if m["tls-chain"].Status != Unknown || !strings.Contains(m["tls-chain"].Fix, "ca.crt of the operator's agent TLS Secret") {
		t.Errorf("another CA: %+v", m["tls-chain"])
	}
	der := filepath.Join(t.TempDir(), "server.der")
	block, _ := pem.Decode(mustRead(t, cert2))
	os.WriteFile(der, block.Bytes, 0o644)
	if m := byName(CheckTLS(TLSFiles{Cert: der}, time.Now()).Checks); m["tls-cert"].Status != Fail || !strings.Contains(m["tls-cert"].Saw, "no PEM CERTIFICATE") {
		t.Errorf("DER: %+v", m["tls-cert"])
	}

	// Checked a year and a half from now, everything has expired.
	later := time.Now().Add(550 * 24 * time.Hour)
	m = byName(CheckTLS(TLSFiles{Cert: cert, Key: key, ClientCA: ca}, later).Checks)
	if m["tls-cert"].Status != Fail || !strings.Contains(m["tls-cert"].Saw, "expired on") {
		t.Errorf("expired: %+v", m["tls-cert"])
	}
	soon := time.Now().Add(350 * 24 * time.Hour)
	if c := byName(CheckTLS(TLSFiles{Cert: cert}, soon).Checks)["tls-cert"]; c.Status != Pass || !strings.Contains(c.Saw, "renew it soon") {
		t.Errorf("expiring: %+v", c)
	}
}

func TestCheckTLSClientOnlyCertificate(t *testing.T) {
	// A client certificate given as the server's: no serverAuth.
	b, _, _, ca := certFiles(t, "fe01.contoso.com")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	os.WriteFile(cert, b.ClientCertPEM, 0o644)
	os.WriteFile(key, b.ClientKeyPEM, 0o600)
	m := byName(CheckTLS(TLSFiles{Cert: cert, Key: key, ClientCA: ca}, time.Now()).Checks)
	if m["tls-cert"].Status != Fail || !strings.Contains(m["tls-cert"].Fix, "Server Authentication") {
		t.Errorf("%+v", m["tls-cert"])
	}
	// An encrypted key is named as such.
	enc := filepath.Join(dir, "enc.key")
	os.WriteFile(enc, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600)
	_, scert, _, _ := certFiles(t, "fe01.contoso.com")
	if c := byName(CheckTLS(TLSFiles{Cert: scert, Key: enc}, time.Now()).Checks)["tls-key"]; c.Status != Fail || !strings.Contains(c.Fix, "encrypted") {
		t.Errorf("%+v", c)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckListen(t *testing.T) {
	ctx := context.Background()
	_, certFile, keyFile, _ := certFiles(t, "127.0.0.1")
	res := CheckTLS(TLSFiles{Cert: certFile}, time.Now())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if c := CheckListen(ctx, addr, res.Cert); c.Status != Pass || !strings.Contains(c.Saw, "is free") {
		t.Errorf("free: %+v", c)
	}

	// Held by an agent with this certificate (it asks for a client certificate, as the agent does).
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	agentLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer agentLn.Close()
	go serveHandshakes(agentLn)
	if c := CheckListen(ctx, agentLn.Addr().String(), res.Cert); c.Status != Pass || !strings.Contains(c.Saw, "running lync-agent with this --tls-cert") {
		t.Errorf("held by the agent: %+v", c)
	}
	// The same, seen with another --tls-cert: another TLS server.
	otherCert := selfSigned(t, "someone-else")
	if c := CheckListen(ctx, agentLn.Addr().String(), otherCert); c.Status != Fail || !strings.Contains(c.Saw, "TLS server presenting CN=127.0.0.1") {
		t.Errorf("held by another TLS server: %+v", c)
	}
	// Held by a program that does not speak TLS.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			conn, err := plain.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			conn.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(plain.Addr().String())
	if c := CheckListen(ctx, ":"+port, res.Cert); c.Status != Fail || !strings.Contains(c.Saw, "does not answer TLS") || !strings.Contains(c.Fix, "Get-NetTCPConnection -LocalPort "+port) {
		t.Errorf("held by another program: %+v", c)
	}
	if c := CheckListen(ctx, "192.0.2.1:9443", res.Cert); c.Status != Fail || !strings.Contains(c.Saw, "cannot listen") {
		t.Errorf("an address this machine does not have: %+v", c)
	}
}

func serveHandshakes(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.(*tls.Conn).Handshake()
		}()
	}
}

func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestCheckJournal(t *testing.T) {
	dir := t.TempDir()
	if c := CheckJournal(dir); c.Status != Pass || !strings.Contains(c.Saw, "is writable") {
		t.Errorf("%+v", c)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v behind", entries)
	}
	if c := CheckJournal(filepath.Join(dir, "a", "journal")); c.Status != Pass || !strings.Contains(c.Saw, "does not exist yet") {
		t.Errorf("%+v", c)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if c := CheckJournal(file); c.Status != Fail {
		t.Errorf("%+v", c)
	}
	if c := CheckJournal(""); c.Status != Fail {
		t.Errorf("%+v", c)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o555)
		if c := CheckJournal(ro); c.Status != Fail || !strings.Contains(c.Fix, "Modify rights") {
			t.Errorf("read-only: %+v", c)
		}
	}
}
