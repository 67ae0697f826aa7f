package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/router"
)

// POST /api/hubs/{hub}/:execute?filter= (2023-07-01): commands applied to every connection the
// filter matches (every connection without a filter). "In transaction" is read as: every
// command is validated and encoded first, the matching connections are chosen once, then the
// commands run in order; a bad command or filter changes nothing.

// execCommand is one SignalRCommand; member names are matched case-insensitively.
type execCommand struct {
	Type    string          `json:"type"`
	Message json.RawMessage `json:"message"`
	Group   *string         `json:"group"`
	Reason  string          `json:"reason"`
}

// execStep is a validated command ready to apply.
type execStep struct {
	kind     string // lower-case command type
	payloads svcproto.Payloads
	group    string
	reason   string
}

// parseExecCommands validates a command list and encodes its messages.
func parseExecCommands(b []byte) ([]execStep, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: the body must be a JSON array of commands", errPayloadInvalid)
	}
	var cmds []execCommand
	if err := json.Unmarshal(b, &cmds); err != nil {
		return nil, fmt.Errorf("%w: the body must be a JSON array of commands: %v", errPayloadInvalid, err)
	}
	if cmds == nil {
		return nil, fmt.Errorf("%w: the body must be a JSON array of commands, not null", errPayloadInvalid)
	}
	steps := make([]execStep, 0, len(cmds))
	for i, c := range cmds {
		st := execStep{kind: strings.ToLower(c.Type), reason: c.Reason}
		switch st.kind {
		case "sendmessage":
			if len(c.Message) == 0 {
				return nil, fmt.Errorf("%w: command %d: SendMessage needs a message", errPayloadInvalid, i)
			}
			msg, err := parsePayloadJSON(c.Message)
			if err != nil {
				return nil, fmt.Errorf("%w: command %d: %s", errPayloadInvalid, i, payloadErrorText(err))
			}
			if st.payloads, err = invocationPayloads(msg); err != nil {
				return nil, fmt.Errorf("%w: command %d: %s", errPayloadInvalid, i, payloadErrorText(err))
			}
		case "joingroup", "leavegroup":
			if c.Group == nil || !validGroupName(*c.Group) {
				return nil, fmt.Errorf("%w: command %d: %s", errPayloadInvalid, i, textInvalidGroup)
			}
			st.group = *c.Group
		case "closeconnection":
		default:
			return nil, fmt.Errorf("%w: command %d: unknown type %q (SendMessage, JoinGroup, LeaveGroup, CloseConnection)", errPayloadInvalid, i, c.Type)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

func restExecute(q *restReq) {
	filter := q.r.URL.Query().Get("filter")
	if filter != "" {
		if _, err := parseODataFilter(filter); err != nil {
			q.invalid(strings.TrimPrefix(err.Error(), "server: "), "filter")
			return
		}
	}
	if mt := q.mediaType(); mt != "" && mt != "application/json" && mt != "text/json" {
		q.fail(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type '"+mt+"' is not supported here: use application/json.", "")
		return
	}
	b, ok := q.readBody()
	if !ok {
		return
	}
	steps, err := parseExecCommands(b)
	if err != nil {
		q.invalid(payloadErrorText(err), "commands")
		return
	}
	if err := q.hubState().execute(q.r.Context(), filter, steps); err != nil {
		q.fail(http.StatusInternalServerError, codeInternal, "Executing the commands failed: "+err.Error(), "")
		return
	}
	q.done(http.StatusAccepted)
}

// matchFilter returns the hub's connections the filter matches (all of them for nil). Group
// membership is looked up once per group name the filter asks about.
func matchFilter(h *router.Hub, f *odataFilter) []router.Conn {
	conns := h.Conns()
	if f == nil {
		return conns
	}
	members := map[string]map[string]bool{}
	var subject filterSubject
	out := conns[:0]
	for _, c := range conns {
		id := c.ID()
		subject = filterSubject{connID: id, userID: c.UserID(), inGroup: func(g string) bool {
			m, ok := members[g]
			if !ok {
				m = map[string]bool{}
				for _, gc := range h.GroupConns(g) {
					m[gc.ID()] = true
				}
				members[g] = m
			}
			return m[id]
		}}
		if f.match(subject) {
			out = append(out, c)
		}
	}
	return out
}
