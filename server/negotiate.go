package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/signalrd/signalrd/auth"
)

// transport bits of asrs.s.htt (HttpTransportType).
const (
	transportWebSockets       = 1
	transportServerSentEvents = 2
	transportLongPolling      = 4
)

type availableTransport struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

type negotiateResponse struct {
	NegotiateVersion     int                  `json:"negotiateVersion"`
	ConnectionID         string               `json:"connectionId"`
	ConnectionToken      string               `json:"connectionToken,omitempty"`
	AvailableTransports  []availableTransport `json:"availableTransports"`
	UseStatefulReconnect bool                 `json:"useStatefulReconnect,omitempty"`
}

// transportsFor lists the transports in the official order, filtered by the token's asrs.s.htt
// bitmask.
func transportsFor(tok *auth.Token) []availableTransport {
	mask := transportWebSockets | transportServerSentEvents | transportLongPolling
	if v, ok := tok.Claim(auth.ClaimTransports); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			mask &= n
		}
	}
	out := []availableTransport{}
	if mask&transportWebSockets != 0 {
		out = append(out, availableTransport{transportNameWebSockets, []string{"Text", "Binary"}})
	}
	if mask&transportServerSentEvents != 0 {
		out = append(out, availableTransport{transportNameSSE, []string{"Text"}})
	}
	if mask&transportLongPolling != 0 {
		out = append(out, availableTransport{transportNameLongPolling, []string{"Text", "Binary"}})
	}
	return out
}

func (s *Server) handleNegotiate(w http.ResponseWriter, r *http.Request, in *instance) {
	if in.cors(w, r, "GET, POST, DELETE") {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		textError(w, http.StatusMethodNotAllowed, "Method not allowed: negotiate requires POST.")
		return
	}
	hub, ok := hubParam(w, r)
	if !ok {
		return
	}
	tok, ok := in.verify(w, r, auth.KindClient, hub)
	if !ok {
		return
	}
	version := 0
	if v := r.URL.Query().Get("negotiateVersion"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusOK, map[string]string{"error": "The client requested an invalid protocol version '" + v + "'"})
			return
		}
		version = min(n, 1)
	}
	h := in.hub(hub)
	if mode, sid := tok.Sticky(); mode == auth.StickyRequired && !h.serverConnected(sid) {
		writeJSON(w, http.StatusOK, map[string]string{"error": "The app server this client must use (sticky mode Required) is not connected to the service."})
		return
	}
	if in.settings().Mode == ModeDefault && !h.hasServer() {
		writeJSON(w, http.StatusOK, map[string]string{"error": noServerText(hub)})
		return
	}
	// Offer stateful reconnect only when asked: the JS client aborts on an unrequested offer.
	stateful := strings.EqualFold(r.URL.Query().Get("useStatefulReconnect"), "true") && (in.settings().StatefulReconnect || h.statefulAllowed())
	resp := negotiateResponse{NegotiateVersion: version, AvailableTransports: transportsFor(tok), UseStatefulReconnect: stateful}
	if in.cl != nil {
		// Self-contained token: any node redeems it (cluster_forward.go).
		flags := 0
		if stateful {
			flags |= tokenFlagStateful
		}
		if version == 0 {
			flags |= tokenFlagV0
		}
		id, token := in.mintConnToken(hub, flags, in.settings().NegotiateTimeout)
		resp.ConnectionID = id
		if version >= 1 {
			resp.ConnectionToken = token
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	id := newID()
	resp.ConnectionID = id
	token := id
	if version >= 1 {
		token = newID()
		resp.ConnectionToken = token
	}
	c := newClient(in, h, id, token)
	c.st.negotiated = stateful
	in.register(c)
	writeJSON(w, http.StatusOK, resp)
}

func noServerText(hub string) string {
	return "No server available: no app server is connected to hub '" + hub + "'. The service is in Default mode: start the app server, or check its connection string."
}
