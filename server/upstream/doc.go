// Package upstream calls the upstream webhooks of serverless hubs (client-and-rest.md §4.5, §7):
// it holds the ordered upstream templates (static, or read from an emulator-style settings.json
// that is hot-reloaded), matches each client event against them, and POSTs it with the
// X-ASRS-* headers, turning the answers to blocking invocations into framed Completions.
//
// Decisions on points the spec leaves open (see also Dispatch and ParseSettings):
//
//   - Matching is case-insensitive for hub, category and event (hub names are case-insensitive in
//     SignalR, and the Functions dispatcher compares all three ignoring case); first match wins.
//   - Placeholder values are escaped like .NET's Uri.EscapeDataString (everything but the RFC 3986
//     unreserved characters), so {event} is also safe in a query string.
//   - Key Vault references ({@Microsoft.KeyVault(...)}) are rejected with an explicit error rather
//     than sent literally: a self-hosted service has no Key Vault identity.
//   - Auth ManagedIdentity is accepted in settings but cannot be honoured: the request goes out
//     without Authorization and a warning is logged once per template and settings load.
//   - X-ASRS-Signature values are joined with "," and no space: the Functions extension splits on
//     "," without trimming, so a space would break the second key.
//   - A blocking invocation (with an id) never hangs: no match, a full queue, shutdown, a network
//     failure or a response that is not whole hub-protocol frames all answer an error Completion.
//   - Connection events (connected/disconnected) are never dropped for the queue limit; only
//     messages are.
//   - The per-call timeout is 30 s by default (the emulator's HttpClient default is 100 s).
//
// Concurrency: a Client is safe for concurrent use. Dispatch and Match never block (Dispatch
// takes a short internal lock). Calls run on at most MaxConcurrency worker goroutines owned by
// Run; events of one connection are sent one at a time in Dispatch order, different connections
// run concurrently. done callbacks run either synchronously inside Dispatch (no match, dropped,
// stopped) or on a worker goroutine, with no lock of this package held. Run blocks until its
// context ends and every goroutine it started has returned. ParseSettings, LoadSettings and the
// body helpers are pure (LoadSettings reads one file).
package upstream
