package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lync-dr/poolpair-operator/internal/devcerts"
)

func certsCommand(args []string, stdout, stderr io.Writer) error {
	var out, hosts, clientCN string
	var force bool
	fs := newFlagSet("certs", "certs --out DIR --hosts NAME[,NAME...] [--client-cn NAME]\n\n"+
		"Makes a development CA, a server certificate for the given host names and IP addresses, and a\n"+
		"client certificate for the operator (ECDSA P-256, PEM): ca.crt ca.key server.crt server.key\n"+
		"client.crt client.key. For labs and demos; use your own PKI in production.", stderr)
	fs.StringVar(&out, "out", "", "`directory` to write the files to (created if missing)")
	fs.StringVar(&hosts, "hosts", "", "comma-separated DNS `names` and IP addresses the server certificate is valid for")
	fs.StringVar(&clientCN, "client-cn", devcerts.DefaultClientCN, "client certificate common `name` (what --allowed-clients lists)")
	fs.BoolVar(&force, "force", false, "replace existing files (a new CA invalidates every certificate the old one signed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if out == "" || hosts == "" {
		return fmt.Errorf("%w: --out and --hosts are required", errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	hostList, err := devcerts.ParseHosts(hosts)
	if err != nil {
		return fmt.Errorf("%w: --hosts: %v", errUsage, err)
	}
	if clientCN == "" {
		return fmt.Errorf("%w: --client-cn must not be empty", errUsage)
	}
	if _, err := os.Stat(filepath.Join(out, devcerts.CAKeyFile)); err == nil && !force {
		return fmt.Errorf("%s already holds a CA; pass --force to replace it", out)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	b, err := devcerts.Generate(hostList, clientCN)
	if err != nil {
		return err
	}
	if err := b.WriteDir(out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: ca.crt ca.key server.crt server.key client.crt client.key\n", out)
	fmt.Fprintf(stdout, "server certificate for: %s; client certificate CN: %s\n", hosts, clientCN)
	return nil
}
