package sim

import (
	"context"
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %v", c.Now())
	}
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
	late, early := c.After(10*time.Second), c.After(5*time.Second)
	if c.Waiters() != 2 {
		t.Fatalf("Waiters = %d", c.Waiters())
	}
	c.Step(4 * time.Second)
	select {
	case <-early:
		t.Fatal("fired before its deadline")
	default:
	}
	c.Step(time.Second)
	select {
	case got := <-early:
		if !got.Equal(t0.Add(5 * time.Second)) {
			t.Errorf("fired with %v", got)
		}
	default:
		t.Fatal("did not fire at its deadline")
	}
	select {
	case <-late:
		t.Fatal("late fired early")
	default:
	}
	c.Set(t0.Add(time.Hour)) // stepped past: fires
	select {
	case <-late:
	default:
		t.Fatal("Set past the deadline did not fire")
	}
	if c.Waiters() != 0 || !c.Now().Equal(t0.Add(time.Hour)) {
		t.Errorf("Waiters = %d, Now = %v", c.Waiters(), c.Now())
	}

	// WaitForWaiters returns once someone waits, and honours its context.
	go func() { <-c.After(time.Second) }()
	if err := c.WaitForWaiters(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitForWaiters(ctx, 5); err == nil {
		t.Error("WaitForWaiters ignored its context")
	}
}

func TestRealClock(t *testing.T) {
	c := RealClock()
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Errorf("RealClock.Now off by %v", d)
	}
	<-c.After(0)
}
