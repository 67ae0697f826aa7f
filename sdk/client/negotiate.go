package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// negotiateResponse is the negotiate body: a redirect (URL, AccessToken), an error, or a
// connection (negotiate version 0 or 1).
type negotiateResponse struct {
	NegotiateVersion     int                  `json:"negotiateVersion"`
	ConnectionID         string               `json:"connectionId"`
	ConnectionToken      string               `json:"connectionToken"`
	AvailableTransports  []availableTransport `json:"availableTransports"`
	URL                  string               `json:"url"`
	AccessToken          string               `json:"accessToken"`
	Error                string               `json:"error"`
	UseStatefulReconnect bool                 `json:"useStatefulReconnect"`
	// ProtocolVersion is only sent by the classic ASP.NET SignalR server.
	ProtocolVersion *json.RawMessage `json:"ProtocolVersion"`
}

type availableTransport struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

// maxNegotiateBody bounds the negotiate response body we read.
const maxNegotiateBody = 1 << 20

// tokenSource mirrors the JS client's access-token handling: the user's factory until a
// negotiate redirect supplies a fixed token.
type tokenSource struct {
	factory func(context.Context) (string, error)
	fixed   string
	isFixed bool
}

func (s *tokenSource) token(ctx context.Context) (string, error) {
	if s.isFixed {
		return s.fixed, nil
	}
	if s.factory == nil {
		return "", nil
	}
	t, err := s.factory(ctx)
	if err != nil {
		return "", fmt.Errorf("client: access token: %w", err)
	}
	return t, nil
}

// endpoint is where the WebSocket connects after negotiation.
type endpoint struct {
	url          string // base URL (http/https/ws/wss), without id
	connectionID string
	token        string // connection token (v1) or connection id (v0); "" with SkipNegotiation
}

// negotiate runs the negotiate loop of the JS client's HttpConnection._startInternal.
func negotiate(ctx context.Context, o *Options, ts *tokenSource, format string) (endpoint, error) {
	target := o.URL
	for redirects := 0; ; {
		resp, err := negotiateOnce(ctx, o, ts, target)
		if err != nil {
			return endpoint{}, err
		}
		if resp.Error != "" {
			return endpoint{}, &NegotiateError{Message: resp.Error}
		}
		if resp.ProtocolVersion != nil {
			return endpoint{}, errClassicSignalR
		}
		if resp.URL == "" {
			return connectionEndpoint(target, resp, format)
		}
		target = resp.URL
		if resp.AccessToken != "" {
			ts.fixed, ts.isFixed = resp.AccessToken, true
		}
		redirects++
		if redirects == maxRedirects {
			return endpoint{}, errRedirectLimit
		}
	}
}

func connectionEndpoint(target string, resp *negotiateResponse, format string) (endpoint, error) {
	if resp.UseStatefulReconnect {
		return endpoint{}, errStateful
	}
	ep := endpoint{url: target, connectionID: resp.ConnectionID, token: resp.ConnectionToken}
	if resp.NegotiateVersion < 1 {
		// Version 0 has no connection token; the id doubles as the token.
		ep.token = resp.ConnectionID
	}
	if len(resp.AvailableTransports) == 0 {
		return endpoint{}, errNoTransports
	}
	for _, t := range resp.AvailableTransports {
		if t.Transport != "WebSockets" {
			continue
		}
		for _, f := range t.TransferFormats {
			if f == format {
				return ep, nil
			}
		}
		return endpoint{}, fmt.Errorf("%w 'WebSockets' does not support the %s transfer format", errTransports, format)
	}
	return endpoint{}, fmt.Errorf("%w 'WebSockets' is not offered by the server", errTransports)
}

// negotiateURL appends "negotiate" to the path, keeps the query and adds negotiateVersion=1
// unless present (JS _resolveNegotiateUrl). The query is kept verbatim rather than re-encoded.
func negotiateURL(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("client: negotiate: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	suffix := "/negotiate"
	if strings.HasSuffix(u.Path, "/") {
		suffix = "negotiate"
	}
	u.Path += suffix
	if u.RawPath != "" {
		u.RawPath += suffix
	}
	q, _ := url.ParseQuery(u.RawQuery) // a malformed pair only makes us add the parameter
	if !q.Has("negotiateVersion") {
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += "negotiateVersion=1"
	}
	return u.String(), nil
}

func negotiateOnce(ctx context.Context, o *Options, ts *tokenSource, target string) (*negotiateResponse, error) {
	nu, err := negotiateURL(target)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nu, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("client: negotiate: %w", err)
	}
	for k, vs := range o.Headers {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	token, err := ts.token(ctx)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := o.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: negotiate: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxNegotiateBody))
	if err != nil {
		return nil, fmt.Errorf("client: negotiate: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Op: "negotiate", StatusCode: resp.StatusCode, Body: string(body[:min(len(body), 1024)])}
	}
	var nr negotiateResponse
	if err := json.Unmarshal(body, &nr); err != nil {
		return nil, fmt.Errorf("client: negotiate: decode response: %w", err)
	}
	return &nr, nil
}

// connectURL builds the WebSocket URL like the JS client: http(s) -> ws(s), then
// "id=<token>" appended without encoding, then access_token if sent in the query.
func connectURL(base, token, accessToken string, tokenInQuery bool) string {
	u := base
	if strings.HasPrefix(u, "http") {
		u = "ws" + u[len("http"):]
	}
	if token != "" {
		u += querySep(u) + "id=" + token
	}
	if tokenInQuery && accessToken != "" {
		u += querySep(u) + "access_token=" + url.QueryEscape(accessToken)
	}
	return u
}

func querySep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}
