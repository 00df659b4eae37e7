package agent

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeShutdownEndsLongPolls: a request waiting on its context (as a long-poll does) is
// released when shutdown starts, so stopping the agent does not wait out MaxWait.
func TestServeShutdownEndsLongPolls(t *testing.T) {
	b := testBundle(t)
	tlsCfg, err := ServerTLSConfig(b.ServerCertPEM, b.ServerKeyPEM, b.CACertPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(waiting)
		select {
		case <-r.Context().Done():
			w.WriteHeader(http.StatusOK)
		case <-time.After(30 * time.Second):
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h, tlsCfg, nil) }()

	client := clientFor(t, b.CACertPEM, b.ClientCertPEM, b.ClientKeyPEM)
	answered := make(chan int, 1)
	go func() {
		resp, err := client.Get("https://" + ln.Addr().String() + "/v1/operations/x?wait=30s")
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-waiting
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if status := <-answered; status != http.StatusOK {
		t.Errorf("long-poll answered %d during shutdown", status)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still listening after shutdown")
	}
}
