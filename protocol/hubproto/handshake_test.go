package hubproto

import (
	"errors"
	"testing"
)

func TestParseHandshakeRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want HandshakeRequest
		ok   bool
	}{
		{"json", `{"protocol":"json","version":1}`, HandshakeRequest{"json", 1}, true},
		{"messagepack v2", `{"version":2,"protocol":"messagepack"}`, HandshakeRequest{"messagepack", 2}, true},
		{"unknown fields", `{"protocol":"json","version":1,"minorVersion":0,"x":{"y":[1]}}`, HandshakeRequest{"json", 1}, true},
		{"whitespace", " {\r\n \"protocol\" : \"json\" ,\t\"version\" : 1 } \n", HandshakeRequest{"json", 1}, true},
		{"escaped", `{"protocol":"js\u006fn","versio\u006e":1}`, HandshakeRequest{"json", 1}, true},
		{"integral float version", `{"protocol":"json","version":1.0}`, HandshakeRequest{"json", 1}, true},
		{"unknown protocol parses", `{"protocol":"xml","version":7}`, HandshakeRequest{"xml", 7}, true},
		{"empty protocol parses", `{"protocol":"","version":1}`, HandshakeRequest{"", 1}, true},
		{"duplicate last wins", `{"protocol":"xml","protocol":"json","version":1}`, HandshakeRequest{"json", 1}, true},
		{"missing protocol", `{"version":1}`, HandshakeRequest{}, false},
		{"missing version", `{"protocol":"json"}`, HandshakeRequest{}, false},
		{"null protocol", `{"protocol":null,"version":1}`, HandshakeRequest{}, false},
		{"numeric protocol", `{"protocol":1,"version":1}`, HandshakeRequest{}, false},
		{"string version", `{"protocol":"json","version":"1"}`, HandshakeRequest{}, false},
		{"fractional version", `{"protocol":"json","version":1.5}`, HandshakeRequest{}, false},
		{"huge version", `{"protocol":"json","version":4294967296}`, HandshakeRequest{}, false},
		{"null version", `{"protocol":"json","version":null}`, HandshakeRequest{}, false},
		{"trailing garbage", `{"protocol":"json","version":1}x`, HandshakeRequest{}, false},
		{"trailing separator", "{\"protocol\":\"json\",\"version\":1}\x1e", HandshakeRequest{}, false},
		{"two objects", `{"protocol":"json","version":1}{}`, HandshakeRequest{}, false},
		{"array", `[]`, HandshakeRequest{}, false},
		{"empty", ``, HandshakeRequest{}, false},
		{"truncated", `{"protocol":"json","vers`, HandshakeRequest{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHandshakeRequest([]byte(tt.in))
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("ParseHandshakeRequest = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseHandshakeRequest = %+v, %v; want ErrMalformed", got, err)
			}
		})
	}
}

func TestAppendHandshake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got, want string
	}{
		{string(AppendHandshakeRequest(nil, HandshakeRequest{ProtocolJSON, 1})), "{\"protocol\":\"json\",\"version\":1}\x1e"},
		{string(AppendHandshakeRequest([]byte("p"), HandshakeRequest{ProtocolMessagePack, 2})), "p{\"protocol\":\"messagepack\",\"version\":2}\x1e"},
		{string(AppendHandshakeResponse(nil, "")), "{}\x1e"},
		{string(AppendHandshakeResponse([]byte("p"), "")), "p{}\x1e"},
		{string(AppendHandshakeResponse(nil, ErrTextProtocolNotSupported("x\"y"))),
			"{\"error\":\"The protocol 'x\\\"y' is not supported.\"}\x1e"},
		{string(AppendHandshakeResponse(nil, ErrTextHandshakeCanceled)), "{\"error\":\"Handshake was canceled.\"}\x1e"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	// What we write parses back.
	b := AppendHandshakeRequest(nil, HandshakeRequest{"weird\u2028\"", -3})
	r, err := ParseHandshakeRequest(b[:len(b)-1])
	if err != nil || r != (HandshakeRequest{"weird\u2028\"", -3}) {
		t.Errorf("request round trip = %+v, %v", r, err)
	}
}

func TestErrTexts(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{ErrTextProtocolNotSupported("xml"), "The protocol 'xml' is not supported."},
		{ErrTextVersionNotSupported("json", 3), "The server does not support version 3 of the 'json' protocol."},
		{ErrTextTransferFormat("messagepack"), "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."},
		{ErrTextHandshakeCanceled, "Handshake was canceled."},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseHandshakeResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"success", `{}`, "", true},
		{"error", `{"error":"The protocol 'x' is not supported."}`, "The protocol 'x' is not supported.", true},
		{"escaped error", `{"error":"a\"b\n"}`, "a\"b\n", true},
		{"null error", `{"error":null}`, "", true},
		{"unknown fields", `{"minorVersion":1,"x":[{}]}`, "", true},
		{"type present", `{"type":6}`, "", false},
		{"type with error", `{"error":"e","type":1}`, "", false},
		{"escaped type key", `{"typ\u0065":7}`, "", false},
		{"non-string error", `{"error":1}`, "", false},
		{"trailing garbage", `{} x`, "", false},
		{"not object", `"x"`, "", false},
		{"empty", ``, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHandshakeResponse([]byte(tt.in))
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("ParseHandshakeResponse = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseHandshakeResponse = %q, %v; want ErrMalformed", got, err)
			}
		})
	}
	// Responses we write parse back.
	for _, e := range []string{"", "boom", ErrTextVersionNotSupported("json", 9)} {
		b := AppendHandshakeResponse(nil, e)
		got, err := ParseHandshakeResponse(b[:len(b)-1])
		if err != nil || got != e {
			t.Errorf("response round trip %q = %q, %v", e, got, err)
		}
	}
}
