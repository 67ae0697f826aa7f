package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// Default values of the Options fields (those of the JS client).
const (
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultServerTimeout     = 30 * time.Second
	DefaultHandshakeTimeout  = 15 * time.Second
	DefaultMaxMessageSize    = 32 << 20
)

// maxRedirects is the JS client's MAX_REDIRECTS.
const maxRedirects = 100

// Options configure Dial. The zero value of every field except URL means its default.
type Options struct {
	// URL is where negotiation starts: an app server's hub URL ("http://host/chat", which
	// usually redirects to the service) or a service client URL ("http://svc/client/?hub=chat").
	// http, https, ws and wss are accepted. Required.
	URL string
	// Protocol is the hub protocol: "json" (default), "messagepack" or "blazorpack".
	Protocol string
	// AccessToken, when set, is asked for a token before each negotiate request and before the
	// WebSocket connect, until a negotiate redirect supplies its own token (as the JS client does).
	AccessToken func(ctx context.Context) (string, error)
	// AccessTokenInQuery sends the WebSocket token as the access_token query parameter, as
	// browsers must, instead of an Authorization header (Node and .NET behaviour). Default false.
	AccessTokenInQuery bool
	// Headers are added to the negotiate requests and the WebSocket upgrade.
	Headers http.Header
	// HTTPClient makes the negotiate requests and the WebSocket upgrade. Default
	// http.DefaultClient.
	HTTPClient *http.Client
	// SkipNegotiation connects the WebSocket directly to URL without negotiating; ConnectionID
	// is then "".
	SkipNegotiation bool
	// Logger receives debug and warning records. Default: discard.
	Logger *slog.Logger
	// KeepAliveInterval is the send idleness after which a Ping is sent. Default 15 s; negative
	// disables pings (including the one sent right after the handshake).
	KeepAliveInterval time.Duration
	// ServerTimeout ends the connection with ErrServerTimeout after this long without any
	// message from the server. Default 30 s; negative disables the check.
	ServerTimeout time.Duration
	// HandshakeTimeout bounds the wait for the handshake response. Default 15 s.
	HandshakeTimeout time.Duration
	// MaxMessageSize limits one received WebSocket message and one hub message. Default 32 MiB;
	// negative means no limit.
	MaxMessageSize int64
}

// Validate reports every problem with o, or nil.
func (o *Options) Validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, errors.New("client: options: URL is required"))
	} else if u, err := url.Parse(o.URL); err != nil {
		errs = append(errs, fmt.Errorf("client: options: URL: %w", err))
	} else if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss" {
		errs = append(errs, fmt.Errorf("client: options: URL scheme %q is not http, https, ws or wss", u.Scheme))
	} else if u.Host == "" {
		errs = append(errs, errors.New("client: options: URL has no host"))
	}
	if o.Protocol != "" {
		if _, ok := hubproto.CodecFor(o.Protocol); !ok {
			errs = append(errs, fmt.Errorf("client: options: unknown protocol %q", o.Protocol))
		}
	}
	if o.HandshakeTimeout < 0 {
		errs = append(errs, errors.New("client: options: HandshakeTimeout is negative"))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of o with defaults filled in.
func (o Options) withDefaults() Options {
	if o.Protocol == "" {
		o.Protocol = hubproto.ProtocolJSON
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.KeepAliveInterval == 0 {
		o.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if o.ServerTimeout == 0 {
		o.ServerTimeout = DefaultServerTimeout
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	return o
}
