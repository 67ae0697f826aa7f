package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is one signalrd node.
type Server struct {
	cfg       Config
	log       *slog.Logger
	instances []*instance
	byHost    map[string]*instance
	fallback  *instance
	mux       *http.ServeMux
	metrics   *metrics

	// ctx is cancelled when the server stops; connection goroutines derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines and transport handlers

	wgMu     sync.Mutex
	stopping bool // no new handler may be tracked once stop began

	shuttingDown atomic.Bool // Serve's shutdown began: /readyz answers 503
	adminMu      sync.Mutex
	adminL       net.Listener  // bound by ListenAdmin or Serve; nil without AdminListen
	certs        *certReloader // nil without TLS
	proxies      proxyTrust    // Config.TrustedProxies, parsed
	trace        traceBus      // live trace (trace.go); zero value ready
	reload       reloadState   // what Reload last applied (reload.go)
	ownStore     io.Closer     // the Redis storage New opened (nil: none, or injected)
}

// New validates cfg and builds a server. It starts no goroutines until Serve or Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger, byHost: map[string]*instance{}, ctx: ctx, cancel: cancel, metrics: newMetrics()}
	s.proxies, _ = parseTrustedProxies(cfg.TrustedProxies) // Validate refused bad entries
	if cfg.TLSCertFile != "" {
		certs, err := newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.Logger)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("server: %w", err)
		}
		s.certs = certs
	}
	store, err := s.openStorage()
	if err != nil {
		cancel()
		return nil, err
	}
	if st, ok := store.(statsSource); ok {
		s.metrics.reg.MustRegister(storageCollector{st})
	}
	node := cfg.NodeID
	if node == "" {
		node = newID()[:12]
	}
	for _, ic := range cfg.Instances {
		in, err := newInstance(s, ic, cfg.Defaults.merged(ic.Settings))
		if err != nil {
			cancel()
			s.closeStorage()
			return nil, fmt.Errorf("server: %w", err)
		}
		if store != nil {
			in.cl = newCluster(in, store.Namespace(ic.Name), node, cfg.Heartbeat)
			in.router.Observe(in.cl, true)
			s.metrics.reg.MustRegister(clusterCollector{in.cl})
		}
		s.instances = append(s.instances, in)
		for _, h := range ic.Hosts {
			s.byHost[normalizeHost(h)] = in
		}
		if ic.Default {
			s.fallback = in
		}
	}
	s.mux = s.routes()
	return s, nil
}

// Handler is the HTTP handler serving clients, app servers and the REST API.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveTracked) }

// instanceFor picks the tenant by Host header (X-Forwarded-Host from a trusted proxy); nil when
// no instance claims the host.
func (s *Server) instanceFor(r *http.Request) *instance {
	if in, ok := s.byHost[normalizeHost(s.requestHost(r))]; ok {
		return in
	}
	return s.fallback
}

// Serve serves on l until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.serveTracked),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.configureTLS(hs) // no WriteTimeout/ReadTimeout: see tls.go
	admin, err := s.startAdmin()
	if err != nil {
		l.Close()
		s.stop()
		return err
	}
	if err := s.startClusters(l); err != nil {
		l.Close()
		s.stop()
		admin.close()
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- s.serveHTTP(hs, l) }()
	for _, in := range s.instances {
		s.goConn(func() { in.housekeeping(s.ctx) })
		if in.upstream != nil {
			s.goConn(func() { in.upstream.Run(s.ctx) })
		}
	}
	select {
	case err := <-errc:
		s.shuttingDown.Store(true)
		s.stop()
		admin.close()
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	s.shuttingDown.Store(true)
	s.log.Info("shutting down", "drain_window", s.cfg.DrainWindow, "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// Shutdown closes the listener at once and then waits for HTTP requests (SSE, polls, REST);
	// hijacked WebSockets are not tracked by http.Server: drain closes them itself (drain.go).
	shutErr := make(chan error, 1)
	go func() { shutErr <- hs.Shutdown(sctx) }()
	s.drain(sctx)
	err = <-shutErr
	s.stop()
	// The admin listener goes last, so probes and scrapes see the whole drain.
	admin.shutdown(sctx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// stop cancels every connection and waits for their goroutines.
func (s *Server) stop() {
	s.cancel()
	s.wgMu.Lock()
	s.stopping = true
	s.wgMu.Unlock()
	s.wg.Wait()
	s.closeStorage()
}

// track counts a transport handler as a connection owner so stop waits for it; it reports false
// once the server is stopping. Everything a tracked handler starts with goConn is covered too
// (the group's counter is above zero, so Add never races with Wait).
func (s *Server) track() bool {
	s.wgMu.Lock()
	defer s.wgMu.Unlock()
	if s.stopping {
		return false
	}
	s.wg.Add(1)
	return true
}

// Run listens on cfg.Listen and serves until ctx ends. ready, when non-nil, receives the bound
// address once listening.
func (s *Server) Run(ctx context.Context, ready func(addr net.Addr)) error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	if _, err := s.ListenAdmin(); err != nil {
		l.Close()
		return err
	}
	if ready != nil {
		ready(l.Addr())
	}
	return s.Serve(ctx, l)
}

// serveTracked serves a request as a tracked owner of whatever connection it opens or touches.
func (s *Server) serveTracked(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		http.Error(w, "The service is shutting down.", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	s.mux.ServeHTTP(w, r)
}

// spawn runs f on a goroutine the server waits for when it stops, unless it is stopping
// already. Unlike goConn it may be called from goroutines the server does not own (the
// storage's delivery goroutine, which outlives a node sharing its storage, and so fan-out that
// reaches a client from it): starting a goroutine there once the server's WaitGroup is being
// waited on would race with the Wait.
func (s *Server) spawn(f func()) {
	if !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// goConn runs f as a connection goroutine owned by the server. Callers are tracked handlers or
// goroutines started by them.
func (s *Server) goConn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/client/negotiate", s.withInstance(s.handleNegotiate))
	mux.HandleFunc("/client/negotiate/", s.withInstance(s.handleNegotiate))
	mux.HandleFunc("/client", s.withInstance(s.handleClient))
	mux.HandleFunc("/client/", s.withInstance(s.handleClient))
	mux.HandleFunc("/server", s.withInstance(s.handleServer))
	mux.HandleFunc("/server/", s.withInstance(s.handleServer))
	mux.HandleFunc("/api/health", handleHealth)
	mux.HandleFunc("/api/v1/health", handleHealth)
	s.restRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Not found.", http.StatusNotFound)
	})
	return mux
}

func (s *Server) withInstance(h func(http.ResponseWriter, *http.Request, *instance)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in := s.instanceFor(r)
		if in == nil {
			http.Error(w, fmt.Sprintf("No SignalR instance serves host '%s'.", hostOnly(s.requestHost(r))), http.StatusNotFound)
			return
		}
		if !in.admit(w, r, requestTypeOf(r.URL.Path)) {
			return
		}
		h(w, r, in)
	}
}

func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}

func handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method not allowed.", http.StatusMethodNotAllowed)
		return
	}
	w.WriteHeader(http.StatusOK)
}
