package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

const simctlSynopsis = `simctl [--admin URL] --tls-dir DIR <command>

Commands (against a running "lync-agent sim"):
  stop-service FQDN              stop LYNCBACKUP on a simulated Front End server
  unreachable FQDN true|false    make a server's agent or a pool's alias drop every connection, or answer again
  pool-unreachable POOL true|false
                                 make a whole pool stop answering (a disaster: its alias and every
                                 one of its Front End servers), or answer again
  front-end FQDN stop|start      stop or start the Front End service (RTCSRV) of a Front End server
  export-error POOL on|off       make every backup module of POOL export ErrorState, or recover
  restart-agent FQDN             kill a Front End server's agent and start it again (the deployment,
                                 and a Bootstrapper.exe it started, go on)
  reboot FQDN                    restart a Front End server, as its administrator would: its agent
                                 and a Bootstrapper.exe running on it are cut short, a restart that
                                 Bootstrapper asked for is done, LYNCBACKUP (if installed) starts
                                 on its own, and the agent starts again
  reads LATENCY true|false       make every read take LATENCY (e.g. 2s; 0s = instant) and, with
                                 true, wait while the server's agent runs a write
  set-sync-interval DURATION     set the Backup Service's SyncInterval for every pool (e.g. 30s or
                                 2m; Lync accepts 5s to 3h, the sim 1s to 3h)
  state                          print the simulated deployment's state, with its timeline (JSON)
  failover-state                 print who serves whom: where the Central Management store is,
                                 each pool's backup pool, whether it is failed over and to which
                                 pool, its Front End servers, and each Edge pool's next hop`

func simctlCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var admin, tlsDir string
	fs := newFlagSet("simctl", simctlSynopsis, stderr)
	fs.StringVar(&admin, "admin", "https://127.0.0.1:19440", "`URL` of the sim admin API")
	fs.StringVar(&tlsDir, "tls-dir", "", "`directory` with ca.crt, client.crt and client.key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if tlsDir == "" {
		return fmt.Errorf("%w: --tls-dir is required", errUsage)
	}
	method, path, body, err := simctlRequest(fs.Args())
	if err != nil {
		return err
	}
	client, err := simctlClient(tlsDir)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(rctx, method, strings.TrimSuffix(admin, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("%w: --admin: %v", errUsage, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e protocol.Error
		if json.Unmarshal(answer, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s: %s", e.Code, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	switch fs.Arg(0) {
	case "state":
		_, err = stdout.Write(answer)
		return err
	case "failover-state":
		var st sim.State
		if err := json.Unmarshal(answer, &st); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
		_, err = io.WriteString(stdout, failoverSummary(st))
		return err
	}
	fmt.Fprintf(stdout, "ok: %s\n", strings.Join(fs.Args(), " "))
	return nil
}

// simctlRequest maps a simctl command to a request of the sim admin API.
func simctlRequest(args []string) (method, path string, body any, err error) {
	if len(args) == 0 {
		return "", "", nil, fmt.Errorf("%w: a command is required (stop-service, unreachable, pool-unreachable, front-end, export-error, restart-agent, reboot, reads, set-sync-interval, state, failover-state)", errUsage)
	}
	want := func(n int, form string) error {
		if len(args) != n {
			return fmt.Errorf("%w: usage: simctl %s", errUsage, form)
		}
		return nil
	}
	onOff := func(v string, yes, no string) (bool, error) {
		switch strings.ToLower(v) {
		case yes:
			return true, nil
		case no:
			return false, nil
		}
		return false, fmt.Errorf("%w: %q: want %s or %s", errUsage, v, yes, no)
	}
	esc := url.PathEscape
	switch args[0] {
	case "state":
		if err := want(1, "state"); err != nil {
			return "", "", nil, err
		}
		return http.MethodGet, sim.AdminPrefix + "/state", nil, nil
	case "failover-state":
		if err := want(1, "failover-state"); err != nil {
			return "", "", nil, err
		}
		return http.MethodGet, sim.AdminPrefix + "/state", nil, nil
	case "pool-unreachable":
		if err := want(3, "pool-unreachable POOL true|false"); err != nil {
			return "", "", nil, err
		}
		v, err := onOff(args[2], "true", "false")
		if err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/pools/" + esc(args[1]) + "/unreachable", map[string]bool{"unreachable": v}, nil
	case "front-end":
		if err := want(3, "front-end FQDN stop|start"); err != nil {
			return "", "", nil, err
		}
		v, err := onOff(args[2], "start", "stop")
		if err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/servers/" + esc(args[1]) + "/front-end", map[string]bool{"running": v}, nil
	case "stop-service":
		if err := want(2, "stop-service FQDN"); err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/servers/" + esc(args[1]) + "/stop-backup-service", nil, nil
	case "unreachable":
		if err := want(3, "unreachable FQDN true|false"); err != nil {
			return "", "", nil, err
		}
		v, err := onOff(args[2], "true", "false")
		if err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/endpoints/" + esc(args[1]) + "/unreachable", map[string]bool{"unreachable": v}, nil
	case "export-error":
		if err := want(3, "export-error POOL on|off"); err != nil {
			return "", "", nil, err
		}
		v, err := onOff(args[2], "on", "off")
		if err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/pools/" + esc(args[1]) + "/export-error", map[string]any{"module": "", "on": v}, nil
	case "restart-agent":
		if err := want(2, "restart-agent FQDN"); err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/agents/" + esc(args[1]) + "/restart", nil, nil
	case "reboot":
		if err := want(2, "reboot FQDN"); err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/servers/" + esc(args[1]) + "/reboot", nil, nil
	case "set-sync-interval":
		if err := want(2, "set-sync-interval DURATION"); err != nil {
			return "", "", nil, err
		}
		if d, err := time.ParseDuration(args[1]); err != nil || d <= 0 {
			return "", "", nil, fmt.Errorf("%w: %q: want a duration such as 30s or 2m", errUsage, args[1])
		}
		return http.MethodPost, sim.AdminPrefix + "/sync-interval", map[string]string{"syncInterval": args[1]}, nil
	case "reads":
		if err := want(3, "reads LATENCY true|false"); err != nil {
			return "", "", nil, err
		}
		if d, err := time.ParseDuration(args[1]); err != nil || d < 0 {
			return "", "", nil, fmt.Errorf("%w: %q: want a duration such as 0s, 500ms or 2s", errUsage, args[1])
		}
		v, err := onOff(args[2], "true", "false")
		if err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, sim.AdminPrefix + "/reads", map[string]any{"latency": args[1], "waitForWrites": v}, nil
	}
	return "", "", nil, fmt.Errorf("%w: unknown simctl command %q", errUsage, args[0])
}

func simctlClient(dir string) (*http.Client, error) {
	caPEM, err := readFile("tls-dir", filepath.Join(dir, devcerts.CACertFile))
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, devcerts.ClientCertFile), filepath.Join(dir, devcerts.ClientKeyFile))
	if err != nil {
		return nil, fmt.Errorf("--tls-dir: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("--tls-dir: ca.crt holds no PEM certificate")
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}},
	}}, nil
}

// failoverSummary renders the failover facts of a sim state, one line per fact:
//
//	Central Management store: active in pool02.contoso.com
//	pool01.contoso.com: failed over to pool02.contoso.com (its users sign in there); backup pool pool02.contoso.com
//	  fe01.pool01.contoso.com: Front End Running, unreachable
//	edge01.contoso.com (Edge pool): next hop pool02.contoso.com
func failoverSummary(st sim.State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Central Management store: active in %s\n", st.CMSPool)
	for _, p := range st.Pools {
		serves := "serves its own users"
		if p.FailedOverTo != "" {
			serves = "failed over to " + p.FailedOverTo + " (its users sign in there)"
		}
		backup := "no backup pool"
		if p.BackupPool != "" {
			backup = "backup pool " + p.BackupPool
		}
		fmt.Fprintf(&b, "%s: %s; %s", p.FQDN, serves, backup)
		if p.HostsCMS {
			b.WriteString("; hosts the Central Management store")
		}
		if len(p.EdgePools) > 0 {
			b.WriteString("; next hop of " + strings.Join(p.EdgePools, ", "))
		}
		b.WriteString("\n")
		for _, s := range st.Servers {
			if s.Pool != p.FQDN {
				continue
			}
			fmt.Fprintf(&b, "  %s: Front End %s", s.FQDN, s.FrontEnd)
			if s.Faults.Unreachable {
				b.WriteString(", unreachable")
			}
			b.WriteString("\n")
		}
	}
	for _, e := range st.EdgePools {
		fmt.Fprintf(&b, "%s (Edge pool): next hop %s\n", e.FQDN, e.NextHop)
	}
	return b.String()
}
