package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// upstreamReceiver plays an Azure Functions host: it checks each webhook call and answers
// invocations of "add" with a framed completion in the caller's protocol.
type upstreamReceiver struct {
	t    *testing.T
	key  string
	mu   sync.Mutex
	got  []receivedCall
	srv  *httptest.Server
	errs []string
}

type receivedCall struct {
	category, event, connID, userID, query, contentType string
	body                                                []byte
}

func startReceiver(t *testing.T, key string) *upstreamReceiver {
	u := &upstreamReceiver{t: t, key: key}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstreamReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	call := receivedCall{
		category: r.Header.Get("X-ASRS-Category"), event: r.Header.Get("X-ASRS-Event"),
		connID: r.Header.Get("X-ASRS-Connection-Id"), userID: r.Header.Get("X-ASRS-User-Id"),
		query: r.Header.Get("X-ASRS-Client-Query"), contentType: r.Header.Get("Content-Type"), body: body,
	}
	mac := hmac.New(sha256.New, []byte(u.key))
	mac.Write([]byte(call.connID))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	u.mu.Lock()
	if !strings.Contains(strings.ToLower(r.Header.Get("X-ASRS-Signature")), want) {
		u.errs = append(u.errs, "bad signature "+r.Header.Get("X-ASRS-Signature"))
	}
	if r.Header.Get("X-ASRS-Hub") != "chat" {
		u.errs = append(u.errs, "hub "+r.Header.Get("X-ASRS-Hub"))
	}
	u.got = append(u.got, call)
	u.mu.Unlock()
	if call.category != "messages" || call.event != "add" {
		w.WriteHeader(http.StatusOK)
		return
	}
	codec := hubproto.JSON()
	if strings.Contains(call.contentType, "msgpack") {
		codec = hubproto.MessagePack()
	}
	m, err := codec.Decode(body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	inv := m.(hubproto.Invocation)
	var a, b int
	_ = codec.Unmarshal(inv.Arguments[0], &a)
	_ = codec.Unmarshal(inv.Arguments[1], &b)
	if a < 0 {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	res, _ := codec.Marshal(a + b)
	frame, _ := codec.Append(nil, &hubproto.Completion{InvocationID: inv.InvocationID, HasResult: true, Result: res})
	_, _ = w.Write(frame)
}

func (u *upstreamReceiver) calls(category, event string) []receivedCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []receivedCall
	for _, c := range u.got {
		if c.category == category && c.event == event {
			out = append(out, c)
		}
	}
	return out
}

// TestServerlessOfficialClient connects official clients straight to signalrd (no app server) on
// every transport; the service answers the handshake and relays invocations to the upstream.
func TestServerlessOfficialClient(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			up := startReceiver(t, server.DevAccessKey)
			dir := t.TempDir()
			settings := filepath.Join(dir, "settings.json")
			if err := os.WriteFile(settings, []byte(`{"UpstreamSettings":{"Templates":[{"UrlTemplate":"`+up.srv.URL+`/api/{hub}/{category}/{event}","EventPattern":"*","HubPattern":"*","CategoryPattern":"*"}]}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			svc := servertest.Start(t, server.Config{Defaults: server.Settings{Mode: server.ModeServerless, UpstreamFile: settings}})
			cs, _ := auth.ParseConnectionString(svc.ConnectionString())
			tok, err := auth.IssueToken(svc.Key, auth.IssueOptions{Audience: cs.ClientAudience("chat"), Claims: []auth.Claim{{Type: "nameid", Value: "zoe"}}})
			if err != nil {
				t.Fatal(err)
			}
			d := jsclient.Start(t)
			ctx := ctxT(t)
			id, err := d.Connect(ctx, "c", jsclient.ConnectOptions{
				URL: svc.URL + "/client/?hub=chat&flavour=mint", AccessToken: tok,
				Protocol: v.protocol, Transport: v.transport,
			})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "connected event", func() bool { return len(up.calls("connections", "connected")) == 1 })
			c := up.calls("connections", "connected")[0]
			if c.connID != id || c.userID != "zoe" || !strings.Contains(c.query, "flavour=mint") || !strings.HasPrefix(c.query, "?") {
				t.Fatalf("connected call %+v", c)
			}
			res, err := d.Invoke(ctx, "c", "add", 2, 3)
			if err != nil || string(res) != "5" {
				t.Fatalf("add = %s %v", res, err)
			}
			if _, err := d.Invoke(ctx, "c", "add", -1, 0); err == nil || !strings.Contains(err.Error(), "Invocation failed, status code 403") {
				t.Fatalf("upstream 403 = %v", err)
			}
			if err := d.Send(ctx, "c", "note", "hello"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "messages event", func() bool { return len(up.calls("messages", "note")) == 1 })
			note := up.calls("messages", "note")[0]
			wantCT := "application/json"
			if v.protocol == "messagepack" {
				wantCT = "application/x-msgpack"
			}
			if note.contentType != wantCT || (v.protocol == "json" && !strings.Contains(string(note.body), `"hello"`)) {
				t.Fatalf("note call %+v %q", note, note.body)
			}
			// REST sends reach the client, shaped as the Management SDK sends them.
			if err := d.On(ctx, "c", "news"); err != nil {
				t.Fatal(err)
			}
			restSend(t, svc, "/api/hubs/chat/:send?api-version=2022-06-01", `{"Target":"news","Arguments":["broadcast",{"n":1}]}`)
			restSend(t, svc, "/api/hubs/chat/users/zoe/:send?api-version=2022-06-01", `{"target":"news","arguments":["to-user"]}`)
			restSend(t, svc, "/api/v1/hubs/chat/connections/"+id, `{"target":"news","arguments":["to-connection"]}`)
			for _, want := range []string{`"broadcast"`, `"to-user"`, `"to-connection"`} {
				ev, err := d.WaitEvent(ctx, jsclient.IsMessage("c", "news"))
				if err != nil {
					t.Fatal(err)
				}
				if string(ev.Args[0]) != want {
					t.Fatalf("REST send delivered %s, want %s", ev.Args[0], want)
				}
			}
			if err := d.Stop(ctx, "c"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "disconnected event", func() bool { return len(up.calls("connections", "disconnected")) == 1 })
			up.mu.Lock()
			defer up.mu.Unlock()
			if len(up.errs) > 0 {
				t.Fatalf("receiver saw: %v", up.errs)
			}
		})
	}
}

// restSend posts a body the way the Management SDK does: Bearer token whose audience is the
// request URL without port (query included), JSON with a charset.
func restSend(t *testing.T, svc *servertest.Instance, path, body string) {
	t.Helper()
	aud := "http://localhost" + path
	tok, err := auth.IssueToken(svc.Key, auth.IssueOptions{Audience: aud, Claims: []auth.Claim{{Type: "nameid", Value: "mgmt_0123"}}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, svc.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s = %d %s", path, resp.StatusCode, b)
	}
}
