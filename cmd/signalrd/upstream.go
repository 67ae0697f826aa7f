package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/signalrd/signalrd/server/upstream"
)

// newUpstreamCmd is `signalrd upstream`, the emulator's `asrs-emulator upstream` commands.
func newUpstreamCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upstream",
		Short: "Create or check upstream (serverless webhook) settings",
	}
	cmd.AddCommand(newUpstreamInitCmd(stdout), newUpstreamListCmd(stdout))
	return cmd
}

func newUpstreamInitCmd(stdout io.Writer) *cobra.Command {
	var (
		dir   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a starter settings.json sending every event to a local Azure Functions host",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path, err := filepath.Abs(filepath.Join(dir, upstream.SettingsFileName))
			if err != nil {
				return fmt.Errorf("upstream init: %w", err)
			}
			if err := writeSettingsFile(path, upstream.StarterSettings(), force); err != nil {
				return err
			}
			fmt.Fprintln(stdout, path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", ".", "directory to write settings.json into (created if missing)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing settings.json")
	return cmd
}

// writeSettingsFile creates path exclusively unless force, so an existing file is never
// clobbered by a race between a check and the write.
func writeSettingsFile(path string, data []byte, force bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("upstream init: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("upstream init: %s already exists (use --force to overwrite it)", path)
	}
	if err != nil {
		return fmt.Errorf("upstream init: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("upstream init: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("upstream init: write %s: %w", path, err)
	}
	return nil
}

func newUpstreamListCmd(stdout io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Validate an upstream settings file and print its templates in match order",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := upstream.LoadSettings(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Loaded upstream settings from '%s'\n", path)
			if len(s.Templates) == 0 {
				fmt.Fprintln(stdout, "No upstream is set: events are not sent anywhere. Use 'signalrd upstream init' to create one.")
				return nil
			}
			for i, t := range s.Templates {
				fmt.Fprintf(stdout, "  [%d] %s (hub: '%s', category: '%s', event: '%s')", i, t.URLTemplate, t.HubPattern, t.CategoryPattern, t.EventPattern)
				if t.Auth != nil && t.Auth.Type != upstream.AuthNone {
					fmt.Fprintf(stdout, " auth: %s (not supported: sent without Authorization)", t.Auth.Type)
				}
				fmt.Fprintln(stdout)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", upstream.SettingsFileName, "settings file, or a directory holding settings.json")
	return cmd
}
