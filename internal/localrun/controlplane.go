package localrun

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneOptions say where and how to run etcd and kube-apiserver.
type ControlPlaneOptions struct {
	// AssetsDir holds kube-apiserver, etcd and kubectl (testenv.AssetsDir).
	AssetsDir string
	// Dir receives the kubeconfig, the two logs, etcd's data and the API server's certificates.
	Dir string
	// EtcdPort, EtcdPeerPort and APIServerPort are fixed loopback ports; 0 picks a free one.
	EtcdPort, EtcdPeerPort, APIServerPort int
	// StartTimeout bounds each component's start (envtest's default when zero: 20s).
	StartTimeout time.Duration
}

// ControlPlane is a running etcd and kube-apiserver with an admin user's kubeconfig.
type ControlPlane struct {
	env  *envtest.Environment
	logs []*os.File
	// Config is the admin user's (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of the same user's kubeconfig file.
	Kubeconfig string
	// Kubectl runs the built kubectl against this control plane.
	Kubectl Kubectl
	// APIServerURL is the API server's https URL.
	APIServerURL string
}

// StartControlPlane starts etcd and kube-apiserver on loopback and writes Dir/kubeconfig. No CRD is
// installed: callers apply config/crd with kubectl, as a user would.
func StartControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	// envtest writes into these directories but creates them only when it picks them itself.
	for _, dir := range []string{filepath.Join(o.Dir, "etcd"), filepath.Join(o.Dir, "apiserver-certs")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control plane directory: %w", err)
		}
	}
	etcdLog, err := os.Create(filepath.Join(o.Dir, "etcd.log"))
	if err != nil {
		return nil, fmt.Errorf("etcd log: %w", err)
	}
	apiLog, err := os.Create(filepath.Join(o.Dir, "kube-apiserver.log"))
	if err != nil {
		etcdLog.Close()
		return nil, fmt.Errorf("kube-apiserver log: %w", err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    o.AssetsDir,
		ControlPlaneStartTimeout: o.StartTimeout,
	}
	env.ControlPlane.Etcd = etcd(o, etcdLog)
	env.ControlPlane.APIServer = apiServer(o, apiLog)
	cp := &ControlPlane{env: env, logs: []*os.File{etcdLog, apiLog}}
	if _, err := env.Start(); err != nil {
		_ = cp.Stop()
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s (logs in %s): %w", o.AssetsDir, o.Dir, err)
	}
	cp.APIServerURL = env.ControlPlane.APIServer.SecureServing.URL("https", "/").String()
	if err := cp.writeKubeconfig(filepath.Join(o.Dir, "kubeconfig")); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	cp.Kubectl = Kubectl{Path: filepath.Join(o.AssetsDir, "kubectl"), Kubeconfig: cp.Kubeconfig}
	return cp, nil
}

func etcd(o ControlPlaneOptions, log *os.File) *envtest.Etcd {
	e := &envtest.Etcd{Out: log, Err: log, DataDir: filepath.Join(o.Dir, "etcd")}
	if o.EtcdPort != 0 {
		e.URL = &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(o.EtcdPort)}
	}
	if o.EtcdPeerPort != 0 {
		// envtest picks the peer port itself unless told: a fixed one keeps the port check honest.
		e.Configure().Set("listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(o.EtcdPeerPort))
	}
	return e
}

func apiServer(o ControlPlaneOptions, log *os.File) *envtest.APIServer {
	a := &envtest.APIServer{Out: log, Err: log, CertDir: filepath.Join(o.Dir, "apiserver-certs")}
	a.SecureServing.Address = "127.0.0.1"
	if o.APIServerPort != 0 {
		a.SecureServing.Port = strconv.Itoa(o.APIServerPort)
	}
	return a
}

// writeKubeconfig provisions an admin user (system:masters) and writes its kubeconfig, for kubectl,
// the manager and the user.
func (c *ControlPlane) writeKubeconfig(path string) error {
	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("provisioning the admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	c.Config, c.Kubeconfig = user.Config(), path
	return nil
}

// Stop stops kube-apiserver, then etcd, and waits for both to exit.
func (c *ControlPlane) Stop() error {
	err := c.env.Stop()
	for _, f := range c.logs {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("stopping the control plane: %w", err)
	}
	return nil
}
