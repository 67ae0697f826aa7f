package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/signalrd/signalrd/server"
)

// configReloader re-reads the merged configuration (file, environment, flags) when the config
// file changes (polled once a second: modification time and size, read once they held still for a
// poll period) or on SIGHUP, and applies it
// with server.Reload. A file that does not load or validate is logged, problem by problem, and the
// running configuration stays.
type configReloader struct {
	fs       *pflag.FlagSet
	srv      *server.Server
	log      *slog.Logger
	path     string        // "" without a config file: nothing to watch, SIGHUP is only logged
	interval time.Duration // poll period
	// onReload, when set (tests), sees every attempt's outcome.
	onReload func(server.ReloadResult, error)
	last     fileStamp  // the file as last read
	running  fileConfig // the configuration as loaded at start, for the keys server.Reload does not compare
}

// newConfigReloader notes the config file's current state: changes are counted from here.
func newConfigReloader(fs *pflag.FlagSet, srv *server.Server, log *slog.Logger) *configReloader {
	r := &configReloader{fs: fs, srv: srv, log: log, path: configPath(fs), interval: time.Second}
	r.last, _ = stampOf(r.path)
	r.running, _ = loadConfig(fs)
	return r
}

// startReloader watches the config file and SIGHUP until the returned stop is called.
func startReloader(ctx context.Context, fs *pflag.FlagSet, srv *server.Server, log *slog.Logger) (stop func()) {
	r := newConfigReloader(fs, srv, log)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.run(ctx, hup) })
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// configPath is the file loadConfig reads: --config, else SIGNALRD_CONFIG.
func configPath(fs *pflag.FlagSet) string {
	if p, _ := fs.GetString("config"); p != "" {
		return p
	}
	return os.Getenv("SIGNALRD_CONFIG")
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{fi.ModTime(), fi.Size()}, true
}

// run polls the file and listens for SIGHUP until ctx ends.
func (r *configReloader) run(ctx context.Context, hup <-chan os.Signal) {
	var tick <-chan time.Time
	last := r.last
	var pending *fileStamp // a change seen on the previous tick
	if r.path != "" {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if r.path == "" {
				r.log.Info("SIGHUP: no config file to reload")
				continue
			}
			last, _ = stampOf(r.path)
			pending = nil
			r.reload("SIGHUP")
		case <-tick:
			// A missing file (mid-replacement) is no change. A changed file is read once it
			// stayed the same for a whole poll period, not while it is being written.
			st, ok := stampOf(r.path)
			switch {
			case !ok || st == last:
				pending = nil
			case pending == nil || *pending != st:
				pending = &st
			default:
				last, pending = st, nil
				r.reload("config file changed")
			}
		}
	}
}

// reload re-reads and applies the configuration once.
func (r *configReloader) reload(why string) {
	log := r.log.With("trigger", why, "file", r.path)
	res, err := r.apply()
	if err != nil {
		problems := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			problems = j.Unwrap()
		}
		for _, p := range problems {
			log.Error("config reload: problem", "err", p)
		}
		log.Error("config reload failed; keeping the running configuration", "problems", len(problems))
	} else {
		log.Info("config reload applied", "changed", res.Changed, "restart_required", res.RestartRequired)
	}
	if r.onReload != nil {
		r.onReload(res, err)
	}
}

func (r *configReloader) apply() (server.ReloadResult, error) {
	fc, err := loadConfig(r.fs)
	if err != nil {
		return server.ReloadResult{}, err
	}
	cfg, err := fc.toServerConfig(r.log)
	if err != nil {
		return server.ReloadResult{}, err
	}
	res, err := r.srv.Reload(cfg)
	if err != nil {
		// Validate already passed above; unwrap Reload's prefix so problems are listed one by one.
		if inner := errors.Unwrap(err); inner != nil {
			return res, inner
		}
		return res, err
	}
	for _, change := range startOnlyChanges(r.running, fc) {
		res.RestartRequired = append(res.RestartRequired, change)
		r.log.Warn("config change needs a restart; keeping the running value", "change", change)
	}
	return res, nil
}

// startOnlyChanges describes the changes, from was to now, of the keys read once at start that
// server.Reload does not compare: the logger's level and the cluster settings.
func startOnlyChanges(was, now fileConfig) []string {
	var out []string
	for _, f := range []struct {
		key      string
		was, now any
	}{
		{"log-level", was.LogLevel, now.LogLevel},
		{"node-id", was.NodeID, now.NodeID},
		{"advertise-url", was.AdvertiseURL, now.AdvertiseURL},
		{"heartbeat", was.Heartbeat, now.Heartbeat},
		{"redis-prefix", was.RedisPrefix, now.RedisPrefix},
	} {
		if f.was != f.now {
			out = append(out, fmt.Sprintf("%s changed from %v to %v", f.key, f.was, f.now))
		}
	}
	if was.Redis != now.Redis {
		out = append(out, "redis changed") // the URL may carry a password: not logged
	}
	return out
}
