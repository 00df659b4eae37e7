//go:build !linux

package localrun

// PortHolder names the process listening on a TCP port; without /proc it cannot tell.
func PortHolder(port int) (int, string) { return 0, "" }
