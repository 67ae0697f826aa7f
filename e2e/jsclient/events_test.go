package jsclient

import (
	"context"
	"errors"
	"testing"
	"time"
)

func msg(conn, method string) Event { return Event{Event: EventMessage, Conn: conn, Method: method} }

func TestEventLogWaitCursor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		logged  []Event
		waits   []func(Event) bool
		want    []Event // one per wait
		wantErr bool    // the wait after the listed ones fails (log closed)
	}{
		{
			name:   "non-matching events stay for later waiters",
			logged: []Event{msg("c1", "a"), msg("c1", "b"), msg("c1", "a")},
			waits:  []func(Event) bool{IsMessage("c1", "b"), IsMessage("c1", "a"), IsMessage("c1", "a")},
			want:   []Event{msg("c1", "b"), msg("c1", "a"), msg("c1", "a")},
		},
		{
			name:    "each event is consumed once",
			logged:  []Event{msg("c1", "a")},
			waits:   []func(Event) bool{IsMessage("c1", "a")},
			want:    []Event{msg("c1", "a")},
			wantErr: true,
		},
		{
			name:   "method matches case-insensitively, conn exactly",
			logged: []Event{msg("c2", "Msg"), msg("c1", "MSG")},
			waits:  []func(Event) bool{IsMessage("c1", "msg")},
			want:   []Event{msg("c1", "MSG")},
		},
		{
			name:   "close and reconnect kinds",
			logged: []Event{{Event: EventReconnecting, Conn: "c"}, {Event: EventReconnected, Conn: "c", ConnectionID: "x"}, {Event: EventClose, Conn: "c", Error: "e"}},
			waits:  []func(Event) bool{IsClose("c"), IsReconnected("c"), IsReconnecting("c")},
			want:   []Event{{Event: EventClose, Conn: "c", Error: "e"}, {Event: EventReconnected, Conn: "c", ConnectionID: "x"}, {Event: EventReconnecting, Conn: "c"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newEventLog()
			for _, e := range tc.logged {
				l.append(e)
			}
			closeErr := errors.New("closed")
			l.close(closeErr)
			ctx := context.Background()
			for i, w := range tc.waits {
				got, err := l.wait(ctx, w)
				if err != nil {
					t.Fatalf("wait %d: %v", i, err)
				}
				if got.Event != tc.want[i].Event || got.Conn != tc.want[i].Conn || got.Method != tc.want[i].Method ||
					got.Error != tc.want[i].Error || got.ConnectionID != tc.want[i].ConnectionID {
					t.Fatalf("wait %d = %+v, want %+v", i, got, tc.want[i])
				}
			}
			if tc.wantErr {
				if _, err := l.wait(ctx, tc.waits[len(tc.waits)-1]); !errors.Is(err, closeErr) {
					t.Fatalf("extra wait err = %v, want %v", err, closeErr)
				}
			}
			if got := len(l.snapshot(func(Event) bool { return true })); got != len(tc.logged) {
				t.Fatalf("snapshot has %d events, want %d (consumption must not hide them)", got, len(tc.logged))
			}
		})
	}
}

func TestEventLogConcurrentWaiters(t *testing.T) {
	t.Parallel()
	l := newEventLog()
	type res struct {
		e   Event
		err error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := make(chan res, 1), make(chan res, 1)
	go func() { e, err := l.wait(ctx, IsMessage("c", "a")); a <- res{e, err} }()
	go func() { e, err := l.wait(ctx, IsMessage("c", "b")); b <- res{e, err} }()
	l.append(msg("c", "b"))
	l.append(msg("c", "a"))
	for _, ch := range []chan res{a, b} {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}

	// A waiter given up by ctx returns ctx.Err and does not consume anything.
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if _, err := l.wait(short, IsMessage("c", "z")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestEventLogPump(t *testing.T) {
	t.Parallel()
	l := newEventLog()
	out, quit := make(chan Event), make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); l.pump(out, quit) }()
	want := []string{"a", "b", "c"}
	for _, m := range want {
		l.append(msg("c", m)) // never blocks although nobody reads yet
	}
	l.close(errors.New("closed"))
	var got []string
	for e := range out {
		got = append(got, e.Method)
	}
	<-done
	if len(got) != len(want) {
		t.Fatalf("pumped %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pumped %v, want %v", got, want)
		}
	}

	// quit ends a pump that nobody drains.
	l2 := newEventLog()
	l2.append(msg("c", "a"))
	out2, quit2, done2 := make(chan Event), make(chan struct{}), make(chan struct{})
	go func() { defer close(done2); l2.pump(out2, quit2) }()
	close(quit2)
	<-done2
	close(quit)
}
