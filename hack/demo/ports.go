//go:build unix

package main

import (
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/localrun"
)

// demoPorts lists every loopback port the demo listens on (Prometheus's only when it runs). The
// sim's come from its deployment file, and every agent endpoint of the sample must be one of them:
// a sample pointing elsewhere would only show up later as a PoolPair stuck on unreachable agents.
func demoPorts(withPrometheus bool) ([]localrun.Port, error) {
	ports := []localrun.Port{
		{Port: etcdPort, Use: "etcd client"},
		{Port: etcdPeerPort, Use: "etcd peer"},
		{Port: apiServerPort, Use: "kube-apiserver"},
		{Port: metricsPort, Use: "manager metrics"},
		{Port: probePort, Use: "manager health probes"},
		{Port: simAdminPort, Use: "sim admin API"},
	}
	if withPrometheus {
		ports = append(ports, localrun.Port{Port: prometheusPort, Use: "Prometheus"})
	}
	sim, err := simPorts()
	if err != nil {
		return nil, err
	}
	sample, err := samplePorts()
	if err != nil {
		return nil, err
	}
	for _, s := range sample {
		if !slices.ContainsFunc(sim, func(p localrun.Port) bool { return p.Port == s.Port }) {
			return nil, fmt.Errorf("%s: %s uses port %d, which %s does not serve", sampleFile, s.Use, s.Port, simDeployment)
		}
	}
	ports = append(ports, sim...)
	slices.SortFunc(ports, func(a, b localrun.Port) int { return a.Port - b.Port })
	return ports, nil
}

// simPorts reads the listen addresses of hack/sim/two-pools.yaml.
func simPorts() ([]localrun.Port, error) {
	var dep struct {
		Pools []struct {
			FQDN    string `json:"fqdn"`
			Listen  string `json:"listen"`
			Servers []struct {
				FQDN   string `json:"fqdn"`
				Listen string `json:"listen"`
			} `json:"servers"`
		} `json:"pools"`
	}
	if err := readYAML(simDeployment, &dep); err != nil {
		return nil, err
	}
	var ports []localrun.Port
	add := func(fqdn, listen string) error {
		if listen == "" {
			return nil
		}
		port, err := localrun.PortOf(listen)
		if err != nil {
			return fmt.Errorf("%s: %s listen: %w", simDeployment, fqdn, err)
		}
		ports = append(ports, localrun.Port{Port: port, Use: "sim agent of " + fqdn})
		return nil
	}
	for _, pool := range dep.Pools {
		if err := add(pool.FQDN, pool.Listen); err != nil {
			return nil, err
		}
		for _, s := range pool.Servers {
			if err := add(s.FQDN, s.Listen); err != nil {
				return nil, err
			}
		}
	}
	return ports, nil
}

// samplePorts reads the agent endpoints of the sample PoolPair.
func samplePorts() ([]localrun.Port, error) {
	var pp drv1alpha1.PoolPair
	if err := readYAML(sampleFile, &pp); err != nil {
		return nil, err
	}
	var ports []localrun.Port
	for _, pool := range []drv1alpha1.PoolSpec{pp.Spec.Primary, pp.Spec.Backup} {
		endpoints := map[string]string{pool.FQDN: pool.AgentEndpoint}
		for _, s := range pool.Servers {
			endpoints[s.FQDN] = s.AgentEndpoint
		}
		for fqdn, ep := range endpoints {
			if ep == "" {
				continue
			}
			port, err := localrun.PortOf(ep)
			if err != nil {
				return nil, fmt.Errorf("%s: agentEndpoint of %s: %w", sampleFile, fqdn, err)
			}
			ports = append(ports, localrun.Port{Port: port, Use: "agentEndpoint of " + fqdn})
		}
	}
	return ports, nil
}

// loadSample reads the sample PoolPair.
func loadSample() (*drv1alpha1.PoolPair, error) {
	var pp drv1alpha1.PoolPair
	if err := readYAML(sampleFile, &pp); err != nil {
		return nil, err
	}
	if pp.Name == "" || len(pp.Spec.Primary.Servers) == 0 {
		return nil, fmt.Errorf("%s: want metadata.name and spec.primary.servers", sampleFile)
	}
	return &pp, nil
}

func readYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	return nil
}
