package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// comparison is a scenario's signalrd result with its baseline, if run.
type comparison struct {
	SignalRD *result `json:"signalrd,omitempty"`
	Baseline *result `json:"baseline,omitempty"`
	// OutRatio is signalrd's delivered messages/s over the baseline's (1 = the machine's limit).
	OutRatio float64 `json:"out_ratio,omitempty"`
}

func compare(s, b *result) comparison {
	c := comparison{SignalRD: s, Baseline: b}
	if s != nil && b != nil && b.OutPerSec > 0 {
		c.OutRatio = s.OutPerSec / b.OutPerSec
	}
	return c
}

// writeTable prints the comparisons as an aligned text table.
func writeTable(w io.Writer, cs []comparison) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tscenario\tproto\tconns\tsize\trate\tconn/s\tin msg/s\tout msg/s\tdelivered\tp50 ms\tp90 ms\tp99 ms\tmax ms\terrors\tcpu %\trss MB\tKB/client\tvs baseline\t")
	for _, c := range cs {
		for _, r := range []*result{c.SignalRD, c.Baseline} {
			if r == nil {
				continue
			}
			ratio := ""
			if r == c.SignalRD && c.OutRatio > 0 {
				ratio = fmt.Sprintf("%.0f%%", c.OutRatio*100)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%.0f\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%.0f\t%.1f\t%.1f\t%s\t\n",
				r.Target, r.Scenario, r.Protocol, r.Connected, r.Size, rateText(r), r.ConnectRate, r.InPerSec, r.OutPerSec,
				delivered(r), r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Errors, r.CPUPercent,
				float64(r.RSSBytes)/(1<<20), r.RSSPerClient/1024, ratio)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	for _, c := range cs {
		for _, r := range []*result{c.SignalRD, c.Baseline} {
			if r != nil && len(r.ErrorText) > 0 {
				fmt.Fprintf(w, "%s %s errors: %s\n", r.Target, r.Scenario, strings.Join(r.ErrorText, "; "))
			}
		}
	}
	return nil
}

func rateText(r *result) string {
	if r.Scenario == scIdle {
		return "-"
	}
	if r.RateUnit == "req/s total" {
		return fmt.Sprintf("%g/s", r.Rate)
	}
	if r.Senders > 0 {
		return fmt.Sprintf("%d×%g/s", r.Senders, r.Rate)
	}
	return fmt.Sprintf("%g/s/cl", r.Rate)
}

// delivered is the share of expected deliveries that arrived within the measured window.
func delivered(r *result) string {
	if r.Expected == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", float64(r.Received)/float64(r.Expected)*100)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
