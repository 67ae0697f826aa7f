package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/signalrd/signalrd/storage"
)

// No sticky load balancer needed. In a cluster, negotiate answers with a self-contained
// connection token: id, hub, expiry and flags, signed (HMAC-SHA256) with the instance's access
// key, so any node can redeem it without shared state. The node receiving a connection's first
// transport request owns the connection and records that in the registry (c/{id}); any later
// request of the connection that a load balancer sends elsewhere (an SSE POST, a long poll, a
// stateful reconnect) is reverse-proxied to the owner, WebSocket upgrades included. Cost: one
// registry read and one extra hop for each mis-routed request.

const (
	// headerForwarded marks a request a peer forwarded, so it is never forwarded again.
	headerForwarded   = "X-Signalrd-Forwarded"
	tokenFlagStateful = 1
	tokenFlagV0       = 2 // negotiateVersion 0: the token is the connection id
)

// connToken is a parsed connection token.
type connToken struct {
	id      string
	hub     string
	expires time.Time
	flags   int
}

// mintConnToken makes a token for a new connection (the connection id for version 0).
func (in *instance) mintConnToken(hub string, flags int, ttl time.Duration) (connID, token string) {
	id := newID()
	exp := strconv.FormatInt(time.Now().Add(ttl).Unix(), 36)
	body := id + "." + exp + "." + strconv.Itoa(flags)
	token = body + "." + tokenMAC(in.verifier().Keys[0], hub, body)
	if flags&tokenFlagV0 != 0 {
		return token, token
	}
	return id, token
}

func tokenMAC(key, hub, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(strings.ToLower(hub)))
	m.Write([]byte{0})
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// parseConnToken checks a token's signature against every current key.
func (in *instance) parseConnToken(hub, token string) (connToken, bool) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return connToken{}, false
	}
	body, mac := token[:i], token[i+1:]
	valid := false
	for _, k := range in.verifier().Keys {
		if hmac.Equal([]byte(mac), []byte(tokenMAC(k, hub, body))) {
			valid = true
			break
		}
	}
	parts := strings.Split(body, ".")
	if !valid || len(parts) != 3 {
		return connToken{}, false
	}
	exp, err1 := strconv.ParseInt(parts[1], 36, 64)
	flags, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return connToken{}, false
	}
	t := connToken{id: parts[0], hub: strings.ToLower(hub), expires: time.Unix(exp, 0), flags: flags}
	if flags&tokenFlagV0 != 0 {
		t.id = token
	}
	return t, true
}

// errForwarded ends a request that was proxied to the node owning its connection.
var errForwarded = errors.New("server: forwarded to the owning node")

// redeem finds or creates the connection of a transport request in a cluster: a connection of
// this node, a new one from a valid unused token (claimed for this node), or a request for
// another node's connection, which is proxied there (errForwarded).
func (s *Server) redeem(w http.ResponseWriter, r *http.Request, in *instance, hub, token string) (*client, error) {
	t, ok := in.parseConnToken(hub, token)
	if !ok {
		return nil, errNoConnection
	}
	cl := in.cl
	ctx, cancel := cl.storeCtx()
	v, err := cl.store.Get(ctx, keyConn(t.id))
	cancel()
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		// Registry unreachable: start the connection here rather than refuse every client while
		// Redis is down (other nodes cannot reach it until the registry is back).
		cl.log.Warn("connection registry unreachable: starting the connection without checking its owner", "err", err)
		err = storage.ErrNotFound
	}
	switch {
	case err == nil && cl.ownedElsewhere(r, v):
		return nil, cl.forwardOnce(w, r, string(v))
	case err == nil, time.Now().After(t.expires):
		// Owned by this node but finished, owned by a dead node, a tombstone, or expired.
		return nil, errNoConnection
	}
	if r.Method != http.MethodGet {
		// Only a GET starts a transport (WebSocket, SSE stream, first poll): a stray POST or
		// DELETE must not create the connection here.
		return nil, errNoConnection
	}
	// The token's first use: claimed atomically, so of two nodes racing for it only one starts it.
	won, cerr := cl.claimAs(r.Context(), t.id, false)
	if cerr != nil {
		cl.log.Warn("connection registry unreachable: starting the connection without recording its owner", "err", cerr)
	} else if !won {
		ctx, cancel := cl.storeCtx()
		v, err := cl.store.Get(ctx, keyConn(t.id))
		cancel()
		if err == nil && cl.ownedElsewhere(r, v) {
			return nil, cl.forwardOnce(w, r, string(v))
		}
		return nil, errNoConnection
	}
	c := newClient(in, in.hub(hub), t.id, token)
	c.st.negotiated = t.flags&tokenFlagStateful != 0
	c.tokenExpires = t.expires
	c.claimed.Store(won)
	in.register(c)
	return c, nil
}

var errNoConnection = errors.New("server: no connection with that id")

// ownedElsewhere reports whether an ownership record (owner) names another live node.
func (cl *cluster) ownedElsewhere(r *http.Request, owner []byte) bool {
	return len(owner) > 0 && string(owner) != cl.node && cl.isLiveNow(r.Context(), string(owner))
}

// forwardOnce proxies a request to the node owning its connection and returns errForwarded,
// unless a peer forwarded it here already: the registry and that peer disagree, and a request
// is never forwarded twice (errNoConnection).
func (cl *cluster) forwardOnce(w http.ResponseWriter, r *http.Request, owner string) error {
	if r.Header.Get(headerForwarded) != "" {
		return errNoConnection
	}
	cl.forward(w, r, owner)
	return errForwarded
}

// claimOwnership records this node as the connection's owner when its first transport starts.
func (c *client) claimOwnership() {
	cl := c.in.cl
	if cl == nil || c.claimed.Load() {
		return
	}
	c.claimed.Store(true)
	if _, err := cl.claimAs(c.ctx, c.id, false); err != nil {
		cl.log.Warn("recording connection ownership failed: other nodes cannot reach this connection", "conn_id", c.id, "err", err)
	}
}

// releaseOwnership leaves a tombstone until the token expires (or removes the record).
func (c *client) releaseOwnership() {
	if c.in.cl == nil || !c.claimed.Load() {
		return
	}
	c.in.cl.release(c.id, time.Until(c.tokenExpires))
}

// forward reverse-proxies a request to the node owning its connection.
func (cl *cluster) forward(w http.ResponseWriter, r *http.Request, node string) {
	ctx, cancel := cl.storeCtx()
	addr, err := cl.store.Get(ctx, keyAddr(node))
	cancel()
	target, perr := url.Parse(string(addr))
	if err != nil || perr != nil || target.Host == "" {
		textError(w, http.StatusBadGateway, "The service node holding this connection cannot be reached.")
		return
	}
	cl.stats.forwarded.Add(1)
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// What this node resolved, not what the client sent: the owner chooses the same
			// instance by Host, and sees the client's address and scheme if it trusts its peers
			// as proxies (trusted-proxies); a client's own X-Forwarded-* never passes through.
			s := cl.in.srv
			pr.Out.Host = s.requestHost(pr.In)
			pr.Out.Header.Set("X-Forwarded-For", s.forwardedFor(pr.In))
			pr.Out.Header.Set("X-Forwarded-Proto", s.requestScheme(pr.In))
			pr.Out.Header.Set(headerForwarded, cl.node)
		},
		FlushInterval: -1, // SSE and long polls stream through
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				cl.log.Info("forwarding to the owning node failed", "peer", node, "err", err)
			}
			textError(w, http.StatusBadGateway, "The service node holding this connection cannot be reached.")
		},
	}
	p.ServeHTTP(w, r)
}

// forwardREST proxies a REST operation on one connection to the node owning it; false when
// the connection is local, unknown, or the request was already forwarded.
func (q *restReq) forwardREST() bool {
	cl := q.in.cl
	if cl == nil || q.conn == "" || q.r.Header.Get(headerForwarded) != "" {
		return false
	}
	if _, ok := q.hubState().conn.Conn(q.conn); ok {
		return false
	}
	node, ok := cl.owner(q.r.Context(), q.conn)
	if !ok || node == cl.node {
		return false
	}
	cl.forward(q.w, q.r, node)
	return true
}
