package server

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Live-trace endpoints on the admin listener, only when Config.TraceToken is set (otherwise the
// admin mux answers 404). Every endpoint wants the token as ?token= or "Authorization: Bearer";
// the instance network ACL's Trace rule decides which instances a viewer may see.

//go:embed trace.html
var tracePage []byte

const traceHeartbeat = 15 * time.Second

// traceRoutes adds /trace, /trace/snapshot and /trace/events to the admin mux.
func (s *Server) traceRoutes(mux *http.ServeMux) {
	if s.cfg.TraceToken == "" {
		return
	}
	mux.HandleFunc("GET /trace", s.traceAuth(s.handleTracePage))
	mux.HandleFunc("GET /trace/snapshot", s.traceAuth(s.handleTraceSnapshot))
	mux.HandleFunc("GET /trace/events", s.traceAuth(s.handleTraceEvents))
}

// traceAuth checks the trace token (constant time) and resolves the instances the request may
// see: ?instance=NAME picks one (403 when its Trace ACL denies the client address), otherwise
// every instance whose ACL admits it.
func (s *Server) traceAuth(h func(http.ResponseWriter, *http.Request, []*instance)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		tok := r.URL.Query().Get("token")
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = v
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.TraceToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="signalrd live trace"`)
			http.Error(w, "Unauthorized: live trace needs its token (?token= or Authorization: Bearer).", http.StatusUnauthorized)
			return
		}
		var ins []*instance
		if name := r.URL.Query().Get("instance"); name != "" {
			i := slices.IndexFunc(s.instances, func(in *instance) bool { return in.name == name })
			if i < 0 {
				http.Error(w, fmt.Sprintf("No instance named %q.", name), http.StatusNotFound)
				return
			}
			if !s.instances[i].admitTrace(w, r) {
				return
			}
			ins = []*instance{s.instances[i]}
		} else {
			addr, ok := s.clientAddr(r)
			for _, in := range s.instances {
				if in.acl.allows(RequestTrace, addr, ok) {
					ins = append(ins, in)
				}
			}
		}
		h(w, r, ins)
	}
}

func (s *Server) handleTracePage(w http.ResponseWriter, r *http.Request, _ []*instance) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Self-contained: inline script and style, data from this origin only; the token is in the
	// URL, so it must not leak through a Referer.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(tracePage)
}

// Snapshot JSON shapes.
type (
	traceSnapshot struct {
		Time      time.Time       `json:"time"`
		Instances []traceInstance `json:"instances"`
	}
	traceInstance struct {
		Name string     `json:"name"`
		Mode string     `json:"mode"`
		Hubs []traceHub `json:"hubs"`
	}
	traceHub struct {
		Name    string           `json:"name"`
		Servers []traceAppServer `json:"servers"`
		Clients []traceClientRow `json:"clients"`
	}
	traceAppServer struct {
		ID       string        `json:"id"`
		Clients  int           `json:"clients"`
		Draining bool          `json:"draining,omitempty"`
		Sockets  []traceSocket `json:"sockets"`
	}
	traceSocket struct {
		CID     string `json:"cid"`
		Type    string `json:"type"`
		Clients int    `json:"clients"`
	}
	traceClientRow struct {
		ID        string `json:"id"`
		UserID    string `json:"userId,omitempty"`
		Transport string `json:"transport"`
		Protocol  string `json:"protocol"`
		ServerID  string `json:"serverId,omitempty"`
		CID       string `json:"cid,omitempty"`
	}
)

func (s *Server) handleTraceSnapshot(w http.ResponseWriter, r *http.Request, ins []*instance) {
	snap := traceSnapshot{Time: time.Now().UTC(), Instances: []traceInstance{}}
	for _, in := range ins {
		ti := traceInstance{Name: in.name, Mode: in.settings().Mode, Hubs: []traceHub{}}
		for _, h := range in.hubSnapshot() {
			ti.Hubs = append(ti.Hubs, h.traceSnapshot())
		}
		slices.SortFunc(ti.Hubs, func(a, b traceHub) int { return strings.Compare(a.Name, b.Name) })
		snap.Instances = append(snap.Instances, ti)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(snap)
}

// traceSnapshot lists the hub's app servers with their sockets, and its connected clients.
func (h *hubState) traceSnapshot() traceHub {
	th := traceHub{Name: h.id, Servers: []traceAppServer{}, Clients: []traceClientRow{}}
	h.mu.Lock()
	var links [][]*link
	for _, sv := range h.servers {
		th.Servers = append(th.Servers, traceAppServer{ID: sv.id, Clients: sv.clients, Draining: sv.draining})
		links = append(links, slices.Clone(sv.links))
	}
	h.mu.Unlock()
	// Socket client counts take link.mu, which is taken after hubState.mu, never while holding it
	// here (lock order is instance.mu → hubState.mu → link.mu; holding both is fine but needless).
	for i := range th.Servers {
		th.Servers[i].Sockets = []traceSocket{}
		for _, l := range links[i] {
			th.Servers[i].Sockets = append(th.Servers[i].Sockets, traceSocket{CID: l.cid, Type: socketTypeName(l.connType), Clients: l.clientCount()})
		}
	}
	slices.SortFunc(th.Servers, func(a, b traceAppServer) int { return strings.Compare(a.ID, b.ID) })
	for _, c := range h.clientSnapshot() {
		row := traceClientRow{ID: c.id, UserID: c.userID, Transport: c.transport, Protocol: c.protocol}
		if l := c.link.Load(); l != nil {
			row.ServerID, row.CID = l.serverID, l.cid
		}
		th.Clients = append(th.Clients, row)
	}
	slices.SortFunc(th.Clients, func(a, b traceClientRow) int { return strings.Compare(a.ID, b.ID) })
	return th
}

// handleTraceEvents streams events as Server-Sent Events: "event: trace" with a traceEvent,
// "event: dropped" with {"dropped":n} when this viewer fell behind, and comment heartbeats.
// Payloads only with ?payloads=1.
func (s *Server) handleTraceEvents(w http.ResponseWriter, r *http.Request, ins []*instance) {
	rc := http.NewResponseController(w)
	allowed := make(map[string]bool, len(ins))
	for _, in := range ins {
		allowed[in.name] = true
	}
	payloads := r.URL.Query().Get("payloads") == "1"
	sub, recent, ok := s.trace.subscribe(payloads, allowed)
	if !ok {
		http.Error(w, "Too many live-trace viewers.", http.StatusServiceUnavailable)
		return
	}
	defer s.trace.unsubscribe(sub)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("trace: encode event: %w", err)
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return fmt.Errorf("trace: write event: %w", err)
		}
		return nil
	}
	if _, err := fmt.Fprint(w, ": signalrd live trace\n\n"); err != nil {
		return
	}
	for _, e := range recent {
		if write("trace", e) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	t := time.NewTicker(traceHeartbeat)
	defer t.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done(): // shutdown: do not hold the admin listener's drain
			return
		case e := <-sub.ch:
			err = write("trace", e)
			// Send what is already queued in one flush.
			for more := true; more && err == nil; {
				select {
				case e := <-sub.ch:
					err = write("trace", e)
				default:
					more = false
				}
			}
		case <-t.C:
			_, err = fmt.Fprint(w, ": heartbeat\n\n")
		}
		if n := sub.dropped.Swap(0); n > 0 && err == nil {
			err = write("dropped", map[string]uint64{"dropped": n})
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
