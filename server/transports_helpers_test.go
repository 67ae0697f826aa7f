package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server/servertest"
)

// Byte-level helpers for the HTTP transports (Server-Sent Events, long polling): a peer that
// behaves like @microsoft/signalr over fetch/EventSource, without any client library.

const (
	jsonHandshake = `{"protocol":"json","version":1}` + "\x1e"
	textNoConn    = "No Connection with that ID"
	textNoID      = "Connection ID required"
	textChange    = "Cannot change transports mid-connection"
	textNoDelete  = "Cannot terminate this connection using the DELETE endpoint."
	textNoWSPost  = "POST requests are not allowed for WebSocket connections."
	waitLimit     = 10 * time.Second
)

// reply is one HTTP response, fully read.
type reply struct {
	status int
	header http.Header
	body   string
	took   time.Duration
	err    error
}

func (r reply) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %q (after %v)", r.status, r.body, r.took.Round(time.Millisecond))
}

// newHTTPClient is a client of its own, so a test's connections end with the test.
func newHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// tokenWith issues a client token for hub with the given options (audience filled in).
func tokenWith(t *testing.T, ts *servertest.Instance, hub string, o auth.IssueOptions) string {
	t.Helper()
	cs, err := auth.ParseConnectionString(ts.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	o.Audience = cs.ClientAudience(hub)
	tok, err := auth.IssueToken(ts.Key, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// httpPeer is a negotiated SignalR client connection driven over plain HTTP.
type httpPeer struct {
	t    *testing.T
	ts   *servertest.Instance
	hc   *http.Client
	hub  string
	tok  string // access token
	id   string // connectionId: what the app server and REST see
	ctok string // connectionToken: the transports' id=
	n    atomic.Int64
}

// newHTTPPeer negotiates (version 1) and returns the peer; negotiate must succeed.
func newHTTPPeer(t *testing.T, ts *servertest.Instance, hub, tok string) *httpPeer {
	t.Helper()
	p := &httpPeer{t: t, ts: ts, hc: newHTTPClient(t), hub: hub, tok: tok}
	r := p.do(http.MethodPost, "/client/negotiate?hub="+hub+"&negotiateVersion=1", nil, "")
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("negotiate: %v", r)
	}
	var neg struct {
		ConnectionID    string `json:"connectionId"`
		ConnectionToken string `json:"connectionToken"`
		Error           string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &neg); err != nil || neg.ConnectionToken == "" || neg.ConnectionID == "" {
		t.Fatalf("negotiate body %q: %v", r.body, err)
	}
	p.id, p.ctok = neg.ConnectionID, neg.ConnectionToken
	return p
}

// do sends one request like the JS client's fetch does. h may override Authorization ("" removes
// it). Transport errors are returned in reply.err, never fatal, so it may run off the test goroutine.
func (p *httpPeer) do(method, pathQuery string, h http.Header, body string) reply {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" || method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.ts.URL+pathQuery, rd)
	if err != nil {
		return reply{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+p.tok)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("X-SignalR-User-Agent", "Microsoft SignalR/10.0 (10.0.11; Unknown OS; Browser; Unknown Runtime Version)")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	for k, vs := range h {
		req.Header.Del(k)
		for _, v := range vs {
			if v != "" {
				req.Header.Add(k, v)
			}
		}
	}
	start := time.Now()
	resp, err := p.hc.Do(req)
	if err != nil {
		return reply{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start), err: err}
}

// connURL is the transport URL with the connection token, as the JS client builds it.
func (p *httpPeer) connURL(extra string) string {
	return "/client/?hub=" + p.hub + "&id=" + p.ctok + extra
}

// poll is one long poll with the JS client's cache buster.
func (p *httpPeer) poll() reply {
	return p.do(http.MethodGet, p.connURL("&_="+strconv.FormatInt(time.Now().UnixMilli()*1000+p.n.Add(1), 10)), nil, "")
}

// pollAsync starts a poll; the channel is buffered so an unread result never blocks.
func (p *httpPeer) pollAsync() <-chan reply {
	ch := make(chan reply, 1)
	go func() { ch <- p.poll() }()
	return ch
}

// send POSTs hub messages.
func (p *httpPeer) send(body string) reply {
	return p.do(http.MethodPost, p.connURL(""), nil, body)
}

// wait returns the reply from ch or fails after waitLimit.
func wait(t *testing.T, ch <-chan reply, what string) reply {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r
	case <-time.After(waitLimit):
		t.Fatalf("%s: no reply within %v", what, waitLimit)
		return reply{}
	}
}

// pendingPoll returns a poll the server is known to hold: of two concurrent polls, the one the
// server saw first is completed with 204 by the other, which is therefore registered and pending.
func (p *httpPeer) pendingPoll() <-chan reply {
	p.t.Helper()
	a, b := p.pollAsync(), p.pollAsync()
	var r reply
	var other <-chan reply
	select {
	case r = <-a:
		other = b
	case r = <-b:
		other = a
	case <-time.After(waitLimit):
		p.t.Fatal("neither of two concurrent polls completed")
	}
	if r.err != nil || r.status != http.StatusNoContent {
		p.t.Fatalf("superseded poll = %v, want 204", r)
	}
	return other
}

// expectText asserts an exact status and body.
func expectText(t *testing.T, what string, r reply, status int, body string) {
	t.Helper()
	if r.err != nil || r.status != status || r.body != body {
		t.Errorf("%s = %v, want %d %q", what, r, status, body)
	}
}

// handshake POSTs the JSON hub handshake, checks what the app server receives and answers it.
func (p *httpPeer) handshake(app *fakeApp) svcproto.OpenConnection {
	p.t.Helper()
	r := p.send(jsonHandshake)
	if r.err != nil || r.status != http.StatusOK || r.body != "" || r.header.Get("Content-Type") != "text/plain" {
		p.t.Fatalf("handshake POST = %v (Content-Type %q), want 200 text/plain, empty", r, r.header.Get("Content-Type"))
	}
	open := expect[svcproto.OpenConnection](p.t, app)
	if open.ConnectionID != p.id {
		p.t.Fatalf("OpenConnection for %q, negotiated %q", open.ConnectionID, p.id)
	}
	hs := expect[svcproto.ConnectionData](p.t, app)
	if hs.ConnectionID != p.id || string(hs.Payload) != jsonHandshake {
		p.t.Fatalf("first ConnectionData = %q for %q, want the raw handshake", hs.Payload, hs.ConnectionID)
	}
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte("{}\x1e"), Ext: svcproto.Ext{DataMessageType: svcproto.DataHandshake}})
	return open
}

// startLongPolling runs the JS client's long-polling start: the activating poll, the handshake
// POST and the poll that fetches the handshake response.
func (p *httpPeer) startLongPolling(app *fakeApp) svcproto.OpenConnection {
	p.t.Helper()
	if r := p.poll(); r.err != nil || r.status != http.StatusOK || r.body != "" {
		p.t.Fatalf("first poll = %v, want 200 empty", r)
	}
	open := p.handshake(app)
	if r := p.poll(); r.err != nil || r.status != http.StatusOK || r.body != "{}\x1e" {
		p.t.Fatalf("handshake poll = %v, want 200 {}\\x1e", r)
	}
	return open
}

// dialWS opens the WebSocket transport of a negotiated peer and completes the hub handshake.
func (p *httpPeer) dialWS(app *fakeApp) *rawClient {
	p.t.Helper()
	ws := p.dialWSRaw()
	if err := ws.Write(context.Background(), websocket.MessageText, []byte(jsonHandshake)); err != nil {
		p.t.Fatal(err)
	}
	c := &rawClient{t: p.t, ws: ws, id: p.id}
	open := expect[svcproto.OpenConnection](p.t, app)
	if open.ConnectionID != p.id {
		p.t.Fatalf("OpenConnection for %q, want %q", open.ConnectionID, p.id)
	}
	expect[svcproto.ConnectionData](p.t, app)
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte("{}\x1e")})
	if got := string(c.read()); got != "{}\x1e" {
		p.t.Fatalf("handshake response %q", got)
	}
	return c
}

func (p *httpPeer) dialWSRaw() *websocket.Conn {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	u := strings.Replace(p.ts.URL, "http", "ws", 1) + p.connURL("")
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + p.tok}}})
	if err != nil {
		p.t.Fatalf("WebSocket dial: %v (%v)", err, resp)
	}
	ws.SetReadLimit(-1)
	p.t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// upgradeHeaders make a GET a WebSocket upgrade request.
func upgradeHeaders() http.Header {
	return http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
}

// sseHeaders select the SSE transport the way EventSource does.
func sseHeaders() http.Header {
	return http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
}

// sseEvent is one Server-Sent Event as received.
type sseEvent struct {
	raw  string // exact bytes, blank line included
	data string // data lines joined with "\n", as EventSource delivers them
}

type sseResult struct {
	ev  sseEvent
	err error
}

// sseStream reads an event stream on demand only, so the server's writes can block on a
// client that is not reading (which the batching tests rely on).
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	prefix string
	cancel context.CancelFunc
	req    chan struct{}
	res    chan sseResult
	done   chan struct{}
}

// openSSE starts the SSE transport with the token in the query, as browsers must send it. On a
// non-200 answer it returns nil and the reply.
func (p *httpPeer) openSSE() (*sseStream, reply) {
	p.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.ts.URL+p.connURL("&access_token="+p.tok), nil)
	if err != nil {
		cancel()
		p.t.Fatal(err)
	}
	for k, v := range sseHeaders() {
		req.Header[k] = v
	}
	stop := time.AfterFunc(waitLimit, cancel)
	resp, err := p.hc.Do(req)
	if err != nil {
		cancel()
		p.t.Fatalf("SSE request: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		stop.Stop()
		return nil, reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}
	br := bufio.NewReader(resp.Body)
	prefix := make([]byte, 3)
	_, err = io.ReadFull(br, prefix)
	stop.Stop()
	if err != nil {
		cancel()
		resp.Body.Close()
		p.t.Fatalf("SSE first bytes: %v", err)
	}
	s := &sseStream{t: p.t, resp: resp, prefix: string(prefix), cancel: cancel,
		req: make(chan struct{}, 1), res: make(chan sseResult, 1), done: make(chan struct{})}
	go s.loop(ctx, br)
	p.t.Cleanup(s.close)
	return s, reply{status: resp.StatusCode, header: resp.Header}
}

func (s *sseStream) loop(ctx context.Context, br *bufio.Reader) {
	defer close(s.done)
	for {
		select {
		case <-s.req:
		case <-ctx.Done():
			return
		}
		ev, err := readEvent(br)
		s.res <- sseResult{ev, err} // cap 1, one request outstanding at most
		if err != nil {
			return
		}
	}
}

func readEvent(br *bufio.Reader) (sseEvent, error) {
	var raw strings.Builder
	var data []string
	for {
		line, err := br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			if raw.Len() > 0 && err == io.EOF {
				err = fmt.Errorf("stream ended inside an event: %q", raw.String())
			}
			return sseEvent{raw: raw.String()}, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return sseEvent{raw: raw.String()}, fmt.Errorf("line not terminated by CRLF: %q", line)
		}
		l := strings.TrimSuffix(line, "\r\n")
		if l == "" {
			return sseEvent{raw: raw.String(), data: strings.Join(data, "\n")}, nil
		}
		d, ok := strings.CutPrefix(l, "data: ")
		if !ok {
			return sseEvent{raw: raw.String()}, fmt.Errorf("not a data line: %q", l)
		}
		data = append(data, d)
	}
}

// read asks for the next event; err is io.EOF when the server ended the stream.
func (s *sseStream) read() (sseEvent, error) {
	s.t.Helper()
	select {
	case s.req <- struct{}{}:
	case <-s.done:
		return sseEvent{}, io.ErrClosedPipe
	}
	select {
	case r := <-s.res:
		return r.ev, r.err
	case <-time.After(waitLimit):
		s.t.Fatalf("no SSE event within %v", waitLimit)
		return sseEvent{}, nil
	}
}

// next returns the next event or fails.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	ev, err := s.read()
	if err != nil {
		s.t.Fatalf("SSE read: %v", err)
	}
	return ev
}

// expectEnd asserts the server ends the stream cleanly without another event.
func (s *sseStream) expectEnd() {
	s.t.Helper()
	ev, err := s.read()
	if err != io.EOF {
		s.t.Fatalf("want the stream to end, got event %q err %v", ev.raw, err)
	}
}

// close is the client closing its EventSource.
func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// fence sends CheckConnectionExistenceWithAck and returns its status with every other message
// the app received before the Ack. Since an app socket's messages are dispatched in order, the
// Ack proves everything sent before it was handled.
func fence(t *testing.T, app *fakeApp, connID string, ackID int) (svcproto.AckStatus, []svcproto.Message) {
	t.Helper()
	app.send(svcproto.CheckConnectionExistenceWithAck{ConnectionID: connID, AckID: ackID})
	var others []svcproto.Message
	timeout := time.After(waitLimit)
	for {
		select {
		case m, ok := <-app.msgs:
			if !ok {
				t.Fatal("app link closed while waiting for the fence")
			}
			if a, isAck := m.(svcproto.Ack); isAck && a.AckID == ackID {
				return a.Status, others
			}
			others = append(others, m)
		case <-timeout:
			t.Fatalf("fence %d: no Ack", ackID)
		}
	}
}

// expectCloseConnection waits for the app's CloseConnection for id, skipping other messages.
func expectCloseConnection(t *testing.T, app *fakeApp, id string) svcproto.CloseConnection {
	t.Helper()
	for {
		cc := expect[svcproto.CloseConnection](t, app)
		if cc.ConnectionID == id {
			return cc
		}
	}
}

// eventually polls cond every 20 ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// smallMessages returns n distinct framed JSON invocations and their concatenation.
func smallMessages(tag string, n int) ([]string, string) {
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = `{"type":1,"target":"` + tag + `","arguments":[` + strconv.Itoa(i) + `]}` + "\x1e"
	}
	return msgs, strings.Join(msgs, "")
}

// bigMessage is one framed JSON invocation larger than the loopback socket buffers (a few MiB),
// so writing it blocks while the client does not read.
func bigMessage() string {
	return `{"type":1,"target":"big","arguments":["` + strings.Repeat("x", 16<<20) + `"]}` + "\x1e"
}

func sendAll(app *fakeApp, id string, msgs []string) {
	for _, m := range msgs {
		app.send(svcproto.ConnectionData{ConnectionID: id, Payload: []byte(m)})
	}
}

func abbrev(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%q…(%d bytes)", s[:200], len(s))
	}
	return strconv.Quote(s)
}
