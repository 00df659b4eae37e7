package simrun

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// errUnreachable is what a connection to an "unreachable" endpoint gets: it is closed at once.
var errUnreachable = errors.New("simulated: endpoint unreachable")

// gatedListener plays the sim's "unreachable" fault at the TCP level: while reachable says
// false, new connections are closed as soon as they are accepted and kept-alive ones are cut on
// their next read or write, so clients see resets and EOFs as from a dead host. It also tracks
// connections so a kill can cut them all, as a dying process would. A nil reachable means always.
type gatedListener struct {
	net.Listener
	reachable func() bool
	// dead is set by kill: from then on the listener behaves as an unreachable one.
	dead atomic.Bool

	mu    sync.Mutex
	conns map[*gatedConn]struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.up() {
			c.Close()
			continue
		}
		gc := &gatedConn{Conn: c, l: l}
		l.mu.Lock()
		if l.conns == nil {
			l.conns = map[*gatedConn]struct{}{}
		}
		l.conns[gc] = struct{}{}
		l.mu.Unlock()
		return gc, nil
	}
}

func (l *gatedListener) up() bool { return !l.dead.Load() && (l.reachable == nil || l.reachable()) }

// kill cuts every open connection and drops any accepted later, at once, as a process that dies.
func (l *gatedListener) kill() {
	l.dead.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Conn.Close()
	}
	l.conns = nil
}

type gatedConn struct {
	net.Conn
	l *gatedListener
}

func (c *gatedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.l.up() {
		c.Close()
		return 0, errUnreachable
	}
	return n, err
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if !c.l.up() {
		c.Close()
		return 0, errUnreachable
	}
	return c.Conn.Write(b)
}

func (c *gatedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
