package upstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
)

// Request headers (client-and-rest.md §7.3), written with this exact casing.
const (
	HeaderConnectionID = "X-ASRS-Connection-Id"
	HeaderHub          = "X-ASRS-Hub"
	HeaderCategory     = "X-ASRS-Category"
	HeaderEvent        = "X-ASRS-Event"
	HeaderUserID       = "X-ASRS-User-Id"
	HeaderUserClaims   = "X-ASRS-User-Claims"
	HeaderClientQuery  = "X-ASRS-Client-Query"
	HeaderSignature    = "X-ASRS-Signature"
)

// drainLimit is how much of an ignored response body is read so the connection can be reused.
const drainLimit = 64 << 10

// Signature is the X-ASRS-Signature value for a connection: "sha256=<HEX>" of
// HMAC-SHA256(key, connectionID) for every non-empty key, joined by ",". Hex is upper-case like
// the emulator's; the Functions extension compares ignoring case. "" when there is no key.
func Signature(connectionID string, keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		if k == "" {
			continue
		}
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte(connectionID))
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("sha256=")
		b.WriteString(strings.ToUpper(hex.EncodeToString(m.Sum(nil))))
	}
	return b.String()
}

// send performs one call and turns its outcome into a Result.
func (c *Client) send(ctx context.Context, j *job) Result {
	ev := &j.ev
	if t := j.live.templates[j.tmpl]; t.Auth != nil && t.Auth.Type == AuthManagedIdentity &&
		j.live.warned[j.tmpl].CompareAndSwap(false, true) {
		c.log.Warn("upstream auth ManagedIdentity is not supported by signalrd; sending without Authorization",
			"template", j.tmpl, "url", redact(j.url), "resource", t.Auth.Resource)
	}
	blocking := ev.Category == CategoryMessages && ev.InvocationID != ""
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	c.calls.Add(1)
	status, body, err := c.post(ctx, j.url, ev, blocking)
	attrs := []any{"hub", ev.Hub, "category", ev.Category, "event", ev.Event, "connection", ev.ConnectionID,
		"url", redact(j.url), "duration", time.Since(start)}
	switch {
	case errors.Is(err, errTooLarge):
		c.failures.Add(1)
		c.log.Warn("upstream response too large", append(attrs, "status", status, "limit", c.maxResp)...)
		return c.errorResult(*ev, errTextTooLarge)
	case err != nil:
		// The emulator maps every exception, timeouts included, to 500.
		c.failures.Add(1)
		c.log.Warn("upstream call failed", append(attrs, "err", err)...)
		return c.errorResult(*ev, fmt.Sprintf(errTextStatus, http.StatusInternalServerError))
	}
	if !blocking {
		if status < 200 || status > 299 {
			c.failures.Add(1)
			c.log.Warn("upstream call answered an error status", append(attrs, "status", status)...)
		} else {
			c.log.Debug("upstream call", append(attrs, "status", status)...)
		}
		return Result{}
	}
	switch {
	case status == http.StatusOK && len(body) > 0:
		if !framed(body, c.codec(*ev).Format()) {
			c.failures.Add(1)
			c.log.Warn("upstream response is not a framed hub message", append(attrs, "status", status, "bytes", len(body))...)
			return c.errorResult(*ev, errTextInvalid)
		}
		c.log.Debug("upstream call", append(attrs, "status", status, "bytes", len(body))...)
		return Result{Completion: body}
	case status == http.StatusOK || status == http.StatusNoContent:
		c.log.Debug("upstream call", append(attrs, "status", status)...)
		return c.completion(*ev, hubproto.Completion{InvocationID: ev.InvocationID})
	default:
		c.failures.Add(1)
		c.log.Warn("upstream call answered an error status", append(attrs, "status", status)...)
		return c.errorResult(*ev, fmt.Sprintf(errTextStatus, status))
	}
}

var errTooLarge = errors.New("upstream: response too large")

// post sends the request. For blocking invocations it returns the body of a 200 (bounded by
// maxResp); other bodies are drained and discarded.
func (c *Client) post(ctx context.Context, u string, ev *Event, blocking bool) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(ev.Body))
	if err != nil {
		return 0, nil, fmt.Errorf("upstream: build request: %w", err)
	}
	h := req.Header
	// Direct map writes keep the documented casing on the wire (HTTP/1.1).
	h[HeaderConnectionID] = []string{headerValue(ev.ConnectionID)}
	h[HeaderHub] = []string{headerValue(ev.Hub)}
	h[HeaderCategory] = []string{headerValue(ev.Category)}
	h[HeaderEvent] = []string{headerValue(ev.Event)}
	if ev.UserID != "" {
		h[HeaderUserID] = []string{headerValue(ev.UserID)}
	}
	if len(ev.Claims) > 0 {
		parts := make([]string, len(ev.Claims))
		for i, cl := range ev.Claims {
			parts[i] = cl.Type + ": " + cl.Value // .NET Claim.ToString()
		}
		h[HeaderUserClaims] = []string{headerValue(strings.Join(parts, ", "))}
	}
	if ev.Query != "" {
		h[HeaderClientQuery] = []string{headerValue(ev.Query)}
	}
	if sig := Signature(ev.ConnectionID, c.keys()); sig != "" {
		h[HeaderSignature] = []string{sig}
	}
	ct := ev.ContentType
	if ct == "" {
		ct = ContentTypeJSON
	}
	h.Set("Content-Type", ct)

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if !blocking || resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		return resp.StatusCode, nil, nil
	}
	if resp.ContentLength > c.maxResp {
		return resp.StatusCode, nil, errTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("upstream: read response: %w", err)
	}
	if int64(len(body)) > c.maxResp {
		return resp.StatusCode, nil, errTooLarge
	}
	return resp.StatusCode, body, nil
}

// headerValue replaces control characters, which would make the request invalid, with spaces.
func headerValue(s string) string {
	if strings.IndexFunc(s, isCTL) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isCTL(r) {
			return ' '
		}
		return r
	}, s)
}

func isCTL(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// framed reports whether b is one or more whole hub messages in the given framing: writing
// anything else to the client would corrupt its stream for every later message.
func framed(b []byte, f protocol.Format) bool {
	for len(b) > 0 {
		var err error
		if f == protocol.Binary {
			_, _, b, err = protocol.CutBinary(b, 0)
		} else {
			_, _, b, err = protocol.CutText(b, 0)
		}
		if err != nil {
			return false
		}
	}
	return true
}

// codec is the event's hub protocol codec; ContentType decides when Protocol is unknown.
func (c *Client) codec(ev Event) hubproto.Codec {
	if cd, ok := hubproto.CodecFor(ev.Protocol); ok {
		return cd
	}
	if strings.Contains(strings.ToLower(ev.ContentType), "msgpack") {
		return hubproto.MessagePack()
	}
	return hubproto.JSON()
}

// errorResult is the error Completion for a blocking invocation, else an empty Result.
func (c *Client) errorResult(ev Event, text string) Result {
	return c.completion(ev, hubproto.Completion{InvocationID: ev.InvocationID, Error: text})
}

func (c *Client) completion(ev Event, m hubproto.Completion) Result {
	if ev.InvocationID == "" || ev.Category != CategoryMessages {
		return Result{}
	}
	b, err := c.codec(ev).Append(nil, &m)
	if err != nil {
		c.log.Error("upstream: encode completion", "err", err)
		return Result{}
	}
	return Result{Completion: b}
}

// redact drops the query (Functions URLs carry ?code=<key>) and credentials from a URL for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}
