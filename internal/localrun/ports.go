package localrun

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Port is a loopback TCP port the demo needs, and what for.
type Port struct {
	Port int
	Use  string
}

func (p Port) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// Busy is a port found in use, and the process holding it when this user may see it.
type Busy struct {
	Port
	PID     int    // 0 when unknown
	Command string // the holder's command line
}

func (b Busy) String() string {
	msg := fmt.Sprintf("port %d (%s) is in use", b.Port.Port, b.Use)
	if b.PID != 0 {
		cmd := strings.Join(strings.Fields(b.Command), " ") // one line, even for `sh -c` scripts
		if len(cmd) > 100 {
			cmd = cmd[:100] + "..."
		}
		msg += fmt.Sprintf(" by pid %d (%s)", b.PID, cmd)
	}
	return msg
}

// BusyPorts returns the ports that cannot be listened on at 127.0.0.1.
func BusyPorts(ports []Port) []Busy {
	var busy []Busy
	for _, p := range ports {
		ln, err := net.Listen("tcp", p.addr())
		if err == nil {
			ln.Close()
			continue
		}
		b := Busy{Port: p}
		b.PID, b.Command = PortHolder(p.Port)
		busy = append(busy, b)
	}
	return busy
}

// CheckPorts fails, naming every port already in use, what the caller needs it for and which
// process holds it, so a run fails at once rather than hanging on a listener that never comes up.
func CheckPorts(ports []Port) error {
	var msgs []string
	for _, b := range BusyPorts(ports) {
		msgs = append(msgs, b.String())
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "\n"))
	}
	return nil
}

// FreePorts returns n distinct loopback ports that were free a moment ago. All n listeners are
// open at once so the ports differ; another process may still take one before the caller binds it.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// PortOf returns the port of a host:port address or of a URL's authority (https://h:p/...).
func PortOf(addr string) (int, error) {
	if i := strings.Index(addr, "://"); i >= 0 {
		addr = strings.SplitN(addr[i+3:], "/", 2)[0]
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", addr, err)
	}
	return strconv.Atoi(port)
}
