//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lync-dr/poolpair-operator/internal/lync/sim"
)

// simctl runs bin/lync-agent simctl against the sim admin API at admin.
func simctl(ctx context.Context, admin, certs string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	full := append([]string{"simctl", "--admin", admin, "--tls-dir", certs}, args...)
	cmd := exec.CommandContext(ctx, "bin/lync-agent", full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bin/lync-agent %s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// simState reads the sim's state with `simctl state`.
func simState(ctx context.Context, admin, certs string) (*sim.State, []byte, error) {
	out, err := simctl(ctx, admin, certs, "state")
	if err != nil {
		return nil, nil, err
	}
	var st sim.State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, out, fmt.Errorf("decoding simctl state: %w", err)
	}
	return &st, out, nil
}

// restarter restarts a Front End agent: with `simctl restart-agent` when this lync-agent has it,
// else with POST /sim/v1/agents/{fqdn}/restart on the admin API, over mutual TLS with the
// development client certificate.
type restarter struct {
	simctl bool
	certs  string
	hc     *http.Client
}

func newRestarter(ctx context.Context, certs string) restarter {
	help, _ := exec.CommandContext(ctx, "bin/lync-agent", "simctl", "--help").CombinedOutput()
	return restarter{simctl: strings.Contains(string(help), "restart-agent"), certs: certs}
}

func (r restarter) how() string {
	if r.simctl {
		return "`simctl restart-agent`"
	}
	return "POST " + sim.AdminPrefix + "/agents/{fqdn}/restart (this lync-agent's simctl has no restart-agent)"
}

func (r *restarter) restart(ctx context.Context, admin, fqdn string) error {
	if r.simctl {
		_, err := simctl(ctx, admin, r.certs, "restart-agent", fqdn)
		return err
	}
	if r.hc == nil {
		hc, err := adminClient(r.certs)
		if err != nil {
			return err
		}
		r.hc = hc
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	u := strings.TrimSuffix(admin, "/") + sim.AdminPrefix + "/agents/" + url.PathEscape(fqdn) + "/restart"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func adminClient(certs string) (*http.Client, error) {
	caPEM, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "client.crt"), filepath.Join(certs, "client.key"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s/ca.crt holds no PEM certificate", certs)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}},
	}}, nil
}
