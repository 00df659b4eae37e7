package powershell

import (
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestDefaultBootstrapperPath(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cases := []struct {
		product string
		vars    map[string]string
		want    string
	}{
		{protocol.ProductLync2013, map[string]string{"ProgramFiles": `C:\Program Files`, "SystemDrive": "C:"},
			`C:\Program Files\Microsoft Lync Server 2013\Deployment\Bootstrapper.exe`},
		{protocol.ProductSfB2015, map[string]string{"ProgramFiles": `D:\Program Files\`},
			`D:\Program Files\Skype for Business Server 2015\Deployment\Bootstrapper.exe`},
		// No ProgramFiles: <system drive>\Program Files, as the runbook writes it.
		{protocol.ProductSfB2019, map[string]string{"SystemDrive": "E:"},
			`E:\Program Files\Skype for Business Server 2019\Deployment\Bootstrapper.exe`},
	}
	for _, c := range cases {
		if got, err := DefaultBootstrapperPath(c.product, env(c.vars)); err != nil || got != c.want {
			t.Errorf("%s %v: %q, %v; want %q", c.product, c.vars, got, err, c.want)
		}
	}
	if _, err := DefaultBootstrapperPath(protocol.ProductLync2013, env(nil)); err == nil || !strings.Contains(err.Error(), "--bootstrapper") {
		t.Errorf("no environment: %v, want an error naming --bootstrapper", err)
	}
	if _, err := DefaultBootstrapperPath("lync2010", env(map[string]string{"ProgramFiles": `C:\Program Files`})); err == nil {
		t.Errorf("unknown product accepted")
	}
}

func TestServerVersionProduct(t *testing.T) {
	for answer, want := range map[string]string{
		"Lync Server 2013 (5.0.8308.0): Volume license key installed.":               "Lync Server 2013",
		"Microsoft Lync Server 2013 (5.0.8308.0): Evaluation license key installed.": "Lync Server 2013",
		"Skype for Business Server 2015 (6.0.9319.0): Volume license key installed.": "Skype for Business Server 2015",
		"skype for business server 2019 (7.0.2046.0): Volume license key installed.": "Skype for Business Server 2019",
		"5.0.8308: Volume license key installed.":                                    "Lync Server 2013", // the reference's example version
		"(6.0.9319.0): Volume license key installed.":                                "Skype for Business Server 2015",
		"(9.0.1.0): Volume license key installed.":                                   "",
		"The license type and version information could not be retrieved.":           "",
		"": "",
	} {
		if got := ServerVersionProduct(answer); got != want {
			t.Errorf("ServerVersionProduct(%q) = %q, want %q", answer, got, want)
		}
	}
	for n, name := range ServiceVersionProducts {
		if got, err := serviceVersionName(strings.Repeat(" ", n%2) + string(rune('0'+n))); err != nil || got != name {
			t.Errorf("ServiceVersion %d = %q, %v", n, got, err)
		}
	}
}
