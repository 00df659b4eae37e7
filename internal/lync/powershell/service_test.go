package powershell

// LYNCBACKUP on this server: restarted after a pairing changes (stopped, then started; a stopped
// one only started), its process's start time while it runs, and the Backup Service's sync interval.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestRestartBackupService(t *testing.T) {
	for _, c := range []struct {
		status      string
		wantStopped bool
	}{
		{"Running", true},
		{"Stopped", false}, // only started
		{"StartPending", true},
	} {
		t.Run(c.status, func(t *testing.T) {
			t.Setenv(envLyncBackup, c.status)
			logs := &syncBuffer{}
			b, log := newTestBackend(t, protocol.ProductLync2013, func(o *Options) { o.Logger = testLogger(logs) })
			begin := time.Now().Add(-time.Second)
			if err := b.RestartBackupService(bg); err != nil {
				t.Fatalf("RestartBackupService: %v", err)
			}
			svc, err := b.BackupService(bg)
			if err != nil || svc.Status != protocol.ServiceRunning || svc.Started == nil || svc.Started.Before(begin) {
				t.Errorf("after the restart, BackupService = %+v, %v; want Running, started just now", svc, err)
			}
			reqs := log.requests(t)
			if len(reqs) != 2 || reqs[0].Op != opRestartBackupService || reqs[0].PID == reqs[1].PID {
				t.Errorf("requests = %+v; want RestartBackupService on the write host", reqs)
			}
			if want := "stopped=" + map[bool]string{true: "true", false: "false"}[c.wantStopped]; !strings.Contains(logs.String(), want) {
				t.Errorf("the log does not say %s: %s", want, logs.String())
			}
		})
	}
	t.Run("absent", func(t *testing.T) {
		t.Setenv(envLyncBackup, "absent")
		b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
		if err := b.RestartBackupService(bg); !errors.Is(err, lync.ErrNotFound) {
			t.Errorf("RestartBackupService without LYNCBACKUP = %v, want ErrNotFound", err)
		}
	})
}

func TestBackupServiceStarted(t *testing.T) {
	want, _ := time.Parse(time.RFC3339Nano, fakeServiceStarted)
	t.Run("running", func(t *testing.T) {
		b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
		svc, err := b.BackupService(bg)
		if err != nil || svc.Started == nil || !svc.Started.Equal(want) || svc.Started.Location() != time.UTC {
			t.Errorf("BackupService = %+v, %v; want started at %s UTC", svc, err, want)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		t.Setenv(envLyncBackup, "Stopped")
		b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
		if svc, err := b.BackupService(bg); err != nil || svc.Started != nil {
			t.Errorf("BackupService = %+v, %v; want no start time", svc, err)
		}
	})
	t.Run("running, start time unknown", func(t *testing.T) {
		t.Setenv(envFault, opGetBackupService+`=wrong:started:""`)
		b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
		if svc, err := b.BackupService(bg); err != nil || svc.Status != protocol.ServiceRunning || svc.Started != nil {
			t.Errorf("BackupService = %+v, %v; want Running without a start time", svc, err)
		}
	})
}

func TestSyncInterval(t *testing.T) {
	for _, c := range []struct {
		env  string
		want int
	}{
		{"", 120}, // Lync's default, 00:02:00
		{"300", 300},
		{"5", 5},         // the documented minimum
		{"10800", 10800}, // and maximum
		{"2", 0},         // out of the documented range: not a value read right
		{"error", 0},     // Get-CsBackupServiceConfiguration failed: unknown, the status still read
	} {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv(envSyncInterval, c.env)
			b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
			st, err := b.BackupStatus(bg, "pool03.contoso.com")
			if err != nil || st.SyncIntervalSeconds != c.want || len(st.Modules) != 3 {
				t.Errorf("BackupStatus = %+v, %v; want SyncIntervalSeconds %d", st, err, c.want)
			}
		})
	}
}
