// Package protocol holds the framing shared by the SignalR hub protocol and the Azure SignalR
// service protocol: the VarInt length prefix used by MessagePack-based protocols, the 0x1E record
// separator used by JSON, and a streaming splitter that cuts a byte stream into whole messages.
//
// Everything here is pure and allocation-conscious; a Splitter is not goroutine-safe and belongs to
// the single reader of one connection.
package protocol
