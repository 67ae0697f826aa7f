package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// nginxLocation is the proxy part of the tested configuration. docs/reverse-proxy.md shows it
// verbatim (TestNginxDocMatchesTemplate keeps the two in step).
const nginxLocation = `        location / {
            proxy_pass http://signalrd;
            proxy_http_version 1.1;
            # WebSockets: pass the upgrade on ($connection_upgrade is '' otherwise, which keeps
            # upstream connections alive).
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # The host the client asked for picks the signalrd instance (tenant).
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            # An edge proxy overwrites X-Forwarded-For: the app server takes its first entry as
            # the client address. Behind another proxy use $proxy_add_x_forwarded_for.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Server-Sent Events and long polling: stream responses, do not hold requests.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            # Longer than signalrd's poll-timeout (90 s); WebSockets and SSE see a ping every 15 s.
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
            # signalrd's max-message-size is 2 MiB; nginx's default would refuse large sends.
            client_max_body_size 16m;
@@EXTRA@@        }
`

// nginxConf is the whole file; @@…@@ are filled in by startNginx.
const nginxConf = `# signalrd behind nginx (docs/reverse-proxy.md)
@@USER@@daemon off;
worker_processes 1;
pid @@DIR@@/nginx.pid;
error_log @@DIR@@/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log @@DIR@@/access.log;
    client_body_temp_path @@DIR@@/client_body;
    proxy_temp_path @@DIR@@/proxy;
    fastcgi_temp_path @@DIR@@/fastcgi;
    uwsgi_temp_path @@DIR@@/uwsgi;
    scgi_temp_path @@DIR@@/scgi;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }

    upstream signalrd {
        server @@UPSTREAM@@;
        keepalive 16;
    }

    server {
        listen @@LISTEN@@;

` + nginxLocation + `    }
}
`

// nginxBindAddr is the loopback address nginx connects to signalrd from (proxy_bind), so
// signalrd can tell the proxy (127.0.0.2) from clients (127.0.0.1) on one machine.
const nginxBindAddr = "127.0.0.2"

// nginxProc is a running nginx in front of one signalrd.
type nginxProc struct {
	URL string // http://127.0.0.1:port
	dir string
}

func (n *nginxProc) accessLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nginxBinary finds nginx on PATH or where Debian puts it (/usr/sbin is not on every PATH).
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatal("nginx is not installed (not on PATH, not in /usr/sbin): run `make deps` (or `make deps-nginx`, " +
		"which installs Debian's nginx-light) to run the reverse-proxy tests")
	return ""
}

// startNginx runs nginx on a free loopback port proxying to upstream until the test ends, and
// waits until /api/health answers through it.
func startNginx(t *testing.T, bin, upstream string) *nginxProc {
	t.Helper()
	var lastErr error
	for range 3 { // the free port may be taken between probing and nginx's bind
		n, err := tryStartNginx(t, bin, upstream)
		if err == nil {
			return n
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("nginx: %v", lastErr)
	return nil
}

func tryStartNginx(t *testing.T, bin, upstream string) (*nginxProc, error) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	listen := l.Addr().String()
	_ = l.Close()
	user := ""
	if os.Geteuid() == 0 {
		// Workers would switch to nobody/www-data and could not write the temp dir.
		user = "user root;\n"
	}
	conf := strings.NewReplacer(
		"@@USER@@", user, "@@DIR@@", dir, "@@UPSTREAM@@", upstream, "@@LISTEN@@", listen,
		"@@EXTRA@@", "            proxy_bind "+nginxBindAddr+";\n",
	).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", confPath, "-p", dir+"/", "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown: open WebSockets are cut
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	errLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return out.String() + string(b)
	}
	n := &nginxProc{URL: "http://" + listen, dir: dir}
	hc := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(15 * time.Second); ; {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("exited (%v) before serving:\n%s", err, errLog())
		case <-time.After(20 * time.Millisecond):
		}
		if resp, err := hc.Get(n.URL + "/api/health"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("/api/health did not answer 200 through nginx within 15 s:\n%s", errLog())
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nginx error.log:\n%s", errLog())
		}
	})
	return n, nil
}

const otherInstanceKey = "OTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHERKEY0123"

// proxyTestConfig has the default instance the app server uses and a second tenant on host
// other.example, so tests can see which instance answered.
func proxyTestConfig(trusted bool) server.Config {
	cfg := server.Config{Instances: []server.InstanceConfig{
		{Name: "main", Default: true, PrimaryKey: server.DevAccessKey},
		{Name: "other", Hosts: []string{"other.example"}, PrimaryKey: otherInstanceKey},
	}}
	if trusted {
		cfg.TrustedProxies = []string{nginxBindAddr}
	}
	return cfg
}

func TestNginxReverseProxy(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	for _, tc := range []struct {
		name          string
		trusted       bool // signalrd trusts nginx's X-Forwarded-*
		serverThrough bool // ServerEndpoint points at nginx too
		variants      []variant
	}{
		{"ClientEndpoint", true, false, variants},
		{"ClientEndpoint+ServerEndpoint", true, true, variants},
		{"untrusted proxy", false, false, []variant{{"WebSockets", "json"}, {"LongPolling", "json"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := servertest.Start(t, proxyTestConfig(tc.trusted))
			ng := startNginx(t, bin, svc.Addr)
			t.Run("probes", func(t *testing.T) { nginxProbes(t, ng) })
			t.Run("instance selection", func(t *testing.T) { nginxInstanceSelection(t, svc, ng, tc.trusted) })

			cs := strings.TrimSuffix(svc.ConnectionString(), ";") + ";ClientEndpoint=" + ng.URL + ";"
			if tc.serverThrough {
				cs += "ServerEndpoint=" + ng.URL + ";"
			}
			s := &stack{svc: svc, disconnected: map[string]error{}}
			hub := chatHub(s)
			hub.On("xff", func(c *appserver.Context) (string, error) { return c.Headers.Get("X-Forwarded-For"), nil })
			s.app = startAppConnStr(t, cs, hub)
			mux := http.NewServeMux()
			mux.Handle("/chat/negotiate", s.app.NegotiateHandler("chat", appserver.NegotiateOptions{
				UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
			}))
			hs := httptest.NewServer(mux)
			t.Cleanup(hs.Close)
			s.AppURL = hs.URL

			// The client address is 127.0.0.1, nginx reaches signalrd from 127.0.0.2. A trusted
			// nginx's X-Forwarded-For (which overwrote the client's forgery) is kept and the
			// peer appended; an untrusted one's is dropped.
			wantXFF := nginxBindAddr
			if tc.trusted {
				wantXFF = "127.0.0.1, " + nginxBindAddr
			}
			d := jsclient.Start(t)
			for _, v := range tc.variants {
				t.Run(v.String(), func(t *testing.T) { nginxClients(t, d, s, v, wantXFF) })
			}
			for _, want := range []string{"POST /client/negotiate?hub=chat", "/client/?hub=chat"} {
				if !strings.Contains(ng.accessLog(t), want) {
					t.Errorf("nginx access log has no %q: clients did not go through nginx (%s)", want, ng.dir)
				}
			}
			// nginx logs a WebSocket when it ends: close the app server's sockets first.
			_ = s.app.Close()
			if tc.serverThrough {
				eventually(t, "app-server sockets in nginx's access log", func() bool {
					return strings.Contains(ng.accessLog(t), "GET /server/?hub=chat")
				})
			} else if strings.Contains(ng.accessLog(t), "/server/") {
				t.Errorf("app server dialled nginx without ServerEndpoint")
			}
		})
	}
}

// nginxClients connects two official clients with one transport/protocol through nginx.
func nginxClients(t *testing.T, d *jsclient.Driver, s *stack, v variant, wantXFF string) {
	ctx := ctxT(t)
	a, b := "a-"+v.String(), "b-"+v.String()
	for _, name := range []string{a, b} {
		_, err := d.Connect(ctx, name, jsclient.ConnectOptions{
			URL:       s.AppURL + "/chat?user=" + name,
			Protocol:  v.protocol,
			Transport: v.transport,
			Handlers:  []string{"message"},
			// A forged client address: nginx must overwrite it.
			Headers: map[string]string{"X-Forwarded-For": "6.6.6.6"},
		})
		if err != nil {
			t.Fatalf("connect %s through nginx: %v", name, err)
		}
		if info, err := d.Info(ctx, name); err != nil || info.Transport != v.transport {
			t.Fatalf("%s: negotiated %+v %v, want %s", name, info, err, v.transport)
		}
	}
	res, err := d.Invoke(ctx, a, "echo", map[string]any{"n": 7, "s": "through nginx"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(res, &got); err != nil || got["n"] != float64(7) || got["s"] != "through nginx" {
		t.Fatalf("echo = %s (%v)", res, err)
	}
	msg := "hello " + v.String()
	if _, err := d.Invoke(ctx, b, "broadcast", msg); err != nil {
		t.Fatal(err)
	}
	waitMsg(t, d, a, msg)
	waitMsg(t, d, b, msg)
	res, err = d.Invoke(ctx, a, "xff")
	if err != nil {
		t.Fatal(err)
	}
	var xff string
	if err := json.Unmarshal(res, &xff); err != nil || xff != wantXFF {
		t.Fatalf("X-Forwarded-For seen by the app server = %s, want %q", res, wantXFF)
	}
	for _, name := range []string{a, b} {
		if err := d.Stop(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

// nginxProbes: the health endpoint and the 400 of /client without hub answer through nginx.
func nginxProbes(t *testing.T, ng *nginxProc) {
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/api/health", http.StatusOK, ""},
		{http.MethodHead, "/api/health", http.StatusOK, ""},
		{http.MethodGet, "/api/v1/health", http.StatusOK, ""},
		{http.MethodGet, "/client", http.StatusBadRequest, "'hub' query parameter is required."},
	} {
		req, err := http.NewRequest(tc.method, ng.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s through nginx: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// nginxInstanceSelection negotiates with a token of the "other" instance: 200 when that
// instance answered, 401 when the default one did.
func nginxInstanceSelection(t *testing.T, svc *servertest.Instance, ng *nginxProc, trusted bool) {
	tok, err := auth.IssueToken(otherInstanceKey, auth.IssueOptions{Audience: "http://other.example/client/?hub=chat"})
	if err != nil {
		t.Fatal(err)
	}
	direct := &http.Client{Timeout: 5 * time.Second}
	// From nginx's address: what signalrd sees from the proxy.
	fromProxy := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(nginxBindAddr)}}).DialContext,
	}}
	t.Cleanup(fromProxy.CloseIdleConnections)
	other, main := http.StatusOK, http.StatusUnauthorized
	// What the proxy's address gets with X-Forwarded-Host other.example and Host other.example.
	xfhOther, hostOther := main, other
	if trusted {
		xfhOther, hostOther = other, main
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		base   string
		host   string
		xfh    string
		want   int
	}{
		{"through nginx, Host picks", direct, ng.URL, "other.example", "", other},
		{"through nginx, client's X-Forwarded-Host overwritten", direct, ng.URL, "", "other.example", main},
		{"untrusted peer's X-Forwarded-Host ignored", direct, svc.URL, "", "other.example", main},
		{"untrusted peer's Host picks", direct, svc.URL, "other.example", "", other},
		{"proxy address's X-Forwarded-Host", fromProxy, svc.URL, "", "other.example", xfhOther},
		{"proxy address's X-Forwarded-Host beats Host", fromProxy, svc.URL, "other.example", "127.0.0.1", hostOther},
	} {
		req, err := http.NewRequest(http.MethodPost, tc.base+"/client/negotiate?hub=chat&negotiateVersion=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		if tc.xfh != "" {
			req.Header.Set("X-Forwarded-Host", tc.xfh)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d %q, want %d", tc.name, resp.StatusCode, body, tc.want)
		}
	}
}

// TestNginxDocMatchesTemplate keeps docs/reverse-proxy.md showing the configuration the test runs.
func TestNginxDocMatchesTemplate(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/reverse-proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(nginxLocation, "@@EXTRA@@", "")
	if !strings.Contains(string(doc), want) {
		t.Fatalf("docs/reverse-proxy.md does not contain the tested location block verbatim:\n%s", want)
	}
	for _, line := range []string{"map $http_upgrade $connection_upgrade {", "keepalive 16;"} {
		if !strings.Contains(string(doc), line) {
			t.Errorf("docs/reverse-proxy.md lacks %q", line)
		}
	}
}
