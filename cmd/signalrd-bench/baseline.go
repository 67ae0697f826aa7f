package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The baseline is the physical limit of the machine for a scenario: a WebSocket server with no
// SignalR logic that routes each received frame like the scenario's app server would (echo,
// broadcast, group, one connection). A frame is [8-byte send time, Unix ns][4-byte target client
// index][payload].
const baselineHeader = 12

// Baseline routing modes (query parameter mode=).
const (
	bmEcho      = "echo"
	bmBroadcast = "broadcast"
	bmGroup     = "group"
	bmConn      = "connection"
)

func baselineMode(scenario string) string {
	switch scenario {
	case scBroadcast, scRESTBroadcast:
		return bmBroadcast
	case scGroup, scBigGroup:
		return bmGroup
	case scConnection, scRESTUser:
		return bmConn
	}
	return bmEcho
}

// baselineServer is the raw WebSocket server. ServeHTTP is safe for concurrent use.
type baselineServer struct {
	ctx    context.Context
	mu     sync.RWMutex
	all    map[*bsConn]struct{}
	byID   map[int]*bsConn
	groups map[string]map[*bsConn]struct{}
}

// bsConn is one accepted socket: its reader routes, its writer goroutine drains out.
type bsConn struct {
	ws       *websocket.Conn
	out      chan []byte
	id       int
	group    string
	mode     string
	dead     chan struct{}
	deadOnce sync.Once
}

func (c *bsConn) kill() { c.deadOnce.Do(func() { close(c.dead) }) }

func newBaselineServer(ctx context.Context) *baselineServer {
	return &baselineServer{ctx: ctx, all: map[*bsConn]struct{}{}, byID: map[int]*bsConn{}, groups: map[string]map[*bsConn]struct{}{}}
}

func (s *baselineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		w.WriteHeader(http.StatusOK)
	case "/ws":
		s.serveWS(w, r)
	case "/send":
		s.serveSend(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveSend is the REST counterpart: the body is one frame routed by mode= (broadcast, connection).
func (s *baselineServer) serveSend(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	if err != nil || len(data) < baselineHeader {
		http.Error(w, "bad frame", http.StatusBadRequest)
		return
	}
	var scratch []*bsConn
	s.route(r.URL.Query().Get("mode"), nil, data, &scratch)
	w.WriteHeader(http.StatusAccepted)
}

func (s *baselineServer) serveWS(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, _ := strconv.Atoi(q.Get("id"))
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	ws.SetReadLimit(2 << 20)
	c := &bsConn{ws: ws, out: make(chan []byte, 256), id: id, group: q.Get("group"), mode: q.Get("mode"), dead: make(chan struct{})}
	s.mu.Lock()
	s.all[c] = struct{}{}
	s.byID[id] = c
	if c.group != "" {
		if s.groups[c.group] == nil {
			s.groups[c.group] = map[*bsConn]struct{}{}
		}
		s.groups[c.group][c] = struct{}{}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		defer c.kill()
		for {
			select {
			case msg := <-c.out:
				if ws.Write(ctx, websocket.MessageBinary, msg) != nil {
					return
				}
			case <-c.dead:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var scratch []*bsConn
	for {
		_, data, err := ws.Read(ctx)
		if err != nil || len(data) < baselineHeader {
			break
		}
		s.route(c.mode, c, data, &scratch)
	}
	c.kill()
	s.mu.Lock()
	delete(s.all, c)
	if s.byID[id] == c {
		delete(s.byID, id)
	}
	if g := s.groups[c.group]; g != nil {
		delete(g, c)
	}
	s.mu.Unlock()
	ws.CloseNow()
}

// route pushes data to the recipients of mode; the lock is not held while pushing, and a push to
// a full outbox waits (back-pressure) unless the recipient dies.
func (s *baselineServer) route(mode string, from *bsConn, data []byte, scratch *[]*bsConn) {
	rs := (*scratch)[:0]
	s.mu.RLock()
	switch mode {
	case bmEcho:
		if from != nil {
			rs = append(rs, from)
		}
	case bmBroadcast:
		for c := range s.all {
			rs = append(rs, c)
		}
	case bmGroup:
		if from != nil {
			for c := range s.groups[from.group] {
				rs = append(rs, c)
			}
		}
	case bmConn:
		if c := s.byID[int(binary.BigEndian.Uint32(data[8:12]))]; c != nil {
			rs = append(rs, c)
		}
	}
	s.mu.RUnlock()
	for _, c := range rs {
		select {
		case c.out <- data:
		case <-c.dead:
		case <-s.ctx.Done():
		}
	}
	clear(rs)
	*scratch = rs[:0]
}

// serveBaseline runs the baseline server on addr until ctx ends, printing "listening <url>" on
// stdout once it accepts connections (the parent reads it when the baseline is a child).
func serveBaseline(ctx context.Context, addr string, stdout io.Writer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("baseline listen: %w", err)
	}
	srv := &http.Server{Handler: newBaselineServer(ctx), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening http://%s\n", l.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("baseline serve: %w", err)
	}
	return nil
}

// baselineTarget drives the baseline server, in process or as a child (when the service is one,
// so both are sampled the same way).
type baselineTarget struct {
	cfg    config
	url    string
	procID int
	stop   func() error
	http   *http.Client
}

func startBaseline(ctx context.Context, cfg config) (*baselineTarget, error) {
	t := &baselineTarget{cfg: cfg}
	t.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.RESTWorkers * 2, MaxConnsPerHost: cfg.RESTWorkers * 2}}
	if cfg.ServiceBin != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		c := newChild(exe, "--serve-baseline", "127.0.0.1:0")
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		if err := c.start(); err != nil {
			return nil, err
		}
		t.stop, t.procID = c.stop, c.cmd.Process.Pid
		line, err := bufio.NewReader(out).ReadString('\n')
		u, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if err != nil || !ok {
			_ = c.stop()
			return nil, fmt.Errorf("baseline child: unexpected output %q: %v", line, err)
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		t.url = u
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("baseline listen: %w", err)
		}
		sctx, cancel := context.WithCancel(context.Background())
		srv := &http.Server{Handler: newBaselineServer(sctx), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		t.stop = func() error { cancel(); return srv.Close() }
		t.procID = os.Getpid()
		t.url = "http://" + l.Addr().String()
	}
	if cfg.PID != 0 {
		t.procID = cfg.PID
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, t.url+"/health", nil); err != nil {
		_ = t.close()
		return nil, err
	}
	return t, nil
}

func (t *baselineTarget) name() string { return "baseline" }
func (t *baselineTarget) pids() []int  { return pidList(t.procID) }
func (t *baselineTarget) close() error {
	t.http.CloseIdleConnections()
	if t.stop != nil {
		return t.stop()
	}
	return nil
}

func (t *baselineTarget) prepare(ctx context.Context, conns []clientConn) error {
	for i, c := range conns {
		c.setPeer(conns[(i+1)%len(conns)])
	}
	return nil
}

func (t *baselineTarget) restSend(ctx context.Context, i int, ts int64) error {
	body := make([]byte, baselineHeader+t.cfg.Size)
	binary.BigEndian.PutUint64(body, uint64(ts))
	binary.BigEndian.PutUint32(body[8:], uint32(i))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/send?mode="+baselineMode(t.cfg.Scenario), strings.NewReader(string(body)))
	if err != nil {
		return fmt.Errorf("baseline send: %w", err)
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return fmt.Errorf("baseline send: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("baseline send: status %d", resp.StatusCode)
	}
	return nil
}

func (t *baselineTarget) dial(ctx context.Context, i int, rec *recorder) (clientConn, error) {
	u := strings.Replace(t.url, "http://", "ws://", 1) + "/ws?mode=" + baselineMode(t.cfg.Scenario) +
		"&id=" + strconv.Itoa(i) + "&group=g" + strconv.Itoa(t.cfg.groupOf(i))
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, fmt.Errorf("baseline dial %d: %w", i, err)
	}
	ws.SetReadLimit(2 << 20)
	rctx, cancel := context.WithCancel(context.Background())
	c := &rawConn{ws: ws, idx: uint32(i), buf: make([]byte, baselineHeader+t.cfg.Size), doneCh: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.doneCh)
		for {
			_, data, err := ws.Read(rctx)
			if err != nil {
				if rctx.Err() == nil {
					c.setErr(err)
				}
				return
			}
			if len(data) < baselineHeader {
				rec.fail(rctx, "baseline recv", errors.New("short frame"))
				continue
			}
			rec.recv(int64(binary.BigEndian.Uint64(data)))
		}
	}()
	return c, nil
}

// rawConn is a baseline client; send is called by one goroutine (it reuses buf).
type rawConn struct {
	ws     *websocket.Conn
	buf    []byte
	idx    uint32 // this client's index (its id on the server)
	peer   uint32
	doneCh chan struct{}
	cancel context.CancelFunc
	mu     sync.Mutex
	e      error
}

func (c *rawConn) setErr(err error) {
	c.mu.Lock()
	c.e = err
	c.mu.Unlock()
}

func (c *rawConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.e
}

func (c *rawConn) setPeer(p clientConn) {
	c.peer = p.(*rawConn).idx
}

func (c *rawConn) done() <-chan struct{} { return c.doneCh }

func (c *rawConn) send(ctx context.Context, ts int64) error {
	binary.BigEndian.PutUint64(c.buf, uint64(ts))
	binary.BigEndian.PutUint32(c.buf[8:], c.peer)
	return c.ws.Write(ctx, websocket.MessageBinary, c.buf)
}

func (c *rawConn) close(ctx context.Context) {
	c.cancel()
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.doneCh
}
