// Package e2e holds black-box tests: signalrd in process (servertest), Go app servers built on
// sdk/appserver, the Go client and the official @microsoft/signalr client under node (jsclient).
package e2e
