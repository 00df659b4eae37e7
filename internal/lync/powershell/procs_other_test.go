//go:build !windows

package powershell

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseBtime(t *testing.T) {
	const stat = "cpu  3357 0 4313 1362393 0 0 0 0 0 0\ncpu0 1678 0 2156 681196 0 0 0 0 0 0\nintr 5425 0\nctxt 1990473\nbtime 1714545000\nprocesses 2915\n"
	got, err := parseBtime(strings.NewReader(stat))
	if want := time.Date(2024, 5, 1, 6, 30, 0, 0, time.UTC); err != nil || !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("parseBtime = %s, %v; want %s", got, err, want)
	}
	for _, bad := range []string{"cpu 1 2 3\n", "btime x\n", "btime -5\n", ""} {
		if got, err := parseBtime(strings.NewReader(bad)); err == nil {
			t.Errorf("parseBtime(%q) = %s, want an error", bad, got)
		}
	}
}

// On Linux, the boot time agrees with the uptime the kernel reports.
func TestBootTimeOnLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	got, err := osProcs{}.bootTime()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	secs, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	fromUptime := time.Now().Add(-time.Duration(secs * float64(time.Second)))
	if d := got.Sub(fromUptime); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("bootTime = %s, uptime says %s", got, fromUptime)
	}
}
