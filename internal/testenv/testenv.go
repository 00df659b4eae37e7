// Package testenv starts the real kube-apiserver and etcd for tests (controller-runtime envtest),
// from the binaries hack/build-control-plane.sh builds into bin/k8s/<version>/.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the version of the control plane the tests run against.
const KubeVersion = "1.37.2"

// ErrNoAssets means the control-plane binaries are not built; run `make envtest-assets`.
var ErrNoAssets = errors.New("the test control plane is not built: run `make envtest-assets` (or `make test`), or set KUBEBUILDER_ASSETS")

// RepoRoot is the repository's top directory, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns the directory with kube-apiserver, etcd and kubectl, or ErrNoAssets.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "k8s", KubeVersion)
	}
	for _, bin := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%w (missing %s)", ErrNoAssets, filepath.Join(dir, bin))
		}
	}
	return dir, nil
}

// New returns an envtest environment with the PoolPair CRD installed, or ErrNoAssets.
func New() (*envtest.Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}, nil
}

// MissingAssets reports what a test suite should do without the control plane: under CI=true the
// suite must fail (a skipped envtest suite would hide that nothing was tested); otherwise it skips
// with the reason.
func MissingAssets(err error) (fail bool, message string) {
	if os.Getenv("CI") == "true" {
		return true, "CI=true but " + err.Error()
	}
	return false, "skipping envtest suite: " + err.Error()
}

// Suite is a package's shared control plane, started once in TestMain (it takes seconds).
type Suite struct {
	// Config reaches the running kube-apiserver.
	Config *rest.Config
	// SkipReason is set when the control plane is not built and CI is not "true".
	SkipReason string
}

// Run starts the control plane, calls setup, runs the package's tests and stops the control plane.
// Without the binaries it fails under CI=true and otherwise runs the tests with SkipReason set, so
// each envtest test skips with a message instead of passing silently.
func (s *Suite) Run(m *testing.M, setup func(cfg *rest.Config) error) int {
	env, err := New()
	if err != nil {
		fail, msg := MissingAssets(err)
		fmt.Fprintln(os.Stderr, msg)
		if fail {
			return 1
		}
		s.SkipReason = msg
		return m.Run()
	}
	s.Config, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if setup != nil {
		if err := setup(s.Config); err != nil {
			fmt.Fprintln(os.Stderr, "setting up the test suite:", err)
			return 1
		}
	}
	return m.Run()
}

// Require skips a test when the suite has no control plane.
func (s *Suite) Require(t testing.TB) {
	t.Helper()
	if s.SkipReason != "" {
		t.Skip(s.SkipReason)
	}
}
