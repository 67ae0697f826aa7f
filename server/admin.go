package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener is separate from the service listener so that metrics, probes and pprof can
// stay on a private address while clients and app servers use a public one.

// ListenAdmin binds Config.AdminListen now and returns the bound address (nil, nil when no admin
// listener is configured). Serve binds it itself when this was not called; calling it first lets
// the caller learn the address of a ":0" listener before serving. It is idempotent.
func (s *Server) ListenAdmin() (net.Addr, error) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.cfg.AdminListen == "" {
		return nil, nil
	}
	if s.adminL == nil {
		l, err := net.Listen("tcp", s.cfg.AdminListen)
		if err != nil {
			return nil, fmt.Errorf("server: admin listen: %w", err)
		}
		s.adminL = l
	}
	return s.adminL.Addr(), nil
}

// AdminAddr is the admin listener's bound address, nil until ListenAdmin or Run bound it.
func (s *Server) AdminAddr() net.Addr {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.adminL == nil {
		return nil
	}
	return s.adminL.Addr()
}

// adminServer is the running admin listener; its methods accept a nil receiver (no admin
// listener configured).
type adminServer struct {
	hs   *http.Server
	done chan struct{}
}

// startAdmin serves the admin endpoints when an admin listener is configured.
func (s *Server) startAdmin() (*adminServer, error) {
	if _, err := s.ListenAdmin(); err != nil {
		return nil, err
	}
	s.adminMu.Lock()
	l := s.adminL
	s.adminMu.Unlock()
	if l == nil {
		return nil, nil
	}
	a := &adminServer{
		hs: &http.Server{
			Handler:           s.adminRoutes(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		if err := a.hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener failed", "err", err)
		}
	}()
	s.log.Info("admin listening", "addr", l.Addr().String(), "pprof", s.cfg.EnablePprof)
	return a, nil
}

// shutdown stops the admin listener gracefully within ctx, then forcibly (a CPU profile or a
// trace in progress must not hold the process).
func (a *adminServer) shutdown(ctx context.Context) {
	if a == nil {
		return
	}
	if err := a.hs.Shutdown(ctx); err != nil {
		_ = a.hs.Close()
	}
	<-a.done
}

func (a *adminServer) close() {
	if a == nil {
		return
	}
	_ = a.hs.Close()
	<-a.done
}

// adminRoutes builds the admin mux. pprof handlers go on this mux only; nothing serves
// http.DefaultServeMux.
func (s *Server) adminRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		probeReply(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.shuttingDown.Load() {
			probeReply(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		probeReply(w, http.StatusOK, "ready")
	})
	s.traceRoutes(mux) // only with Config.TraceToken
	if s.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Not found.", http.StatusNotFound)
	})
	return mux
}

func probeReply(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text + "\n"))
}
