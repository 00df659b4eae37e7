package localrun

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PortHolder returns the pid and command line of the process listening on a TCP port, or 0 when it
// cannot tell (the socket belongs to another user, or /proc is not mounted). Best effort: it only
// serves error messages.
func PortHolder(port int) (int, string) {
	inodes := listeningInodes(port)
	if len(inodes) == 0 {
		return 0, ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if !inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			continue
		}
		pid := strings.Split(fd, "/")[2]
		n, err := strconv.Atoi(pid)
		if err != nil {
			continue
		}
		return n, commandLine(pid)
	}
	return 0, ""
}

// listeningInodes returns the socket inodes listening on port, from /proc/net/tcp{,6}.
func listeningInodes(port int) map[string]bool {
	const stateListen = "0A"
	hexPort := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && strings.HasSuffix(fields[1], hexPort) && fields[3] == stateListen {
				inodes[fields[9]] = true
			}
		}
		f.Close()
	}
	return inodes
}

func commandLine(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil || len(b) == 0 {
		return "unknown command"
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
