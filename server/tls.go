package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// TLS on the service listener, and why its http.Server has the timeouts it has.
//
// Serve sets ReadHeaderTimeout (10 s; net/http also bounds the TLS handshake by it), IdleTimeout
// (120 s between keep-alive requests) and MaxHeaderBytes (64 KiB). It deliberately sets neither
// WriteTimeout nor ReadTimeout: both are per-request deadlines on the connection, and SSE
// streams, long polls (up to poll-timeout, 90 s) and hijacked WebSockets live far longer than
// any sensible bound; the transports enforce their own liveness (client-timeout, server-timeout,
// keep-alives) instead.
//
// HTTP/2 is not offered over TLS: WebSockets here are RFC 6455 upgrades of an HTTP/1.1
// connection, and a browser that negotiated h2 may try RFC 8441 WebSockets over it, which the
// WebSocket library does not accept. SSE and long polling work the same on HTTP/1.1.

// certReloadInterval is how often, at most, a handshake looks at the files' modification times.
const certReloadInterval = time.Second

// validateTLS lists the problems of the TLS file settings.
func validateTLS(certFile, keyFile string) []error {
	if (certFile == "") != (keyFile == "") {
		return []error{errors.New("tls: set both the certificate file and the key file, or neither")}
	}
	return nil
}

// fileStamp identifies a version of the certificate and key files.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// certReloader serves the certificate in certFile/keyFile and re-reads them when their
// modification time or size changes, checked at most once per certReloadInterval during a
// handshake (no goroutine). A pair that does not load keeps the previous certificate; the
// failure is logged once per version of the files. Its methods are goroutine-safe; a handshake
// that triggers a reload blocks on reading two small files.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  fileStamp // version cert came from
	tried   fileStamp // last version attempted
	checked time.Time
}

// newCertReloader loads the pair once; a broken pair at startup is an error.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log.With("component", "tls")}
	st, err := r.stamp()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate: %w", err)
	}
	r.cert, r.loaded, r.tried, r.checked = &cert, st, st, time.Now()
	r.logLoaded("TLS certificate loaded")
	return r, nil
}

func (r *certReloader) stamp() (fileStamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat certificate: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat key: %w", err)
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= certReloadInterval {
		r.checked = now
		r.reloadLocked()
	}
	return r.cert, nil
}

// reloadLocked loads a changed pair. The stamp is taken before reading, so a write racing the
// read is seen as another change next time.
func (r *certReloader) reloadLocked() {
	st, err := r.stamp()
	if err != nil {
		if r.tried != (fileStamp{}) {
			r.log.Error("TLS certificate reload failed; keeping the previous certificate", "err", err)
			r.tried = fileStamp{}
		}
		return
	}
	if st == r.loaded || st == r.tried {
		return
	}
	r.tried = st
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.log.Error("TLS certificate reload failed; keeping the previous certificate", "err", err)
		return
	}
	r.cert, r.loaded = &cert, st
	r.logLoaded("TLS certificate reloaded")
}

func (r *certReloader) logLoaded(msg string) {
	if leaf := r.cert.Leaf; leaf != nil {
		r.log.Info(msg, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
		return
	}
	r.log.Info(msg)
}

// configureTLS prepares hs for TLS when certificate files are configured.
func (s *Server) configureTLS(hs *http.Server) {
	if s.certs == nil {
		return
	}
	hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.getCertificate}
	hs.Protocols = new(http.Protocols)
	hs.Protocols.SetHTTP1(true)
}

// serveHTTP serves l with hs, over TLS when configured.
func (s *Server) serveHTTP(hs *http.Server, l net.Listener) error {
	if s.certs == nil {
		return hs.Serve(l)
	}
	return hs.ServeTLS(l, "", "")
}

// TLSEnabled reports whether the service listener serves HTTPS.
func (s *Server) TLSEnabled() bool { return s.certs != nil }
