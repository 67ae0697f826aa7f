package jsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"
)

// fakeHub is the smallest SignalR server that exercises the harness: negotiate
// v1, WebSockets only, JSON and MessagePack, and a handful of hub methods:
//
//	echo(x)             → completion x, plus invocation message(args...) to the client
//	fail()              → completion error "boom"
//	askClient(m, a...)  → invokes client method m(a...) expecting a result and
//	                      completes with the client's result or error
//	count(n)            → stream 1..n (StreamInvocation)
//	closeMe()           → Close message with error "bye"
type fakeHub struct {
	srv *httptest.Server
	ctx context.Context // cancelled at cleanup so handlers cannot outlive the test
	wg  sync.WaitGroup

	mu        sync.Mutex
	negotiate []http.Header
}

const (
	fakeConnectionID = "abc"
	fakeToken        = "tok"
)

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeHub{ctx: ctx}
	mux := http.NewServeMux()
	mux.HandleFunc("/hub/negotiate", f.handleNegotiate)
	mux.HandleFunc("/hub", f.handleConnect)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		cancel()
		f.srv.Close() // no new handlers after this; hijacked ones are tracked by wg
		f.wg.Wait()
	})
	return f
}

func (f *fakeHub) url() string { return f.srv.URL + "/hub" }

func (f *fakeHub) negotiateHeaders() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.negotiate...)
}

func (f *fakeHub) handleNegotiate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Query().Get("negotiateVersion") != "1" {
		http.Error(w, "bad negotiate", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.negotiate = append(f.negotiate, r.Header.Clone())
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"negotiateVersion":1,"connectionId":%q,"connectionToken":%q,`+
		`"availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}`,
		fakeConnectionID, fakeToken)
}

func (f *fakeHub) handleConnect(w http.ResponseWriter, r *http.Request) {
	// Add before Accept: srv.Close waits for us until the hijack inside Accept.
	f.wg.Add(1)
	defer f.wg.Done()
	if r.URL.Query().Get("id") != fakeToken {
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	if err := f.serve(f.ctx, c); err == nil {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
}

// hubMsg is the protocol-neutral subset of hub messages the fake needs.
type hubMsg struct {
	Type         int
	InvocationID string
	Target       string
	Args         []any
	Result       any
	HasResult    bool
	Error        string
}

type fakeCodec interface {
	frameType() websocket.MessageType
	// decode splits off every whole message in buf and returns the remainder.
	decode(buf []byte) ([]hubMsg, []byte, error)
	encode(m hubMsg) ([]byte, error)
}

func (f *fakeHub) serve(ctx context.Context, c *websocket.Conn) error {
	var buf []byte
	for bytes.IndexByte(buf, 0x1e) < 0 {
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		buf = append(buf, data...)
	}
	i := bytes.IndexByte(buf, 0x1e)
	var hs struct {
		Protocol string `json:"protocol"`
		Version  int    `json:"version"`
	}
	if err := json.Unmarshal(buf[:i], &hs); err != nil {
		return fmt.Errorf("fake: handshake: %w", err)
	}
	buf = buf[i+1:]
	var codec fakeCodec
	switch hs.Protocol {
	case "json":
		codec = jsonCodec{}
	case "messagepack":
		codec = msgpackCodec{}
	default:
		return fmt.Errorf("fake: unsupported protocol %q", hs.Protocol)
	}
	if err := c.Write(ctx, codec.frameType(), []byte("{}\x1e")); err != nil {
		return err
	}

	send := func(m hubMsg) error {
		b, err := codec.encode(m)
		if err != nil {
			return err
		}
		return c.Write(ctx, codec.frameType(), b)
	}
	asked := map[string]string{} // server invocation id → client invocation waiting for it
	for n := 0; ; {
		msgs, rest, err := codec.decode(buf)
		if err != nil {
			return err
		}
		buf = rest
		for _, m := range msgs {
			done, err := f.handle(m, send, asked, &n)
			if err != nil || done {
				return err
			}
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		buf = append(buf, data...)
	}
}

func (f *fakeHub) handle(m hubMsg, send func(hubMsg) error, asked map[string]string, n *int) (done bool, err error) {
	complete := func(res any, errMsg string) error {
		if m.InvocationID == "" {
			return nil
		}
		return send(hubMsg{Type: 3, InvocationID: m.InvocationID, Result: res, HasResult: errMsg == "", Error: errMsg})
	}
	switch {
	case m.Type == 1 && m.Target == "echo":
		var first any
		if len(m.Args) > 0 {
			first = m.Args[0]
		}
		if err := complete(first, ""); err != nil {
			return false, err
		}
		return false, send(hubMsg{Type: 1, Target: "message", Args: m.Args})
	case m.Type == 1 && m.Target == "fail":
		return false, complete(nil, "boom")
	case m.Type == 1 && m.Target == "askClient":
		method, _ := m.Args[0].(string)
		*n++
		id := fmt.Sprintf("srv-%d", *n)
		asked[id] = m.InvocationID
		return false, send(hubMsg{Type: 1, InvocationID: id, Target: method, Args: m.Args[1:]})
	case m.Type == 1 && m.Target == "closeMe":
		return true, send(hubMsg{Type: 7, Error: "bye"})
	case m.Type == 4 && m.Target == "count":
		limit, _ := toInt(m.Args[0])
		for i := 1; i <= limit; i++ {
			if err := send(hubMsg{Type: 2, InvocationID: m.InvocationID, Result: i}); err != nil {
				return false, err
			}
		}
		return false, send(hubMsg{Type: 3, InvocationID: m.InvocationID})
	case m.Type == 3:
		orig, ok := asked[m.InvocationID]
		if !ok {
			return false, fmt.Errorf("fake: completion for unknown invocation %q", m.InvocationID)
		}
		delete(asked, m.InvocationID)
		return false, send(hubMsg{Type: 3, InvocationID: orig, Result: m.Result, HasResult: m.Error == "", Error: m.Error})
	case m.Type == 1 && m.InvocationID != "":
		return false, complete(nil, fmt.Sprintf("unknown method %q", m.Target))
	case m.Type == 7:
		return true, nil
	default: // pings, unknown sends
		return false, nil
	}
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case float64:
		return int(n), true
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), true
	case uint64:
		return int(n), true
	}
	return 0, false
}

type jsonCodec struct{}

func (jsonCodec) frameType() websocket.MessageType { return websocket.MessageText }

func (jsonCodec) decode(buf []byte) ([]hubMsg, []byte, error) {
	var out []hubMsg
	for {
		i := bytes.IndexByte(buf, 0x1e)
		if i < 0 {
			return out, buf, nil
		}
		var w struct {
			Type         int    `json:"type"`
			InvocationID string `json:"invocationId"`
			Target       string `json:"target"`
			Arguments    []any  `json:"arguments"`
			Result       *any   `json:"result"`
			Error        string `json:"error"`
		}
		if err := json.Unmarshal(buf[:i], &w); err != nil {
			return nil, nil, fmt.Errorf("fake: decode json message: %w", err)
		}
		m := hubMsg{Type: w.Type, InvocationID: w.InvocationID, Target: w.Target, Args: w.Arguments, Error: w.Error}
		if w.Result != nil {
			m.Result, m.HasResult = *w.Result, true
		}
		out = append(out, m)
		buf = buf[i+1:]
	}
}

func (jsonCodec) encode(m hubMsg) ([]byte, error) {
	w := map[string]any{"type": m.Type}
	if m.InvocationID != "" {
		w["invocationId"] = m.InvocationID
	}
	switch m.Type {
	case 1:
		w["target"] = m.Target
		w["arguments"] = append([]any{}, m.Args...)
	case 2:
		w["item"] = m.Result
	case 3:
		if m.Error != "" {
			w["error"] = m.Error
		} else if m.HasResult {
			w["result"] = m.Result
		}
	case 7:
		if m.Error != "" {
			w["error"] = m.Error
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("fake: encode json message: %w", err)
	}
	return append(b, 0x1e), nil
}

type msgpackCodec struct{}

func (msgpackCodec) frameType() websocket.MessageType { return websocket.MessageBinary }

func (msgpackCodec) decode(buf []byte) ([]hubMsg, []byte, error) {
	var out []hubMsg
	for {
		size, n := uvarint(buf)
		if n < 0 {
			return nil, nil, errors.New("fake: bad length prefix")
		}
		if n == 0 || len(buf)-n < size {
			return out, buf, nil
		}
		// Strict (not loose) interface decoding keeps bin as []byte so it is
		// echoed as bin; integers then come in every width (see toInt).
		var arr []any
		if err := msgpack.Unmarshal(buf[n:n+size], &arr); err != nil {
			return nil, nil, fmt.Errorf("fake: decode msgpack message: %w", err)
		}
		buf = buf[n+size:]
		if len(arr) == 0 {
			return nil, nil, errors.New("fake: empty msgpack message")
		}
		typ, _ := toInt(arr[0])
		m := hubMsg{Type: typ}
		str := func(i int) string {
			if i < len(arr) {
				s, _ := arr[i].(string)
				return s
			}
			return ""
		}
		switch typ {
		case 1, 4: // [type, headers, invocationId, target, args, streamIds?]
			m.InvocationID, m.Target = str(2), str(3)
			if len(arr) > 4 {
				m.Args, _ = arr[4].([]any)
			}
		case 3: // [3, headers, invocationId, resultKind, result?]
			m.InvocationID = str(2)
			kind := 0
			if len(arr) > 3 {
				kind, _ = toInt(arr[3])
			}
			switch kind {
			case 1:
				m.Error = str(4)
			case 3:
				m.Result, m.HasResult = arr[4], true
			}
		}
		out = append(out, m)
	}
}

func (msgpackCodec) encode(m hubMsg) ([]byte, error) {
	headers := map[string]string{}
	var id any
	if m.InvocationID != "" {
		id = m.InvocationID
	}
	var arr []any
	switch m.Type {
	case 1:
		arr = []any{1, headers, id, m.Target, append([]any{}, m.Args...)}
	case 2:
		arr = []any{2, headers, id, m.Result}
	case 3:
		switch {
		case m.Error != "":
			arr = []any{3, headers, id, 1, m.Error}
		case m.HasResult:
			arr = []any{3, headers, id, 3, m.Result}
		default:
			arr = []any{3, headers, id, 2}
		}
	case 7:
		arr = []any{7, m.Error}
	default:
		return nil, fmt.Errorf("fake: cannot encode type %d", m.Type)
	}
	body, err := msgpack.Marshal(arr)
	if err != nil {
		return nil, fmt.Errorf("fake: encode msgpack message: %w", err)
	}
	var out []byte
	for size := uint(len(body)); ; size >>= 7 {
		if size < 0x80 {
			out = append(out, byte(size))
			break
		}
		out = append(out, byte(size&0x7f|0x80))
	}
	return append(out, body...), nil
}

// uvarint reads the SignalR length prefix (7-bit groups, at most 5 bytes):
// n == 0 means incomplete, n < 0 malformed.
func uvarint(b []byte) (size, n int) {
	for i := 0; i < len(b) && i < 5; i++ {
		size |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return size, i + 1
		}
	}
	if len(b) >= 5 {
		return 0, -1
	}
	return 0, 0
}
