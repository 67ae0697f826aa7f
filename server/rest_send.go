package server

import "net/http"

// Sends, existence checks and closes (§6.4). Sends are fire-and-forget like Azure's: 202 even
// when nobody receives the message.

func restBroadcast(q *restReq) {
	p, ok := q.readPayloads()
	if !ok {
		return
	}
	q.hubState().broadcast(p, q.excluded())
	q.traceSend("broadcast", p)
	q.done(http.StatusAccepted)
}

func restSendUser(q *restReq) {
	p, ok := q.readPayloads()
	if !ok {
		return
	}
	q.hubState().sendUsers([]string{q.user}, p)
	q.traceSend("user:"+q.user, p)
	q.done(http.StatusAccepted)
}

// restSendConn answers 202 for unknown connections too, as the emulator does.
func restSendConn(q *restReq) {
	p, ok := q.readPayloads()
	if !ok {
		return
	}
	q.hubState().conn.SendConnection(q.conn, p)
	q.traceSend("connections:"+q.conn, p)
	q.done(http.StatusAccepted)
}

func restSendGroup(q *restReq) {
	p, ok := q.readPayloads()
	if !ok {
		return
	}
	q.hubState().sendGroup(q.group, p, q.excluded(), nil)
	q.traceSend("group:"+q.group, p)
	q.done(http.StatusAccepted)
}

func restConnExists(q *restReq) {
	if _, ok := q.hubState().conn.Conn(q.conn); !ok {
		q.fail(http.StatusNotFound, codeConnectionNotExisted, "Connection '"+q.conn+"' does not exist.", "connectionId")
		return
	}
	q.done(http.StatusOK)
}

func restUserExists(q *restReq) {
	if !q.hubState().userExists(q.r.Context(), q.user) {
		q.fail(http.StatusNotFound, codeUserNotExisted, "User '"+q.user+"' has no connection.", "user")
		return
	}
	q.done(http.StatusOK)
}

func restGroupExists(q *restReq) {
	if !q.hubState().groupExists(q.r.Context(), q.group) {
		q.fail(http.StatusNotFound, codeGroupNotExisted, "Group '"+q.group+"' has no connection.", "group")
		return
	}
	q.done(http.StatusOK)
}

// restCloseConn sends the client a Close with the reason. allowReconnect is false: an explicit
// close by the application should really end the client (the emulator sends true).
func restCloseConn(q *restReq) {
	c, ok := q.hubState().client(q.conn)
	if !ok {
		q.fail(http.StatusNotFound, codeConnectionNotExisted, "Connection '"+q.conn+"' does not exist.", "connectionId")
		return
	}
	c.closeWith(closeReasonService, q.r.URL.Query().Get("reason"), false)
	q.done(q.status(http.StatusOK, http.StatusAccepted))
}

func restCloseHub(q *restReq) {
	q.hubState().closeAll(q.r.URL.Query().Get("reason"), q.excluded())
	q.done(http.StatusNoContent)
}

func restCloseUser(q *restReq) {
	q.hubState().closeUser(q.user, q.r.URL.Query().Get("reason"), q.excluded())
	q.done(http.StatusNoContent)
}

func restCloseGroup(q *restReq) {
	q.hubState().closeGroup(q.group, q.r.URL.Query().Get("reason"), q.excluded())
	q.done(http.StatusNoContent)
}
