package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lync-dr/poolpair-operator/internal/agent"
	"github.com/lync-dr/poolpair-operator/internal/doctor"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// serveConfig is the agent's configuration; flag names and YAML keys are the same.
type serveConfig struct {
	Listen         string
	TLSCert        string
	TLSKey         string
	ClientCA       string
	AllowedClients string
	Backend        string
	Product        string
	Journal        string
	PowerShell     string
	Bootstrapper   string
	Server         string
	Deployment     string
	LogLevel       string
	Config         string
}

// closeGrace is how long a stopping agent lets running operations finish before cancelling them.
const closeGrace = 30 * time.Second

// serveFlags registers the serve flags on fs, bound to c.
func serveFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.Listen, "listen", ":9443", "address to listen on")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "server certificate `file` (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "server private key `file` (PEM)")
	fs.StringVar(&c.ClientCA, "client-ca", "", "`file` with the CA certificate(s) that sign allowed clients (PEM)")
	fs.StringVar(&c.AllowedClients, "allowed-clients", "", "comma-separated client certificate `names` (Subject CN or DNS name) let in; required")
	fs.StringVar(&c.Backend, "backend", "powershell", "powershell or sim")
	fs.StringVar(&c.Product, "product", protocol.ProductLync2013, "lync2013, sfb2015 or sfb2019")
	fs.StringVar(&c.Journal, "journal", defaultJournalDir(), "operation journal `directory`")
	fs.StringVar(&c.PowerShell, "powershell", "", "PowerShell `executable` (default: Windows PowerShell)")
	fs.StringVar(&c.Bootstrapper, "bootstrapper", "", "Bootstrapper.exe `path` (default: the product's Deployment folder)")
	fs.StringVar(&c.Server, "server", "", "this server's `FQDN` (powershell: default detected; sim: required)")
	fs.StringVar(&c.Deployment, "deployment", "", "simulated deployment `file` (--backend sim only)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.Config, "config", "", "YAML `file` with any of these flags as keys (flags win)")
}

// pathFlags are the serve flags that name files; a service gets them as absolute paths, since a
// service starts in the system directory.
var pathFlags = []string{"tls-cert", "tls-key", "client-ca", "journal", "powershell", "bootstrapper", "deployment", "config"}

// parseServeConfig parses serve's command line (and its --config file) and validates it.
func parseServeConfig(args []string, stderr io.Writer) (*serveConfig, *flag.FlagSet, error) {
	var c serveConfig
	fs := newFlagSet("serve", "serve [flags]", stderr)
	serveFlags(fs, &c)
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if c.Config != "" {
		if err := applyConfigFile(fs, c.Config); err != nil {
			return nil, nil, err
		}
	}
	return &c, fs, c.validate()
}

// applyConfigFile sets every key of the YAML file that was not given as a flag. Keys are flag
// names; values are strings, numbers, booleans or (for allowed-clients) lists.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%w: --config %s: %v", errUsage, path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "config" || fs.Lookup(k) == nil {
			return fmt.Errorf("%w: --config %s: unknown key %q (keys are the serve flag names)", errUsage, path, k)
		}
		if given[k] {
			continue
		}
		var v string
		switch x := m[k].(type) {
		case string:
			v = x
		case bool, float64:
			v = fmt.Sprint(x)
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				s, ok := p.(string)
				if !ok {
					return fmt.Errorf("%w: --config %s: %s: list items must be strings", errUsage, path, k)
				}
				parts[i] = s
			}
			v = strings.Join(parts, ",")
		case nil:
			continue
		default:
			return fmt.Errorf("%w: --config %s: %s: unsupported value %v", errUsage, path, k, x)
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("%w: --config %s: %s: %v", errUsage, path, k, err)
		}
	}
	return nil
}

// allowedClientsRequired is why serve will not start without --allowed-clients.
const allowedClientsRequired = "--allowed-clients is required: give the name (Subject CN or DNS name) of the operator's " +
	"client certificate, for example --allowed-clients poolpair-operator. Without it any certificate --client-ca signed " +
	"would be let in to drive Lync, and an enterprise CA signs every machine's certificate"

func (c *serveConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: --listen %q: %v (for example :9443 or 10.0.0.5:9443)", errUsage, c.Listen, err)
	}
	for _, f := range []struct{ name, val string }{{"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}, {"client-ca", c.ClientCA}} {
		if f.val == "" {
			return fmt.Errorf("%w: --%s is required: the agent serves only HTTPS with client certificates", errUsage, f.name)
		}
	}
	if len(splitList(c.AllowedClients)) == 0 {
		return fmt.Errorf("%w: %s", errUsage, allowedClientsRequired)
	}
	switch c.Product {
	case protocol.ProductLync2013, protocol.ProductSfB2015, protocol.ProductSfB2019:
	default:
		return fmt.Errorf("%w: --product %q: must be lync2013, sfb2015 or sfb2019", errUsage, c.Product)
	}
	switch c.Backend {
	case "powershell":
		if c.Deployment != "" {
			return fmt.Errorf("%w: --deployment is for --backend sim", errUsage)
		}
	case "sim":
		if c.Deployment == "" || c.Server == "" {
			return fmt.Errorf("%w: --backend sim needs --deployment FILE and --server FQDN (which server of the deployment this agent is)", errUsage)
		}
	default:
		return fmt.Errorf("%w: --backend %q: must be powershell or sim", errUsage, c.Backend)
	}
	if c.Server != "" {
		if err := protocol.ValidateFQDN("--server", c.Server); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if c.Journal == "" {
		return fmt.Errorf("%w: --journal must not be empty", errUsage)
	}
	_, err := parseLevel(c.LogLevel)
	return err
}

func serveCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	c, _, err := parseServeConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(c.LogLevel, stderr)
	if err != nil {
		return err
	}
	return runServe(ctx, c, logger)
}

// runServe runs the agent until ctx ends; the console and the Windows service both use it. The
// journal is opened last, once the agent can listen, so that a start that fails leaves nothing
// behind.
func runServe(ctx context.Context, c *serveConfig, logger *slog.Logger) error {
	// The TLS files are re-read when they change (certificates are renewed while the agent runs).
	tlsFiles, err := agent.NewTLSReloader(agent.TLSFiles{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.ClientCA,
		AllowedClients: splitList(c.AllowedClients)}, logger)
	if err != nil {
		return err
	}
	backend, closeBackend, err := newBackend(c, logger)
	if err != nil {
		return err
	}
	defer closeBackend()
	logger.Info("checking this server before serving", "backend", c.Backend, "product", c.Product)
	checks := startChecks(ctx, c, backend, logger)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.Listen, err)
	}
	journal, err := agent.OpenJournal(c.Journal)
	if err != nil {
		ln.Close()
		return err
	}
	defer journal.Close()
	h, err := agent.NewHandler(agent.Config{Backend: backend, Journal: journal, Logger: logger, Version: version, StartChecks: wireChecks(checks)})
	if err != nil {
		ln.Close()
		return err
	}
	attrs := []any{"version", version, "listen", ln.Addr().String(), "backend", c.Backend,
		"product", c.Product, "journal", c.Journal, "allowedClients", c.AllowedClients, "startChecks", doctor.Summarize(checks).String()}
	if failed := failedCheckNames(checks); len(failed) > 0 {
		logger.Error("lync-agent serving, but start checks failed: reads and steps that need them fail until they are fixed and the agent is restarted",
			append(attrs, "failed", strings.Join(failed, ", "))...)
	} else {
		logger.Info("lync-agent serving", attrs...)
	}
	stopPolling := pollTLSFiles(ctx, tlsFiles)
	serveErr := agent.Serve(ctx, ln, h, tlsFiles.Config(), logger)
	stopPolling()
	cctx, cancel := context.WithTimeout(context.Background(), closeGrace)
	defer cancel()
	if err := h.Close(cctx); err != nil {
		logger.Warn("operations still running at stop were cut short", "err", err)
	}
	logger.Info("lync-agent stopped")
	return serveErr
}

// pollTLSFiles reloads the TLS files when they change, until ctx ends or stop is called; stop
// returns once the poller has.
func pollTLSFiles(ctx context.Context, r *agent.TLSReloader) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, agent.DefaultTLSPollInterval)
	}()
	return func() {
		cancel()
		<-done
	}
}

// failedCheckNames names the checks that failed.
func failedCheckNames(checks []doctor.Check) []string {
	var names []string
	for _, ch := range checks {
		if ch.Status == doctor.Fail {
			names = append(names, ch.Name)
		}
	}
	return names
}

// defaultJournalDir is "journal" next to the executable on Windows (a service starts in the
// system directory, so a relative path would land there), ./journal elsewhere.
func defaultJournalDir() string {
	if runtime.GOOS == "windows" {
		if exe, err := os.Executable(); err == nil {
			return filepath.Join(filepath.Dir(exe), "journal")
		}
	}
	return "journal"
}
