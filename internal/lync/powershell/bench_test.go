package powershell

import (
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// benchStartDelay stands for powershell.exe starting plus Import-Module Lync. On real Front End
// servers the import alone takes seconds, so 300 ms is conservative: the real gap is wider.
const benchStartDelay = "300ms"

// BenchmarkCallLongLivedHost: the steady state of the Backend, one host for every call (its one
// start is outside the timer).
func BenchmarkCallLongLivedHost(b *testing.B) {
	b.Setenv(envStartDelay, benchStartDelay)
	be, _ := newTestBackend(b, protocol.ProductLync2013, nil)
	if _, err := be.BackupService(bg); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := be.BackupService(bg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportMsPerCall(b)
}

// BenchmarkCallNewProcessPerCall: what a fresh powershell.exe per call would cost, importing the
// module every time.
func BenchmarkCallNewProcessPerCall(b *testing.B) {
	b.Setenv(envStartDelay, benchStartDelay)
	newTestBackend(b, protocol.ProductLync2013, nil) // sets FAKE_LOG and FAKE_PWSH_PRODUCT
	opts := Options{Product: protocol.ProductLync2013, Executable: testExe, ServerFQDN: "fe01.contoso.com",
		StartTimeout: 30 * time.Second, CallTimeout: 30 * time.Second, Logger: quietLogs}
	b.ResetTimer()
	for range b.N {
		be, err := New(opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := be.BackupService(bg); err != nil {
			b.Fatal(err)
		}
		be.Close()
	}
	b.StopTimer()
	reportMsPerCall(b)
}

func reportMsPerCall(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/call")
}
