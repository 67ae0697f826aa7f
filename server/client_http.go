package server

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/signalrd/signalrd/auth"
)

// handleClient serves the transport endpoint /client/?hub=&id= for every transport: WebSocket
// upgrades, SSE streams and long polls (GET), sends (POST) and long-polling ends (DELETE).
func (s *Server) handleClient(w http.ResponseWriter, r *http.Request, in *instance) {
	if in.cors(w, r, "GET, POST, DELETE") {
		return
	}

	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		textError(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	hub, ok := hubParam(w, r)
	if !ok {
		return
	}
	// Every HTTP request of SSE and long polling re-checks the token: it may have expired.
	tok, ok := in.verify(w, r, auth.KindClient, hub)
	if !ok {
		return
	}
	token := r.URL.Query().Get("id")
	ws := r.Method == http.MethodGet && isWebSocketUpgrade(r)
	if token == "" && !ws {
		textError(w, http.StatusBadRequest, "Connection ID required")
		return
	}
	var c *client
	if token == "" {
		// skipNegotiation: the WebSocket request creates the connection.
		c = newClient(in, in.hub(hub), newID(), "")
	} else {
		c, ok = in.lookup(token)
		if !ok && in.cl != nil {
			var err error
			if c, err = s.redeem(w, r, in, hub, token); errors.Is(err, errForwarded) {
				return
			}
			ok = err == nil
		}
		if !ok || c.hub.id != strings.ToLower(hub) {
			textError(w, http.StatusNotFound, "No Connection with that ID")
			return
		}
	}
	switch {
	case r.Method == http.MethodPost:
		s.clientSend(w, r, c, tok)
	case r.Method == http.MethodDelete:
		s.clientDelete(w, c)
	case ws:
		s.serveWebSocket(w, r, c, tok)
	case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		s.serveSSE(w, r, c, tok)
	default:
		s.serveLongPoll(w, r, c, tok)
	}
}

// claimTransport attaches a transport to a connection for the first time or checks that a
// later request uses the same one. It writes the error response and reports false on conflict.
func (c *client) claimTransport(w http.ResponseWriter, r *http.Request, name string, tok *auth.Token) bool {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	switch {
	case c.done():
		textError(w, http.StatusNotFound, "No Connection with that ID")
		return false
	case c.transport == "":
		c.start(name, tok, r)
		c.claimOwnership()
		return true
	case c.transport != name:
		textError(w, http.StatusBadRequest, "Cannot change transports mid-connection")
		return false
	}
	return true
}

// clientSend handles POST: whole hub messages from an SSE or long-polling client.
func (s *Server) clientSend(w http.ResponseWriter, r *http.Request, c *client, tok *auth.Token) {
	switch c.transportName() {
	case transportNameWebSockets:
		textError(w, http.StatusMethodNotAllowed, "POST requests are not allowed for WebSocket connections.")
		return
	case "":
		textError(w, http.StatusBadRequest, "The connection has no transport yet: start it with a GET request first.")
		return
	}
	if c.done() {
		textError(w, http.StatusNotFound, "No Connection with that ID")
		return
	}
	limit := int64(max(c.in.settings().MaxMessageSize, 1<<20)) * 2
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			textError(w, http.StatusRequestEntityTooLarge, "The request body exceeds the maximum message size.")
			return
		}
		textError(w, http.StatusBadRequest, "Reading the request body failed.")
		return
	}
	if err := c.receive(body); err != nil && !errors.Is(err, errHandshakeFailed) {
		if errors.Is(err, errClientGone) {
			textError(w, http.StatusNotFound, "No Connection with that ID")
			return
		}
		// The connection is closing with a reason the client will read from its transport.
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
}

// clientDelete handles DELETE, the long-polling client's stop.
func (s *Server) clientDelete(w http.ResponseWriter, c *client) {
	if c.transportName() != transportNameLongPolling {
		textError(w, http.StatusBadRequest, "Cannot terminate this connection using the DELETE endpoint.")
		return
	}
	c.closeKind.CompareAndSwap(nil, closeReasonClient)
	c.out.Discard()
	c.poll.end()
	c.finish(closeReasonClient, "")
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("Accepted"))
}

// transportName reads the transport chosen by the first transport request.
func (c *client) transportName() string {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	return c.transport
}
