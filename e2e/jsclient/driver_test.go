package jsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func jsonEqual(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("unmarshal %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("unmarshal want %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestDriverJSONRoundTrip(t *testing.T) {
	t.Parallel()
	hub := newFakeHub(t)
	d := Start(t)
	ctx := testCtx(t)

	id, err := d.Connect(ctx, "c1", ConnectOptions{
		URL:         hub.url(),
		Protocol:    "json",
		Transport:   "WebSockets",
		AccessToken: "secret-token",
		Headers:     map[string]string{"X-Test": "yes"},
		Handlers:    []string{"message"},
	})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if id != fakeConnectionID {
		t.Fatalf("connectionId = %q, want %q", id, fakeConnectionID)
	}
	hs := hub.negotiateHeaders()
	if len(hs) != 1 || hs[0].Get("Authorization") != "Bearer secret-token" || hs[0].Get("X-Test") != "yes" {
		t.Fatalf("negotiate headers = %v, want bearer token and X-Test", hs)
	}
	info, err := d.Info(ctx, "c1")
	if err != nil || info != (ConnInfo{State: "Connected", ConnectionID: fakeConnectionID, Transport: "WebSockets"}) {
		t.Fatalf("Info = %+v, %v", info, err)
	}

	res, err := d.Invoke(ctx, "c1", "echo", map[string]any{"a": 1, "s": "x"}, 2)
	if err != nil {
		t.Fatalf("Invoke echo: %v", err)
	}
	jsonEqual(t, res, `{"a":1,"s":"x"}`)
	ev, err := d.WaitEvent(ctx, IsMessage("c1", "message"))
	if err != nil {
		t.Fatalf("WaitEvent: %v", err)
	}
	if len(ev.Args) != 2 {
		t.Fatalf("message args = %s, want 2", ev.Args)
	}
	jsonEqual(t, ev.Args[0], `{"a":1,"s":"x"}`)
	jsonEqual(t, ev.Args[1], `2`)

	if err := d.Send(ctx, "c1", "echo", "sent"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ev, err = d.WaitEvent(ctx, IsMessage("c1", "message"))
	if err != nil {
		t.Fatalf("WaitEvent after Send: %v", err)
	}
	jsonEqual(t, ev.Args[0], `"sent"`)
	if got := d.Messages("c1", "message"); len(got) != 2 {
		t.Fatalf("Messages = %d events, want 2 (consumed ones included)", len(got))
	}

	_, err = d.Invoke(ctx, "c1", "fail")
	var re *RemoteError
	if !errors.As(err, &re) || re.Op != "invoke" || !strings.Contains(re.Message, "boom") {
		t.Fatalf("Invoke fail err = %v, want RemoteError containing boom", err)
	}

	items, err := d.Stream(ctx, "c1", "count", 3)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if len(items) != 3 {
		t.Fatalf("stream items = %s, want 3", items)
	}
	jsonEqual(t, items[2], `3`)

	if err := d.Stop(ctx, "c1"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	ev, err = d.WaitEvent(ctx, IsClose("c1"))
	if err != nil || ev.Error != "" {
		t.Fatalf("close event = %+v, %v; want clean close", ev, err)
	}
	if st, err := d.State(ctx, "c1"); err != nil || st != "Disconnected" {
		t.Fatalf("State after stop = %q, %v", st, err)
	}
}

func TestDriverClientResults(t *testing.T) {
	t.Parallel()
	hub := newFakeHub(t)
	d := Start(t)
	ctx := testCtx(t)

	if _, err := d.Connect(ctx, "c", ConnectOptions{URL: hub.url()}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	tests := []struct {
		name    string
		setup   func() error
		want    string // JSON result, or
		wantErr string // substring of the error
	}{
		{name: "number", setup: func() error { return d.HandleResult(ctx, "c", "getValue", 42) }, want: `42`},
		{name: "object replaces", setup: func() error { return d.HandleResult(ctx, "c", "getValue", map[string]any{"k": []int{1}}) }, want: `{"k":[1]}`},
		{name: "nil is null", setup: func() error { return d.HandleResult(ctx, "c", "getValue", nil) }, want: `null`},
		{name: "error", setup: func() error { return d.HandleError(ctx, "c", "getValue", "nope") }, wantErr: "nope"},
		{name: "on keeps last result", setup: func() error {
			if err := d.HandleResult(ctx, "c", "getValue", "v"); err != nil {
				return err
			}
			return d.On(ctx, "c", "GetValue") // same method, other case: must not shadow the result
		}, want: `"v"`},
	}
	// Sequential on purpose: the cases reconfigure one handler.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.setup(); err != nil {
				t.Fatalf("setup: %v", err)
			}
			res, err := d.Invoke(ctx, "c", "askClient", "getValue", "arg")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			jsonEqual(t, res, tc.want)
			ev, err := d.WaitEvent(ctx, IsMessage("c", "getValue"))
			if err != nil {
				t.Fatalf("WaitEvent: %v", err)
			}
			if len(ev.Args) != 1 {
				t.Fatalf("client saw args %s, want [\"arg\"]", ev.Args)
			}
			jsonEqual(t, ev.Args[0], `"arg"`)
		})
	}
}

func TestDriverMessagePackBinary(t *testing.T) {
	t.Parallel()
	hub := newFakeHub(t)
	d := Start(t)
	ctx := testCtx(t)

	if _, err := d.Connect(ctx, "m", ConnectOptions{URL: hub.url(), Protocol: "messagepack", Handlers: []string{"message"}}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	payload := []byte{0, 1, 2, 0xff}
	res, err := d.Invoke(ctx, "m", "echo", Bin(payload), map[string]any{"n": 7})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	got, err := DecodeBin(res)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echoed %s (%v), want bin %x", res, err, payload)
	}
	ev, err := d.WaitEvent(ctx, IsMessage("m", "message"))
	if err != nil {
		t.Fatalf("WaitEvent: %v", err)
	}
	if got, err := DecodeBin(ev.Args[0]); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("message arg %s (%v), want bin %x", ev.Args[0], err, payload)
	}
	jsonEqual(t, ev.Args[1], `{"n":7}`)
}

func TestDriverServerClose(t *testing.T) {
	t.Parallel()
	hub := newFakeHub(t)
	d := Start(t)
	ctx := testCtx(t)

	if _, err := d.Connect(ctx, "c", ConnectOptions{URL: hub.url()}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := d.Send(ctx, "c", "closeMe"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ev, err := d.WaitEvent(ctx, IsClose("c"))
	if err != nil || !strings.Contains(ev.Error, "bye") {
		t.Fatalf("close event = %+v, %v; want error with bye", ev, err)
	}
	// The name is free again once the connection is closed.
	if _, err := d.Connect(ctx, "c", ConnectOptions{URL: hub.url()}); err != nil {
		t.Fatalf("reconnect under the same name: %v", err)
	}
}

func TestDriverEventsChannel(t *testing.T) {
	t.Parallel()
	hub := newFakeHub(t)
	d := Start(t)
	ctx := testCtx(t)

	if _, err := d.Connect(ctx, "c", ConnectOptions{URL: hub.url(), Handlers: []string{"message"}}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	for i := range 3 {
		if _, err := d.Invoke(ctx, "c", "echo", i); err != nil {
			t.Fatalf("Invoke %d: %v", i, err)
		}
	}
	for i := range 3 {
		select {
		case ev := <-d.Events():
			if !IsMessage("c", "message")(ev) {
				t.Fatalf("event %d = %+v, want message", i, ev)
			}
			jsonEqual(t, ev.Args[0], strconv.Itoa(i))
		case <-ctx.Done():
			t.Fatalf("event %d: %v", i, ctx.Err())
		}
	}
}

func TestDriverBadCommands(t *testing.T) {
	t.Parallel()
	hub := newFakeHub(t)
	d := Start(t)
	ctx := testCtx(t)

	if _, err := d.Connect(ctx, "dup", ConnectOptions{URL: hub.url()}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	tests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"unknown conn invoke", func() error { _, err := d.Invoke(ctx, "nope", "echo"); return err }, "unknown connection"},
		{"unknown conn stop", func() error { return d.Stop(ctx, "nope") }, "unknown connection"},
		{"unknown conn state", func() error { _, err := d.State(ctx, "nope"); return err }, "unknown connection"},
		{"empty method", func() error { return d.On(ctx, "dup", "") }, "method"},
		{"bad protocol", func() error {
			_, err := d.Connect(ctx, "p", ConnectOptions{URL: hub.url(), Protocol: "xml"})
			return err
		}, "unknown protocol"},
		{"bad transport", func() error {
			_, err := d.Connect(ctx, "tr", ConnectOptions{URL: hub.url(), Transport: "Carrier Pigeon"})
			return err
		}, "unknown transport"},
		{"bad log level", func() error {
			_, err := d.Connect(ctx, "ll", ConnectOptions{URL: hub.url(), LogLevel: "loud"})
			return err
		}, "unknown logLevel"},
		{"duplicate name", func() error { _, err := d.Connect(ctx, "dup", ConnectOptions{URL: hub.url()}); return err }, "already exists"},
		{"negotiate 404", func() error {
			_, err := d.Connect(ctx, "x", ConnectOptions{URL: hub.srv.URL + "/nothing", LogLevel: "none"})
			return err
		}, "404"},
		{"unencodable arg", func() error { return d.Send(ctx, "dup", "echo", func() {}) }, "encode"},
		{"raw garbage", func() error { return d.writeRaw("this is not json\n[]\n{\"seq\":\"x\",\"op\":7}\n") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	// The driver survived all of it.
	if st, err := d.State(ctx, "dup"); err != nil || st != "Connected" {
		t.Fatalf("State = %q, %v after bad commands", st, err)
	}
}

// writeRaw bypasses call to feed the driver arbitrary bytes.
func (d *Driver) writeRaw(s string) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	_, err := d.stdin.Write([]byte(s))
	return err
}

// recordingTB captures Errorf and Cleanup so a test can check what the
// Driver's cleanup reports without failing itself.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
	once     sync.Once
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recordingTB) runCleanups() {
	r.once.Do(func() {
		r.mu.Lock()
		fs := r.cleanups
		r.mu.Unlock()
		for i := len(fs) - 1; i >= 0; i-- {
			fs[i]()
		}
	})
}

func (r *recordingTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

func TestDriverCrashIsReported(t *testing.T) {
	t.Parallel()
	rec := &recordingTB{TB: t}
	t.Cleanup(rec.runCleanups) // also on early Fatal
	d := Start(rec)
	ctx := testCtx(t)
	events := d.Events()

	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if _, err := d.Invoke(ctx, "c", "echo"); !errors.Is(err, ErrDriverExited) {
		t.Fatalf("Invoke after crash err = %v, want ErrDriverExited", err)
	}
	if _, err := d.WaitEvent(ctx, func(Event) bool { return true }); !errors.Is(err, ErrDriverExited) {
		t.Fatalf("WaitEvent after crash err = %v, want ErrDriverExited", err)
	}
	for range events { // closed once the driver is gone
	}
	rec.runCleanups()
	errs := rec.errors()
	if len(errs) != 1 || !strings.Contains(errs[0], "exited abnormally") {
		t.Fatalf("cleanup reported %q, want one 'exited abnormally' error", errs)
	}
}
