package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/signalrd/signalrd/storage"
)

// DevAccessKey is the built-in development key (the same fixed key the official emulator uses).
// It is refused on non-loopback addresses unless Config.AllowDevKeyOnAnyAddress is set.
const DevAccessKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

// Config configures a Server. The zero value is usable: it listens on localhost:8888 with one
// default instance keyed by DevAccessKey.
type Config struct {
	// Listen is the client and server endpoint address. Default "localhost:8888".
	Listen string
	// AllowDevKeyOnAnyAddress permits DevAccessKey on a non-loopback Listen address.
	AllowDevKeyOnAnyAddress bool
	// Instances are the tenants. Empty: one default instance with DevAccessKey.
	Instances []InstanceConfig
	// Defaults apply to every instance; an instance's own non-zero Settings override them.
	Defaults Settings
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// ShutdownTimeout bounds the graceful part of shutdown. Default 10 s.
	ShutdownTimeout time.Duration
	// DrainWindow spreads the reconnectable Close of every client over this long on shutdown, so
	// they do not all reconnect to the remaining nodes at once (drain.go). It is capped at half of
	// ShutdownTimeout. Default 5 s; negative closes every client at once.
	DrainWindow time.Duration
	// AdminListen is the address of the admin listener (/metrics, /healthz, /readyz, and
	// /debug/pprof/ with EnablePprof). Empty: no admin listener.
	AdminListen string
	// EnablePprof serves net/http/pprof under /debug/pprof/ on the admin listener.
	EnablePprof bool
	// TraceToken enables the live-trace page and APIs (/trace…) on the admin listener and is
	// the secret they require. Empty: live trace disabled (404).
	TraceToken string
	// TrustedProxies are the reverse proxies (CIDRs or IPs) whose X-Forwarded-For, -Host and
	// -Proto headers are honoured (proxy.go). Empty: trust none, the instance is chosen by Host.
	TrustedProxies []string
	// TLSCertFile and TLSKeyFile (PEM; both or neither) make the service listener serve HTTPS.
	// The files are re-read when they change (see tls.go). The admin listener stays plain HTTP.
	TLSCertFile string
	TLSKeyFile  string

	// Redis makes this node one of a cluster sharing that Redis (standalone, Sentinel or
	// Cluster: see storage.RedisOptions.URL for the forms). Empty: the node runs alone and keeps
	// everything in memory.
	Redis string
	// RedisPrefix starts every Redis key and channel of this deployment. Default "signalrd".
	RedisPrefix string
	// Storage, when set, is the shared storage itself and overrides Redis (several in-process
	// nodes sharing one storage.Memory, as tests run a cluster). The caller closes it.
	Storage storage.Storage
	// NodeID names this node among its peers; it must be unique in the cluster. Default: random.
	NodeID string
	// AdvertiseURL is how peer nodes reach this node's listener (scheme://host:port), for
	// requests that reach a node not holding their connection. Default: the listener's address.
	AdvertiseURL string
	// Heartbeat is the cluster liveness interval; a node silent for 4 heartbeats is dead.
	// Default 2 s.
	Heartbeat time.Duration
}

// InstanceConfig is one tenant: an Azure SignalR resource.
type InstanceConfig struct {
	// Name identifies the instance in logs and metrics. Required when several instances exist.
	Name string
	// Hosts are matched case-insensitively against the request Host (port ignored).
	Hosts []string
	// Default makes this instance answer any host no other instance claims. With one instance it
	// is implied.
	Default bool
	// PrimaryKey and SecondaryKey are the access keys; tokens signed with either are accepted.
	// Default for a sole instance without keys: DevAccessKey.
	PrimaryKey   string
	SecondaryKey string
	// Settings override Config.Defaults for this instance.
	Settings Settings
	// Network is the instance's network access control (acl.go). It is per instance, not a
	// Setting, because like Azure's networkACLs it belongs to the resource: merging allow lists
	// field by field with defaults could silently widen or narrow a tenant's access.
	Network NetworkACL
}

// Service modes, as Azure names them.
const (
	// ModeDefault: clients need a connected app server.
	ModeDefault = "Default"
	// ModeServerless: the service answers clients itself; backends use REST and upstream webhooks.
	ModeServerless = "Serverless"
	// ModeAuto, for local development: a hub is in Default mode while an app server is connected
	// to it and Serverless otherwise.
	ModeAuto = "Auto"
)

// Settings are per-instance tunables; zero means the documented default.
type Settings struct {
	// Mode is Default, Serverless or Auto. Default: Auto.
	Mode string
	// UpstreamFile is an upstream settings file (the emulator's settings.json shape), hot-reloaded.
	// Empty: no upstream; serverless client invocations then get an error completion.
	UpstreamFile string
	// MaxMessageSize bounds one hub message from a client and one service message from an app
	// server. Default 2 MiB (clients), the app-server bound is 16 times that.
	MaxMessageSize int
	// OutboxBytes bounds what may be queued for one client before it is closed as a slow
	// consumer. Default 8 MiB.
	OutboxBytes int
	// HandshakeTimeout bounds the client's hub handshake; a token's asrs.s.cht overrides it.
	// Default 15 s.
	HandshakeTimeout time.Duration
	// NegotiateTimeout is how long a negotiated connection id stays valid unused. Default 15 s.
	NegotiateTimeout time.Duration
	// ServerKeepAlive is the ping interval on app-server links. Default 5 s.
	ServerKeepAlive time.Duration
	// ServerTimeout closes an app-server link that sent nothing for that long. Default 30 s.
	ServerTimeout time.Duration
	// TokenSkew is the clock skew allowed on token exp/nbf. Default 5 min.
	TokenSkew time.Duration
	// ClientTimeout closes a WebSocket or SSE client that sent nothing (not even a ping) for that
	// long. Default 30 s (the official clients ping every 15 s).
	ClientTimeout time.Duration
	// MaxPollInterval ends a long-polling client that has not polled for that long; a token's
	// asrs.s.ttl overrides it. Default 5 s.
	MaxPollInterval time.Duration
	// PollTimeout is how long a poll waits for data before answering empty. Default 90 s.
	PollTimeout time.Duration
	// AllowedOrigins lists the browser origins allowed by CORS; empty or "*" allows any origin.
	AllowedOrigins []string
	// StatefulReconnect offers stateful reconnect to clients that ask for it even when no app
	// server of the hub announced AllowStatefulReconnects in its handshake. Default false.
	StatefulReconnect bool
	// StatefulReconnectWindow is how long a stateful connection whose WebSocket broke waits for
	// the client to come back. Default 30 s (Azure's figure).
	StatefulReconnectWindow time.Duration
	// StatefulReconnectBufferBytes bounds the messages kept for replay until the client acks
	// them; over it the client is closed as a slow consumer. Default 8 MiB.
	StatefulReconnectBufferBytes int
}

func (s Settings) merged(over Settings) Settings {
	if over.Mode != "" {
		s.Mode = over.Mode
	}
	if over.UpstreamFile != "" {
		s.UpstreamFile = over.UpstreamFile
	}
	if over.MaxMessageSize != 0 {
		s.MaxMessageSize = over.MaxMessageSize
	}
	if over.OutboxBytes != 0 {
		s.OutboxBytes = over.OutboxBytes
	}
	if over.HandshakeTimeout != 0 {
		s.HandshakeTimeout = over.HandshakeTimeout
	}
	if over.NegotiateTimeout != 0 {
		s.NegotiateTimeout = over.NegotiateTimeout
	}
	if over.ServerKeepAlive != 0 {
		s.ServerKeepAlive = over.ServerKeepAlive
	}
	if over.ServerTimeout != 0 {
		s.ServerTimeout = over.ServerTimeout
	}
	if over.TokenSkew != 0 {
		s.TokenSkew = over.TokenSkew
	}
	if over.ClientTimeout != 0 {
		s.ClientTimeout = over.ClientTimeout
	}
	if over.MaxPollInterval != 0 {
		s.MaxPollInterval = over.MaxPollInterval
	}
	if over.PollTimeout != 0 {
		s.PollTimeout = over.PollTimeout
	}
	if over.AllowedOrigins != nil {
		s.AllowedOrigins = over.AllowedOrigins
	}
	if over.StatefulReconnect {
		s.StatefulReconnect = true
	}
	if over.StatefulReconnectWindow != 0 {
		s.StatefulReconnectWindow = over.StatefulReconnectWindow
	}
	if over.StatefulReconnectBufferBytes != 0 {
		s.StatefulReconnectBufferBytes = over.StatefulReconnectBufferBytes
	}
	return s
}

func defaultSettings() Settings {
	return Settings{
		Mode:             ModeAuto,
		MaxMessageSize:   2 << 20,
		OutboxBytes:      8 << 20,
		HandshakeTimeout: 15 * time.Second,
		NegotiateTimeout: 15 * time.Second,
		ServerKeepAlive:  5 * time.Second,
		ServerTimeout:    30 * time.Second,
		TokenSkew:        5 * time.Minute,
		ClientTimeout:    30 * time.Second,
		MaxPollInterval:  5 * time.Second,
		PollTimeout:      90 * time.Second,

		StatefulReconnectWindow:      30 * time.Second,
		StatefulReconnectBufferBytes: 8 << 20,
	}
}

// withDefaults returns a copy with every default filled in.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "localhost:8888"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.DrainWindow == 0 {
		c.DrainWindow = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 2 * time.Second
	}
	c.Defaults = defaultSettings().merged(c.Defaults)
	if len(c.Instances) == 0 {
		c.Instances = []InstanceConfig{{Name: "default", Default: true}}
	} else {
		c.Instances = append([]InstanceConfig(nil), c.Instances...)
	}
	if len(c.Instances) == 1 {
		c.Instances[0].Default = true
		if c.Instances[0].Name == "" {
			c.Instances[0].Name = "default"
		}
		if c.Instances[0].PrimaryKey == "" && c.Instances[0].SecondaryKey == "" {
			c.Instances[0].PrimaryKey = DevAccessKey
		}
	}
	return c
}

// UsesDevKey reports whether any instance is keyed by DevAccessKey.
func (c Config) UsesDevKey() bool {
	for _, in := range c.withDefaults().Instances {
		if in.PrimaryKey == DevAccessKey || in.SecondaryKey == DevAccessKey {
			return true
		}
	}
	return false
}

// Validate lists every problem in the configuration.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	names := map[string]bool{}
	hosts := map[string]string{}
	defaults := 0
	for i, in := range c.Instances {
		label := fmt.Sprintf("instances[%d]", i)
		if in.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is required when several instances are configured", label))
		} else if names[in.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate instance name %q", label, in.Name))
		}
		names[in.Name] = true
		if in.PrimaryKey == "" && in.SecondaryKey == "" {
			errs = append(errs, fmt.Errorf("%s (%s): at least one access key is required", label, in.Name))
		}
		if in.Default {
			defaults++
		}
		for _, h := range in.Hosts {
			h = normalizeHost(h)
			if h == "" {
				errs = append(errs, fmt.Errorf("%s (%s): empty host name", label, in.Name))
				continue
			}
			if other, ok := hosts[h]; ok {
				errs = append(errs, fmt.Errorf("%s (%s): host %q already belongs to instance %q", label, in.Name, h, other))
			}
			hosts[h] = in.Name
		}
		if len(in.Hosts) == 0 && !in.Default {
			errs = append(errs, fmt.Errorf("%s (%s): an instance needs hosts or default: true", label, in.Name))
		}
		s := c.Defaults.merged(in.Settings)
		if _, ok := canonicalMode(s.Mode); !ok {
			errs = append(errs, fmt.Errorf("%s (%s): mode %q must be Default, Serverless or Auto", label, in.Name, s.Mode))
		}
		if s.MaxMessageSize < 0 || s.OutboxBytes < 0 {
			errs = append(errs, fmt.Errorf("%s (%s): sizes must not be negative", label, in.Name))
		}
		if s.HandshakeTimeout < 0 || s.NegotiateTimeout < 0 || s.ServerKeepAlive < 0 || s.ServerTimeout < 0 ||
			s.ClientTimeout < 0 || s.MaxPollInterval < 0 || s.PollTimeout < 0 {
			errs = append(errs, fmt.Errorf("%s (%s): durations must not be negative", label, in.Name))
		}
		errs = append(errs, validateACL(fmt.Sprintf("%s (%s)", label, in.Name), in.Network)...)
	}
	errs = append(errs, validateTLS(c.TLSCertFile, c.TLSKeyFile)...)
	_, proxyErrs := parseTrustedProxies(c.TrustedProxies)
	errs = append(errs, proxyErrs...)
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown timeout must not be negative"))
	}
	if c.TraceToken != "" && c.AdminListen == "" {
		errs = append(errs, errors.New("live trace is served on the admin listener: set an admin listen address"))
	}
	if c.EnablePprof && c.AdminListen == "" {
		errs = append(errs, errors.New("pprof is served on the admin listener: set an admin listen address"))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, errors.New("heartbeat must not be negative"))
	}
	if strings.ContainsAny(c.NodeID, "| \t\r\n") {
		errs = append(errs, fmt.Errorf("node id %q may not contain '|' or whitespace", c.NodeID))
	}
	if c.AdvertiseURL != "" {
		if u, err := url.Parse(c.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("advertise URL %q must be http(s)://host:port", c.AdvertiseURL))
		}
	}
	if c.Redis != "" && c.Storage == nil {
		if err := (storage.RedisOptions{URL: c.Redis, Options: storage.Options{Prefix: c.RedisPrefix}}).Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if defaults > 1 {
		errs = append(errs, errors.New("instances: at most one instance may be the default"))
	}
	if !c.AllowDevKeyOnAnyAddress && c.UsesDevKey() && !isLoopbackListen(c.Listen) {
		errs = append(errs, fmt.Errorf("listen %q is not a loopback address and the built-in development key is in use: set an access key, or allow the dev key explicitly", c.Listen))
	}
	return errors.Join(errs...)
}

// canonicalMode accepts mode names case-insensitively.
func canonicalMode(m string) (string, bool) {
	for _, known := range []string{ModeDefault, ModeServerless, ModeAuto} {
		if strings.EqualFold(m, known) {
			return known, true
		}
	}
	return "", false
}

func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.Trim(h, "[]")
}
