package powershell

import (
	"context"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// benchStartDelay stands for powershell.exe starting plus Import-Module Lync. On real Front End
// servers the import alone takes seconds, so 300 ms is conservative: the real gap is wider.
const benchStartDelay = "300ms"

// benchModel says what the Call benchmarks measure: neither runs powershell.exe.
const benchModel = "a model, not powershell.exe: each host is this test binary as a fake PowerShell " +
	"that sleeps a fixed " + benchStartDelay + " for process start and Import-Module; " +
	"the figures compare the two shapes, not real Front End latencies"

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
	logOnce(b, "long-lived host: "+benchModel+" (paid once, outside the timer)")
}

// BenchmarkCallNewProcessPerCall: what a fresh powershell.exe per call would cost, importing the
// module every time. Modelled: the fake's fixed start-up delay stands for the real start and
// import, which take seconds on a Front End.
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
	logOnce(b, "process per call: "+benchModel+" (paid on every call)")
}

// logged holds the benchmarks whose note is printed: once each, not once per b.N tried.
var logged sync.Map

func logOnce(b *testing.B, note string) {
	b.Helper()
	if _, done := logged.LoadOrStore(b.Name(), true); !done {
		b.Log(note)
	}
}

func reportMsPerCall(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/call")
}

// envBenchWrite overrides how long the write of BenchmarkReadsDuringWrite takes (default 60s,
// the figure), e.g. POWERSHELL_BENCH_WRITE=5s for a quick run.
const envBenchWrite = "POWERSHELL_BENCH_WRITE"

// readEvery is the cadence reads are issued at during the write, whether or not the previous ones
// have answered (as the operator's polls do): latency counts the time a read waits for the host.
const readEvery = 50 * time.Millisecond

// operatorReadTimeout is the manager's timeout for a read; a read slower than it shows the agent
// as unreachable.
const operatorReadTimeout = 5 * time.Second

// BenchmarkReadsDuringWrite: the latency of Pool reads issued every 50 ms while one write
// (SyncBackup, made to take POWERSHELL_BENCH_WRITE in the fake) runs, with the Backend's two
// hosts (read-p50-ms, read-p99-ms), and, in the same run, with reads and writes forced onto one
// host as before (onehost-*). Each iteration runs one write of each kind; the hosts' starts are
// outside the figures. Only latency is reported; nothing fails on time.
//
//	POWERSHELL_BENCH_WRITE=60s go test ./internal/lync/powershell/ -run '^$' -bench ReadsDuringWrite -benchtime 1x
func BenchmarkReadsDuringWrite(b *testing.B) {
	write := 60 * time.Second
	if v := os.Getenv(envBenchWrite); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q: want a duration such as 5s", envBenchWrite, v)
		}
		write = d
	}
	b.Setenv(envDelayOn, opSyncBackup+"="+write.String())
	slowWrites := func(o *Options) { o.CallTimeout = write + time.Minute }
	twoHosts, twoLog := newTestBackend(b, protocol.ProductLync2013, slowWrites)
	warmUp(b, twoHosts)
	oneHost, oneLog := newTestBackend(b, protocol.ProductLync2013, slowWrites)
	oneHost.write = oneHost.read // the old way: one host, one call at a time
	warmUp(b, oneHost)

	var two, one []time.Duration
	b.ResetTimer()
	for range b.N {
		two = append(two, readsDuringWrite(b, twoHosts, twoLog)...)
		one = append(one, readsDuringWrite(b, oneHost, oneLog)...)
	}
	b.StopTimer()
	report := func(prefix string, lat []time.Duration) {
		slices.Sort(lat)
		b.ReportMetric(ms(percentile(lat, 0.50)), prefix+"read-p50-ms")
		b.ReportMetric(ms(percentile(lat, 0.99)), prefix+"read-p99-ms")
		slow := 0
		for _, d := range lat {
			if d > operatorReadTimeout {
				slow++
			}
		}
		b.ReportMetric(100*float64(slow)/float64(len(lat)), prefix+"reads-over-5s-%")
	}
	logOnce(b, "a model, not powershell.exe: the write is the fake PowerShell sleeping "+write.String()+
		" and each read its immediate answer; the figures show how long reads wait behind a write, not cmdlet latencies")
	report("", two)
	report("onehost-", one)
	b.ReportMetric(float64(len(two))/float64(b.N), "reads/write")
	b.ReportMetric(percentile(one, 0.99).Seconds()/percentile(two, 0.99).Seconds(), "p99-onehost/two")
}

// warmUp starts the backend's hosts (a read, and a quick write) so their start is not measured.
func warmUp(b *testing.B, be *Backend) {
	b.Helper()
	if _, err := be.Pool(bg, "pool01.contoso.com"); err != nil {
		b.Fatal(err)
	}
	if err := be.StartBackupService(bg); err != nil {
		b.Fatal(err)
	}
}

// readsDuringWrite starts one slow write, issues a Pool read every readEvery from the moment the
// host has the write until the write returns, and gives each read's latency.
func readsDuringWrite(b *testing.B, be *Backend, log fakeLog) []time.Duration {
	b.Helper()
	writesBefore := countOp(b, log, opSyncBackup)
	writeDone := make(chan error, 1)
	go func() { writeDone <- be.SyncBackup(bg, "pool03.contoso.com") }()
	waitFor(b, 30*time.Second, "the host to receive the write", func() bool { return countOp(b, log, opSyncBackup) > writesBefore })

	var (
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
		errs = make(chan error, 1)
	)
	tick := time.NewTicker(readEvery)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case err := <-writeDone:
			if err != nil {
				b.Fatalf("the write: %v", err)
			}
			done = true
		case <-tick.C:
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(bg, 10*time.Minute) // a guard, not a measure
				defer cancel()
				begin := time.Now()
				if _, err := be.Pool(ctx, "pool02.contoso.com"); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(begin))
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("a read during the write: %v", err)
	default:
	}
	return lat
}

func countOp(b *testing.B, log fakeLog, op string) int {
	n := 0
	for _, o := range log.ops(b) {
		if o == op {
			n++
		}
	}
	return n
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
