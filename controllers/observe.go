package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/agentclient"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// poolObservation is one pool as the agent of one of its servers described it.
type poolObservation struct {
	FQDN    string
	Partner string
	// Endpoint is the agent that answered (or, when none did, the last one tried).
	Endpoint string
	Pool     protocol.Pool
	// Err is the agent's error; NotFound means the pool is not in the topology.
	Err error
}

func (p *poolObservation) ok() bool { return p.Err == nil }

func (p *poolObservation) notFound() bool { return errors.Is(p.Err, agentclient.ErrNotFound) }

// serverObservation is one Front End server as its agent described it.
type serverObservation struct {
	FQDN     string
	Pool     string
	Partner  string
	Endpoint string
	Server   protocol.Server
	Err      error
}

// directionObservation is backup synchronization from one pool to the other.
type directionObservation struct {
	From, To string
	HostsCMS bool
	Endpoint string
	Status   protocol.BackupStatus
	Err      error
	// Read is false when the direction was not asked for (the pools are not paired yet).
	Read bool
}

// observation is everything one pass saw. It is gathered afresh on every pass: status is derived
// from it, never from what the controller remembers doing.
type observation struct {
	Primary, Backup poolObservation
	Servers         []serverObservation
	Directions      []directionObservation
}

// pools returns both pool observations.
func (o *observation) pools() []*poolObservation { return []*poolObservation{&o.Primary, &o.Backup} }

// failures lists every agent that did not answer, as "name (endpoint): error".
func (o *observation) failures() []string {
	var out []string
	add := func(name, endpoint string, err error) {
		if err != nil && !errors.Is(err, agentclient.ErrNotFound) {
			out = append(out, fmt.Sprintf("%s (%s): %v", name, endpoint, shortError(err)))
		}
	}
	for _, p := range o.pools() {
		add(p.FQDN, p.Endpoint, p.Err)
	}
	for _, s := range o.Servers {
		add(s.FQDN, s.Endpoint, s.Err)
	}
	for _, d := range o.Directions {
		if d.Read {
			add("backup status of "+d.From, d.Endpoint, d.Err)
		}
	}
	return out
}

// shortError drops the wrapping that repeats the endpoint.
func shortError(err error) string {
	var apiErr *agentclient.APIError
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("%d %s: %s", apiErr.Status, apiErr.Code, apiErr.Message)
	}
	return err.Error()
}

// observe reads both pools, then every server and both backup directions, in parallel with short
// per-request timeouts: a pass costs two round trips however many servers there are (more only
// while a pool's first server does not answer).
func observe(ctx context.Context, agents AgentClient, pp *drv1alpha1.PoolPair) *observation {
	obs := observePools(ctx, agents, pp)
	var wg sync.WaitGroup
	for _, p := range obs.pools() {
		if servers := specServers(pp, p.FQDN); len(servers) > 0 {
			for _, s := range servers {
				obs.Servers = append(obs.Servers, serverObservation{FQDN: s.FQDN, Pool: p.FQDN, Partner: p.Partner, Endpoint: s.Endpoint})
			}
		} else if p.ok() {
			for _, c := range p.Pool.Computers {
				fqdn := strings.ToLower(c)
				obs.Servers = append(obs.Servers, serverObservation{FQDN: fqdn, Pool: p.FQDN, Partner: p.Partner, Endpoint: endpointFor("", fqdn, agentPort(pp))})
			}
		}
	}
	for i := range obs.Servers {
		s := &obs.Servers[i]
		wg.Go(func() {
			s.Server, s.Err = agents.Server(ctx, s.Endpoint)
			if s.Err == nil && !protocol.SameFQDN(s.Server.FQDN, s.FQDN) {
				// A DNS name or a load balancer handed us another server: nothing it says is
				// about this one.
				s.Err = fmt.Errorf("the agent at %s answered as server %q, not %s", s.Endpoint, s.Server.FQDN, s.FQDN)
				s.Server = protocol.Server{}
			}
		})
	}
	if obs.Primary.ok() && obs.Backup.ok() {
		for _, p := range obs.pools() {
			obs.Directions = append(obs.Directions, directionObservation{From: p.FQDN, To: p.Partner, HostsCMS: p.Pool.HostsCMS, Endpoint: p.Endpoint})
		}
		// Backup status only means something between paired pools.
		if protocol.SameFQDN(obs.Primary.Pool.BackupPool, obs.Backup.FQDN) && protocol.SameFQDN(obs.Backup.Pool.BackupPool, obs.Primary.FQDN) {
			for i := range obs.Directions {
				d := &obs.Directions[i]
				d.Read = true
				wg.Go(func() { d.Status, d.Err = agents.BackupStatus(ctx, d.Endpoint, d.From) })
			}
		}
	}
	wg.Wait()
	return obs
}

// observePools reads both pools' topology facts, in parallel. There is no pool-level agent: a
// pool is read through the agent of any of its Front End servers that answers, its servers that
// answered last time first, and through the pool's discovery address (its DNS name) last.
func observePools(ctx context.Context, agents AgentClient, pp *drv1alpha1.PoolPair) *observation {
	obs := &observation{
		Primary: poolObservation{FQDN: pp.Spec.Primary.FQDN, Partner: pp.Spec.Backup.FQDN},
		Backup:  poolObservation{FQDN: pp.Spec.Backup.FQDN, Partner: pp.Spec.Primary.FQDN},
	}
	var wg sync.WaitGroup
	for _, p := range obs.pools() {
		wg.Go(func() {
			for _, endpoint := range poolReadEndpoints(pp, p.FQDN) {
				p.Endpoint = endpoint
				p.Pool, p.Err = agents.Pool(ctx, endpoint, p.FQDN)
				if !errors.Is(p.Err, agentclient.ErrUnavailable) || ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return obs
}

// poolReadEndpoints lists where a pool can be read, best first: the agents of its servers that
// answered on the last pass, then its other known servers, then its discovery address.
func poolReadEndpoints(pp *drv1alpha1.PoolPair, pool string) []string {
	var answered, others []string
	known := map[string]bool{}
	add := func(fqdn, endpoint string, reachable bool) {
		if known[fqdn] {
			return
		}
		known[fqdn] = true
		if reachable {
			answered = append(answered, endpoint)
		} else {
			others = append(others, endpoint)
		}
	}
	reachable := map[string]bool{}
	for _, s := range pp.Status.Servers {
		if s.Pool == pool {
			reachable[s.FQDN] = s.Reachable
		}
	}
	if servers := specServers(pp, pool); len(servers) > 0 {
		for _, s := range servers {
			add(s.FQDN, s.Endpoint, reachable[s.FQDN])
		}
	} else {
		for _, s := range pp.Status.Servers {
			if s.Pool == pool {
				add(s.FQDN, endpointFor("", s.FQDN, agentPort(pp)), s.Reachable)
			}
		}
	}
	spec := pp.Spec.Primary
	if pool == pp.Spec.Backup.FQDN {
		spec = pp.Spec.Backup
	}
	return append(append(answered, others...), endpointFor(spec.AgentEndpoint, pool, agentPort(pp)))
}

// specServers lists the servers the spec gives for pool, with their agent endpoints.
func specServers(pp *drv1alpha1.PoolPair, pool string) []agentServer {
	spec := pp.Spec.Primary
	if pool == pp.Spec.Backup.FQDN {
		spec = pp.Spec.Backup
	}
	var out []agentServer
	for _, s := range spec.Servers {
		out = append(out, agentServer{FQDN: s.FQDN, Endpoint: endpointFor(s.AgentEndpoint, s.FQDN, agentPort(pp))})
	}
	return out
}

// agentPort is spec.agent.port, defaulted as the schema does for objects written before it.
func agentPort(pp *drv1alpha1.PoolPair) int32 {
	if pp.Spec.Agent.Port == 0 {
		return 9443
	}
	return pp.Spec.Agent.Port
}

// endpointFor is the agent URL: the one given, else https://<fqdn>:<port>.
func endpointFor(given, fqdn string, port int32) string {
	if given != "" {
		return strings.TrimSuffix(given, "/")
	}
	return "https://" + net.JoinHostPort(fqdn, strconv.Itoa(int(port)))
}
