package sim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

type svcOut struct {
	svc protocol.BackupService
	err error
}

func TestReadSettingsFromFile(t *testing.T) {
	yml := replace(t, baseYAML, "  syncBackup: 3s\n", "  syncBackup: 3s\n  read: 250ms\n")
	yml = replace(t, yml, "pools:\n", "readsWaitForWrites: true\npools:\n")
	d, _ := newSim(t, yml)
	if l, w := d.Reads(); l != 250*time.Millisecond || !w {
		t.Errorf("Reads() = %v, %v", l, w)
	}
	if r := d.Snapshot().Reads; r != (ReadSettings{Latency: "250ms", WaitForWrites: true}) {
		t.Errorf("snapshot reads = %+v", r)
	}
	d2, _ := newSim(t, baseYAML)
	if l, w := d2.Reads(); l != 0 || w {
		t.Errorf("defaults = %v, %v; want 0, false", l, w)
	}
	for _, bad := range []struct{ old, new, msg string }{
		{"  syncBackup: 3s\n", "  syncBackup: 3s\n  read: -1s\n", "durations.read: must not be negative"},
		{"  syncBackup: 3s\n", "  syncBackup: 3s\n  read: soon\n", "durations.read"},
		{"pools:\n", "readsWaitForWrites: yes please\npools:\n", "readsWaitForWrites: must be true or false"},
	} {
		_, err := Parse([]byte(replace(t, baseYAML, bad.old, bad.new)))
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: err = %v, want %q", bad.new, err, bad.msg)
		}
	}
	if err := d.SetReads(-time.Second, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetReads(negative) = %v", err)
	}
}

// TestReadLatency: every read takes durations.read on the sim's clock, and honours ctx.
func TestReadLatency(t *testing.T) {
	d, clk := newSim(t, replace(t, baseYAML, "  syncBackup: 3s\n", "  syncBackup: 3s\n  read: 2s\n"))
	be := backend(t, d, fe1p1)
	reads := map[string]func(ctx context.Context) error{
		"Pool":          func(ctx context.Context) error { _, err := be.Pool(ctx, pool02); return err },
		"BackupStatus":  func(ctx context.Context) error { _, err := be.BackupStatus(ctx, pool02); return err },
		"BackupService": func(ctx context.Context) error { _, err := be.BackupService(ctx); return err },
	}
	for name, read := range reads {
		done := make(chan error, 1)
		n := clk.Waiters() + 1
		go func() { done <- read(context.Background()) }()
		if err := clk.WaitForWaiters(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		clk.Step(time.Second)
		select {
		case err := <-done:
			t.Fatalf("%s returned after 1s of 2s: %v", name, err)
		default:
		}
		clk.Step(time.Second)
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// Cut short by its ctx.
		ctx, cancel := context.WithCancel(context.Background())
		n = clk.Waiters() + 1
		go func() { done <- read(ctx) }()
		if err := clk.WaitForWaiters(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("%s with ctx cancelled: %v", name, err)
		}
		clk.Step(2 * time.Second) // let the abandoned timer go
	}
	// Identity is the agent's own knowledge, not a cmdlet: instant.
	if o := instant(t, clk, func() svcOut { _, err := be.Identity(context.Background()); return svcOut{err: err} }); o.err != nil {
		t.Fatal(o.err)
	}
	// Set at run time.
	if err := d.SetReads(0, false); err != nil {
		t.Fatal(err)
	}
	if o := instant(t, clk, func() svcOut { s, err := be.BackupService(context.Background()); return svcOut{s, err} }); o.err != nil {
		t.Errorf("read after SetReads(0) = %v", o.err)
	}
}

// TestReadsWaitForWrites: with readsWaitForWrites, a read on a server waits while that server's
// agent runs a write, then answers with what the write did; reads on other servers, and reads
// without the setting, answer at once; a waiting read honours ctx; Bootstrapper is not a write.
func TestReadsWaitForWrites(t *testing.T) {
	d, clk := newSim(t, replace(t, baseYAML, "pools:\n", "readsWaitForWrites: true\npools:\n"))
	if err := pair(t, d, clk, pool01, pool02); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fe1p1, fe2p1} {
		if _, err := bootstrap(t, d, clk, s); err != nil {
			t.Fatal(err)
		}
	}
	writer := backend(t, d, fe1p1)
	writeDone := make(chan error, 1)
	go func() { writeDone <- writer.StartBackupService(context.Background()) }()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}

	// Another agent process on the same server (the reads of /v1/server) waits: its answer is the
	// service Running, which it can only know after the write.
	reader := backend(t, d, fe1p1)
	read := make(chan svcOut, 1)
	go func() {
		s, err := reader.BackupService(context.Background())
		read <- svcOut{s, err}
	}()
	// A read with a ctx that ends while it waits gives up with ctx's error.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := reader.Pool(ctx, pool01); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a read waiting behind a write with a short ctx = %v, want DeadlineExceeded", err)
	}
	// Reads on the other server of the pool answer at once: Stopped, the write is not done.
	if o := instant(t, clk, func() svcOut {
		s, err := backend(t, d, fe2p1).BackupService(context.Background())
		return svcOut{s, err}
	}); o.err != nil || o.svc.Status != protocol.ServiceStopped {
		t.Errorf("read on another server = %+v", o)
	}
	clk.Step(time.Second)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	if o := <-read; o.err != nil || o.svc.Status != protocol.ServiceRunning {
		t.Errorf("the read that waited = %+v, want Running (answered after the write)", o)
	}

	// A Bootstrapper run is not a write on the host: reads go on.
	bootDone := make(chan error, 1)
	go func() { _, err := backend(t, d, fe1p1).Bootstrap(context.Background()); bootDone <- err }()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if o := instant(t, clk, func() svcOut { s, err := reader.BackupService(context.Background()); return svcOut{s, err} }); o.err != nil {
		t.Errorf("read during Bootstrapper = %+v", o)
	}
	clk.Step(4 * time.Second)
	if err := <-bootDone; err != nil {
		t.Fatal(err)
	}

	// Turning the setting off releases a waiting read; without it, reads never wait.
	if err := d.StopBackupService(fe1p1); err != nil {
		t.Fatal(err)
	}
	go func() { writeDone <- writer.StartBackupService(context.Background()) }()
	if err := clk.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	go func() {
		s, err := reader.BackupService(context.Background())
		read <- svcOut{s, err}
	}()
	if err := d.SetReads(0, false); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-read:
		if o.err != nil || o.svc.Status != protocol.ServiceStopped {
			t.Errorf("released read = %+v, want Stopped (before the write ended)", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("turning readsWaitForWrites off did not release the waiting read")
	}
	clk.Step(time.Second)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
}

func TestAdminReads(t *testing.T) {
	d, _ := newSim(t, baseYAML)
	h := AdminHandler(d)
	post := func(body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", AdminPrefix+"/reads", strings.NewReader(body)))
		return rec
	}
	rec := post(`{"latency":"1.5s","waitForWrites":true}`)
	var s State
	if err := json.Unmarshal(rec.Body.Bytes(), &s); rec.Code != 200 || err != nil || s.Reads != (ReadSettings{Latency: "1.5s", WaitForWrites: true}) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	// Either field alone keeps the other.
	if rec := post(`{"waitForWrites":false}`); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if l, w := d.Reads(); l != 1500*time.Millisecond || w {
		t.Errorf("Reads() = %v, %v", l, w)
	}
	for _, bad := range []string{`{"latency":"fast"}`, `{"latency":"-1s"}`, `{"other":1}`} {
		if rec := post(bad); rec.Code != 400 {
			t.Errorf("%s: %d %s", bad, rec.Code, rec.Body)
		}
	}
}
