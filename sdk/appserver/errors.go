package appserver

import (
	"errors"
	"fmt"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Sentinel errors. Errors returned by this package wrap one of them where it applies.
var (
	// ErrNotConnected means no usable socket to the service exists for the hub (the SDK's
	// ServiceConnectionNotActiveException / AzureSignalRNotConnectedException).
	ErrNotConnected = errors.New("appserver: not connected to the service")
	// ErrAckTimeout means an ack-able message got no Ack in time, or an Ack with status Timeout or
	// InternalServerError (the SDK throws TimeoutException for all three).
	ErrAckTimeout = errors.New("appserver: ack timed out")
	// ErrAckStatus means an Ack carried a status the SDK does not know.
	ErrAckStatus = errors.New("appserver: unexpected ack status")
	// ErrInvalidArgument means a required name (method, connection id, user id, group) is empty
	// ("Argument cannot be null or empty.").
	ErrInvalidArgument = errors.New("appserver: argument cannot be null or empty")
	// ErrNoCaller means Caller/Others/OthersInGroup was used outside a hub connection's Context.
	ErrNoCaller = errors.New("appserver: no caller outside a hub connection context")
	// ErrClosed means the Server was closed.
	ErrClosed = errors.New("appserver: server closed")
	// ErrUnknownHub means no hub is mapped under that name.
	ErrUnknownHub = errors.New("appserver: unknown hub")
	// ErrClientResultTimeout means InvokeClient got no completion within Timing.ClientInvocation.
	ErrClientResultTimeout = errors.New("appserver: client result timed out")
	// ErrInvokeOwnConnection means InvokeClient was asked, from a connection's own hub method or
	// OnConnected, to wait for that same connection, which cannot answer before the call returns.
	ErrInvokeOwnConnection = errors.New("appserver: a hub method cannot wait for a result from its own connection")
)

// ErrClientTimeout is the error OnDisconnected receives when a client sent nothing for
// Hub.ClientTimeoutInterval. Its text is ASP.NET Core's: "Client hasn't sent a message/ping
// within the configured ClientTimeoutInterval."
var ErrClientTimeout error = clientTimeoutError{}

type clientTimeoutError struct{}

func (clientTimeoutError) Error() string { return textClientTimeout }

// AckStatus is the status the service put in an Ack.
type AckStatus = svcproto.AckStatus

// Ack statuses (AckStatus.cs).
const (
	AckOK                  = svcproto.AckOK
	AckNotFound            = svcproto.AckNotFound
	AckTimeout             = svcproto.AckTimeout
	AckInternalServerError = svcproto.AckInternalServerError
)

// HubError is the counterpart of ASP.NET Core's HubException: when a hub method returns it, its
// message reaches the caller even without EnableDetailedErrors
// ("An unexpected error occurred invoking 'M' on the server. HubException: <message>").
type HubError struct{ Message string }

func (e *HubError) Error() string { return e.Message }

// NewHubError returns a *HubError with a formatted message.
func NewHubError(format string, args ...any) error {
	return &HubError{Message: fmt.Sprintf(format, args...)}
}

// ackError maps a non-OK/NotFound Ack status the way AckHandler.HandleAckStatus does.
func ackError(op string, ackID int, st AckStatus) error {
	switch st {
	case AckTimeout, AckInternalServerError:
		return fmt.Errorf("%s (ackId: %d) timed out (status %d): %w", op, ackID, st, ErrAckTimeout)
	default:
		return fmt.Errorf("%s (ackId: %d) gets error ack status %d: %w", op, ackID, st, ErrAckStatus)
	}
}
