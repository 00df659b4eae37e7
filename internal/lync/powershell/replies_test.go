package powershell

// The fake PowerShell failing impolitely: replies of the wrong shape, a null result, a failure
// without an error, other encodings, a reply cut short, errors that clear on retry, and writes
// (PairPools, Unpair) that fail, half done or after the fact. Each ends in an error that names
// what was wrong, or in a retry that gets it right; never in a panic or a wrong answer.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf16"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// readOp runs one read of the backend; its answer is returned to show what a wrong one was.
type readOp struct {
	name string // the wire op it sends
	call func(*Backend) (any, error)
}

var (
	readPool = readOp{opGetPool, func(b *Backend) (any, error) { return b.Pool(bg, "pool03.contoso.com") }}
	readID   = readOp{opIdentity, func(b *Backend) (any, error) { return b.Identity(bg) }}
	readSvc  = readOp{opGetBackupService, func(b *Backend) (any, error) { return b.BackupService(bg) }}
	readStat = readOp{opGetBackupStatus, func(b *Backend) (any, error) { return b.BackupStatus(bg, "pool03.contoso.com") }}
)

func TestMalformedRepliesEndInAClearError(t *testing.T) {
	cases := []struct {
		read  readOp
		fault string
		want  []string // in the error, besides the op's name
		kind  error    // the sentinel the error must not be (a wrong answer in disguise), or must be
		is    bool     // kind is wanted (true) or refused (false)
	}{
		// No result where one is due: not an empty pool, not "LYNCBACKUP not installed", not "no pool".
		{readPool, "null-result", []string{"no result"}, nil, false},
		{readPool, "no-result", []string{"no result"}, nil, false},
		{readSvc, "null-result", []string{"no result"}, nil, false},
		{readID, "null-result", []string{"no result"}, lync.ErrNotFound, false},
		{readStat, "null-result", []string{"no result"}, nil, false},
		{readPool, `result:[]`, []string{"not an object"}, nil, false},
		{readPool, `result:"pool03.contoso.com"`, []string{"not an object"}, nil, false},
		// Missing fields: not "unpaired", not "not installed", not "no modules", not "no pool".
		{readPool, "missing:relationship", []string{`no "relationship"`}, nil, false},
		{readPool, "missing:relationship.answers", []string{`"relationship"`, `no "answers"`}, nil, false},
		{readPool, "missing:relationship.error", []string{`"relationship"`, `no "error"`}, nil, false},
		// The backup pool's property is gone from Get-CsPoolBackupRelationship's answer: an
		// answer of an unknown shape, not "unpaired".
		{readPool, "missing:relationship.answers.0.BackupPoolFqdn", []string{"Get-CsPoolBackupRelationship", "[PoolFqdn]", "BackupPoolFqdn"}, nil, false},
		{readPool, "missing:topology", []string{`no "topology"`}, nil, false},
		{readPool, "missing:topology.services.0.serviceVersion", []string{`"topology"`, `no "serviceVersion"`}, nil, false},
		{readPool, "missing:serverVersion", []string{`no "serverVersion"`}, nil, false},
		{readPool, "missing:computers", []string{`no "computers"`}, nil, false},
		{readPool, "missing:cms.0.active", []string{`"cms"`, `no "active"`}, nil, false},
		{readID, "missing:poolFqdn", []string{`no "poolFqdn"`}, lync.ErrNotFound, false},
		{readSvc, "missing:installed", []string{`no "installed"`}, nil, false},
		{readStat, "missing:modules", []string{`no "modules"`}, nil, false},
		{readStat, "missing:relationship", []string{`no "relationship"`}, nil, false},
		{readStat, "missing:syncIntervalSeconds", []string{`no "syncIntervalSeconds"`}, nil, false},
		{readStat, "missing:syncIntervalError", []string{`no "syncIntervalError"`}, nil, false},
		{readSvc, "missing:started", []string{`no "started"`}, nil, false},
		{readStat, "missing:modules.1.exportStatus", []string{`"modules"`, `no "exportStatus"`}, nil, false},
		// Wrong types, null where the script always sends a value.
		{readPool, "wrong:computers:42", []string{"computers"}, nil, false},
		{readPool, "wrong:relationship:5", []string{"relationship"}, nil, false},
		{readPool, "wrong:relationship:null", []string{`"relationship" is null`}, nil, false},
		{readPool, "wrong:relationship.answers.0.BackupPoolFqdn:null", []string{"relationship", "answers"}, nil, false},
		{readPool, "wrong:fqdn:{}", []string{"fqdn"}, nil, false},
		{readPool, "wrong:topology:null", []string{`"topology" is null`}, nil, false},
		{readPool, "wrong:topology.found:null", []string{`"found" is null`}, nil, false},
		{readPool, "wrong:topology.services.0.serviceVersion:true", []string{"serviceVersion"}, nil, false},
		{readPool, `wrong:topology.services.0.serviceVersion:"six"`, []string{"ServiceVersion", "six"}, nil, false},
		{readPool, "wrong:serverVersion:null", []string{`"serverVersion" is null`}, nil, false},
		{readPool, `wrong:cms.0.active:"yes"`, []string{"cms", "active"}, nil, false},
		{readSvc, `wrong:installed:"yes"`, []string{"installed"}, nil, false},
		{readSvc, "wrong:installed:null", []string{`"installed" is null`}, nil, false},
		{readSvc, "wrong:status:4", []string{"status"}, nil, false},
		{readSvc, `wrong:started:"yesterday"`, []string{"started"}, nil, false},
		{readStat, `wrong:syncIntervalSeconds:"120"`, []string{"syncIntervalSeconds"}, nil, false},
		{readID, "wrong:poolFqdn:12", []string{"poolFqdn"}, nil, false},
		{readStat, `wrong:modules:"x"`, []string{"modules"}, nil, false},
		// The envelope.
		{readPool, "ok-string", []string{"malformed reply", `"ok"`}, nil, false},
		{readSvc, "no-ok", []string{"malformed reply", `no "ok"`}, nil, false},
		{readSvc, "error-string", []string{"malformed reply", `"error"`}, lync.ErrPermission, false},
		{readPool, "fail-no-error", []string{"reported a failure without details"}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.read.name+" "+c.fault, func(t *testing.T) {
			t.Setenv(envFault, c.read.name+"="+c.fault)
			b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.CallTimeout = 5 * time.Second })
			got, err := c.read.call(b)
			if err == nil {
				t.Fatalf("%s answered %+v; want an error", c.read.name, got)
			}
			t.Log(err)
			for _, s := range append([]string{"powershell " + c.read.name}, c.want...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
			if c.kind != nil && errors.Is(err, c.kind) != c.is {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", err, c.kind, !c.is, c.is)
			}
			if strings.Contains(err.Error(), "no reply within") {
				t.Errorf("the call waited for its timeout: %v", err)
			}
			if log.count("fault "+c.read.name) != 1 {
				t.Fatalf("the fault was not injected: %v", log.lines())
			}
			// The host answered; it stays, and serves the next call.
			if _, err := b.Pool(bg, "pool01.contoso.com"); c.read.name != opGetPool && err != nil {
				t.Errorf("next call: %v", err)
			}
			if n := log.count("start "); n != 1 {
				t.Errorf("starts = %d, want 1", n)
			}
		})
	}
}

// A reply cut short as the host exits: the call fails saying so, and a retry gets the answer.
func TestPartialReplyThenEOF(t *testing.T) {
	t.Setenv(envFault, opGetPool+"=partial-eof/1")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	p, err := b.Pool(bg, "pool03.contoso.com")
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "exited during the call") ||
		!strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), `{"id":1,`) {
		t.Fatalf("Pool = %+v, %v; want ErrUnavailable naming the cut reply", p, err)
	}
	p, err = b.Pool(bg, "pool03.contoso.com")
	if err != nil || p.BackupPool != "pool04.contoso.com" || p.FQDN != "pool03.contoso.com" {
		t.Fatalf("retry = %+v, %v", p, err)
	}
	if n := log.count("start "); n != 2 {
		t.Errorf("starts = %d, want 2", n)
	}
}

// The ready reply cut short as the host exits: the start fails at once (not at the start
// timeout), naming the cut reply, and the next call starts a host that works.
func TestPartialReadyReplyThenEOF(t *testing.T) {
	t.Setenv(envFault, "ready=partial-eof/1")
	b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.StartTimeout = time.Minute })
	begin := time.Now()
	_, err := b.Pool(bg, "pool01.contoso.com")
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "exited while starting") ||
		!strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), `{"id":0,`) {
		t.Fatalf("err = %v; want ErrUnavailable naming the cut ready reply", err)
	}
	if d := time.Since(begin); d > 20*time.Second {
		t.Errorf("took %s", d)
	}
	if p, err := b.Pool(bg, "pool01.contoso.com"); err != nil || !p.HostsCMS {
		t.Fatalf("retry = %+v, %v", p, err)
	}
	if n := log.count("start "); n != 2 {
		t.Errorf("starts = %d, want 2", n)
	}
}

// Output in other encodings than the UTF-8 the script asks for: a BOM (at the start, or where
// the encoding changed), UTF-16 with and without a BOM. Answers and errors arrive intact.
func TestOutputEncodings(t *testing.T) {
	for _, enc := range []string{"utf8-bom", "utf8-bom-midstream", "utf16le", "utf16le-nobom", "utf16be"} {
		t.Run(enc, func(t *testing.T) {
			t.Setenv(envEncoding, enc)
			t.Setenv(envErrorOn, opGetBackupStatus+"=permission")
			b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.StartTimeout = 10 * time.Second })
			p, err := b.Pool(bg, "pool05.contoso.com")
			if err != nil {
				t.Fatalf("Pool: %v", err)
			}
			if p.Site != "Zürich 🐙" || p.FQDN != "pool05.contoso.com" || !slices.Equal(p.Computers, []string{"fe07.contoso.com"}) {
				t.Errorf("Pool = %+v", p)
			}
			if id, err := b.Identity(bg); err != nil || id.PoolFQDN != "pool01.contoso.com" {
				t.Errorf("Identity = %+v, %v", id, err)
			}
			if _, err := b.BackupStatus(bg, "pool01.contoso.com"); !errors.Is(err, lync.ErrPermission) || !strings.Contains(err.Error(), "Access is denied.") {
				t.Errorf("BackupStatus = %v, want the permission error", err)
			}
			if n := log.count("start "); n != 1 {
				t.Errorf("starts = %d, want 1", n)
			}
		})
	}
}

// Errors that clear on retry, on a read and on a write: the first call fails as the host said,
// the host stays, and the retry answers right.
func TestErrorsThatClearOnRetry(t *testing.T) {
	t.Setenv(envFault, opGetPool+"=unavailable/1,"+opSyncBackup+"=unavailable/2,"+opGetBackupService+"=null-result/1")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	if _, err := b.Pool(bg, "pool03.contoso.com"); !errors.Is(err, lync.ErrUnavailable) {
		t.Fatalf("first Pool = %v, want ErrUnavailable", err)
	}
	if p, err := b.Pool(bg, "pool03.contoso.com"); err != nil || p.BackupPool != "pool04.contoso.com" {
		t.Fatalf("retried Pool = %+v, %v", p, err)
	}
	for i := range 2 {
		if err := b.SyncBackup(bg, "pool03.contoso.com"); !errors.Is(err, lync.ErrUnavailable) {
			t.Fatalf("SyncBackup %d = %v, want ErrUnavailable", i, err)
		}
	}
	if err := b.SyncBackup(bg, "pool03.contoso.com"); err != nil {
		t.Fatalf("third SyncBackup: %v", err)
	}
	if _, err := b.BackupService(bg); err == nil {
		t.Fatalf("BackupService with a null result succeeded")
	}
	if svc, err := b.BackupService(bg); err != nil || !svc.Installed || svc.Status != protocol.ServiceRunning || svc.Started == nil {
		t.Fatalf("retried BackupService = %+v, %v", svc, err)
	}
	if n := log.count("start "); n != 2 {
		t.Errorf("starts = %d, want 2 (one read host, one write host)", n)
	}
	if n := log.count("fault "); n != 4 {
		t.Errorf("faults = %d, want 4: %v", n, log.lines())
	}
}

// backups is what the fake deployment says each pool is paired with, read through the backend.
func backups(t *testing.T, b *Backend, pools ...string) []string {
	t.Helper()
	var out []string
	for _, fqdn := range pools {
		p, err := b.Pool(bg, fqdn)
		if err != nil {
			t.Fatalf("Pool(%s): %v", fqdn, err)
		}
		out = append(out, p.BackupPool)
	}
	return out
}

func countWrites(t *testing.T, log fakeLog, op string) int {
	n := 0
	for _, o := range log.ops(t) {
		if o == op {
			n++
		}
	}
	return n
}

func TestPairPoolsFailures(t *testing.T) {
	pair := protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}
	cases := []struct {
		fault     string
		want      error  // errors.Is, or nil for a plain cmdlet error
		text      string // in the error
		afterFail []string
	}{
		{"permission", lync.ErrPermission, "RTCUniversalServerAdmins", []string{"", ""}},
		{"cmdlet", nil, "validation errors", []string{"", ""}},
		{"fail-no-error", nil, "without details", []string{"", ""}},
		// The first Set-CsRegistrar ran, the second threw: the error says so, the deployment is
		// half paired (and the backend reports it as it is), and a retry completes it.
		{"half", nil, "Registrar:pool02.contoso.com", []string{"pool02.contoso.com", ""}},
		// The write ran, then the host died before its reply: a retry finds the pools paired with
		// each other, writes again (harmless), and succeeds.
		{"apply-then-die", lync.ErrUnavailable, "exited during the call", []string{"pool02.contoso.com", "pool01.contoso.com"}},
	}
	for _, c := range cases {
		t.Run(c.fault, func(t *testing.T) {
			t.Setenv(envFault, opPairPools+"="+c.fault+"/1")
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			err := b.PairPools(bg, pair)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("PairPools = %v, want %v with %q", err, c.want, c.text)
			}
			if c.want == nil {
				var ce *CmdletError
				if !errors.As(err, &ce) || ce.Kind != nil {
					t.Errorf("PairPools = %v (%T), want a plain *CmdletError", err, err)
				}
			}
			if got := backups(t, b, pair.PrimaryFQDN, pair.BackupFQDN); !slices.Equal(got, c.afterFail) {
				t.Errorf("after the failure, backups = %q, want %q", got, c.afterFail)
			}
			if err := b.PairPools(bg, pair); err != nil {
				t.Fatalf("retried PairPools: %v", err)
			}
			if got := backups(t, b, pair.PrimaryFQDN, pair.BackupFQDN); !slices.Equal(got, []string{"pool02.contoso.com", "pool01.contoso.com"}) {
				t.Errorf("after the retry, backups = %q", got)
			}
			if n := countWrites(t, log, opPairPools); n != 2 {
				t.Errorf("PairPools requests = %d, want 2", n)
			}
		})
	}
}

// A read during PairPools that answers without the backup pool must not pass for "unpaired": the
// pool is paired with another, and pairing it again would overwrite that pairing.
func TestPairPoolsRefusesOnAReplyWithoutTheBackupPool(t *testing.T) {
	for _, fault := range []string{"null-result/1", "missing:relationship/1", "wrong:relationship:null/1", "missing:relationship.answers.0.BackupPoolFqdn/1"} {
		t.Run(fault, func(t *testing.T) {
			t.Setenv(envFault, opGetPool+"="+fault)
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			// pool03 is paired with pool04 in the fake.
			err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool03.contoso.com", BackupFQDN: "pool01.contoso.com"})
			if err == nil || !strings.Contains(err.Error(), "GetPool") {
				t.Fatalf("PairPools = %v, want the read's error", err)
			}
			if n := countWrites(t, log, opPairPools); n != 0 {
				t.Errorf("PairPools reached the topology %d times", n)
			}
			if got := backups(t, b, "pool03.contoso.com", "pool04.contoso.com", "pool01.contoso.com"); !slices.Equal(got, []string{"pool04.contoso.com", "pool03.contoso.com", ""}) {
				t.Errorf("backups = %q; the pairing changed", got)
			}
			if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool03.contoso.com", BackupFQDN: "pool01.contoso.com"}); !errors.Is(err, lync.ErrConflict) {
				t.Errorf("retried PairPools = %v, want ErrConflict (pool03 is paired with pool04)", err)
			}
		})
	}
}

func TestUnpairFailures(t *testing.T) {
	pools := []string{"pool03.contoso.com", "pool04.contoso.com"}
	unpair := protocol.UnpairParams{PrimaryFQDN: pools[0], BackupFQDN: pools[1]}
	cases := []struct {
		fault     string
		want      error
		text      string
		afterFail []string
	}{
		{"unavailable", lync.ErrUnavailable, "no endpoint listening", []string{"pool04.contoso.com", "pool03.contoso.com"}},
		{"permission-ad", lync.ErrPermission, "Insufficient access rights", []string{"pool04.contoso.com", "pool03.contoso.com"}},
		{"fail-no-error", nil, "without details", []string{"pool04.contoso.com", "pool03.contoso.com"}},
		{"half", nil, "Registrar:pool04.contoso.com", []string{"", "pool03.contoso.com"}},
		{"apply-then-die", lync.ErrUnavailable, "exited during the call", []string{"", ""}},
	}
	for _, c := range cases {
		t.Run(c.fault, func(t *testing.T) {
			t.Setenv(envFault, opUnpair+"="+c.fault+"/1")
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			err := b.Unpair(bg, unpair)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("Unpair = %v, want %v with %q", err, c.want, c.text)
			}
			if got := backups(t, b, pools...); !slices.Equal(got, c.afterFail) {
				t.Errorf("after the failure, backups = %q, want %q", got, c.afterFail)
			}
			if err := b.Unpair(bg, unpair); err != nil {
				t.Fatalf("retried Unpair: %v", err)
			}
			if got := backups(t, b, pools...); !slices.Equal(got, []string{"", ""}) {
				t.Errorf("after the retry, backups = %q", got)
			}
			wantWrites := 2
			if c.fault == "apply-then-die" {
				wantWrites = 1 // the retry finds nothing to undo
			}
			if n := countWrites(t, log, opUnpair); n != wantWrites {
				t.Errorf("Unpair requests = %d, want %d", n, wantWrites)
			}
		})
	}
}

// Reads during Unpair that answer without the backup pool must not pass for "not paired, nothing
// to do": Unpair would report success and leave the pairing.
func TestUnpairRefusesOnAReplyWithoutTheBackupPool(t *testing.T) {
	for _, fault := range []string{"null-result/1", "missing:relationship/1", "result:{}/1", "missing:relationship.answers.0.BackupPoolFqdn/1"} {
		t.Run(fault, func(t *testing.T) {
			t.Setenv(envFault, opGetPool+"="+fault)
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			err := b.Unpair(bg, protocol.UnpairParams{PrimaryFQDN: "pool03.contoso.com", BackupFQDN: "pool04.contoso.com"})
			if err == nil || !strings.Contains(err.Error(), "GetPool") {
				t.Fatalf("Unpair = %v, want the read's error", err)
			}
			if n := countWrites(t, log, opUnpair); n != 0 {
				t.Errorf("Unpair reached the topology %d times", n)
			}
			if got := backups(t, b, "pool03.contoso.com", "pool04.contoso.com"); !slices.Equal(got, []string{"pool04.contoso.com", "pool03.contoso.com"}) {
				t.Errorf("backups = %q", got)
			}
		})
	}
}

func TestDecodeOutput(t *testing.T) {
	const text = "<<LYNCAGENT>>{\"site\":\"Zürich 🐙\"}\r\nWARNING: second line\r\n"
	utf16Of := func(order binary.AppendByteOrder, bom bool, s string) []byte {
		var b []byte
		if bom {
			b = order.AppendUint16(b, 0xFEFF)
		}
		for _, u := range utf16.Encode([]rune(s)) {
			b = order.AppendUint16(b, u)
		}
		return b
	}
	cases := map[string][]byte{
		"utf8":        []byte(text),
		"utf16le bom": utf16Of(binary.LittleEndian, true, text),
		"utf16le":     utf16Of(binary.LittleEndian, false, text),
		"utf16be bom": utf16Of(binary.BigEndian, true, text),
		"utf16be":     utf16Of(binary.BigEndian, false, text),
	}
	for name, in := range cases {
		for _, oneByte := range []bool{false, true} { // code units and surrogate pairs split across reads
			var r io.Reader = bytes.NewReader(in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			got, err := io.ReadAll(decodeOutput(r))
			if err != nil || string(got) != text {
				t.Errorf("%s (one byte at a time: %v) = %q, %v", name, oneByte, got, err)
			}
		}
	}
	// Broken UTF-16: a high surrogate without its pair, a lone low surrogate, an odd byte at the end.
	var in []byte
	for _, u := range []uint16{'a', 0xD83D, 'b', 0xDC19, 'c'} {
		in = binary.LittleEndian.AppendUint16(in, u)
	}
	in = append(in, 'd')
	if got, err := io.ReadAll(decodeOutput(bytes.NewReader(in))); err != nil || string(got) != "a\uFFFDb\uFFFDc\uFFFD" {
		t.Errorf("broken UTF-16 = %q, %v", got, err)
	}
	if got, err := io.ReadAll(decodeOutput(bytes.NewReader([]byte("x")))); err != nil || string(got) != "x" {
		t.Errorf("one byte = %q, %v", got, err)
	}
}

func TestServiceVersionName(t *testing.T) {
	for in, want := range map[string]string{
		"5": "Lync Server 2010", "6": "Lync Server 2013", "7": "Skype for Business Server 2015", " 8 ": "Skype for Business Server 2019",
		"9": "version 9",
	} {
		if got, err := serviceVersionName(in); err != nil || got != want {
			t.Errorf("serviceVersionName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "six", "6.0", "true"} {
		if got, err := serviceVersionName(in); err == nil || !strings.Contains(err.Error(), "ServiceVersion") {
			t.Errorf("serviceVersionName(%q) = %q, %v; want an error naming ServiceVersion", in, got, err)
		}
	}
}

func TestVersionName(t *testing.T) {
	for raw, want := range map[string]string{
		``: "", `null`: "", `6`: "Lync Server 2013", `7`: "Skype for Business Server 2015", `"8"`: "Skype for Business Server 2019",
		`9`: "version 9", `" 5 "`: "Lync Server 2010", `"Lync Server 2013"`: "Lync Server 2013",
		`{"Major":6,"Minor":0,"Build":8308,"Revision":0}`: "Lync Server 2013", // a System.Version
	} {
		if got, err := versionName(json.RawMessage(raw)); err != nil || got != want {
			t.Errorf("versionName(%s) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{`true`, `[6]`, `{"Minor":1}`, `{`} {
		if got, err := versionName(json.RawMessage(raw)); err == nil || !strings.Contains(err.Error(), "registrarVersion") {
			t.Errorf("versionName(%s) = %q, %v; want an error naming registrarVersion", raw, got, err)
		}
	}
}
