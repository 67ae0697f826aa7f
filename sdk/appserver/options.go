package appserver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
)

// SDKVersion is the Microsoft.Azure.SignalR version this package impersonates in Asrs-User-Agent.
// Services gate features on it; 1.30.0 sends the 7-element handshake and understands ext keys 5/6.
const SDKVersion = "1.30.0"

// GracefulShutdownMode is the SDK's GracefulShutdownMode: what Shutdown asks the service to do
// with the clients of this server.
type GracefulShutdownMode int

// Graceful shutdown modes; the numbers are the "fin:N" values of the shutdown ping.
const (
	// ShutdownOff closes the sockets at once; the service drops this server's clients.
	ShutdownOff GracefulShutdownMode = 0
	// ShutdownMigrateClients asks the service to move clients to another server (handshake
	// migrationLevel 1).
	ShutdownMigrateClients GracefulShutdownMode = 1
	// ShutdownWaitForClientsClose stops new clients and waits for existing ones to leave.
	ShutdownWaitForClientsClose GracefulShutdownMode = 2
)

// Options configure a Server. The zero value of every field means its documented default.
type Options struct {
	// ConnectionString is the Azure SignalR connection string
	// ("Endpoint=http://localhost:8080;AccessKey=...;Version=1.0;"). Required.
	ConnectionString string
	// ServerID identifies this process to the service (X-ASRS-Server-Id, nameid claim, sticky
	// routing). Default: "<hostname>_<32 hex digits>", like DefaultServerNameProvider.
	ServerID string
	// ConnectionCount is the number of sockets per hub (InitialHubServerConnectionCount).
	// Default 5.
	ConnectionCount int
	// Application is ServiceOptions.ApplicationName: it prefixes hub ids ("app_hub"). Default "".
	Application string
	// AccessTokenLifetime is the lifetime of server and client tokens. Default 1h.
	AccessTokenLifetime time.Duration
	// Algorithm signs tokens: "HS256" (default) or "HS512".
	Algorithm string
	// StickyMode is ServiceOptions.ServerStickyMode, used by negotiate handlers whose
	// NegotiateOptions.Sticky is StickyDisabled. Default StickyDisabled.
	StickyMode auth.StickyMode
	// AllowStatefulReconnects is handshake element 6. Default false.
	AllowStatefulReconnects bool
	// MigrationLevel is handshake element 4. Default: 1 when GracefulShutdown is
	// ShutdownMigrateClients, else 0 (the SDK never sends 2).
	MigrationLevel int
	// GracefulShutdown selects what Shutdown does. Default ShutdownOff.
	GracefulShutdown GracefulShutdownMode
	// Logger receives diagnostics. Default: slog.Default().
	Logger *slog.Logger
	// Protocols are the hub protocols the hubs accept and broadcast payloads are encoded in, in
	// payload order. Default ["json", "messagepack"]. Hub.Protocols overrides per hub.
	Protocols []string
	// UserAgent is the Asrs-User-Agent header. Default
	// "Microsoft.Azure.SignalR/<SDKVersion> (signalrd-go; <GOOS>; <GOARCH>)".
	UserAgent string
	// LegacyDataExt stops writing ext keys 5 (dataMessageType) and 6 (isPartial) on
	// ConnectionData, for services built for SDKs older than 1.26 whose readers cannot skip
	// unknown keys. signalrd understands them; default false (send them, as SDK 1.26+ does).
	LegacyDataExt bool
	// Timing overrides protocol timers (tests shorten them). Zero fields take the SDK defaults.
	Timing Timing
}

// Timing holds the protocol timers of the .NET SDK. Zero means the default in the comment.
type Timing struct {
	// Handshake bounds dialing plus waiting for the service's HandshakeResponse. 15 s.
	Handshake time.Duration
	// ServiceTimeout closes a socket on which nothing was received for this long. 30 s.
	ServiceTimeout time.Duration
	// KeepAlive is how often the service timeout is checked and the minimum gap between two
	// keep-alive pings (which are only sent when data arrives). 5 s.
	KeepAlive time.Duration
	// StatusPing is the period of the hub-wide ["status","1"] ping. 10 s.
	StatusPing time.Duration
	// Ack is how long an ack-able message waits for its Ack. 10 s.
	Ack time.Duration
	// ReconnectBase scales the reconnect back-off: base × 1,2,4,8,16,32,60 plus a random
	// 0..base jitter. 1 s.
	ReconnectBase time.Duration
	// Heartbeat is the tick that drives client keep-alive pings, client timeouts and handshake
	// timeouts (HeartBeat.cs). 1 s.
	Heartbeat time.Duration
	// FinAckAttempt bounds one wait for "finack" during graceful shutdown; the fin ping is
	// re-sent up to 24 times. 5 s.
	FinAckAttempt time.Duration
	// WriteTimeout bounds one socket write; on expiry the socket is closed. 30 s.
	WriteTimeout time.Duration
	// ClientInvocation bounds InvokeClient's wait for the client's result. 10 min, the limit
	// the service applies to a pending client invocation.
	ClientInvocation time.Duration
}

func (t Timing) withDefaults() Timing {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.Handshake, 15*time.Second)
	def(&t.ServiceTimeout, 30*time.Second)
	def(&t.KeepAlive, 5*time.Second)
	def(&t.StatusPing, 10*time.Second)
	def(&t.Ack, 10*time.Second)
	def(&t.ReconnectBase, time.Second)
	def(&t.Heartbeat, time.Second)
	def(&t.FinAckAttempt, 5*time.Second)
	def(&t.WriteTimeout, 30*time.Second)
	def(&t.ClientInvocation, 10*time.Minute)
	return t
}

// Validate lists every problem with o (nil when o is usable).
func (o Options) Validate() error {
	var errs []error
	if o.ConnectionString == "" {
		errs = append(errs, errors.New("ConnectionString is required"))
	} else if cs, err := auth.ParseConnectionString(o.ConnectionString); err != nil {
		errs = append(errs, err)
	} else if cs.AccessKey == "" {
		errs = append(errs, errors.New("ConnectionString: only AccessKey authentication is supported"))
	}
	if o.ConnectionCount < 0 {
		errs = append(errs, fmt.Errorf("ConnectionCount %d is negative", o.ConnectionCount))
	}
	if o.AccessTokenLifetime < 0 {
		errs = append(errs, fmt.Errorf("AccessTokenLifetime %v is negative", o.AccessTokenLifetime))
	}
	switch o.Algorithm {
	case "", "HS256", "HS512":
	default:
		errs = append(errs, fmt.Errorf("algorithm %q is not HS256 or HS512", o.Algorithm))
	}
	if o.MigrationLevel < 0 || o.MigrationLevel > 2 {
		errs = append(errs, fmt.Errorf("MigrationLevel %d is not 0, 1 or 2", o.MigrationLevel))
	}
	if o.GracefulShutdown < ShutdownOff || o.GracefulShutdown > ShutdownWaitForClientsClose {
		errs = append(errs, fmt.Errorf("GracefulShutdown %d is unknown", o.GracefulShutdown))
	}
	for _, p := range o.Protocols {
		if _, ok := hubproto.CodecFor(p); !ok {
			errs = append(errs, fmt.Errorf("protocol %q is not supported", p))
		}
	}
	if o.StickyMode < auth.StickyDisabled || o.StickyMode > auth.StickyRequired {
		errs = append(errs, fmt.Errorf("StickyMode %d is unknown", o.StickyMode))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("appserver: invalid options: %w", errors.Join(errs...))
}

func (o Options) withDefaults() Options {
	if o.ServerID == "" {
		o.ServerID = defaultServerID()
	}
	if o.ConnectionCount == 0 {
		o.ConnectionCount = 5
	}
	if o.AccessTokenLifetime == 0 {
		o.AccessTokenLifetime = time.Hour
	}
	if o.Algorithm == "" {
		o.Algorithm = "HS256"
	}
	if o.MigrationLevel == 0 && o.GracefulShutdown == ShutdownMigrateClients {
		o.MigrationLevel = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.Protocols) == 0 {
		o.Protocols = []string{hubproto.ProtocolJSON, hubproto.ProtocolMessagePack}
	}
	if o.UserAgent == "" {
		o.UserAgent = "Microsoft.Azure.SignalR/" + SDKVersion + " (signalrd-go; " + runtime.GOOS + "; " + runtime.GOARCH + ")"
	}
	o.Timing = o.Timing.withDefaults()
	return o
}

// defaultServerID is "{MachineName}_{Guid:N}" (DefaultServerNameProvider.cs).
func defaultServerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// Environment.MachineName is the host name without its domain.
	host, _, _ = strings.Cut(host, ".")
	var b [16]byte
	_, _ = rand.Read(b[:])
	return host + "_" + hex.EncodeToString(b[:])
}

// newUUID returns a random (version 4) UUID in Guid.ToString() form: lower-case, hyphenated.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
