// Package chatapp is the chat sample behind `make demo` and the browser e2e tests: a Go app server
// built on sdk/appserver hosting the hub "chat", plus the page that browsers load.
//
// Hub "chat" (client → server):
//
//	send(user, text)            broadcasts message(user, text) to everyone
//	join(room) / leave(room)    adds or removes the caller's connection to or from a group
//	sendRoom(room, user, text)  sends roomMessage(room, user, text) to the room's members
//
// HTTP (App.Handler):
//
//	GET /                 the chat page: HTML with inline JS using the official browser bundles
//	GET /lib/signalr.js   @microsoft/signalr dist/browser/signalr.min.js
//	GET /lib/msgpack.js   @microsoft/signalr-protocol-msgpack dist/browser/signalr-protocol-msgpack.min.js
//	POST /chat/negotiate  the SDK's negotiate redirect to the service; user id from ?user=
//
// The page reads ?user=, ?transport= (WebSockets, ServerSentEvents, LongPolling) and ?protocol=
// (json, messagepack), and exposes window.chatState = {state, transport, hubProtocol, connectionId,
// user, error, messages} for tests (transport and hubProtocol as the client reports them in its
// log); its elements have stable ids (#state, #transport,
// #connection-id, #error, #messages with li.message children, #message-input, #send-button,
// #room-input, #join-button, #leave-button, #to-room).
//
// The bundles are read once by New from e2e/js/node_modules (installed by `make deps-js`), found
// next to this package's source or above the working directory, or given with WithBundleDir.
//
// Concurrency: App and its Handler are safe for concurrent use. New blocks until the app server
// is connected to the service or ctx ends; Close blocks until the app server's goroutines end.
package chatapp
