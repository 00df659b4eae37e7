package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// probeTimeout bounds the connection CheckListen makes to whatever holds the port.
const probeTimeout = 3 * time.Second

const (
	assumeListen  = "serve binds --listen (default :9443); the operator connects to it"
	assumeJournal = "serve writes its operation journal and Bootstrapper's output (bootstrapper.log) to --journal as the agent's account"
)

// CheckListen says whether serve could listen on addr. When the address is taken it connects
// and reads the certificate that answers: this agent's own (--tls-cert, serverCert) means a
// lync-agent is already serving there, typically the service.
func CheckListen(ctx context.Context, addr string, serverCert *x509.Certificate) Check {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		_ = ln.Close()
		return Passed("listen", addr+" is free: serve can listen there").About(assumeListen)
	}
	host, port, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		return Failed("listen", fmt.Sprintf("--listen %q: %v", addr, splitErr), "give an address like :9443 or 10.0.0.5:9443").About(assumeListen)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	target := net.JoinHostPort(host, port)
	dialer := net.Dialer{Timeout: probeTimeout}
	conn, dialErr := dialer.DialContext(ctx, "tcp", target)
	if dialErr != nil {
		return Failed("listen", fmt.Sprintf("cannot listen on %s: %v", addr, err),
			"give --listen an address of this server (:9443 listens on all of them) that this account may bind").About(assumeListen)
	}
	peer := presentedCert(ctx, conn)
	fix := "find what listens there (Get-NetTCPConnection -LocalPort " + port + " -State Listen, then Get-Process -Id <OwningProcess>), " +
		"or choose another --listen port (and the PoolPair's agent port)"
	switch {
	case sameCert(peer, serverCert):
		return Passed("listen", addr+" is in use by a running lync-agent with this --tls-cert (the lync-agent service, most likely): "+
			"stop it (lync-agent service stop) before running serve in a console").About(assumeListen)
	case peer != nil:
		return Failed("listen", fmt.Sprintf("%s is in use by a TLS server presenting %s (issued by %s), not this --tls-cert",
			addr, describeCert(peer), subjectName(peer.Issuer.CommonName, peer.Issuer.String())),
			"if it is another lync-agent, stop it (lync-agent service stop); otherwise "+fix).About(assumeListen)
	}
	return Failed("listen", addr+" is in use by a program that does not answer TLS", fix).About(assumeListen)
}

// presentedCert runs a TLS handshake on conn only to read the certificate the server presents
// (no certificate is sent, nothing else is): nil when it is not TLS.
func presentedCert(ctx context.Context, conn net.Conn) *x509.Certificate {
	var leaf *x509.Certificate
	cfg := &tls.Config{
		InsecureSkipVerify: true, // only reading what it presents; nothing is trusted or sent
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				leaf, _ = x509.ParseCertificate(raw[0])
			}
			return nil
		},
	}
	tc := tls.Client(conn, cfg)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(probeTimeout))
	hctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_ = tc.HandshakeContext(hctx) // an agent refuses a client without a certificate: expected
	return leaf
}

// CheckJournal says whether this account can write the journal directory (or create it): it
// creates and removes an empty temporary file or directory there.
func CheckJournal(dir string) Check {
	if dir == "" {
		return Failed("journal", "--journal is empty", "give --journal a directory (default: journal beside lync-agent.exe)").About(assumeJournal)
	}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return Failed("journal", dir+" is a file, not a directory", "give --journal a directory").About(assumeJournal)
	case err == nil:
		f, err := os.CreateTemp(dir, ".lync-agent-doctor-*")
		if err != nil {
			return Failed("journal", fmt.Sprintf("%s is not writable by this account: %v", dir, err),
				"give the agent's account Modify rights on "+dir).About(assumeJournal)
		}
		name := f.Name()
		_ = f.Close()
		_ = os.Remove(name)
		return Passed("journal", dir+" is writable by this account (the operation journal and bootstrapper.log)").About(assumeJournal)
	case !errors.Is(err, fs.ErrNotExist):
		return Failed("journal", fmt.Sprintf("%s: %v", dir, err), "give --journal a directory this account can use").About(assumeJournal)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	for {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		up := filepath.Dir(parent)
		if up == parent {
			break
		}
		parent = up
	}
	tmp, err := os.MkdirTemp(parent, ".lync-agent-doctor-*")
	if err != nil {
		return Failed("journal", fmt.Sprintf("%s does not exist and this account cannot create it in %s: %v", dir, parent, err),
			"create "+dir+" and give the agent's account Modify rights on it").About(assumeJournal)
	}
	_ = os.Remove(tmp)
	return Passed("journal", dir+" does not exist yet: serve creates it ("+parent+" is writable by this account)").About(assumeJournal)
}
