package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/signalrd/signalrd/e2e/chatapp"
)

// devConnectionString is what `signalrd connstr` prints for the default development instance.
const devConnectionString = "Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "signalrd-chat:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signalrd-chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	connDefault := devConnectionString
	if v := getenv("SIGNALRD_CONNECTION_STRING"); v != "" {
		connDefault = v
	}
	listen := fs.String("listen", "localhost:5000", "address to serve the chat page on (host:port)")
	connStr := fs.String("connection-string", connDefault, "connection string of the signalrd instance (env SIGNALRD_CONNECTION_STRING)")
	bundles := fs.String("bundles", "", "node_modules dir holding the @microsoft/signalr browser bundles (default: e2e/js/node_modules)")
	wait := fs.Duration("connect-timeout", 30*time.Second, "how long to wait for the service connection at start")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var opts []chatapp.Option
	if *bundles != "" {
		opts = append(opts, chatapp.WithBundleDir(*bundles))
	}
	// Listen first so a busy port fails before we wait for the service.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	startCtx, cancel := context.WithTimeout(ctx, *wait)
	app, err := chatapp.New(startCtx, *connStr, log, opts...)
	cancel()
	if err != nil {
		return fmt.Errorf("%w (is signalrd running? `make run` starts it)", err)
	}
	defer app.Close()

	hs := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	url := "http://" + displayAddr(ln.Addr(), *listen)
	fmt.Fprintf(stdout, "signalrd-chat listening on %s\nOpen %s/?user=alice and %s/?user=bob in two browser windows\n"+
		"(add &transport=WebSockets|ServerSentEvents|LongPolling&protocol=json|messagepack to choose)\n", ln.Addr(), url, url)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// displayAddr keeps the host name the user asked for ("localhost") with the bound port, so the
// printed URL is the one to open (an unspecified host becomes localhost).
func displayAddr(bound net.Addr, requested string) string {
	host, _, err := net.SplitHostPort(requested)
	_, port, err2 := net.SplitHostPort(bound.String())
	if err != nil || err2 != nil {
		return bound.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
