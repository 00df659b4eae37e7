//go:build !windows

package main

import (
	"context"
	"errors"
	"io"
)

// runAsServiceIfNeeded: only Windows has a service control manager to start us.
func runAsServiceIfNeeded() (bool, int) { return false, 0 }

func serviceCommand(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("the service command is Windows-only; elsewhere run \"lync-agent serve\" under your service manager (for example a systemd unit)")
}
