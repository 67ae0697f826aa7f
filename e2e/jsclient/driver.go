package jsclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ErrDriverExited is returned by calls and WaitEvent once the node process has
// gone (normally only after cleanup, otherwise it crashed: see the test log).
var ErrDriverExited = errors.New("jsclient: driver exited")

// RemoteError is a command the driver answered with ok:false, e.g. a hub
// method error, a failed start or an unknown connection name.
type RemoteError struct {
	Op      string // driver op: connect, invoke, send, ...
	Conn    string
	Method  string
	Message string // error text from the JS client, verbatim
}

func (e *RemoteError) Error() string {
	var b strings.Builder
	b.WriteString("jsclient: ")
	b.WriteString(e.Op)
	if e.Method != "" {
		fmt.Fprintf(&b, " %q", e.Method)
	}
	if e.Conn != "" {
		fmt.Fprintf(&b, " on %q", e.Conn)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

// ConnectOptions configure one HubConnection. Zero values mean the client's
// defaults.
type ConnectOptions struct {
	URL         string // hub URL, e.g. http://127.0.0.1:8080/client/?hub=chat
	Protocol    string // "json" (default) or "messagepack"
	Transport   string // "WebSockets", "ServerSentEvents", "LongPolling", a "|"-joined set, or "" for any
	AccessToken string // returned by accessTokenFactory when non-empty

	SkipNegotiation    bool
	StatefulReconnect  bool
	AutomaticReconnect bool // implied by a non-empty ReconnectDelays

	Headers  map[string]string
	Handlers []string // client methods whose invocations are recorded as message events

	LogLevel          string          // JS client log level to stderr (test log): none, error (default), warning, information, debug, trace
	ReconnectDelays   []time.Duration // withAutomaticReconnect(delays)
	ServerTimeout     time.Duration   // withServerTimeout
	KeepAliveInterval time.Duration   // withKeepAliveInterval
}

// ConnInfo describes a connection as the JS client sees it.
type ConnInfo struct {
	State        string // HubConnectionState: Disconnected, Connecting, Connected, Disconnecting, Reconnecting
	ConnectionID string
	Transport    string // WebSockets, ServerSentEvents, LongPolling, or "" when not connected
}

// Bin marshals as {"$bin":"<base64>"}, which the driver turns into a
// Uint8Array, i.e. a MessagePack bin value (a plain []byte would be a base64
// string on the wire).
type Bin []byte

// MarshalJSON implements json.Marshaler.
func (b Bin) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		B []byte `json:"$bin"`
	}{B: b})
}

// DecodeBin decodes a {"$bin":"<base64>"} value produced by the driver.
func DecodeBin(raw json.RawMessage) ([]byte, error) {
	var v struct {
		B *string `json:"$bin"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("jsclient: decode bin: %w", err)
	}
	if v.B == nil {
		return nil, fmt.Errorf("jsclient: decode bin: no $bin in %s", raw)
	}
	b, err := base64.StdEncoding.DecodeString(*v.B)
	if err != nil {
		return nil, fmt.Errorf("jsclient: decode bin: %w", err)
	}
	return b, nil
}

// Driver is a running driver.mjs process. Create it with Start.
type Driver struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser

	writeMu sync.Mutex
	seq     atomic.Int64

	mu      sync.Mutex
	pending map[int64]chan wireLine

	dead    chan struct{} // closed when stdout hits EOF
	deadErr error         // written before dead is closed
	exited  chan struct{} // closed after cmd.Wait returned
	waitErr error         // written before exited is closed

	tailMu sync.Mutex
	tail   []string // last stderr lines, for error messages

	log       *eventLog
	events    chan Event
	quit      chan struct{}
	pumpDone  chan struct{}
	closeOnce sync.Once
}

const (
	stderrTailLines = 40
	startTimeout    = 30 * time.Second
	exitTimeout     = 30 * time.Second
)

// wireLine is the union of replies and events.
type wireLine struct {
	Event

	Seq          *int64            `json:"seq"`
	OK           bool              `json:"ok"`
	Result       json.RawMessage   `json:"result"`
	State        string            `json:"state"`
	Transport    string            `json:"transport"`
	Items        []json.RawMessage `json:"items"`
	SignalR      string            `json:"signalr"`
	MsgPack      string            `json:"msgpack"`
	NodeVersion  string            `json:"node"`
	ConnectionID string            `json:"connectionId"` // shadows Event.ConnectionID for replies
}

// Start launches the driver and registers its shutdown with t.Cleanup. It
// fails t (never skips) when node or the npm dependencies are missing.
func Start(t testing.TB) *Driver {
	t.Helper()
	dir, err := jsDir()
	if err != nil {
		t.Fatalf("jsclient: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("jsclient: node (>= 20) not found on PATH: %v; install it, then run `make deps` (or `npm ci` in %s)", err, dir)
	}
	if err := checkModules(dir); err != nil {
		t.Fatalf("jsclient: %v", err)
	}

	cmd := exec.Command(node, "driver.mjs")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("jsclient: stdin pipe: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("jsclient: stdout pipe: %v", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("jsclient: stderr pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("jsclient: start %s: %v", node, err)
	}

	d := &Driver{
		t:        t,
		cmd:      cmd,
		stdin:    stdin,
		pending:  make(map[int64]chan wireLine),
		dead:     make(chan struct{}),
		exited:   make(chan struct{}),
		log:      newEventLog(),
		events:   make(chan Event),
		quit:     make(chan struct{}),
		pumpDone: make(chan struct{}),
	}
	// cmd.Wait closes the pipes, so it may only run after both readers hit EOF.
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); d.readStdout(stdout) }()
	go func() { defer readers.Done(); d.readStderr(stderr) }()
	go func() {
		readers.Wait()
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	go func() { defer close(d.pumpDone); d.log.pump(d.events, d.quit) }()
	t.Cleanup(d.close)

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	r, err := d.call(ctx, map[string]any{"op": "ping"})
	if err != nil {
		t.Fatalf("jsclient: driver did not come up: %v\n%s", err, d.stderrTail())
	}
	t.Logf("jsclient: node %s, @microsoft/signalr %s, @microsoft/signalr-protocol-msgpack %s", r.NodeVersion, r.SignalR, r.MsgPack)
	return d
}

// jsDir finds e2e/js: next to this source file (the normal case), else by
// walking up from the working directory (e.g. binaries built with -trimpath).
func jsDir() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "js"))
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			candidates = append(candidates, filepath.Join(dir, "e2e", "js"))
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "driver.mjs")); err == nil {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("cannot find e2e/js/driver.mjs (looked in %s)", strings.Join(candidates, ", "))
}

// checkModules verifies node_modules holds exactly the pinned versions, so a
// stale install fails loudly instead of testing another client version.
func checkModules(dir string) error {
	fix := fmt.Sprintf("run `make deps` (or `npm ci` in %s)", dir)
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return fmt.Errorf("read package.json: %w", err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(dir, "package.json"), err)
	}
	for name, want := range pkg.Dependencies {
		p := filepath.Join(dir, "node_modules", filepath.FromSlash(name), "package.json")
		raw, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("npm dependency %s is not installed (%v); %s", name, err, fix)
		}
		var got struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			return fmt.Errorf("parse %s: %w; %s", p, err, fix)
		}
		if got.Version != want {
			return fmt.Errorf("npm dependency %s is %s but package.json pins %s; %s", name, got.Version, want, fix)
		}
	}
	return nil
}

func (d *Driver) readStdout(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			d.dispatch(line)
		}
		if err != nil {
			d.deadErr = ErrDriverExited
			if !errors.Is(err, io.EOF) {
				d.deadErr = fmt.Errorf("%w: read stdout: %w", ErrDriverExited, err)
			}
			close(d.dead)
			d.log.close(d.deadErr)
			return
		}
	}
}

func (d *Driver) dispatch(line []byte) {
	var w wireLine
	if err := json.Unmarshal(line, &w); err != nil {
		d.t.Logf("jsclient: unparsable driver output %q: %v", line, err)
		return
	}
	if w.Event.Event != "" {
		e := w.Event
		e.ConnectionID = w.ConnectionID
		d.log.append(e)
		return
	}
	if w.Seq == nil {
		d.t.Logf("jsclient: driver reply without seq: %s", line)
		return
	}
	d.mu.Lock()
	ch := d.pending[*w.Seq]
	delete(d.pending, *w.Seq)
	d.mu.Unlock()
	if ch != nil {
		ch <- w // buffered; each seq is answered once
	}
}

func (d *Driver) readStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		d.tailMu.Lock()
		d.tail = append(d.tail, line)
		if len(d.tail) > stderrTailLines {
			d.tail = d.tail[len(d.tail)-stderrTailLines:]
		}
		d.tailMu.Unlock()
		d.t.Logf("jsdriver: %s", line)
	}
	// Keep draining after a scanner error (overlong line) so node never
	// blocks on a full stderr pipe.
	_, _ = io.Copy(io.Discard, r)
}

func (d *Driver) stderrTail() string {
	d.tailMu.Lock()
	defer d.tailMu.Unlock()
	if len(d.tail) == 0 {
		return "(no driver stderr)"
	}
	return "driver stderr (tail):\n" + strings.Join(d.tail, "\n")
}

// call sends one command and waits for its reply. fields must hold "op".
func (d *Driver) call(ctx context.Context, fields map[string]any) (wireLine, error) {
	op, _ := fields["op"].(string)
	seq := d.seq.Add(1)
	fields["seq"] = seq
	b, err := json.Marshal(fields)
	if err != nil {
		return wireLine{}, fmt.Errorf("jsclient: encode %s: %w", op, err)
	}
	b = append(b, '\n')

	ch := make(chan wireLine, 1)
	d.mu.Lock()
	d.pending[seq] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, seq)
		d.mu.Unlock()
	}()

	select {
	case <-d.dead:
		return wireLine{}, fmt.Errorf("jsclient: %s: %w", op, d.deadErr)
	default:
	}
	d.writeMu.Lock()
	_, err = d.stdin.Write(b)
	d.writeMu.Unlock()
	if err != nil {
		// A failed pipe write means node is gone (or going).
		return wireLine{}, fmt.Errorf("jsclient: %s: %w: write command: %w", op, ErrDriverExited, err)
	}

	select {
	case r := <-ch:
		if !r.OK {
			conn, _ := fields["conn"].(string)
			method, _ := fields["method"].(string)
			return r, &RemoteError{Op: op, Conn: conn, Method: method, Message: r.Event.Error}
		}
		return r, nil
	case <-ctx.Done():
		return wireLine{}, fmt.Errorf("jsclient: %s: %w", op, ctx.Err())
	case <-d.dead:
		// The reply may have been dispatched just before EOF.
		select {
		case r := <-ch:
			if r.OK {
				return r, nil
			}
		default:
		}
		return wireLine{}, fmt.Errorf("jsclient: %s: %w", op, d.deadErr)
	}
}

func argList(args []any) []any {
	if args == nil {
		return []any{}
	}
	return args
}

// Connect builds a HubConnection named name, starts it and returns the
// connection id the client got from negotiate ("" with SkipNegotiation).
func (d *Driver) Connect(ctx context.Context, name string, o ConnectOptions) (string, error) {
	fields := map[string]any{
		"op":                 "connect",
		"conn":               name,
		"url":                o.URL,
		"protocol":           o.Protocol,
		"transport":          o.Transport,
		"skipNegotiation":    o.SkipNegotiation,
		"statefulReconnect":  o.StatefulReconnect,
		"automaticReconnect": o.AutomaticReconnect || len(o.ReconnectDelays) > 0,
		"handlers":           append([]string{}, o.Handlers...),
		"logLevel":           o.LogLevel,
	}
	if o.AccessToken != "" {
		fields["accessToken"] = o.AccessToken
	}
	if len(o.Headers) > 0 {
		fields["headers"] = o.Headers
	}
	if len(o.ReconnectDelays) > 0 {
		ms := make([]int64, len(o.ReconnectDelays))
		for i, d := range o.ReconnectDelays {
			ms[i] = d.Milliseconds()
		}
		fields["reconnectDelaysMs"] = ms
	}
	if o.ServerTimeout > 0 {
		fields["serverTimeoutMs"] = o.ServerTimeout.Milliseconds()
	}
	if o.KeepAliveInterval > 0 {
		fields["keepAliveIntervalMs"] = o.KeepAliveInterval.Milliseconds()
	}
	r, err := d.call(ctx, fields)
	if err != nil {
		return "", err
	}
	return r.ConnectionID, nil
}

// Invoke calls connection.invoke and returns the hub method's result as JSON
// (null for void methods). A hub error is a *RemoteError.
func (d *Driver) Invoke(ctx context.Context, conn, method string, args ...any) (json.RawMessage, error) {
	r, err := d.call(ctx, map[string]any{"op": "invoke", "conn": conn, "method": method, "args": argList(args)})
	if err != nil {
		return nil, err
	}
	if len(r.Result) == 0 {
		return json.RawMessage("null"), nil
	}
	return r.Result, nil
}

// Send calls connection.send; it returns once the message was handed to the
// transport, not when the server processed it.
func (d *Driver) Send(ctx context.Context, conn, method string, args ...any) error {
	_, err := d.call(ctx, map[string]any{"op": "send", "conn": conn, "method": method, "args": argList(args)})
	return err
}

// Stream calls connection.stream and collects every item until completion.
// On a stream error it returns the items received so far with the error.
func (d *Driver) Stream(ctx context.Context, conn, method string, args ...any) ([]json.RawMessage, error) {
	r, err := d.call(ctx, map[string]any{"op": "stream", "conn": conn, "method": method, "args": argList(args)})
	return r.Items, err
}

// Stop calls connection.stop and returns once the connection is closed; the
// close event is logged before Stop returns.
func (d *Driver) Stop(ctx context.Context, conn string) error {
	_, err := d.call(ctx, map[string]any{"op": "stop", "conn": conn})
	return err
}

// State returns connection.state.
func (d *Driver) State(ctx context.Context, conn string) (string, error) {
	i, err := d.Info(ctx, conn)
	return i.State, err
}

// Info returns state, connection id and the transport in use.
func (d *Driver) Info(ctx context.Context, conn string) (ConnInfo, error) {
	r, err := d.call(ctx, map[string]any{"op": "state", "conn": conn})
	if err != nil {
		return ConnInfo{}, err
	}
	return ConnInfo{State: r.State, ConnectionID: r.ConnectionID, Transport: r.Transport}, nil
}

// On records server invocations of method as message events.
func (d *Driver) On(ctx context.Context, conn, method string) error {
	_, err := d.call(ctx, map[string]any{"op": "on", "conn": conn, "method": method})
	return err
}

// HandleResult makes the client answer server invocations of method (client
// results) with result; the invocations are also recorded as message events.
// A later HandleResult or HandleError for the same method replaces it.
func (d *Driver) HandleResult(ctx context.Context, conn, method string, result any) error {
	_, err := d.call(ctx, map[string]any{"op": "handleResult", "conn": conn, "method": method, "result": result})
	return err
}

// HandleError makes the client's handler for method throw message, so the
// server receives a completion with that error.
func (d *Driver) HandleError(ctx context.Context, conn, method, message string) error {
	if message == "" {
		return errors.New("jsclient: HandleError: empty message")
	}
	_, err := d.call(ctx, map[string]any{"op": "handleResult", "conn": conn, "method": method, "error": message})
	return err
}

// Events streams every event in arrival order, whether or not WaitEvent
// consumed it. The channel is closed when the driver exits. Reading is
// optional: undelivered events only cost memory.
func (d *Driver) Events() <-chan Event { return d.events }

// WaitEvent returns the oldest event, received at any time so far or later,
// that matches and was not returned by an earlier WaitEvent, and marks it
// consumed. Non-matching events stay available to other waiters.
func (d *Driver) WaitEvent(ctx context.Context, match func(Event) bool) (Event, error) {
	e, err := d.log.wait(ctx, match)
	if err != nil {
		return Event{}, fmt.Errorf("jsclient: wait event: %w", err)
	}
	return e, nil
}

// Messages returns all message events so far for conn and method, consumed
// or not, oldest first.
func (d *Driver) Messages(conn, method string) []Event {
	return d.log.snapshot(IsMessage(conn, method))
}

// close is the t.Cleanup: ask node to stop all connections and exit, then
// make sure the process and every goroutine of the Driver are gone.
func (d *Driver) close() {
	d.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
		defer cancel()
		if _, err := d.call(ctx, map[string]any{"op": "exit"}); err != nil && !errors.Is(err, ErrDriverExited) {
			d.t.Logf("jsclient: exit command: %v", err)
		}
		_ = d.stdin.Close() // EOF makes the driver exit even if it missed "exit"

		killed := false
		timer := time.NewTimer(exitTimeout)
		select {
		case <-d.exited:
		case <-timer.C:
			killed = true
			d.t.Errorf("jsclient: driver did not exit within %v; killing it", exitTimeout)
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		timer.Stop()
		close(d.quit)
		<-d.pumpDone
		if d.waitErr != nil && !killed {
			d.t.Errorf("jsclient: driver exited abnormally: %v\n%s", d.waitErr, d.stderrTail())
		}
	})
}
