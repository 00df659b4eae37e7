package powershell

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// update rewrites the reviewed scripts in testdata from scripts.go. Use it on purpose, when a
// script changes, and review the diff of testdata/ like any code:
//
//	go test ./internal/lync/powershell -run TestBootstrapGolden -update
var update = flag.Bool("update", false, "rewrite testdata/bootstrap-*.golden from scripts.go")

// The bootstrap input of each product equals its reviewed copy in testdata (the fake PowerShell
// holds every host to the same copy).
func TestBootstrapGolden(t *testing.T) {
	checkGolden(t, goldenName, bootstrapInput, "the bootstrap input (scripts.go)", "TestBootstrapGolden")
}

// checkGolden compares each product's script, as the code makes it, with its reviewed copy
// testdata/<name(product)>, or rewrites the copy under -update. run names the test to run with
// -update when the change is meant.
func checkGolden(t *testing.T, name func(string) string, make func(string) (string, error), what, run string) {
	t.Helper()
	for product := range wantModule {
		path := filepath.Join("testdata", name(product))
		got, err := make(product)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s: review it before committing", path)
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (a new product? review its script, then run with -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s: %s differs from the reviewed %s (- reviewed, + code); if the change is meant, review it and run: "+
				"go test ./internal/lync/powershell -run '%s' -update\n%s", product, what, path, run, lineDiff(string(want), got))
		}
	}
}

// The reviewed copies pass the checks that depend on neither them nor scripts.go.
func TestBootstrapScripts(t *testing.T) {
	for product := range wantModule {
		b, err := os.ReadFile(filepath.Join("testdata", goldenName(product)))
		if err != nil {
			t.Fatal(err)
		}
		in := string(b)
		if problem := checkBootstrap(product, wantArgs, in); problem != "" {
			t.Errorf("%s: %s", product, problem)
		}
		first, body, _ := strings.Cut(in, "\n")
		if !strings.HasPrefix(first, "$ErrorActionPreference") {
			t.Errorf("%s: the first line is not the loader: %.80q", product, first)
		}
		body = strings.TrimSuffix(body, wireSentinel+"\n")
		if strings.Contains(body, wireSentinel) {
			t.Errorf("%s: the sentinel appears inside the body", product)
		}
		for i, r := range in {
			if r > 0x7e || (r < 0x20 && r != '\n') {
				t.Errorf("%s: character %q at %d: keep the script ASCII without tabs or CR", product, r, i)
				break
			}
		}
	}
	if strings.Contains(loaderScript, "\n") || !strings.Contains(loaderScript, "'"+wireSentinel+"'") {
		t.Errorf("the loader must be one line that stops at the sentinel")
	}
	if replyMarker != wireMarker || bootstrapSentinel != wireSentinel {
		t.Errorf("marker %q and sentinel %q; the reviewed scripts use %q and %q", replyMarker, bootstrapSentinel, wireMarker, wireSentinel)
	}
	if _, err := bootstrapInput("lync2010"); err == nil {
		t.Errorf("unknown product accepted")
	}
	// The step after Bootstrapper that re-applies the cumulative update is Skype for Business Server's.
	for name, want := range map[string]bool{protocol.ProductLync2013: false, protocol.ProductSfB2015: true, protocol.ProductSfB2019: true} {
		if products[name].reapplyUpdates != want {
			t.Errorf("%s: reapplyUpdates = %v, want %v", name, !want, want)
		}
	}
}

// lineDiff shows how got differs from want, line by line (a longest common subsequence), with
// two lines of context around each change.
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	// lcs[i][j]: the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		mark byte
		line string
		n    int // line number in want (' ', '-') or got ('+')
	}
	var ops []op
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, op{' ', a[i], i + 1})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i], i + 1})
			i++
		default:
			ops = append(ops, op{'+', b[j], j + 1})
			j++
		}
	}
	const context = 2
	var out strings.Builder
	skipped := false
	for k, o := range ops {
		near := false
		for d := max(0, k-context); d <= min(len(ops)-1, k+context); d++ {
			near = near || ops[d].mark != ' '
		}
		if !near {
			skipped = true
			continue
		}
		if skipped {
			out.WriteString("   ...\n")
			skipped = false
		}
		fmt.Fprintf(&out, "%c %4d %s\n", o.mark, o.n, o.line)
	}
	return out.String()
}

func TestEncodeRequestIsOneASCIILine(t *testing.T) {
	line, err := encodeRequest(3, "GetPool", map[string]string{"fqdn": "a\nb\"c'$(d)é🐙"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":3,"op":"GetPool","params":{"fqdn":"a\nb\"c'$(d)\u00e9\ud83d\udc19"}}` + "\n"
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
	// DEL is escaped too (FuzzEncodeRequest found it raw); text that is not UTF-8 is refused, not
	// sent as U+FFFD (found likewise).
	if line, err := encodeRequest(4, "GetPool", map[string]string{"fqdn": "a\x7fb"}); err != nil || string(line) != `{"id":4,"op":"GetPool","params":{"fqdn":"a\u007fb"}}`+"\n" {
		t.Errorf("DEL: %s, %v", line, err)
	}
	for _, params := range []any{map[string]string{"fqdn": "a\xf2"}, map[string]string{"\xf2": "a"},
		protocol.PairPoolsParams{PrimaryFQDN: "ok", BackupFQDN: "\xed\xa0\x80"}, &protocol.UnpairParams{BackupFQDN: "\xff"}} {
		if line, err := encodeRequest(5, "GetPool", params); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Errorf("%#v: %s, %v; want an error", params, line, err)
		}
	}
	if line, err := encodeRequest(6, "Get\xf2", nil); err == nil {
		t.Errorf("op not UTF-8: %s", line)
	}
}

func TestJSONListShapes(t *testing.T) {
	for in, want := range map[string]string{
		`["a","b"]`:                 "a,b",
		`"a"`:                       "a",
		`null`:                      "",
		`[]`:                        "",
		`{"value":["a"],"Count":1}`: "a",
		`{"value":["a","b"]}`:       "a,b",
	} {
		var l jsonList[string]
		if err := l.UnmarshalJSON([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := strings.Join(l, ","); got != want {
			t.Errorf("%s -> %q, want %q", in, got, want)
		}
	}
	var entries jsonList[cmsEntry]
	if err := entries.UnmarshalJSON([]byte(`{"poolFqdn":"pool01.contoso.com","active":true}`)); err != nil || len(entries) != 1 || entries[0].PoolFQDN != "pool01.contoso.com" {
		t.Errorf("a lone object: %+v, %v", entries, err)
	}
}

func TestHostsCMS(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		cms  []cmsEntry
		want bool
	}{
		{[]cmsEntry{{"pool01.contoso.com", &yes}, {"pool02.contoso.com", &no}}, true},
		{[]cmsEntry{{"pool01.contoso.com", &no}, {"pool02.contoso.com", &yes}}, false},
		{[]cmsEntry{{"POOL01.contoso.com", nil}}, true},
		{[]cmsEntry{{"pool01.contoso.com", nil}, {"pool02.contoso.com", nil}}, false}, // cannot tell
		{nil, false},
	}
	for i, c := range cases {
		if got := hostsCMS("pool01.contoso.com", c.cms); got != c.want {
			t.Errorf("case %d: %v, want %v", i, got, c.want)
		}
	}
}
