package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/server"
)

// TestTLSKeys checks tls-cert-file and tls-key-file from flags, environment and file, and that
// the printed connection string switches to https.
func TestTLSKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "signalrd.yaml")
	if err := os.WriteFile(file, []byte("tls-cert-file: /etc/signalrd/file.crt\ntls-key-file: /etc/signalrd/file.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                 string
		args                 []string
		env                  map[string]string
		wantCert, wantKey    string
		wantConnStr, wantErr string
	}{
		{"default", nil, nil, "", "", "Endpoint=http://localhost;Port=8888;", ""},
		{"flags", []string{"--tls-cert-file", "a.crt", "--tls-key-file", "a.key"}, nil, "a.crt", "a.key", "Endpoint=https://localhost;Port=8888;", ""},
		{"env", nil, map[string]string{"SIGNALRD_TLS_CERT_FILE": "e.crt", "SIGNALRD_TLS_KEY_FILE": "e.key"}, "e.crt", "e.key", "Endpoint=https://localhost;Port=8888;", ""},
		{"file", []string{"--config", file}, nil, "/etc/signalrd/file.crt", "/etc/signalrd/file.key", "Endpoint=https://localhost;Port=8888;", ""},
		{"flag beats file", []string{"--config", file, "--tls-cert-file", "f.crt"}, nil, "f.crt", "/etc/signalrd/file.key", "Endpoint=https://localhost;Port=8888;", ""},
		{"explicit endpoint wins", []string{"--tls-cert-file", "a.crt", "--tls-key-file", "a.key", "--endpoint", "https://sr.example.com"}, nil, "a.crt", "a.key", "Endpoint=https://sr.example.com;Port=8888;", ""},
		{"cert without key", []string{"--tls-cert-file", "a.crt"}, nil, "", "", "", "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cmd := newServeCmd(&bytes.Buffer{}, &bytes.Buffer{})
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			fc, err := loadConfig(cmd.Flags())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := fc.toServerConfig(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.TLSCertFile != tc.wantCert || cfg.TLSKeyFile != tc.wantKey {
				t.Fatalf("TLS files %q %q, want %q %q", cfg.TLSCertFile, cfg.TLSKeyFile, tc.wantCert, tc.wantKey)
			}
			out, err := run(t, context.Background(), append([]string{"connstr"}, tc.args...)...)
			if err != nil || !strings.HasPrefix(out, tc.wantConnStr) {
				t.Fatalf("connstr %q %v, want prefix %q", out, err, tc.wantConnStr)
			}
		})
	}
}

// TestNetworkBlock checks instances[].network decoding and validation.
func TestNetworkBlock(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`
instances:
  - name: locked
    hosts: [locked.example]
    primary-key: k1
    network:
      public-access: false
      client-connection: [10.0.0.0/8, "2001:db8::/32"]
      server-connection: [127.0.0.1]
      rest-api: [192.0.2.0/24]
      trace: [127.0.0.1/32]
  - name: open
    default: true
    primary-key: k2
`), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfigForTest(good)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.toServerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Instances[0].Network
	if n.PublicAccess == nil || *n.PublicAccess ||
		strings.Join(n.ClientConnection.Allow, ",") != "10.0.0.0/8,2001:db8::/32" ||
		strings.Join(n.ServerConnection.Allow, ",") != "127.0.0.1" ||
		strings.Join(n.RESTAPI.Allow, ",") != "192.0.2.0/24" ||
		strings.Join(n.Trace.Allow, ",") != "127.0.0.1/32" {
		t.Fatalf("network %+v", n)
	}
	if open := cfg.Instances[1].Network; open.PublicAccess != nil || open.ClientConnection.Allow != nil {
		t.Fatalf("instance without network block: %+v", open)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("instances:\n  - name: a\n    primary-key: k\n    network:\n      client-connection: [10.0.0.0/40]\n      rest-api: [nope]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, context.Background(), "connstr", "--config", bad)
	if err == nil || !strings.Contains(err.Error(), "10.0.0.0/40") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("err = %v, want both bad entries listed", err)
	}
}

// TestServeTLS: serve with certificate files prints an https connection string and serves HTTPS.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert := writeSelfSigned(t, certFile, keyFile)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	cmd := newRootCmd(&out, &bytes.Buffer{})
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0", "--tls-cert-file", certFile, "--tls-key-file", keyFile})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	re := regexp.MustCompile(`Endpoint=https://localhost;Port=(\d+);AccessKey=` + server.DevAccessKey + `;Version=1.0;`)
	var port string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			port = m[1]
			break
		}
	}
	if port == "" {
		cancel()
		<-done
		t.Fatalf("no https connection string in %q", out.String())
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://localhost:" + port + "/api/health")
	if err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health over https: %d", resp.StatusCode)
	}
}

// writeSelfSigned writes a self-signed certificate for localhost/127.0.0.1 and its key.
func writeSelfSigned(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
