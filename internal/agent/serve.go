package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Server timeouts. There is no write timeout: a long-poll legitimately holds its answer for up to
// MaxWait, and the handler bounds that itself.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownGrace     = 10 * time.Second
)

// Serve serves h over TLS on ln until ctx ends, then shuts down gracefully: it stops accepting,
// ends long-polls (they answer with the current state) and waits up to 10 s for requests in flight.
// It never serves plain HTTP: a nil tlsCfg is an error. It returns nil after a shutdown caused by
// ctx, and closes ln in every case.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, tlsCfg *tls.Config, logger *slog.Logger) error {
	if tlsCfg == nil {
		ln.Close()
		return errors.New("agent: refusing to serve without TLS")
	}
	if logger == nil {
		logger = slog.Default()
	}
	// Request contexts derive from base, which is cancelled when shutdown starts, so long-polls
	// return at once instead of holding the shutdown for up to MaxWait.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		// Handshake refusals (no or wrong client certificate, plain HTTP) are logged here.
		ErrorLog: log.New(errorLogWriter{logger}, "", 0),
	}
	srv.RegisterOnShutdown(cancelBase)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		srv.Close()
		return err
	}
	return nil
}

// handshakeErrorPrefix starts net/http's log line for a failed TLS handshake.
const handshakeErrorPrefix = "http: TLS handshake error from "

// errorLogWriter is the writer of net/http's ErrorLog: a failed handshake becomes a structured
// record ("TLS handshake refused" at WARN for a client certificate refused, "TLS handshake failed"
// at INFO for anything else, such as a client that hung up or spoke plain HTTP) with the remote
// address and the reason; any other line is logged as it is, at INFO.
type errorLogWriter struct {
	log *slog.Logger
}

func (w errorLogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	if rest, ok := strings.CutPrefix(line, handshakeErrorPrefix); ok {
		// ADDR has no ": " in it, IPv6 addresses included ("[::1]:5555").
		if remote, reason, ok := strings.Cut(rest, ": "); ok {
			switch {
			case reason == "tls: client didn't provide a certificate":
				w.log.Warn("TLS handshake refused", "remote", remote, "reason", errNoClientCert.Error())
			case strings.Contains(reason, "certificate"):
				w.log.Warn("TLS handshake refused", "remote", remote, "reason", reason)
			default:
				w.log.Info("TLS handshake failed", "remote", remote, "reason", reason)
			}
			return len(p), nil
		}
	}
	w.log.Info(line)
	return len(p), nil
}
