package powershell

// The PowerShell parameter encoding under fuzzing: whatever a request holds, the script text the
// host runs is the same (it is built from the product alone, and the request line can never be
// read as part of it), and the request line is one line of printable ASCII that decodes back to
// exactly the values sent. Run it with
//
//	go test ./internal/lync/powershell -run '^$' -fuzz FuzzEncodeRequest -fuzztime 60s

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func FuzzEncodeRequest(f *testing.F) {
	for _, seed := range []struct {
		id     int64
		op     string
		a, b   string
		n      int
		params uint8
	}{
		{1, opGetPool, "pool01.contoso.com", "", 0, 0},
		{7, opPairPools, "pool01.contoso.com", "pool02.contoso.com", 300, 1},
		{1 << 62, opUnpair, "a\nb\"c'$(d)é🐙", bootstrapSentinel, -1, 2},
		{-1, "Identity\r\n" + bootstrapSentinel, "<<LYNCAGENT>>{\"id\":1}", "\u2028\u0000`$x", 0, 0},
		{3, opSyncBackup, "\xed\xa0\x80", "\ufffd", 0, 3}, // a lone surrogate in UTF-8: not valid
		{9, opFailoverCMS, "sql02.contoso.com", "rtc", 6, 4},
		{10, opMoveEdgeNextHop, "edge01.contoso.com", "pool02.contoso.com'; Invoke-CsPoolFailOver", 1, 5},
		{11, opFailoverPool, "pool01.contoso.com\n" + bootstrapSentinel, "", 2, 6},
	} {
		f.Add(seed.id, seed.op, seed.a, seed.b, seed.n, seed.params)
	}
	scripts := map[string]string{}
	for product := range wantModule {
		input, err := bootstrapInput(product)
		if err != nil {
			f.Fatal(err)
		}
		scripts[product] = input
	}
	f.Fuzz(func(t *testing.T, id int64, op, a, b string, n int, which uint8) {
		var params any
		sent := []string{op, a, b}
		switch which % 7 {
		case 0:
			params = map[string]string{"fqdn": a, b: a}
		case 1:
			params = protocol.PairPoolsParams{PrimaryFQDN: a, BackupFQDN: b,
				VoiceFailover: &protocol.VoiceFailover{Enabled: n%2 == 0, FailureDetectionIntervalSeconds: n, FailbackDetectionIntervalSeconds: -n}}
		case 2:
			params = protocol.UnpairParams{PrimaryFQDN: a, BackupFQDN: b}
		case 4:
			params = failoverCMSParams{Disaster: n%2 == 0, WhatIf: n%3 == 0, BackupSQLServerFQDN: a, BackupSQLInstanceName: b}
		case 5:
			params = edgeNextHopParams{EdgePoolFQDN: a, RegistrarFQDN: b, WhatIf: n%2 == 0}
		case 6:
			params = protocol.PoolFailoverParams{PoolFQDN: a, DisasterMode: n%2 == 0, WhatIf: n%3 == 0}
			sent = []string{op, a}
		default:
			params = nil
			sent = []string{op}
		}
		line, err := encodeRequest(id, op, params)
		valid := true
		for _, s := range sent {
			valid = valid && utf8.ValidString(s)
		}
		if err != nil {
			if valid {
				t.Fatalf("encodeRequest(%d, %q, %#v) = %v", id, op, params, err)
			}
			return
		}
		if !valid {
			// json.Marshal would have turned the bytes into U+FFFD: the host would get other values.
			t.Fatalf("encodeRequest accepted text that is not UTF-8 (it would arrive changed): %q", line)
		}

		// One line of printable ASCII: nothing in it can end the line early or be decoded
		// differently by the console's input encoding.
		if !bytes.HasSuffix(line, []byte("\n")) {
			t.Fatalf("no newline at the end: %q", line)
		}
		for _, c := range line[:len(line)-1] {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("byte %#x in the request line %q", c, line)
			}
		}
		// After the script: the host has read up to the sentinel before any request, and a request
		// line is never the sentinel nor a line the loader reads as script.
		text := string(line[:len(line)-1])
		if text == bootstrapSentinel || strings.HasPrefix(text, "#") || !strings.HasPrefix(text, `{"id":`) {
			t.Fatalf("request line %q", text)
		}
		for product, script := range scripts {
			stream := script + string(line)
			body, rest, ok := strings.Cut(stream, "\n"+bootstrapSentinel+"\n")
			if !ok || body+"\n"+bootstrapSentinel+"\n" != script || rest != string(line) {
				t.Fatalf("%s: the request line changes what the loader reads as script", product)
			}
		}

		// It decodes back to exactly what was sent.
		var got struct {
			ID     json.Number     `json:"id"`
			Op     string          `json:"op"`
			Params json.RawMessage `json:"params"`
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("decoding %q: %v", line, err)
		}
		if gotID, err := got.ID.Int64(); err != nil || gotID != id || got.Op != op {
			t.Fatalf("id %s op %q, want %d %q", got.ID, got.Op, id, op)
		}
		want, _ := json.Marshal(params)
		if params == nil {
			want = []byte("{}")
		}
		if !sameJSON(t, got.Params, want) {
			t.Fatalf("params %s, want %s", got.Params, want)
		}
		switch p := params.(type) {
		case map[string]string:
			var back map[string]string
			if err := json.Unmarshal(got.Params, &back); err != nil || back["fqdn"] != p["fqdn"] || back[b] != p[b] {
				t.Fatalf("params decode to %q, want %q (%v)", back, p, err)
			}
		case protocol.PairPoolsParams:
			var back protocol.PairPoolsParams
			if err := json.Unmarshal(got.Params, &back); err != nil || back.PrimaryFQDN != a || back.BackupFQDN != b ||
				back.VoiceFailover == nil || *back.VoiceFailover != *p.VoiceFailover {
				t.Fatalf("params decode to %+v, want %+v (%v)", back, p, err)
			}
		case protocol.UnpairParams:
			var back protocol.UnpairParams
			if err := json.Unmarshal(got.Params, &back); err != nil || back != p {
				t.Fatalf("params decode to %+v, want %+v (%v)", back, p, err)
			}
		case failoverCMSParams:
			var back failoverCMSParams
			if err := json.Unmarshal(got.Params, &back); err != nil || back != p {
				t.Fatalf("params decode to %+v, want %+v (%v)", back, p, err)
			}
		case edgeNextHopParams:
			var back edgeNextHopParams
			if err := json.Unmarshal(got.Params, &back); err != nil || back != p {
				t.Fatalf("params decode to %+v, want %+v (%v)", back, p, err)
			}
		case protocol.PoolFailoverParams:
			var back protocol.PoolFailoverParams
			if err := json.Unmarshal(got.Params, &back); err != nil || back != p {
				t.Fatalf("params decode to %+v, want %+v (%v)", back, p, err)
			}
		}
	})
}

// sameJSON compares two JSON texts as values.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}
