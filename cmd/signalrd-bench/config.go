package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/signalrd/signalrd/server"
)

// Scenarios, after the Azure SignalR performance guide.
const (
	scEcho          = "echo"           // client invokes, the app server answers the caller
	scBroadcast     = "broadcast"      // the app server broadcasts every client message to all
	scGroup         = "group"          // send to the sender's group (groups of --group-size, 10)
	scBigGroup      = "biggroup"       // the same with big groups (--group-size default 100)
	scConnection    = "connection"     // send to one other connection (the next client)
	scRESTBroadcast = "rest-broadcast" // REST POST /api/hubs/{hub}/:send
	scRESTUser      = "rest-user"      // REST POST /api/hubs/{hub}/users/{user}/:send
	scIdle          = "idle"           // connect only; measures connect rate and memory per client
)

var scenarios = []string{scEcho, scBroadcast, scGroup, scBigGroup, scConnection, scRESTBroadcast, scRESTUser, scIdle}

var errUsage = errors.New("bench: invalid flags")

// config is one run's options.
type config struct {
	Scenario    string
	Connections int
	Size        int
	// Rate is messages per second per client for the client scenarios and the total request rate
	// for the REST scenarios.
	Rate float64
	// Senders is how many clients send (the first ones); 0: every client. The performance guide's
	// broadcast has a few clients sending to all the others.
	Senders     int
	Duration    time.Duration
	Warmup      time.Duration
	Transport   string
	Protocol    string
	ServiceURL  string
	AccessKey   string
	ServiceBin  string
	PID         int
	JSON        bool
	Baseline    bool
	GroupSize   int
	Hub         string
	DialWorkers int
	RESTWorkers int
	ServerConns int
	Nodes       int
	RedisServer string
	Progress    bool
	CPUProfile  string
	Trace       string

	// Suite mode.
	Suite   bool
	Units   bool // only the Azure unit searches of the suite
	Out     string
	GoBench string

	// ServeBaseline runs only the raw WebSocket server on this address (used by the tool itself to
	// run the baseline as a child process).
	ServeBaseline string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("signalrd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: signalrd-bench [flags]\n\nScenarios: %s\n\nFlags:\n", strings.Join(scenarios, ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Scenario, "scenario", scEcho, "scenario: "+strings.Join(scenarios, ", "))
	fs.IntVar(&c.Connections, "connections", 100, "number of client connections")
	fs.IntVar(&c.Size, "size", 2048, "payload bytes per message")
	fs.Float64Var(&c.Rate, "rate", 1, "messages per second PER CLIENT (echo, broadcast, group, biggroup, connection) or TOTAL requests per second (rest-broadcast, rest-user)")
	fs.IntVar(&c.Senders, "senders", 0, "only the first N clients send, each at --rate (0: all; client scenarios)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "load before measuring (not counted)")
	fs.StringVar(&c.Transport, "transport", "websockets", "client transport (the Go client speaks websockets only)")
	fs.StringVar(&c.Protocol, "protocol", "json", "hub protocol: json or messagepack")
	fs.StringVar(&c.ServiceURL, "service-url", "", "use a running signalrd at this base URL (default: start one in process)")
	fs.StringVar(&c.AccessKey, "access-key", server.DevAccessKey, "access key of --service-url")
	fs.StringVar(&c.ServiceBin, "service-bin", "", "start this signalrd binary as a child process (and the baseline as a child too) instead of in process")
	fs.IntVar(&c.PID, "pid", 0, "process to sample CPU and RSS of (default: the child service, this process when in process, none with --service-url)")
	fs.BoolVar(&c.JSON, "json", false, "print the results as JSON on stdout instead of a table")
	fs.BoolVar(&c.Baseline, "baseline", false, "also run the scenario against the bundled raw WebSocket server and report the ratio")
	fs.IntVar(&c.GroupSize, "group-size", 0, "members per group (default 10 for group, 100 for biggroup)")
	fs.StringVar(&c.Hub, "hub", "bench", "hub name")
	fs.IntVar(&c.DialWorkers, "dial-concurrency", 32, "connections opened in parallel during ramp-up")
	fs.IntVar(&c.RESTWorkers, "rest-concurrency", 8, "parallel REST senders")
	fs.IntVar(&c.ServerConns, "server-connections", 5, "app-server sockets per hub")
	fs.IntVar(&c.Nodes, "nodes", 1, "signalrd nodes: 2 starts redis-server and two nodes sharing it (needs --service-bin); the app server connects to the first, clients alternate between them")
	fs.StringVar(&c.RedisServer, "redis-server", "redis-server", "with --nodes 2: the redis-server binary (make deps-redis installs it)")
	fs.BoolVar(&c.Progress, "progress", true, "print a progress line every second on stderr")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile (go tool pprof) to this file")
	fs.StringVar(&c.Trace, "trace", "", "write the load generator's execution trace (go tool trace) to this file")
	fs.BoolVar(&c.Suite, "suite", false, "run the standard suite (make bench) and write --out")
	fs.BoolVar(&c.Units, "units", false, "only run the suite's Azure unit searches (echo and broadcast) and print them as Markdown")
	fs.StringVar(&c.Out, "out", "", "with --suite: Markdown report to write (e.g. docs/PERFORMANCE.md)")
	fs.StringVar(&c.GoBench, "gobench", "", "with --suite: file holding `go test -bench` output to include")
	fs.StringVar(&c.ServeBaseline, "serve-baseline", "", "only serve the raw WebSocket baseline on this address (internal)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if c.GroupSize == 0 {
		c.GroupSize = 10
		if c.Scenario == scBigGroup {
			c.GroupSize = 100
		}
	}
	return c, c.validate()
}

// validate reports every problem at once.
func (c config) validate() error {
	if c.ServeBaseline != "" || c.Suite || c.Units {
		return nil
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	known := false
	for _, s := range scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		bad("--scenario %q: want one of %s", c.Scenario, strings.Join(scenarios, ", "))
	}
	if c.Connections < 1 {
		bad("--connections must be at least 1")
	}
	if c.Senders < 0 || c.Senders > c.Connections {
		bad("--senders must be 0..--connections")
	} else if c.Senders > 0 && (c.isREST() || c.Scenario == scIdle) {
		bad("--senders applies to the client scenarios (not REST or idle)")
	}
	if c.Size < 16 || c.Size > 1<<20 {
		bad("--size must be 16..1048576 bytes")
	}
	if c.Rate <= 0 && c.Scenario != scIdle {
		bad("--rate must be positive")
	}
	if c.Duration <= 0 {
		bad("--duration must be positive")
	}
	if c.Warmup < 0 {
		bad("--warmup must not be negative")
	}
	if !strings.EqualFold(c.Transport, "websockets") {
		bad("--transport %q: only websockets is supported by the Go client", c.Transport)
	}
	if c.Protocol != "json" && c.Protocol != "messagepack" {
		bad("--protocol %q: want json or messagepack", c.Protocol)
	}
	if c.ServiceURL != "" {
		u, err := url.Parse(c.ServiceURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--service-url %q: want http(s)://host:port", c.ServiceURL)
		}
		if c.ServiceBin != "" {
			bad("--service-url and --service-bin are exclusive")
		}
	}
	if c.GroupSize < 1 {
		bad("--group-size must be at least 1")
	}
	if c.DialWorkers < 1 || c.RESTWorkers < 1 || c.ServerConns < 1 {
		bad("--dial-concurrency, --rest-concurrency and --server-connections must be at least 1")
	}
	if c.PID < 0 {
		bad("--pid must not be negative")
	}
	switch {
	case c.Nodes < 1 || c.Nodes > 2:
		bad("--nodes must be 1 or 2")
	case c.Nodes == 2 && c.ServiceBin == "":
		bad("--nodes 2 needs --service-bin (the nodes run as child processes)")
	case c.Nodes == 2 && c.Baseline:
		bad("--nodes 2 compares with one node, not with the baseline: drop --baseline")
	}
	if c.Hub == "" {
		bad("--hub must not be empty")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return nil
}

// isREST reports whether the scenario sends through the REST API.
func (c config) isREST() bool { return c.Scenario == scRESTBroadcast || c.Scenario == scRESTUser }

// groupOf is client i's group index.
func (c config) groupOf(i int) int { return i / c.GroupSize }

// fanout is how many recipients one message of client (or REST target) i has.
func (c config) fanout(i int) int {
	switch c.Scenario {
	case scBroadcast, scRESTBroadcast:
		return c.Connections
	case scGroup, scBigGroup:
		g := c.groupOf(i)
		return min(c.Connections, (g+1)*c.GroupSize) - g*c.GroupSize
	case scIdle:
		return 0
	}
	return 1
}
