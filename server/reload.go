package server

import (
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/signalrd/signalrd/auth"
)

// Hot reload (Server.Reload). What changes live and what needs a restart:
//
//   - Live, per instance: the access keys (key rotation: the Verifier is rebuilt and swapped
//     atomically, so tokens signed with a removed key are refused from the next request on while
//     established connections stay up, as they are never re-authenticated) and every Setting
//     except Mode and UpstreamFile. Values read per event apply at once to existing connections
//     (client-timeout, max-poll-interval, stateful-reconnect-window and -buffer-bytes,
//     allowed-origins, token-skew, max-message-size of HTTP POSTs); values fixed when a connection
//     starts (outbox-bytes, max-message-size of a WebSocket, handshake-/negotiate-timeout,
//     server-keep-alive, server-timeout) apply to new connections.
//   - Restart required (logged, the running value is kept): the instance set and each instance's
//     hosts, default flag and network ACL; Mode and UpstreamFile (the upstream file's content is
//     hot-reloaded on its own); listen, admin-listen, pprof, trusted-proxies, the TLS file paths
//     (their content is hot-reloaded, tls.go), shutdown-timeout and drain-window.

// liveConfig is what an instance reads on every use and Reload replaces as a whole.
type liveConfig struct {
	settings Settings
	verifier *auth.Verifier // immutable once stored
}

// reloadState serializes Reload calls.
type reloadState struct {
	mu sync.Mutex
}

// ReloadResult says what Reload did.
type ReloadResult struct {
	// Changed names the instances whose keys or settings were replaced.
	Changed []string
	// RestartRequired describes each change that was ignored because it needs a restart.
	RestartRequired []string
}

func (in *instance) settings() *Settings      { return &in.cur.Load().settings }
func (in *instance) verifier() *auth.Verifier { return in.cur.Load().verifier }

// signingKey is the current key at the index that verified tok. After a rotation between the
// verification and this call the index may name another current key, or none: then the primary.
func (in *instance) signingKey(tok *auth.Token) string {
	keys := in.verifier().Keys
	if tok.KeyIndex >= 0 && tok.KeyIndex < len(keys) {
		return keys[tok.KeyIndex]
	}
	return keys[0] // Validate requires a key per instance
}

// Reload applies cfg to the running server without dropping connections: an invalid cfg is
// refused as a whole (the error lists every problem) and nothing changes. Otherwise the live
// parts (see above) of every instance that still exists by name are applied, and each change
// that needs a restart is logged and reported. Logger in cfg is ignored. Safe for concurrent use.
func (s *Server) Reload(cfg Config) (ReloadResult, error) {
	if err := cfg.Validate(); err != nil {
		s.log.Error("config reload refused; keeping the running configuration", "err", err)
		return ReloadResult{}, fmt.Errorf("server: reload: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	var res ReloadResult
	restart := func(format string, args ...any) {
		res.RestartRequired = append(res.RestartRequired, fmt.Sprintf(format, args...))
	}
	old := s.cfg
	for _, f := range []struct {
		name     string
		was, now any
	}{
		{"listen", old.Listen, cfg.Listen},
		{"admin-listen", old.AdminListen, cfg.AdminListen},
		{"pprof", old.EnablePprof, cfg.EnablePprof},
		{"trusted-proxies", old.TrustedProxies, cfg.TrustedProxies},
		{"tls-cert-file", old.TLSCertFile, cfg.TLSCertFile},
		{"tls-key-file", old.TLSKeyFile, cfg.TLSKeyFile},
		{"shutdown-timeout", old.ShutdownTimeout, cfg.ShutdownTimeout},
		{"drain-window", old.DrainWindow, cfg.DrainWindow},
	} {
		if !equalish(f.was, f.now) {
			restart("%s changed from %v to %v", f.name, f.was, f.now)
		}
	}
	byName := map[string]InstanceConfig{}
	for _, ic := range cfg.Instances {
		byName[ic.Name] = ic
	}
	running := map[string]bool{}
	for i, in := range s.instances {
		running[in.name] = true
		ic, ok := byName[in.name]
		if !ok {
			restart("instance %s removed", in.name)
			continue
		}
		was := old.Instances[i]
		if !slices.Equal(normalizedHosts(was.Hosts), normalizedHosts(ic.Hosts)) {
			restart("instance %s: hosts changed", in.name)
		}
		if was.Default != ic.Default {
			restart("instance %s: default changed", in.name)
		}
		if !reflect.DeepEqual(was.Network, ic.Network) {
			restart("instance %s: network changed", in.name)
		}
		if in.reloadInstance(cfg.Defaults.merged(ic.Settings), ic, restart) {
			res.Changed = append(res.Changed, in.name)
		}
	}
	for _, ic := range cfg.Instances {
		if !running[ic.Name] {
			restart("instance %s added", ic.Name)
		}
	}
	for _, r := range res.RestartRequired {
		s.log.Warn("config change needs a restart; keeping the running value", "change", r)
	}
	s.log.Info("config reloaded", "changed", res.Changed, "restart_required", len(res.RestartRequired))
	return res, nil
}

// reloadInstance swaps in the live settings and keys; it reports whether anything changed.
func (in *instance) reloadInstance(st Settings, ic InstanceConfig, restart func(string, ...any)) bool {
	cur := in.cur.Load()
	st.Mode, _ = canonicalMode(st.Mode)
	if st.Mode != cur.settings.Mode {
		restart("instance %s: mode changed from %s to %s", in.name, cur.settings.Mode, st.Mode)
		st.Mode = cur.settings.Mode
	}
	if st.UpstreamFile != cur.settings.UpstreamFile {
		restart("instance %s: upstream-file changed", in.name)
		st.UpstreamFile = cur.settings.UpstreamFile
	}
	var keys []string
	for _, k := range []string{ic.PrimaryKey, ic.SecondaryKey} {
		if k != "" {
			keys = append(keys, k)
		}
	}
	keysChanged := !slices.Equal(keys, cur.verifier.Keys)
	settingsChanged := !reflect.DeepEqual(st, cur.settings)
	if !keysChanged && !settingsChanged {
		return false
	}
	v := cur.verifier
	if keysChanged || st.TokenSkew != cur.settings.TokenSkew {
		v = &auth.Verifier{Keys: keys, Skew: st.TokenSkew}
	}
	in.cur.Store(&liveConfig{settings: st, verifier: v})
	in.log.Info("instance reconfigured", "keys_changed", keysChanged, "settings_changed", settingsChanged)
	return true
}

func normalizedHosts(hs []string) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, normalizeHost(h))
	}
	slices.Sort(out)
	return out
}

// equalish compares config values, treating nil and empty slices alike.
func equalish(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return reflect.DeepEqual(a, b)
}
