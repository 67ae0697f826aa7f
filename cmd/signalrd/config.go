package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/signalrd/signalrd/server"
)

// fileConfig is the YAML/env/flag shape; it is converted to server.Config and never leaves cmd.
type fileConfig struct {
	Listen          string         `mapstructure:"listen"`
	Endpoint        string         `mapstructure:"endpoint"`
	AccessKey       string         `mapstructure:"access-key"`
	AllowDevKey     bool           `mapstructure:"allow-dev-key"`
	LogLevel        string         `mapstructure:"log-level"`
	ShutdownTimeout time.Duration  `mapstructure:"shutdown-timeout"`
	DrainWindow     time.Duration  `mapstructure:"drain-window"`
	AdminListen     string         `mapstructure:"admin-listen"`
	Pprof           bool           `mapstructure:"pprof"`
	TraceToken      string         `mapstructure:"trace-token"`
	TrustedProxies  []string       `mapstructure:"trusted-proxies"`
	TLSCertFile     string         `mapstructure:"tls-cert-file"`
	TLSKeyFile      string         `mapstructure:"tls-key-file"`
	Redis           string         `mapstructure:"redis"`
	RedisPrefix     string         `mapstructure:"redis-prefix"`
	NodeID          string         `mapstructure:"node-id"`
	AdvertiseURL    string         `mapstructure:"advertise-url"`
	Heartbeat       time.Duration  `mapstructure:"heartbeat"`
	Defaults        fileSettings   `mapstructure:"defaults"`
	Instances       []fileInstance `mapstructure:"instances"`
}

type fileInstance struct {
	Name         string       `mapstructure:"name"`
	Hosts        []string     `mapstructure:"hosts"`
	Default      bool         `mapstructure:"default"`
	PrimaryKey   string       `mapstructure:"primary-key"`
	SecondaryKey string       `mapstructure:"secondary-key"`
	Settings     fileSettings `mapstructure:"settings"`
	Network      fileNetwork  `mapstructure:"network"`
}

// fileNetwork is an instance's network access control (server.NetworkACL): address ranges per
// request type, Azure's request type names in kebab case.
type fileNetwork struct {
	PublicAccess     *bool    `mapstructure:"public-access"`
	ClientConnection []string `mapstructure:"client-connection"`
	ServerConnection []string `mapstructure:"server-connection"`
	RESTAPI          []string `mapstructure:"rest-api"`
	Trace            []string `mapstructure:"trace"`
}

func (n fileNetwork) toServer() server.NetworkACL {
	return server.NetworkACL{
		PublicAccess:     n.PublicAccess,
		ClientConnection: server.NetworkRule{Allow: n.ClientConnection},
		ServerConnection: server.NetworkRule{Allow: n.ServerConnection},
		RESTAPI:          server.NetworkRule{Allow: n.RESTAPI},
		Trace:            server.NetworkRule{Allow: n.Trace},
	}
}

type fileSettings struct {
	Mode             string        `mapstructure:"mode"`
	UpstreamFile     string        `mapstructure:"upstream-file"`
	MaxMessageSize   int           `mapstructure:"max-message-size"`
	OutboxBytes      int           `mapstructure:"outbox-bytes"`
	HandshakeTimeout time.Duration `mapstructure:"handshake-timeout"`
	NegotiateTimeout time.Duration `mapstructure:"negotiate-timeout"`
	ServerKeepAlive  time.Duration `mapstructure:"server-keep-alive"`
	ServerTimeout    time.Duration `mapstructure:"server-timeout"`
	TokenSkew        time.Duration `mapstructure:"token-skew"`
	ClientTimeout    time.Duration `mapstructure:"client-timeout"`
	MaxPollInterval  time.Duration `mapstructure:"max-poll-interval"`
	PollTimeout      time.Duration `mapstructure:"poll-timeout"`
	AllowedOrigins   []string      `mapstructure:"allowed-origins"`

	StatefulReconnect            bool          `mapstructure:"stateful-reconnect"`
	StatefulReconnectWindow      time.Duration `mapstructure:"stateful-reconnect-window"`
	StatefulReconnectBufferBytes int           `mapstructure:"stateful-reconnect-buffer-bytes"`
}

func (s fileSettings) toServer() server.Settings {
	return server.Settings{
		Mode:             s.Mode,
		UpstreamFile:     s.UpstreamFile,
		MaxMessageSize:   s.MaxMessageSize,
		OutboxBytes:      s.OutboxBytes,
		HandshakeTimeout: s.HandshakeTimeout,
		NegotiateTimeout: s.NegotiateTimeout,
		ServerKeepAlive:  s.ServerKeepAlive,
		ServerTimeout:    s.ServerTimeout,
		TokenSkew:        s.TokenSkew,
		ClientTimeout:    s.ClientTimeout,
		MaxPollInterval:  s.MaxPollInterval,
		PollTimeout:      s.PollTimeout,
		AllowedOrigins:   s.AllowedOrigins,

		StatefulReconnect:            s.StatefulReconnect,
		StatefulReconnectWindow:      s.StatefulReconnectWindow,
		StatefulReconnectBufferBytes: s.StatefulReconnectBufferBytes,
	}
}

// bindCommonFlags declares the flags every command that needs the configuration shares.
func bindCommonFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML config file (see docs/config.md)")
	fs.String("listen", "localhost:8888", "address to listen on (host:port)")
	fs.String("access-key", "", "access key of the default instance (default: the built-in development key)")
	fs.String("endpoint", "", "Endpoint printed in the connection string (default http://<listen host>, https:// with TLS)")
	fs.Bool("allow-dev-key", false, "allow the built-in development key on a non-loopback address")
	fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.String("mode", "", "service mode of every instance: Default, Serverless or Auto (default Auto)")
	fs.String("upstream-file", "", "upstream webhook settings file (see: signalrd upstream init)")
	// Common, not serve-only: connstr and token print the https Endpoint serve would.
	fs.String("tls-cert-file", "", "PEM certificate (chain) file: serve HTTPS; reloaded when it changes (needs --tls-key-file)")
	fs.String("tls-key-file", "", "PEM private key file of --tls-cert-file")
}

// bindServeFlags declares the flags only a serving command needs.
func bindServeFlags(fs *pflag.FlagSet) {
	fs.String("admin-listen", "", "address of the admin listener: /metrics, /healthz, /readyz (default: none)")
	fs.Bool("pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin listener")
	fs.Duration("shutdown-timeout", 10*time.Second, "bound on the graceful part of shutdown")
	fs.Duration("drain-window", 5*time.Second, "on shutdown, spread the clients' reconnectable Close over this long (0: all at once)")
	fs.String("trace-token", "", "enable the live-trace page /trace on the admin listener, protected by this token (default: disabled)")
	fs.StringSlice("trusted-proxies", nil, "reverse proxies (CIDRs or IPs, comma-separated) whose X-Forwarded-For/-Host/-Proto are honoured (default: none)")
	// Scale-out (docs/scale-out.md): nodes sharing one Redis form a cluster.
	fs.String("redis", "", "Redis shared by the nodes of a cluster: redis://host:6379, rediss://…, redis://h1:p1,h2:p2 (Redis Cluster), redis-sentinel://s1:p1,s2:p2/master (default: none, the node runs alone)")
	fs.String("redis-prefix", "signalrd", "prefix of every Redis key and channel of this deployment (the same on every node)")
	fs.String("node-id", "", "this node's name in the cluster, unique among its peers (default: random at each start)")
	fs.String("advertise-url", "", "how the other nodes reach this node's listener, http(s)://host:port (default: the listener's address, an unspecified IP replaced by the host name)")
	fs.Duration("heartbeat", 2*time.Second, "cluster liveness interval: a stopped node is declared dead within 6 heartbeats")
}

// loadConfig merges defaults, the config file, SIGNALRD_* environment variables and flags.
func loadConfig(fs *pflag.FlagSet) (fileConfig, error) {
	v := viper.New()
	v.SetEnvPrefix("SIGNALRD")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	v.SetDefault("listen", "localhost:8888")
	v.SetDefault("log-level", "info")
	v.SetDefault("drain-window", 5*time.Second) // an explicit 0 means no spreading
	// Flags and environment variables map onto config keys; the last two set instance defaults.
	bind := map[string]string{
		"listen": "listen", "access-key": "access-key", "endpoint": "endpoint", "allow-dev-key": "allow-dev-key",
		"log-level": "log-level", "mode": "defaults.mode", "upstream-file": "defaults.upstream-file",
		"admin-listen": "admin-listen", "pprof": "pprof", "trace-token": "trace-token", "trusted-proxies": "trusted-proxies",
		"tls-cert-file": "tls-cert-file", "tls-key-file": "tls-key-file",
		"shutdown-timeout": "shutdown-timeout", "drain-window": "drain-window",
		"redis": "redis", "redis-prefix": "redis-prefix", "node-id": "node-id", "advertise-url": "advertise-url",
		"heartbeat": "heartbeat",
	}
	for flag, key := range bind {
		if f := fs.Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return fileConfig{}, fmt.Errorf("bind flag %s: %w", flag, err)
			}
		}
	}
	for _, env := range []string{"mode", "upstream-file"} {
		if err := v.BindEnv("defaults."+env, "SIGNALRD_"+strings.ToUpper(strings.ReplaceAll(env, "-", "_"))); err != nil {
			return fileConfig{}, fmt.Errorf("bind env %s: %w", env, err)
		}
	}
	path, _ := fs.GetString("config")
	if path == "" {
		path = v.GetString("config")
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return fileConfig{}, fmt.Errorf("read config %s: %w", path, err)
		}
	}
	var fc fileConfig
	if err := v.Unmarshal(&fc); err != nil {
		return fileConfig{}, fmt.Errorf("decode config: %w", err)
	}
	return fc, nil
}

// toServerConfig converts the merged configuration. --access-key keys the default instance.
func (fc fileConfig) toServerConfig(log *slog.Logger) (server.Config, error) {
	cfg := server.Config{
		Listen:                  fc.Listen,
		AllowDevKeyOnAnyAddress: fc.AllowDevKey,
		Defaults:                fc.Defaults.toServer(),
		Logger:                  log,
		ShutdownTimeout:         fc.ShutdownTimeout,
		DrainWindow:             drainWindow(fc.DrainWindow),
		AdminListen:             fc.AdminListen,
		EnablePprof:             fc.Pprof,
		TraceToken:              fc.TraceToken,
		TrustedProxies:          fc.TrustedProxies,
		TLSCertFile:             fc.TLSCertFile,
		TLSKeyFile:              fc.TLSKeyFile,
		Redis:                   fc.Redis,
		RedisPrefix:             fc.RedisPrefix,
		NodeID:                  fc.NodeID,
		AdvertiseURL:            fc.AdvertiseURL,
		Heartbeat:               fc.Heartbeat,
	}
	for _, in := range fc.Instances {
		cfg.Instances = append(cfg.Instances, server.InstanceConfig{
			Name: in.Name, Hosts: in.Hosts, Default: in.Default,
			PrimaryKey: in.PrimaryKey, SecondaryKey: in.SecondaryKey, Settings: in.Settings.toServer(),
			Network: in.Network.toServer(),
		})
	}
	if fc.AccessKey != "" {
		switch {
		case len(cfg.Instances) == 0:
			cfg.Instances = []server.InstanceConfig{{Name: "default", Default: true, PrimaryKey: fc.AccessKey}}
		case len(cfg.Instances) == 1:
			cfg.Instances[0].PrimaryKey = fc.AccessKey
		default:
			return cfg, errors.New("--access-key is ambiguous with several instances: set keys in the config file")
		}
	}
	return cfg, cfg.Validate()
}

// defaultInstance returns the instance that answers any host, and its primary key.
func defaultKey(cfg server.Config) (string, error) {
	if len(cfg.Instances) == 0 {
		return server.DevAccessKey, nil
	}
	for _, in := range cfg.Instances {
		if in.Default || len(cfg.Instances) == 1 {
			if in.PrimaryKey != "" {
				return in.PrimaryKey, nil
			}
			if in.SecondaryKey != "" {
				return in.SecondaryKey, nil
			}
			return server.DevAccessKey, nil
		}
	}
	return "", errors.New("no default instance: give --endpoint and a key from the config")
}

// publicEndpoint is the Endpoint of the printed connection string and its port.
func publicEndpoint(fc fileConfig, addr string) (string, int) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		host, portStr = addr, "80"
	}
	port := 0
	fmt.Sscanf(portStr, "%d", &port)
	if fc.Endpoint != "" {
		return strings.TrimRight(fc.Endpoint, "/"), port
	}
	ip := net.ParseIP(host)
	if host == "" || host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
		host = "localhost"
	} else if ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	scheme := "http"
	if fc.TLSCertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + host, port
}

func newLogger(level string, w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// drainWindow maps the file's drain-window (0: close all at once) onto server.Config's (0: the
// default, negative: all at once).
func drainWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
