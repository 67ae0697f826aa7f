package main

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "signalrd",
		Short:         "Self-hosted Azure SignalR Service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	serve := newServeCmd(stdout, stderr)
	root.AddCommand(serve, newConnStrCmd(stdout), newTokenCmd(stdout), newUpstreamCmd(stdout), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, "signalrd", version) },
	})
	// Plain `signalrd` serves, like `signalrd serve`.
	bindCommonFlags(root.Flags())
	bindServeFlags(root.Flags())
	root.RunE = serve.RunE
	return root
}

func newServeCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the service (the default command)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := newLogger(fc.LogLevel, stderr)
			if err != nil {
				return err
			}
			cfg, err := fc.toServerConfig(log)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			// Key rotation and live settings: on config file changes and SIGHUP (reload.go).
			defer startReloader(cmd.Context(), cmd.Flags(), srv, log)()
			key, err := defaultKey(cfg)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context(), func(addr net.Addr) {
				ep, port := publicEndpoint(fc, addr.String())
				fmt.Fprintf(stdout, "signalrd %s listening on %s\n", version, addr)
				fmt.Fprintf(stdout, "Connection string:\n  %s\n", auth.FormatConnectionString(ep, port, key))
				if key == server.DevAccessKey {
					fmt.Fprintln(stdout, "(built-in development key: for local use only)")
				}
				if a := srv.AdminAddr(); a != nil {
					fmt.Fprintf(stdout, "Admin endpoints (/metrics, /healthz, /readyz) on http://%s\n", a)
				}
			})
		},
	}
	bindCommonFlags(cmd.Flags())
	bindServeFlags(cmd.Flags())
	return cmd
}

func newConnStrCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connstr",
		Short: "Print the connection string of the default instance",
		RunE: func(cmd *cobra.Command, _ []string) error {
			connStr, _, err := defaultConnectionString(cmd)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, connStr)
			return nil
		},
	}
	bindCommonFlags(cmd.Flags())
	return cmd
}

func newTokenCmd(stdout io.Writer) *cobra.Command {
	var (
		hub, kind, user, app, alg string
		lifetime                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue a client or server access token for testing",
		RunE: func(cmd *cobra.Command, _ []string) error {
			connStr, key, err := defaultConnectionString(cmd)
			if err != nil {
				return err
			}
			cs, err := auth.ParseConnectionString(connStr)
			if err != nil {
				return err
			}
			hubID := auth.HubID(app, hub)
			opts := auth.IssueOptions{Lifetime: lifetime, Algorithm: alg}
			switch kind {
			case "client":
				opts.Audience = cs.ClientAudience(hubID)
				if user != "" {
					opts.Claims = []auth.Claim{{Type: auth.ClaimUserID, Value: user}}
				}
			case "server":
				opts.Audience = cs.ServerAudience(hubID)
				opts.Claims = auth.ServerClaims(user)
			default:
				return fmt.Errorf("--kind must be client or server, not %q", kind)
			}
			tok, err := auth.IssueToken(key, opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, tok)
			return nil
		},
	}
	bindCommonFlags(cmd.Flags())
	cmd.Flags().StringVar(&hub, "hub", "", "hub name (required)")
	cmd.Flags().StringVar(&kind, "kind", "client", "token kind: client or server")
	cmd.Flags().StringVar(&user, "user", "", "user id (client) or server id (server)")
	cmd.Flags().StringVar(&app, "application", "", "application name prefix")
	cmd.Flags().StringVar(&alg, "alg", "HS256", "HS256 or HS512")
	cmd.Flags().DurationVar(&lifetime, "lifetime", time.Hour, "token lifetime")
	_ = cmd.MarkFlagRequired("hub")
	return cmd
}

// defaultConnectionString is the connection string of the default instance, and its key, from
// the merged configuration.
func defaultConnectionString(cmd *cobra.Command) (string, string, error) {
	fc, err := loadConfig(cmd.Flags())
	if err != nil {
		return "", "", err
	}
	cfg, err := fc.toServerConfig(nil)
	if err != nil {
		return "", "", err
	}
	key, err := defaultKey(cfg)
	if err != nil {
		return "", "", err
	}
	ep, port := publicEndpoint(fc, fc.Listen)
	return auth.FormatConnectionString(ep, port, key), key, nil
}
