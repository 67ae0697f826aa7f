package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "signalrd-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.ServeBaseline != "" {
		return serveBaseline(ctx, cfg.ServeBaseline, stdout)
	}
	if (cfg.ServiceBin != "" || cfg.ServiceURL != "") && os.Getenv("GOGC") == "" {
		// The load generator shares the cores with what it measures, and its clients allocate for
		// every message they decode: collecting less often leaves more CPU to the targets. Its
		// own memory is not measured here (the targets run in other processes).
		debug.SetGCPercent(400)
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.Trace != "" {
		f, err := os.Create(cfg.Trace)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer trace.Stop()
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if cfg.Suite {
		return runSuite(ctx, cfg, logger, stdout, stderr)
	}
	if cfg.Units {
		return runUnits(ctx, cfg, logger, stdout, stderr)
	}
	var progress io.Writer
	if cfg.Progress {
		progress = stderr
	}
	c, err := runComparison(ctx, cfg, logger, progress)
	if err != nil {
		return err
	}
	if cfg.JSON {
		return writeJSON(stdout, struct {
			Machine machineInfo `json:"machine"`
			comparison
		}{readMachine(), c})
	}
	return writeTable(stdout, []comparison{c})
}

// runComparison runs cfg against signalrd and, with --baseline, against the raw server.
func runComparison(ctx context.Context, cfg config, logger *slog.Logger, progress io.Writer) (comparison, error) {
	s, err := runSignalr(ctx, cfg, logger, progress)
	if err != nil {
		return comparison{}, err
	}
	if !cfg.Baseline {
		return compare(&s, nil), nil
	}
	b, err := runBaseline(ctx, cfg, progress)
	if err != nil {
		return comparison{}, err
	}
	return compare(&s, &b), nil
}

func runSignalr(ctx context.Context, cfg config, logger *slog.Logger, progress io.Writer) (result, error) {
	t, err := startSignalr(ctx, cfg, logger)
	if err != nil {
		return result{}, err
	}
	r, err := runScenario(ctx, cfg, t, progress)
	return r, errors.Join(err, t.close())
}

func runBaseline(ctx context.Context, cfg config, progress io.Writer) (result, error) {
	t, err := startBaseline(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	r, err := runScenario(ctx, cfg, t, progress)
	return r, errors.Join(err, t.close())
}
