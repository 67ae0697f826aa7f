// Package appserver is a Go app-server SDK for signalrd (and Azure SignalR Service): it connects
// Go hubs to the service over the Azure SignalR service protocol and behaves on the wire like the
// .NET SDK Microsoft.Azure.SignalR (ASP.NET Core flavour, 1.26+), so a service written for that
// SDK cannot tell the two apart.
//
// What it reproduces (service-protocol.md §1, §2, §4.1, §5, §7):
//
//   - ConnectionCount (default 5) WebSockets per hub to {ServerEndpoint}server/?hub=<id>&cid=<uuid>
//     with the SDK's headers and server token, the 7-element HandshakeRequest, the 15 s handshake
//     timeout, reconnect back-off 1,2,4,8,16,32,60 s plus 0–1 s jitter, the 30 s service timeout,
//     the "#clientInHub"/"#client" keep-alive ping (only when data arrives and the last ping is
//     older than 5 s), the hub-wide "status" ping every 10 s, "echo", "offline", "shutdown/finack",
//     ServiceError, ConnectionFlowControl;
//   - a virtual hub connection per OpenConnection: the app server performs the hub handshake,
//     answers with exactly one complete hub frame per ConnectionData (dataMessageType 1/2/3/4),
//     runs OnConnected / hub methods / OnDisconnected, pings a client it has not written to for
//     15 s and, once the client has pinged, times it out after 30 s of silence, like ASP.NET
//     Core's HubConnectionHandler;
//   - fan-out (BroadcastData, MultiConnectionData, UserData, MultiUserData, GroupBroadcastData,
//     MultiGroupBroadcastData) with one payload per supported hub protocol, group and user-group
//     membership with acks (10 s timeout, process-wide ack ids from 1), and the negotiate
//     redirect with a signed client token (sticky modes Preferred/Required included);
//   - client results (InvokeClient: ClientInvocation, ClientCompletion, ErrorCompletion) in both
//     roles: the caller waits for the completion, whether its client is local (then only an
//     empty ClientCompletion tells the service to clean up) or hosted by another server, and the
//     router relays the completion of a client it hosts as ClientCompletion;
//   - graceful shutdown (Shutdown: "shutdown fin:1/fin:2" and "finack") and client migration
//     (Asrs-Migrate-From on OpenConnection → Context.MigratedFrom, Asrs-Migrate-To on
//     CloseConnection → Context.MigratedTo; the migrated client's messages received before the
//     close are still dispatched, its later output is dropped).
//
// Not implemented (the SDK features a Go hub or signalrd does not need): Entra ID (AAD)
// authentication and AccessKey messages, multiple endpoints and endpoint routers, OnDemand
// sockets opened after a "target" ping, streaming hub methods (client→server and
// server→client streams are answered with the SDK's error completions), ServiceMapping (only
// needed to fail client results when a service instance goes offline), hub filters and
// authorization policies, and the asrs_lang/asrs_ui_lang culture parameters of the negotiate
// redirect.
//
// Concurrency: Server, HubContext, Clients, Groups, UserGroups and ClientProxy are safe for
// concurrent use. A Hub must be fully configured (On, callbacks, options) before Start. Hub
// methods of one client connection run one at a time, in arrival order, on that connection's
// goroutine (MaximumParallelInvocationsPerClient = 1); different connections run in parallel.
// A Context belongs to one client connection and may be used from any goroutine while the
// connection lives.
//
// Blocking: Start does not block (use Ready to wait for the sockets); Send blocks until the
// message is written to a socket; InvokeClient blocks until the client's completion arrives (or
// Timing.ClientInvocation, 10 min, passes); Groups/UserGroups operations and the existence checks block
// until the service's Ack arrives (or 10 s pass); Shutdown blocks until graceful shutdown ends or
// its context expires. No callback is ever invoked while an internal lock is held.
//
// Lock order: clientConn.outMu → svcConn write lock → hubRuntime.mu; clientConn.outMu →
// hubRuntime.mu. Server.mu and clientConn.mu are leaves. Only the write locks are held across
// socket I/O (a client's output stays ordered); the socket write lock is a channel so waiting
// writers can give up on their context.
package appserver
