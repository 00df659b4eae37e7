package devcerts

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateChainsAndNames(t *testing.T) {
	b, err := Generate([]string{"127.0.0.1", "localhost", "fe01.contoso.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b.CACertPEM) {
		t.Fatal("CA PEM not parseable")
	}
	server, err := tls.X509KeyPair(b.ServerCertPEM, b.ServerKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf := server.Leaf
	for _, host := range []string{"127.0.0.1", "localhost", "fe01.contoso.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server cert for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.contoso.com", Roots: roots}); err == nil {
		t.Error("server cert verified for a host it was not issued for")
	}
	if !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}

	client, err := tls.X509KeyPair(b.ClientCertPEM, b.ClientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got := client.Leaf.Subject.CommonName; got != DefaultClientCN {
		t.Errorf("client CN %q, want %q", got, DefaultClientCN)
	}
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert: %v", err)
	}
	// A client certificate must not pass as a server certificate.
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client cert usable for server auth")
	}

	other, _, err := b.IssueClient("intruder")
	if err != nil {
		t.Fatal(err)
	}
	o, err := tls.X509KeyPair(other, b.ClientKeyPEM)
	if err == nil {
		t.Errorf("cert paired with a foreign key: %v", o.Leaf.Subject)
	}
}

func TestGenerateRefusesNoHosts(t *testing.T) {
	if _, err := Generate(nil, "x"); err == nil {
		t.Fatal("want an error without hosts")
	}
}

func TestWriteDirModes(t *testing.T) {
	b, err := Generate([]string{"localhost"}, "op")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "certs")
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600, ClientCertFile: 0o644, ClientKeyFile: 0o600}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)); err != nil {
		t.Error(err)
	}
}

func TestParseHosts(t *testing.T) {
	got, err := ParseHosts(" 127.0.0.1, ,localhost,fe01.pool01.contoso.com,::1")
	if err != nil || len(got) != 4 || got[0] != "127.0.0.1" || got[1] != "localhost" || got[3] != "::1" {
		t.Errorf("ParseHosts = %q, %v", got, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"bad host!", `"bad host!" is neither an IP address nor a DNS name (letters, digits and hyphens in dot-separated labels, such as fe01.pool01.contoso.com)`},
		{"fe01..contoso.com", `"fe01..contoso.com" is neither an IP address nor a DNS name`},
		{"-fe01.contoso.com", `"-fe01.contoso.com" is neither`},
		{"fe01.contoso.com;calc", `"fe01.contoso.com;calc" is neither`},
		{"localhost,*.contoso.com", `"*.contoso.com" is neither`},
		{" , ", "no host name or IP address given"},
	} {
		if _, err := ParseHosts(tc.in); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ParseHosts(%q) = %v, want an error starting %q", tc.in, err, tc.want)
		}
	}
	if _, err := Generate([]string{"bad host!"}, ""); err == nil {
		t.Error("Generate accepted a host that is no name")
	}
	if _, err := Generate([]string{"localhost"}, "a,b"); err == nil || !strings.Contains(err.Error(), "no comma") {
		t.Errorf("Generate with client name a,b: %v", err)
	}
}
