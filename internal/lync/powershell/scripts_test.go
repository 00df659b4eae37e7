package powershell

import (
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestBootstrapScripts(t *testing.T) {
	if strings.Contains(loaderScript, "\n") || !strings.Contains(loaderScript, "'"+bootstrapSentinel+"'") {
		t.Errorf("the loader must be one line that stops at the sentinel")
	}
	for product, module := range wantModule {
		in, err := bootstrapInput(product)
		if err != nil {
			t.Fatal(err)
		}
		if problem := checkBootstrap(product, wantArgs, in); problem != "" {
			t.Errorf("%s: %s", product, problem)
		}
		body := strings.TrimPrefix(in, loaderScript+"\n")
		body = strings.TrimSuffix(body, bootstrapSentinel+"\n")
		if strings.Contains(body, bootstrapSentinel+"\n") || strings.Contains(body, "\n"+bootstrapSentinel) {
			t.Errorf("%s: the sentinel appears inside the body", product)
		}
		if n := strings.Count(in, "Import-Module"); n != 1 {
			t.Errorf("%s: %d Import-Module, want 1", product, n)
		}
		if !strings.Contains(in, "$lyncAgentModule = '"+module+"'") {
			t.Errorf("%s: ready reply does not name %s", product, module)
		}
		for i, r := range in {
			if r > 0x7e || (r < 0x20 && r != '\n') {
				t.Errorf("%s: character %q at %d: keep the script ASCII without tabs or CR", product, r, i)
				break
			}
		}
	}
	if _, err := bootstrapInput("lync2010"); err == nil {
		t.Errorf("unknown product accepted")
	}
	if products[protocol.ProductLync2013].bootstrapper != `C:\Program Files\Microsoft Lync Server 2013\Deployment\Bootstrapper.exe` {
		t.Errorf("lync2013 Bootstrapper path")
	}
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
