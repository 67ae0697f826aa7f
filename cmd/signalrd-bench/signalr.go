package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/server"
)

// recvMethod is the client method every scenario delivers to: arguments (sendUnixNano, payload).
const recvMethod = "recv"

// signalrTarget is signalrd (in process, child or external) with a Go app server in this process
// whose hub implements the scenarios, and whose negotiate endpoint the clients start from.
type signalrTarget struct {
	cfg      config
	svcURL   *url.URL
	svc2URL  *url.URL // --nodes 2: the second node (the app server connects to the first)
	key      string
	procID   int
	extraIDs []int // --nodes 2: the second node and redis-server, sampled with procID
	stopSvc  func() error
	app      *appserver.Server
	appHTTP  *http.Server
	appURL   string
	http     *http.Client
	payload  string
	rawOnce  sync.Once
	raw      hubproto.Raw // payload encoded once in the clients' protocol
	tokenMu  sync.Mutex
	tokens   map[string]string // REST audience → token
	restBase string
}

func startSignalr(ctx context.Context, cfg config, logger *slog.Logger) (_ *signalrTarget, err error) {
	t := &signalrTarget{cfg: cfg, key: cfg.AccessKey, payload: strings.Repeat("x", cfg.Size), tokens: map[string]string{}}
	defer func() {
		if err != nil {
			_ = t.close()
		}
	}()
	if err := t.startService(ctx); err != nil {
		return nil, err
	}
	if cfg.PID != 0 {
		t.procID = cfg.PID
	}
	t.restBase = strings.TrimSuffix(t.svcURL.String(), "/") + "/api/hubs/" + url.PathEscape(cfg.Hub)
	t.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.RESTWorkers * 2, MaxConnsPerHost: cfg.RESTWorkers * 2}}

	port, _ := strconv.Atoi(t.svcURL.Port())
	app, err := appserver.New(appserver.Options{
		ConnectionString: auth.FormatConnectionString(t.svcURL.Scheme+"://"+t.svcURL.Hostname(), port, t.key),
		ServerID:         "signalrd-bench",
		ConnectionCount:  cfg.ServerConns,
		Logger:           logger,
	})
	if err != nil {
		return nil, fmt.Errorf("app server: %w", err)
	}
	t.app = app
	app.MapHub(cfg.Hub, benchHub())
	if err := app.Start(ctx); err != nil {
		return nil, fmt.Errorf("app server start: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := app.Ready(rctx); err != nil {
		return nil, fmt.Errorf("app server ready: %w", err)
	}
	mux := http.NewServeMux()
	var negotiate http.Handler = app.NegotiateHandler(cfg.Hub, appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	})
	if t.svc2URL != nil {
		negotiate = &spreadNegotiate{next: negotiate, from: t.svcURL.Host, to: t.svc2URL.Host, userOfReqs: userIndex}
	}
	mux.Handle("/"+cfg.Hub+"/negotiate", negotiate)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("app server listen: %w", err)
	}
	t.appHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = t.appHTTP.Serve(l) }()
	t.appURL = "http://" + l.Addr().String() + "/" + cfg.Hub
	return t, nil
}

// benchHub answers the scenarios' client messages the way the performance guide's app server does.
func benchHub() *appserver.Hub {
	h := &appserver.Hub{MaximumReceiveMessageSize: -1}
	h.On("Echo", func(c *appserver.Context, ts int64, p string) error {
		return c.Clients.Caller().Send(c, recvMethod, ts, p)
	})
	h.On("Broadcast", func(c *appserver.Context, ts int64, p string) error {
		return c.Clients.All().Send(c, recvMethod, ts, p)
	})
	h.On("SendGroup", func(c *appserver.Context, group string, ts int64, p string) error {
		return c.Clients.Group(group).Send(c, recvMethod, ts, p)
	})
	h.On("SendConn", func(c *appserver.Context, id string, ts int64, p string) error {
		return c.Clients.Client(id).Send(c, recvMethod, ts, p)
	})
	h.On("Join", func(c *appserver.Context, group string) error {
		return c.Groups.Add(c, c.ConnectionID, group)
	})
	return h
}

// startService sets svcURL (and procID, stopSvc) for the configured service placement.
func (t *signalrTarget) startService(ctx context.Context) error {
	switch {
	case t.cfg.ServiceURL != "":
		u, err := url.Parse(t.cfg.ServiceURL)
		if err != nil {
			return fmt.Errorf("service url: %w", err)
		}
		t.svcURL = u
		return nil
	case t.cfg.ServiceBin != "" && t.cfg.Nodes > 1:
		return t.startCluster(ctx)
	case t.cfg.ServiceBin != "":
		c, u, err := startNode(ctx, t.cfg.ServiceBin, t.key, "", "")
		if err != nil {
			return err
		}
		t.stopSvc, t.procID, t.svcURL = c.stop, c.cmd.Process.Pid, u
		return nil
	default:
		srv, err := server.New(server.Config{Listen: "127.0.0.1:0", Instances: []server.InstanceConfig{{PrimaryKey: t.key}}})
		if err != nil {
			return fmt.Errorf("signalrd: %w", err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("signalrd listen: %w", err)
		}
		sctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(sctx, l) }()
		t.stopSvc = func() error { cancel(); return <-done }
		t.procID = os.Getpid()
		t.svcURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
		return nil
	}
}

func (t *signalrTarget) name() string {
	if t.svc2URL != nil {
		return "signalrd ×2"
	}
	return "signalrd"
}

func (t *signalrTarget) pids() []int { return append(pidList(t.procID), t.extraIDs...) }

// startCluster starts redis-server and two nodes sharing it (--nodes 2).
func (t *signalrTarget) startCluster(ctx context.Context) (err error) {
	var stops []func() error
	t.stopSvc = func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		return errors.Join(errs...)
	}
	redis, addr, err := startRedis(ctx, t.cfg.RedisServer)
	if err != nil {
		return err
	}
	stops = append(stops, redis.stop)
	n1, u1, err := startNode(ctx, t.cfg.ServiceBin, t.key, addr, "bench-node-1")
	if err != nil {
		return err
	}
	stops = append(stops, n1.stop)
	n2, u2, err := startNode(ctx, t.cfg.ServiceBin, t.key, addr, "bench-node-2")
	if err != nil {
		return err
	}
	stops = append(stops, n2.stop)
	t.procID, t.svcURL, t.svc2URL = n1.cmd.Process.Pid, u1, u2
	t.extraIDs = []int{n2.cmd.Process.Pid, redis.cmd.Process.Pid}
	return nil
}

func pidList(pid int) []int {
	if pid == 0 {
		return nil
	}
	return []int{pid}
}

func (t *signalrTarget) close() error {
	var errs []error
	if t.appHTTP != nil {
		errs = append(errs, t.appHTTP.Close())
	}
	if t.app != nil {
		errs = append(errs, t.app.Close())
	}
	if t.stopSvc != nil {
		errs = append(errs, t.stopSvc())
	}
	if t.http != nil {
		t.http.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

func (t *signalrTarget) dial(ctx context.Context, i int, rec *recorder) (clientConn, error) {
	conn, err := client.Dial(ctx, client.Options{
		URL:      t.appURL + "?user=u" + strconv.Itoa(i),
		Protocol: t.cfg.Protocol,
	})
	if err != nil {
		return nil, fmt.Errorf("dial client %d: %w", i, err)
	}
	sc := &signalrConn{t: t, c: conn, i: i, group: "g" + strconv.Itoa(t.cfg.groupOf(i))}
	conn.On(recvMethod, func(args []hubproto.Raw) {
		var ts int64
		if len(args) == 0 {
			rec.fail(ctx, "recv", errors.New("no arguments"))
			return
		}
		if err := conn.Unmarshal(args[0], &ts); err != nil {
			rec.fail(ctx, "recv", err)
			return
		}
		rec.recv(ts)
	})
	t.rawOnce.Do(func() { t.raw, err = conn.Codec().Marshal(t.payload) })
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	if t.cfg.Scenario == scGroup || t.cfg.Scenario == scBigGroup {
		if _, err := conn.Invoke(ctx, "Join", sc.group); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("join %s: %w", sc.group, err)
		}
	}
	return sc, nil
}

func (t *signalrTarget) prepare(ctx context.Context, conns []clientConn) error {
	if t.cfg.Scenario != scConnection {
		return nil
	}
	for i, c := range conns {
		c.setPeer(conns[(i+1)%len(conns)])
	}
	return nil
}

// restSend posts what the Management SDK posts, with a token built like its own: audience = the
// request URL without the port.
func (t *signalrTarget) restSend(ctx context.Context, i int, ts int64) error {
	path := "/:send"
	if t.cfg.Scenario == scRESTUser {
		path = "/users/u" + strconv.Itoa(i) + "/:send"
	}
	const query = "?api-version=2022-06-01"
	tok, err := t.token(path + query)
	if err != nil {
		return err
	}
	body := make([]byte, 0, len(t.payload)+64)
	body = append(body, `{"target":"`+recvMethod+`","arguments":[`...)
	body = strconv.AppendInt(body, ts, 10)
	body = append(body, `,"`...)
	body = append(body, t.payload...)
	body = append(body, `"]}`...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.restBase+path+query, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("rest request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.http.Do(req)
	if err != nil {
		return fmt.Errorf("rest send: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("rest send: status %d", resp.StatusCode)
	}
	return nil
}

func (t *signalrTarget) token(pathAndQuery string) (string, error) {
	t.tokenMu.Lock()
	defer t.tokenMu.Unlock()
	if tok, ok := t.tokens[pathAndQuery]; ok {
		return tok, nil
	}
	aud := t.svcURL.Scheme + "://" + t.svcURL.Hostname() + "/api/hubs/" + url.PathEscape(t.cfg.Hub) + pathAndQuery
	tok, err := auth.IssueToken(t.key, auth.IssueOptions{Audience: aud, Lifetime: 24 * time.Hour})
	if err != nil {
		return "", fmt.Errorf("rest token: %w", err)
	}
	t.tokens[pathAndQuery] = tok
	return tok, nil
}

// signalrConn is one sdk/client connection.
type signalrConn struct {
	t     *signalrTarget
	c     *client.Conn
	i     int
	group string
	peer  string // connection id send-to-connection messages go to
}

func (s *signalrConn) setPeer(p clientConn)  { s.peer = p.(*signalrConn).c.ConnectionID() }
func (s *signalrConn) done() <-chan struct{} { return s.c.Done() }
func (s *signalrConn) err() error            { return s.c.Err() }
func (s *signalrConn) close(ctx context.Context) {
	_ = s.c.Close(ctx)
}

func (s *signalrConn) send(ctx context.Context, ts int64) error {
	switch s.t.cfg.Scenario {
	case scEcho:
		return s.c.Send(ctx, "Echo", ts, s.t.raw)
	case scBroadcast:
		return s.c.Send(ctx, "Broadcast", ts, s.t.raw)
	case scGroup, scBigGroup:
		return s.c.Send(ctx, "SendGroup", s.group, ts, s.t.raw)
	case scConnection:
		return s.c.Send(ctx, "SendConn", s.peer, ts, s.t.raw)
	}
	return nil
}
