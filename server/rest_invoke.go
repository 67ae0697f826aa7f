package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// 2022-11-01 :generateToken and the 2024-12-01 client operations: :invoke (client results) and
// server-to-client streams.

// restInvokeTimeout bounds how long :invoke waits for the client's completion.
const restInvokeTimeout = 60 * time.Second

// restInvoke sends an Invocation with a service-owned id to the connection and answers with the
// client's result: 200 {"result": …} (absent for a void completion), with "protocol" when the
// client speaks neither json nor messagepack. MessagePack results are converted to JSON.
func restInvoke(q *restReq) {
	msg, ok := q.readPayloadMessage()
	if !ok {
		return
	}
	c, ok := q.hubState().client(q.conn)
	if !ok {
		q.fail(http.StatusNotFound, codeErrorConnectionNotExisted, "Connection '"+q.conn+"' does not exist.", "connectionId")
		return
	}
	ctx, cancel := context.WithTimeout(q.r.Context(), restInvokeTimeout)
	defer cancel()
	comp, err := c.invoke(ctx, msg.Target, msg.Arguments)
	switch {
	case q.r.Context().Err() != nil:
		return // the caller went away
	case errors.Is(err, errConnectionClosed):
		q.fail(http.StatusNotFound, codeErrorConnectionNotExisted, "Connection '"+q.conn+"' closed before completing the invocation.", "connectionId")
		return
	case errors.Is(err, context.DeadlineExceeded):
		q.fail(http.StatusGatewayTimeout, codeInvocationTime, "Connection '"+q.conn+"' did not complete the invocation within "+restInvokeTimeout.String()+".", "connectionId")
		return
	case err != nil:
		q.fail(http.StatusInternalServerError, codeInternal, "Invocation failed: "+err.Error(), "")
		return
	case comp.Error != "":
		q.fail(http.StatusInternalServerError, codeInvocationFailed, comp.Error, "")
		return
	}
	proto := strings.ToLower(c.Protocol())
	body := []byte{'{'}
	if comp.HasResult {
		var res []byte
		if codec, ok := hubproto.CodecFor(proto); ok && codec.Format() == protocol.Binary {
			res, err = msgpackToJSON(nil, comp.Result)
		} else if len(comp.Result) == 0 {
			res = []byte("null")
		} else if json.Valid(comp.Result) {
			res = comp.Result
		} else {
			err = errors.New("the client's result is not valid JSON")
		}
		if err != nil {
			q.fail(http.StatusInternalServerError, codeInvocationFailed, "Cannot convert the client's result to JSON: "+err.Error(), "")
			return
		}
		body = append(body, `"result":`...)
		body = append(body, res...)
	}
	if proto != hubproto.ProtocolJSON && proto != hubproto.ProtocolMessagePack {
		if len(body) > 1 {
			body = append(body, ',')
		}
		body = append(body, `"protocol":`...)
		body = appendJSONString(body, proto)
	}
	body = append(body, '}')
	q.w.Header().Set("Content-Type", "application/json")
	q.w.WriteHeader(http.StatusOK)
	_, _ = q.w.Write(body)
}

// validStreamID: 1 to 100 characters, not only whitespace (the swagger's pattern).
func validStreamID(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= 1 && n <= 100 && strings.TrimFunc(s, unicode.IsSpace) != ""
}

// restStreamSend sends one item of a server-to-client stream: a StreamItem whose invocation id is
// the stream id, and with completed=true the stream's Completion after it. A JSON body is the
// item value itself; an octet-stream body is a protocol map of framed messages (§6.3) delivered
// as is. An empty body with completed=true only completes the stream.
func restStreamSend(q *restReq) {
	if !validStreamID(q.stream) {
		q.invalid(textInvalidStreamID, "streamId")
		return
	}
	completed := false
	if v := q.r.URL.Query().Get("completed"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			q.invalid("Invalid completed '"+v+"': use true or false.", "completed")
			return
		}
		completed = b
	}
	mt := q.mediaType()
	if mt != "" && mt != "application/json" && mt != "text/json" && mt != "application/octet-stream" {
		q.fail(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type '"+mt+"' is not supported: use application/json or application/octet-stream.", "")
		return
	}
	body, ok := q.readBody()
	if !ok {
		return
	}
	var p svcproto.Payloads
	var err error
	switch {
	case mt == "application/octet-stream":
		if p, err = parsePayloadMap(body); err == nil && completed {
			p = withCompletion(p, q.stream)
		}
	case len(bytes.TrimSpace(body)) == 0:
		if !completed {
			q.invalid(textMessageRequired, "item")
			return
		}
		p, err = streamPayloads(q.stream, nil, false, true, "")
	case !json.Valid(body):
		q.invalid("The body must be the stream item as a JSON value.", "item")
		return
	default:
		var buf bytes.Buffer
		_ = json.Compact(&buf, body) // valid JSON compacts
		p, err = streamPayloads(q.stream, buf.Bytes(), true, completed, "")
	}
	if err != nil {
		q.invalid(payloadErrorText(err), "item")
		return
	}
	if _, ok := q.hubState().conn.SendConnection(q.conn, p); !ok {
		q.fail(http.StatusNotFound, codeErrorConnectionNotExisted, "Connection '"+q.conn+"' does not exist.", "connectionId")
		return
	}
	q.done(http.StatusAccepted)
}

// restStreamComplete ends a server-to-client stream; a reason makes it an error completion.
func restStreamComplete(q *restReq) {
	if !validStreamID(q.stream) {
		q.invalid(textInvalidStreamID, "streamId")
		return
	}
	p, err := streamPayloads(q.stream, nil, false, true, q.r.URL.Query().Get("reason"))
	if err != nil {
		q.invalid(payloadErrorText(err), "reason")
		return
	}
	if _, ok := q.hubState().conn.SendConnection(q.conn, p); !ok {
		q.fail(http.StatusNotFound, codeErrorConnectionNotExisted, "Connection '"+q.conn+"' does not exist.", "connectionId")
		return
	}
	q.done(http.StatusAccepted)
}

// streamPayloads encodes an optional StreamItem and an optional Completion for both protocols,
// as one send so they reach the client together and in order.
func streamPayloads(id string, item json.RawMessage, hasItem, completed bool, errText string) (svcproto.Payloads, error) {
	var jf, mf []byte
	var err error
	if hasItem {
		mi, cerr := hubproto.JSONToMessagePack(hubproto.Raw(item))
		if cerr != nil {
			return nil, errors.Join(errPayloadInvalid, cerr)
		}
		if jf, err = hubproto.JSON().Append(jf, &hubproto.StreamItem{InvocationID: id, Item: hubproto.Raw(item)}); err != nil {
			return nil, errors.Join(errPayloadInvalid, err)
		}
		if mf, err = hubproto.MessagePack().Append(mf, &hubproto.StreamItem{InvocationID: id, Item: mi}); err != nil {
			return nil, errors.Join(errPayloadInvalid, err)
		}
	}
	if completed {
		if jf, err = hubproto.JSON().Append(jf, &hubproto.Completion{InvocationID: id, Error: errText}); err != nil {
			return nil, errors.Join(errPayloadInvalid, err)
		}
		if mf, err = hubproto.MessagePack().Append(mf, &hubproto.Completion{InvocationID: id, Error: errText}); err != nil {
			return nil, errors.Join(errPayloadInvalid, err)
		}
	}
	return protocolPayloads(jf, mf), nil
}

// withCompletion appends the stream's Completion to every payload of a known protocol.
func withCompletion(p svcproto.Payloads, id string) svcproto.Payloads {
	out := make(svcproto.Payloads, len(p))
	for i, e := range p {
		out[i] = e
		if codec, ok := hubproto.CodecFor(e.Protocol); ok {
			if f, err := codec.Append(bytes.Clone(e.Data), &hubproto.Completion{InvocationID: id}); err == nil {
				out[i].Data = f
			}
		}
	}
	return out
}

// restGenerateToken issues a client token for the hub (2022-11-01): audience
// {scheme}://{host}/client/?hub={hub} like the SDKs' (no port), the user id in asrs.s.uid and
// nameid, signed with the key that verified the request.
func restGenerateToken(q *restReq) {
	qs := q.r.URL.Query()
	minutes := 60
	if v := qs.Get("minutesToExpire"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			q.invalid("Invalid minutesToExpire '"+v+"': it must be an integer of at least 1.", "minutesToExpire")
			return
		}
		minutes = int(n)
	}
	var claims []auth.Claim
	if u := qs.Get("userId"); u != "" {
		claims = auth.ClientClaims(u, []auth.Claim{{Type: auth.ClaimNameID, Value: u}}, auth.ClientClaimOptions{})
	}
	aud := q.in.srv.requestScheme(q.r) + "://" + hostOnly(q.in.srv.requestHost(q.r)) + "/client/?hub=" + q.hub
	tok, err := auth.IssueToken(q.in.signingKey(q.tok), auth.IssueOptions{
		Audience: aud,
		Lifetime: time.Duration(minutes) * time.Minute,
		Claims:   claims,
	})
	if err != nil {
		q.fail(http.StatusInternalServerError, codeInternal, "Cannot issue the token: "+err.Error(), "")
		return
	}
	q.w.Header().Set("Cache-Control", "no-store")
	writeJSON(q.w, http.StatusOK, map[string]string{"token": tok})
}
