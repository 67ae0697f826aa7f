package chatapp

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unicode/utf8"

	"github.com/signalrd/signalrd/sdk/appserver"
)

// Hub is the name the chat hub is mapped under; clients use the path "/" + Hub.
const Hub = "chat"

// maxText bounds one chat message, in characters, so a pasted novel is refused politely instead
// of reaching the hub's 32 KiB frame limit.
const maxText = 2000

// Paths of the official browser bundles below e2e/js/node_modules.
const (
	signalrBundle = "@microsoft/signalr/dist/browser/signalr.min.js"
	msgpackBundle = "@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.min.js"
)

// ErrBundlesMissing is wrapped by New when the browser bundles cannot be found.
var ErrBundlesMissing = errors.New("chatapp: official SignalR browser bundles not found")

//go:embed page.html
var page []byte

// App is a running chat app server. Create it with New; serve Handler; Close it when done.
type App struct {
	srv     *appserver.Server
	handler http.Handler
}

// Option adjusts New.
type Option func(*options)

type options struct {
	bundleDir string
}

// WithBundleDir sets the node_modules directory holding @microsoft/signalr and
// @microsoft/signalr-protocol-msgpack, instead of looking for e2e/js/node_modules.
func WithBundleDir(dir string) Option {
	return func(o *options) { o.bundleDir = dir }
}

// New loads the browser bundles, starts the app server against the service named by
// connectionString and waits until it is connected (or ctx ends). log may be nil.
func New(ctx context.Context, connectionString string, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := o.bundleDir
	if dir == "" {
		var err error
		if dir, err = findBundleDir(); err != nil {
			return nil, err
		}
	}
	signalrJS, err := readBundle(dir, signalrBundle)
	if err != nil {
		return nil, err
	}
	msgpackJS, err := readBundle(dir, msgpackBundle)
	if err != nil {
		return nil, err
	}

	srv, err := appserver.New(appserver.Options{ConnectionString: connectionString, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("chatapp: new app server: %w", err)
	}
	srv.MapHub(Hub, chatHub())
	if err := srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("chatapp: start app server: %w", err)
	}
	if err := srv.Ready(ctx); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("chatapp: waiting for the service connection: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		serve(w, "text/html; charset=utf-8", page)
	})
	// No icon; answering keeps a 404 out of the browser console.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /lib/signalr.js", func(w http.ResponseWriter, r *http.Request) {
		serve(w, "text/javascript; charset=utf-8", signalrJS)
	})
	mux.HandleFunc("GET /lib/msgpack.js", func(w http.ResponseWriter, r *http.Request) {
		serve(w, "text/javascript; charset=utf-8", msgpackJS)
	})
	mux.Handle("/"+Hub+"/negotiate", srv.NegotiateHandler(Hub, appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	}))
	return &App{srv: srv, handler: mux}, nil
}

// Handler serves the page, the bundles and the hub's negotiate endpoint.
func (a *App) Handler() http.Handler { return a.handler }

// Close disconnects the app server from the service; its clients are closed by the service.
func (a *App) Close() error { return a.srv.Close() }

func serve(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	// Always the current page and bundles: a demo restarted with other versions must not be
	// served stale files.
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func chatHub() *appserver.Hub {
	h := &appserver.Hub{}
	h.On("send", func(c *appserver.Context, user, text string) error {
		user, text, err := clean(c, user, text)
		if err != nil {
			return err
		}
		return c.Clients.All().Send(c, "message", user, text)
	})
	h.On("join", func(c *appserver.Context, room string) error {
		if room == "" {
			return appserver.NewHubError("room name is empty")
		}
		return c.Groups.Add(c, c.ConnectionID, room)
	})
	h.On("leave", func(c *appserver.Context, room string) error {
		return c.Groups.Remove(c, c.ConnectionID, room)
	})
	h.On("sendRoom", func(c *appserver.Context, room, user, text string) error {
		if room == "" {
			return appserver.NewHubError("room name is empty")
		}
		user, text, err := clean(c, user, text)
		if err != nil {
			return err
		}
		return c.Clients.Group(room).Send(c, "roomMessage", room, user, text)
	})
	return h
}

// clean refuses empty or oversized messages and falls back to the negotiated user id when the
// page sent no name.
func clean(c *appserver.Context, user, text string) (string, string, error) {
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return "", "", appserver.NewHubError("message is empty")
	case utf8.RuneCountInString(text) > maxText:
		return "", "", appserver.NewHubError("message is longer than %d characters", maxText)
	}
	if user = strings.TrimSpace(user); user == "" {
		user = c.UserID
	}
	return user, text, nil
}

// findBundleDir looks for e2e/js/node_modules next to this package's source (go run, go test and
// binaries built in the repository) and then above the working directory.
func findBundleDir() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "js", "node_modules"))
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			candidates = append(candidates, filepath.Join(dir, "e2e", "js", "node_modules"))
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, filepath.FromSlash(signalrBundle))); err == nil {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("%w: looked for %s in %s; run `make deps-js` (npm ci in e2e/js)",
		ErrBundlesMissing, signalrBundle, strings.Join(candidates, ", "))
}

func readBundle(dir, name string) ([]byte, error) {
	p := filepath.Join(dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w; run `make deps-js` (npm ci in e2e/js)", ErrBundlesMissing, err)
	}
	return b, nil
}
