// Package hubproto implements the SignalR hub protocol as the service and the Go SDKs speak it:
// the JSON handshake, and hub messages in the JSON encoding (one object per message, each ended
// by 0x1E) and the MessagePack encoding (VarInt length prefix, one array per message). Framing
// itself lives in package protocol; arguments, results and stream items stay pre-encoded (Raw)
// so the service can forward them without knowing their Go types.
//
// Encoders follow what ASP.NET Core writes; decoders accept what the official JS and .NET
// clients send and are as tolerant as those clients (unknown JSON members and extra trailing
// MessagePack elements are ignored, unknown message types yield ErrUnknownType so callers can
// skip them).
//
// The codecs returned by JSON, MessagePack and CodecFor are stateless values, safe for concurrent
// use by any number of goroutines. Nothing in this package blocks or does I/O. Decoded messages
// never alias the input buffer, so callers may reuse their read buffers immediately.
package hubproto
