package jsclient

import (
	"testing"
)

// FuzzDispatch feeds arbitrary driver output lines to the stdout decoder: it
// must never panic, and a line is either an event, a reply or dropped.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		`{"seq":1,"ok":true,"result":{"a":[1,2]}}`,
		`{"seq":1,"ok":false,"error":"boom"}`,
		`{"event":"message","conn":"c","method":"m","args":[1,{"$bin":"AQID"}]}`,
		`{"event":"reconnected","conn":"c","connectionId":"x"}`,
		`{"seq":null,"ok":false,"error":"bad"}`,
		`{"seq":"x"}`,
		`[]`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		d := &Driver{t: t, pending: map[int64]chan wireLine{1: make(chan wireLine, 1)}, log: newEventLog()}
		d.dispatch(line)
		events := len(d.log.snapshot(func(Event) bool { return true }))
		replied := len(d.pending) == 0
		if events > 1 || (events == 1 && replied) {
			t.Fatalf("line %q produced %d events, replied=%v", line, events, replied)
		}
	})
}
