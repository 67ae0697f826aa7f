package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// testCert is a self-signed certificate for 127.0.0.1 and its PEM files' contents.
type testCert struct {
	x509         *x509.Certificate
	certPEM, key []byte
}

func newTestCert(t *testing.T, serial int64) testCert {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "signalrd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		x509:    c,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}
}

// writeFiles writes the pair and stamps both files with mtime, so a reload sees a change even on
// file systems with coarse timestamps.
func writeFiles(t *testing.T, certFile, keyFile string, certPEM, key []byte, mtime time.Time) {
	t.Helper()
	for _, f := range []struct {
		path string
		b    []byte
	}{{keyFile, key}, {certFile, certPEM}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// lockedBuffer collects log output written by the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// servedSerial handshakes anew and returns the serial number of the certificate served.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSServesAndReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, second := newTestCert(t, 1), newTestCert(t, 2)
	base := time.Now().Add(-time.Hour)
	writeFiles(t, certFile, keyFile, first.certPEM, first.key, base)
	logs := &lockedBuffer{}
	ts := servertest.Start(t, server.Config{
		TLSCertFile: certFile, TLSKeyFile: keyFile,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if !strings.HasPrefix(ts.URL, "https://") || !strings.Contains(ts.ConnectionString(), "Endpoint=https://") {
		t.Fatalf("URL %q, connection string %q", ts.URL, ts.ConnectionString())
	}
	roots := x509.NewCertPool()
	roots.AddCert(first.x509)
	roots.AddCert(second.x509)

	// HTTPS works, on HTTP/1.1 only (WebSocket upgrades need it).
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(ts.URL + "/api/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.ProtoMajor != 1 {
		t.Fatalf("health over TLS: %d %s tls=%v", resp.StatusCode, resp.Proto, resp.TLS != nil)
	}
	// Plain HTTP to the TLS port is refused.
	if resp, err := http.Get("http://" + ts.Addr + "/api/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}
	if got := servedSerial(t, ts.Addr, roots); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	// New files: served after the next check (at most a second later).
	writeFiles(t, certFile, keyFile, second.certPEM, second.key, base.Add(time.Minute))
	eventually(t, waitLimit, "new certificate served", func() bool { return servedSerial(t, ts.Addr, roots) == 2 })

	// Broken files: the reload fails, is logged, and the previous certificate stays.
	writeFiles(t, certFile, keyFile, []byte("not a certificate"), second.key, base.Add(2*time.Minute))
	eventually(t, waitLimit, "failed reload logged", func() bool {
		if got := servedSerial(t, ts.Addr, roots); got != 2 {
			t.Fatalf("serial %d after a broken reload, want 2", got)
		}
		return strings.Contains(logs.String(), "TLS certificate reload failed")
	})
	if got := servedSerial(t, ts.Addr, roots); got != 2 {
		t.Fatalf("serial %d after a broken reload, want 2", got)
	}
	// A key that does not match the certificate is refused the same way; a fixed pair loads.
	writeFiles(t, certFile, keyFile, first.certPEM, second.key, base.Add(3*time.Minute))
	eventually(t, waitLimit, "second failed reload logged", func() bool {
		if got := servedSerial(t, ts.Addr, roots); got != 2 {
			t.Fatalf("serial %d after a mismatched pair, want 2", got)
		}
		return strings.Count(logs.String(), "TLS certificate reload failed") >= 2
	})
	writeFiles(t, certFile, keyFile, first.certPEM, first.key, base.Add(4*time.Minute))
	eventually(t, waitLimit, "fixed pair served", func() bool { return servedSerial(t, ts.Addr, roots) == 1 })
}

// TestTLSAppServerWebSocket: an app server connects over wss:// (HTTP/1.1 upgrade through TLS).
func TestTLSAppServerWebSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c := newTestCert(t, 7)
	writeFiles(t, certFile, keyFile, c.certPEM, c.key, time.Now())
	ts := servertest.Start(t, server.Config{TLSCertFile: certFile, TLSKeyFile: keyFile})
	roots := x509.NewCertPool()
	roots.AddCert(c.x509)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	cs, err := auth.ParseConnectionString(ts.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ServerAudience("chat"), Claims: auth.ServerClaims("srv")})
	if err != nil {
		t.Fatal(err)
	}
	u := cs.ServerURL("chat", "tls-conn")
	if !strings.HasPrefix(u, "wss://") {
		t.Fatalf("server URL %q", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr},
		HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	f, _ := svcproto.AppendFrame(nil, svcproto.HandshakeRequest{Version: 1})
	if err := ws.Write(ctx, websocket.MessageBinary, f); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &svcproto.Reader{}
	r.Write(b)
	if m, err := r.Next(); err != nil {
		t.Fatal(err)
	} else if hr, ok := m.(svcproto.HandshakeResponse); !ok || hr.ErrorMessage != "" {
		t.Fatalf("handshake response %#v", m)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c := newTestCert(t, 1)
	writeFiles(t, certFile, keyFile, c.certPEM, []byte("garbage"), time.Now())
	for _, tc := range []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"cert without key", server.Config{TLSCertFile: certFile}, "both"},
		{"key without cert", server.Config{TLSKeyFile: keyFile}, "both"},
		{"missing files", server.Config{TLSCertFile: filepath.Join(dir, "nope.crt"), TLSKeyFile: keyFile}, "nope.crt"},
		{"broken key", server.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, "load certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := server.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
