//go:build unix

package localrun

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

func TestPortOf(t *testing.T) {
	for in, want := range map[string]int{"127.0.0.1:19441": 19441, "https://127.0.0.1:19451": 19451, "https://[::1]:9443/": 9443} {
		if got, err := PortOf(in); err != nil || got != want {
			t.Errorf("PortOf(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := PortOf("https://pool01.contoso.com"); err == nil {
		t.Error("PortOf accepted an address without a port")
	}
}

func TestBusyPortsNamesTheHolder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	free, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	busy := BusyPorts([]Port{{Port: taken, Use: "kube-apiserver"}, {Port: free[0], Use: "etcd"}})
	if len(busy) != 1 || busy[0].Port.Port != taken {
		t.Fatalf("BusyPorts = %v, want only port %d", busy, taken)
	}
	if runtime.GOOS == "linux" && busy[0].PID != os.Getpid() {
		t.Errorf("holder pid = %d, want this test's %d", busy[0].PID, os.Getpid())
	}
	if msg := CheckPorts([]Port{{Port: taken, Use: "kube-apiserver"}}).Error(); !strings.Contains(msg, "kube-apiserver") {
		t.Errorf("CheckPorts does not say what the port is for: %s", msg)
	}
}

func TestProcWaitsForReadyAndStopsTheGroup(t *testing.T) {
	dir := t.TempDir()
	// The child starts a grandchild: stopping the group must end both.
	p, err := Start(Spec{Name: "shell", Path: "/bin/sh", LogPath: filepath.Join(dir, "log"), ReadyLine: "ready",
		Args: []string{"-c", "sleep 60 & echo starting; echo ready; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Stop(5 * time.Second)
	// The killed grandchild lingers as a zombie until init reaps it; it still counts as a member.
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-p.Pid(), 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the process group is still there 5s after Stop")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tail := p.LogTail(5); !strings.Contains(tail, "starting") {
		t.Errorf("the log lacks the output: %q", tail)
	}
}

func TestProcExitingBeforeReadyFailsAtOnce(t *testing.T) {
	p, err := Start(Spec{Name: "shell", Path: "/bin/sh", LogPath: filepath.Join(t.TempDir(), "log"), ReadyLine: "ready",
		Args: []string{"-c", "echo cannot listen on 127.0.0.1:19441; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.WaitReady(context.Background(), 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "cannot listen") || time.Since(start) > 10*time.Second {
		t.Fatalf("WaitReady = %v after %s; want the log tail at once", err, time.Since(start))
	}
}

func TestProgressLine(t *testing.T) {
	pp := &drv1alpha1.PoolPair{Status: drv1alpha1.PoolPairStatus{Phase: drv1alpha1.PhaseTopologyPublished, Conditions: []metav1.Condition{
		{Type: drv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Bootstrapping", Message: "ready message"},
		{Type: drv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Bootstrapping", Message: "Bootstrapping fe01 (0 of 4 servers bootstrapped)"},
	}}}
	got := ProgressOf(pp)
	if got.Synced() || !strings.HasPrefix(got.String(), "phase=TopologyPublished") ||
		!strings.Contains(got.String(), "step=Bootstrapping") || !strings.HasSuffix(got.String(), "(0 of 4 servers bootstrapped)") {
		t.Errorf("progress line = %q", got)
	}
	pp.Status.Phase = drv1alpha1.PhaseSynced
	pp.Status.Conditions = []metav1.Condition{{Type: drv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Synced", Message: "in sync"}}
	if got := ProgressOf(pp); !got.Synced() || !strings.Contains(got.String(), "ready=True") {
		t.Errorf("synced progress = %q, Synced() = %v", got, got.Synced())
	}
}
