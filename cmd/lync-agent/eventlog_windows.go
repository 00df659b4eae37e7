//go:build windows

package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"

	"golang.org/x/sys/windows/svc/eventlog"
)

// Event IDs of the agent's event log entries, by severity.
const (
	eventInfo    = 1
	eventWarning = 2
	eventError   = 3
)

// eventLogHandler writes slog records to the Windows Event Log, one entry per record, formatted as
// the console's text lines and typed by level.
type eventLogHandler struct {
	elog  *eventlog.Log
	inner slog.Handler
	mu    *sync.Mutex
	buf   *bytes.Buffer
}

func newEventLogHandler(elog *eventlog.Log, level slog.Level) *eventLogHandler {
	buf := &bytes.Buffer{}
	return &eventLogHandler{
		elog: elog,
		// The time is the event's own; no need to repeat it in the text.
		inner: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}),
		mu:  &sync.Mutex{},
		buf: buf,
	}
}

func (h *eventLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *eventLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := strings.TrimSpace(h.buf.String())
	switch {
	case r.Level >= slog.LevelError:
		return h.elog.Error(eventError, msg)
	case r.Level >= slog.LevelWarn:
		return h.elog.Warning(eventWarning, msg)
	}
	return h.elog.Info(eventInfo, msg)
}

func (h *eventLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	return &c
}

func (h *eventLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}
