package localrun

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Kubectl runs the built kubectl with a kubeconfig, the way a user would.
type Kubectl struct {
	Path       string
	Kubeconfig string
	// Dir is the working directory (the repository, so that -k config/... resolves).
	Dir string
	// CacheDir, when set, holds kubectl's discovery cache instead of ~/.kube/cache, which would
	// otherwise collect a directory per API server port a test ever used.
	CacheDir string
}

// Run runs kubectl and returns its stdout. A failure carries the command and kubectl's stderr, which
// is where the API server's reasons (a refused field, a missing object) show up.
func (k Kubectl) Run(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := k.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Command returns the kubectl command, for callers that wire its output themselves.
func (k Kubectl) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.Path, args...)
	cmd.Dir = k.Dir
	// KUBECONFIG rather than --kubeconfig: the commands stay what a user types after `export`.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.Kubeconfig)
	if k.CacheDir != "" {
		cmd.Env = append(cmd.Env, "KUBECACHEDIR="+k.CacheDir)
	}
	return cmd
}
