// Package localrun runs the operator's real processes on loopback for `make demo` and the
// end-to-end test: the test control plane (etcd and kube-apiserver through envtest), child
// processes in their own process groups with their output in log files, port checks that name
// the process in the way, the built kubectl, and a one-line summary of a PoolPair's progress.
//
// It is development tooling: the manager and the agent never import it.
package localrun
