// Package auth owns everything about credentials shared by the service and the app-server SDK:
//
//   - parsing and formatting Azure SignalR connection strings and deriving the URLs and token
//     audiences the official SDKs build from them (service-protocol.md §1.1, §8; client-and-rest.md §1);
//   - verifying the HS256/HS384/HS512 access tokens that app servers, clients and REST callers
//     present (Verifier), with the lenient audience rules the real SDKs force on a clone;
//   - issuing tokens byte-compatible with the .NET SDK (IssueToken, ClientClaims, ServerClaims);
//   - interpreting the asrs.s.* system claims (user id, sticky mode, transports, timeouts) and
//     mapping token claims to the claim list sent in OpenConnection (OpenConnectionClaims).
//
// Concurrency: every function is pure. A Verifier is read-only after construction and safe for
// concurrent use by any number of goroutines; do not mutate its fields while Verify may run (to
// rotate keys, build a new Verifier and swap the pointer). A Token is immutable once returned.
// Nothing in this package blocks or performs I/O.
package auth
