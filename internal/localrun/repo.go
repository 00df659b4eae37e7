package localrun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

// RepoRoot finds the repository from the working directory, so a tool built from it runs from
// any subdirectory; cmd names the make target to suggest when it is run elsewhere.
func RepoRoot(cmd string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/lync-dr/poolpair-operator\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the poolpair-operator repository (" + cmd + ")")
		}
		dir = parent
	}
}

// AssetsDir is where etcd, kube-apiserver and kubectl are: $KUBEBUILDER_ASSETS (make exports it)
// or bin/k8s/<version> below the working directory.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join("bin", "k8s", testenv.KubeVersion)
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%w (missing %s)", testenv.ErrNoAssets, filepath.Join(dir, bin))
		}
	}
	return filepath.Abs(dir)
}
