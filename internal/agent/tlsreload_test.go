package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/certinfo"
	"github.com/lync-dr/poolpair-operator/internal/devcerts/certtest"
)

// testPoll is the reloader's poll interval in these tests: short, so that a change shows at once.
const testPoll = 5 * time.Millisecond

// reloadingAgent is an agent (the real handler, which also checks the client certificate) served
// through a TLSReloader from files in a temporary directory.
type reloadingAgent struct {
	t                        *testing.T
	certFile, keyFile, caCrt string
	reloader                 *TLSReloader
	logs                     *syncBuffer
	url                      string
}

// startReloading serves an agent from the given files, polling them every testPoll.
func startReloading(t *testing.T, certPEM, keyPEM, caPEM []byte) *reloadingAgent {
	t.Helper()
	dir := t.TempDir()
	a := &reloadingAgent{t: t, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		caCrt: filepath.Join(dir, "ca.crt"), logs: &syncBuffer{}}
	a.write(a.certFile, certPEM)
	a.write(a.keyFile, keyPEM)
	a.write(a.caCrt, caPEM)
	logger := slog.New(slog.NewJSONHandler(a.logs, nil))
	var err error
	a.reloader, err = NewTLSReloader(TLSFiles{CertFile: a.certFile, KeyFile: a.keyFile, ClientCAFile: a.caCrt,
		AllowedClients: []string{"poolpair-operator"}}, logger)
	if err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Config{Backend: newFake(), Journal: j, Logger: logger, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.url = "https://" + ln.Addr().String() + "/v1/info"
	ctx, cancel := context.WithCancel(context.Background())
	served, polled := make(chan error, 1), make(chan struct{})
	go func() { served <- Serve(ctx, ln, h, a.reloader.Config(), logger) }()
	go func() { defer close(polled); a.reloader.Run(ctx, testPoll) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		<-polled
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = h.Close(cctx)
		_ = j.Close()
	})
	return a
}

// write replaces a file at once, as a careful script does (written beside it, then renamed), so
// that the poller never reads it half-written.
func (a *reloadingAgent) write(path string, data []byte) {
	a.t.Helper()
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		a.t.Fatal(err)
	}
}

// newConnClient is a client that opens a new connection, so a new handshake, for every request.
func newConnClient(t *testing.T, caPEM, certPEM, keyPEM []byte) *http.Client {
	c := clientFor(t, caPEM, certPEM, keyPEM)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	return c
}

// get asks the agent for /v1/info with c and returns the serial of the server certificate it saw
// and whether the connection was one already open.
func (a *reloadingAgent) get(c *http.Client) (serial string, reused bool, err error) {
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", a.url, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", false, err
	}
	// Read to the end, so that the connection can be used again.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", reused, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", reused, &statusError{resp.StatusCode}
	}
	return certinfo.Serial(resp.TLS.PeerCertificates[0]), reused, nil
}

type statusError struct{ status int }

func (e *statusError) Error() string { return http.StatusText(e.status) }

// mustGet is get that fails the test on an error.
func (a *reloadingAgent) mustGet(c *http.Client) (serial string, reused bool) {
	a.t.Helper()
	serial, reused, err := a.get(c)
	if err != nil {
		a.t.Fatalf("GET /v1/info: %v", err)
	}
	return serial, reused
}

// eventually waits, up to 10 s, until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// reloadRecord is a log record of the reloader.
type reloadRecord struct {
	Level, Msg, File, Reason string
	ServerCert, NotAfter     string
	ClientCAs                string
}

// records are the log records whose message starts with prefix.
func (a *reloadingAgent) records(prefix string) []reloadRecord {
	var out []reloadRecord
	for _, line := range strings.Split(strings.TrimSpace(a.logs.String()), "\n") {
		var rec reloadRecord
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

const (
	reloadedMsg    = "TLS files reloaded"
	notReloadedMsg = "TLS files not reloaded"
)

// serverCert issues a server certificate for 127.0.0.1 with serial from ca.
func serverCert(t *testing.T, ca *certtest.CA, serial int64) (certPEM, keyPEM []byte) {
	tmpl := certtest.Leaf(serial, "fe01.pool01.contoso.com", x509.ExtKeyUsageServerAuth)
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	return ca.Issue(t, tmpl)
}

// TestTLSReloadRotatesServerCertificate: the poller picks up a new server certificate and key;
// the next connection sees it, with no restart, while a connection already open keeps the old one.
func TestTLSReloadRotatesServerCertificate(t *testing.T) {
	b := testBundle(t)
	ca := certtest.FromBundle(t, b)
	oldCert, oldKey := serverCert(t, ca, 0x5001)
	newCert, newKey := serverCert(t, ca, 0x5002)
	a := startReloading(t, oldCert, oldKey, b.CACertPEM)
	fresh := newConnClient(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	kept := clientFor(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	defer kept.CloseIdleConnections()

	if serial, _ := a.mustGet(fresh); serial != "5001" {
		t.Fatalf("before the rotation the agent presented serial %s, want 5001", serial)
	}
	if serial, _ := a.mustGet(kept); serial != "5001" {
		t.Fatalf("kept connection: serial %s, want 5001", serial)
	}
	if err := a.reloader.Reload(); err != nil {
		t.Fatalf("Reload of unchanged files: %v", err)
	}
	if recs := a.records(reloadedMsg); len(recs) != 0 {
		t.Fatalf("unchanged files logged %+v", recs)
	}

	// The key first: a script replacing both leaves a moment where they do not match.
	a.write(a.keyFile, newKey)
	a.write(a.certFile, newCert)
	eventually(t, "a new connection sees serial 5002", func() bool {
		serial, _ := a.mustGet(fresh)
		return serial == "5002"
	})
	if serial, reused := a.mustGet(kept); !reused || serial != "5001" {
		t.Errorf("the connection open before the rotation: reused %v, serial %s; want reused, 5001", reused, serial)
	}
	recs := a.records(reloadedMsg)
	if len(recs) != 1 || recs[0].Level != "INFO" {
		t.Fatalf("reload records %+v, want one at INFO", recs)
	}
	wantCert := `"CN=fe01.pool01.contoso.com" (issued by ` + devCA + `, serial 5002)`
	newLeaf := certtest.Parse(t, newCert)
	if r := recs[0]; r.ServerCert != wantCert || r.NotAfter != certinfo.Date(newLeaf.NotAfter) || r.ClientCAs != devCA {
		t.Errorf("reload logged %+v, want serverCert %s, notAfter %s, clientCAs %s", r, wantCert, certinfo.Date(newLeaf.NotAfter), devCA)
	}
}

// TestTLSReloadRotatesClientCA: a client certificate from a new CA is refused until the client
// CA file names that CA, let in once it does, and the old CA's refused once it is dropped.
func TestTLSReloadRotatesClientCA(t *testing.T) {
	b := testBundle(t)
	newCA := certtest.NewCA(t, "Contoso New CA")
	newClientCert, newClientKey := newCA.Issue(t, certtest.Leaf(0x6001, "poolpair-operator", x509.ExtKeyUsageClientAuth))
	a := startReloading(t, b.ServerCertPEM, b.ServerKeyPEM, b.CACertPEM)
	oldClient := newConnClient(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	newClient := newConnClient(t, b.CACertPEM, newClientCert, newClientKey)
	accepted := func(c *http.Client) bool {
		_, _, err := a.get(c)
		return err == nil
	}

	if accepted(newClient) {
		t.Fatal("a client certificate from the new CA was let in before --client-ca names it")
	}
	a.mustGet(oldClient)

	a.write(a.caCrt, append(append([]byte{}, b.CACertPEM...), newCA.PEM...))
	eventually(t, "the new CA's client is let in", func() bool { return accepted(newClient) })
	a.mustGet(oldClient)

	a.write(a.caCrt, newCA.PEM)
	eventually(t, "the old CA's client is refused", func() bool { return !accepted(oldClient) })
	a.mustGet(newClient)

	var cas []string
	for _, r := range a.records(reloadedMsg) {
		cas = append(cas, r.ClientCAs)
	}
	if got, want := strings.Join(cas, " | "), devCA+`, "CN=Contoso New CA" | "CN=Contoso New CA"`; got != want {
		t.Errorf("reloads logged client CAs %s, want %s", got, want)
	}
}

// TestTLSReloadKeepsServingOnBadFiles: files that fail the checks leave the previous certificate
// in use, the refusal is logged once however often the files are read, and good files are then
// picked up.
func TestTLSReloadKeepsServingOnBadFiles(t *testing.T) {
	b := testBundle(t)
	ca := certtest.FromBundle(t, b)
	for _, tc := range []struct {
		name   string
		spoil  func(a *reloadingAgent, otherKey []byte)
		fix    func(a *reloadingAgent, otherCert, otherKey []byte)
		file   string // the flag of the file refused
		reason string
	}{
		{
			name:  "garbage certificate",
			spoil: func(a *reloadingAgent, _ []byte) { a.write(a.certFile, []byte("-----BEGIN CERTIFI")) },
			// The key first: with the certificate still garbage, the refusal stays the same.
			fix: func(a *reloadingAgent, otherCert, otherKey []byte) {
				a.write(a.keyFile, otherKey)
				a.write(a.certFile, otherCert)
			},
			file:   "tls-cert",
			reason: "agent TLS: server certificate and key: tls: failed to find any PEM data in certificate input",
		},
		{
			name:   "key of another certificate",
			spoil:  func(a *reloadingAgent, otherKey []byte) { a.write(a.keyFile, otherKey) },
			fix:    func(a *reloadingAgent, otherCert, _ []byte) { a.write(a.certFile, otherCert) },
			file:   "tls-key",
			reason: "agent TLS: server certificate and key: tls: private key does not match public key",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldCert, oldKey := serverCert(t, ca, 0x7001)
			otherCert, otherKey := serverCert(t, ca, 0x7002)
			a := startReloading(t, oldCert, oldKey, b.CACertPEM)
			client := newConnClient(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
			refusals := func() []reloadRecord { return a.records(notReloadedMsg) }

			tc.spoil(a, otherKey)
			eventually(t, "the refusal is logged", func() bool { return len(refusals()) > 0 })
			if serial, _ := a.mustGet(client); serial != "7001" {
				t.Errorf("after the bad rewrite the agent presented serial %s, want 7001", serial)
			}
			// Read again, by hand and by the poller (the file is fresh: it rereads it), the same
			// refusal is returned but not logged again.
			for range 3 {
				if err := a.reloader.Reload(); err == nil || err.Error() != tc.reason {
					t.Errorf("Reload: %v, want %s", err, tc.reason)
				}
			}
			wantFile := "--" + tc.file + " " + map[string]string{"tls-cert": a.certFile, "tls-key": a.keyFile}[tc.file]
			if recs := refusals(); len(recs) != 1 || recs[0].Level != "ERROR" || recs[0].File != wantFile || recs[0].Reason != tc.reason {
				t.Fatalf("refusals logged %+v, want one ERROR for %s: %s", recs, wantFile, tc.reason)
			}

			tc.fix(a, otherCert, otherKey)
			eventually(t, "a new connection sees serial 7002", func() bool {
				serial, _ := a.mustGet(client)
				return serial == "7002"
			})
			if n := len(refusals()); n != 1 {
				t.Errorf("%d refusals logged, want 1", n)
			}
			if recs := a.records(reloadedMsg); len(recs) != 1 || !strings.Contains(recs[0].ServerCert, "serial 7002") {
				t.Errorf("reloads logged %+v, want one of serial 7002", recs)
			}
		})
	}
}

// TestNewTLSReloaderRefusesLikeServerTLSConfig: the first load refuses what ServerTLSConfig
// refuses, in its words, and names a file it cannot read.
func TestNewTLSReloaderRefusesLikeServerTLSConfig(t *testing.T) {
	b := testBundle(t)
	ca := certtest.FromBundle(t, b)
	clientOnlyCert, clientOnlyKey := ca.Issue(t, certtest.Leaf(0x8001, "fe01.pool01.contoso.com", x509.ExtKeyUsageClientAuth))
	leafPEM, _ := ca.Issue(t, certtest.Leaf(0x8002, "poolpair-operator", x509.ExtKeyUsageClientAuth))
	for _, tc := range []struct {
		name                string
		cert, key, clientCA []byte
	}{
		{"server certificate for client authentication only", clientOnlyCert, clientOnlyKey, b.CACertPEM},
		{"key of another certificate", b.ServerCertPEM, b.ClientKeyPEM, b.CACertPEM},
		{"client certificate given as the client CA", b.ServerCertPEM, b.ServerKeyPEM, leafPEM},
		{"no certificate in the client CA", b.ServerCertPEM, b.ServerKeyPEM, []byte("not a cert")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, want := ServerTLSConfig(tc.cert, tc.key, tc.clientCA, nil)
			if want == nil {
				t.Fatal("ServerTLSConfig accepted the files")
			}
			dir := t.TempDir()
			files := TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
			for path, data := range map[string][]byte{files.CertFile: tc.cert, files.KeyFile: tc.key, files.ClientCAFile: tc.clientCA} {
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := NewTLSReloader(files, nil); err == nil || err.Error() != want.Error() {
				t.Errorf("NewTLSReloader: %v\nwant %v", err, want)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "missing.crt")
	_, err := NewTLSReloader(TLSFiles{CertFile: missing, KeyFile: missing, ClientCAFile: missing}, nil)
	if want := "--tls-cert: open " + missing + ": "; err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want %s...", err, want)
	}
}

// TestTLSWatchRereadsWhatItCannotTrust: the poller reads the files again with unchanged stamps
// when a file was modified too shortly before it looked (a same-size rewrite within the timestamp
// granularity changes no stamp) or could not be read, and only then.
func TestTLSWatchRereadsWhatItCannotTrust(t *testing.T) {
	now := time.Now()
	looked := func(age time.Duration) stamps {
		settled := fileStamp{modTime: now.Add(-time.Hour), size: 600, ok: true}
		return stamps{{modTime: now.Add(-age), size: 700, ok: true}, settled, settled}
	}
	_, readErr := os.ReadFile(filepath.Join(t.TempDir(), "missing.crt"))
	for _, tc := range []struct {
		name string
		age  time.Duration // of the first file's modification when looked at
		err  error         // what reading the files gave
		want bool
	}{
		{"settled, read", time.Minute, nil, false},
		{"settled, refused", time.Minute, &fileError{flag: "tls-key", err: errors.New("tls: private key does not match public key")}, false},
		{"modified just before", settleWindow / 2, nil, true},
		{"could not be read", time.Minute, &fileError{flag: "tls-cert", err: fmt.Errorf("--tls-cert: %w", readErr)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w watch
			w.update(looked(tc.age), now, tc.err)
			if got := w.changed(looked(tc.age)); got != tc.want {
				t.Errorf("same stamps: changed %v, want %v", got, tc.want)
			}
			if !w.changed(looked(tc.age + time.Second)) {
				t.Error("a new modification time is not a change")
			}
		})
	}
}
