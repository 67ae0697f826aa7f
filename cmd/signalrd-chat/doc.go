// Command signalrd-chat serves the chat sample (e2e/chatapp) against a running signalrd: it
// connects the sample's Go app server to the service named by --connection-string (or
// SIGNALRD_CONNECTION_STRING; default the development instance on localhost:8888, as started by
// `make run`) and serves the chat page on --listen. `make demo` starts both.
package main
