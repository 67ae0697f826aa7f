package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
)

// The packaging files (Dockerfile, docs/deploy/) cannot be run here: there is no Docker engine or
// Kubernetes cluster. These tests check what can be checked without one: that every flag and
// SIGNALRD_* variable they use is one `signalrd serve` really accepts, that the configuration
// they produce validates (and that the image refuses the development key), that ports, probes
// and selectors agree, that the nodes form one cluster (the same Redis, prefix and instances,
// distinct node ids, advertise URLs their peers can reach) behind a load balancer without
// stickiness, and that the Dockerfile's build line stamps the version.

const (
	repoRoot    = "../.."
	testKeyPack = "cGFja2FnaW5nLXRlc3Qta2V5LW5vdC1hLXJlYWwta2V5MDA="
)

// dockerfile is the part of a Dockerfile these tests look at.
type dockerfile struct {
	froms      []string            // image of each FROM, in order
	args       []string            // ARG names
	runs       []string            // RUN commands, continuation lines joined
	env        map[string]string   // ENV of the final stage
	expose     []int               // EXPOSE of the final stage
	user       string              // USER of the final stage
	entrypoint []string            // ENTRYPOINT of the final stage (exec form)
	copies     map[string][]string // COPY lines of the final stage, by instruction text
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	d := dockerfile{env: map[string]string{}, copies: map[string][]string{}}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			d.froms = append(d.froms, strings.Fields(rest)[0])
			// Only the final stage's settings matter: start over at each FROM.
			d.env, d.expose, d.user, d.entrypoint = map[string]string{}, nil, "", nil
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			d.args = append(d.args, name)
		case "RUN":
			d.runs = append(d.runs, rest)
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("%s: ENV %q: use the key=value form", path, rest)
				}
				d.env[k] = v
			}
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					t.Fatalf("%s: EXPOSE %q: %v", path, p, err)
				}
				d.expose = append(d.expose, n)
			}
		case "USER":
			d.user = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT must be in exec (JSON) form: %v", path, err)
			}
		case "COPY":
			d.copies[rest] = strings.Fields(rest)
		}
	}
	return d
}

// serveFlagForEnv maps SIGNALRD_ACCESS_KEY to the serve flag "access-key", as viper's
// AutomaticEnv with the "-" → "_" replacer does; "" when the variable is not one signalrd reads.
func serveFlagForEnv(serve *cobra.Command, env string) string {
	name, ok := strings.CutPrefix(env, "SIGNALRD_")
	if !ok {
		return ""
	}
	flag := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	if serve.Flags().Lookup(flag) == nil {
		return ""
	}
	return flag
}

func serveSubcommand(t *testing.T) *cobra.Command {
	t.Helper()
	root := newRootCmd(io.Discard, io.Discard)
	cmd, _, err := root.Find([]string{"serve"})
	if err != nil || cmd.Name() != "serve" {
		t.Fatalf("no serve command: %v", err)
	}
	return cmd
}

// checkServeArgs fails for any argument that is not a flag `signalrd serve` accepts.
func checkServeArgs(t *testing.T, where string, args []string) {
	t.Helper()
	serve := serveSubcommand(t)
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if serve.Flags().Lookup(name) == nil {
			t.Errorf("%s: --%s is not a flag of `signalrd serve`", where, name)
		}
	}
	if err := serve.ParseFlags(args); err != nil {
		t.Errorf("%s: `signalrd serve %s`: %v", where, strings.Join(args, " "), err)
	}
	if serve.Flags().NArg() > 0 {
		t.Errorf("%s: `signalrd serve` takes no arguments, got %q", where, serve.Flags().Args())
	}
}

// checkServeEnv fails for any SIGNALRD_* variable signalrd does not read.
func checkServeEnv(t *testing.T, where string, env map[string]string) {
	t.Helper()
	serve := serveSubcommand(t)
	for k := range env {
		if strings.HasPrefix(k, "SIGNALRD_") && serveFlagForEnv(serve, k) == "" {
			t.Errorf("%s: %s is not read by `signalrd serve` (no flag %q)", where, k,
				strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "SIGNALRD_")), "_", "-"))
		}
	}
}

// serveConfig is the server configuration `signalrd serve args...` builds with exactly env as
// its SIGNALRD_* environment (every other SIGNALRD_* variable blanked: empty counts as unset).
func serveConfig(t *testing.T, env map[string]string, args []string) (fileConfig, server.Config, error) {
	t.Helper()
	serve := newServeCmd(io.Discard, io.Discard)
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		t.Setenv("SIGNALRD_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), "")
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	if err := serve.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfig(serve.Flags())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.toServerConfig(nil)
	return fc, cfg, err
}

func portOf(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: port of %q: %v", where, addr, err)
	}
	return n
}

// checkListensEverywhere: a container must not bind loopback only, and must serve the admin
// listener (the probes and /metrics live there).
func checkListens(t *testing.T, where string, cfg server.Config) (listenPort, adminPort int) {
	t.Helper()
	for name, addr := range map[string]string{"listen": cfg.Listen, "admin-listen": cfg.AdminListen} {
		if addr == "" {
			t.Fatalf("%s: %s is not set", where, name)
		}
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			t.Errorf("%s: %s %q is loopback: unreachable from outside the container", where, name, addr)
		}
	}
	return portOf(t, where, cfg.Listen), portOf(t, where, cfg.AdminListen)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestPackagingDockerfile(t *testing.T) {
	d := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	if len(d.froms) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a multi-stage build", len(d.froms))
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVer == nil || d.froms[0] != "golang:"+string(goVer[1]) {
		t.Errorf("Dockerfile: build stage %q, want golang:<go.mod's %s>", d.froms[0], goVer[1])
	}
	final := d.froms[len(d.froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("Dockerfile: final stage %q, want distroless/static or scratch", final)
	}
	if d.user == "" || d.user == "root" || strings.HasPrefix(d.user, "0") {
		t.Errorf("Dockerfile: USER %q, want a non-root user", d.user)
	}
	// The build line: static, reproducible paths, stripped, version stamped from ARG VERSION.
	var build string
	for _, r := range d.runs {
		if strings.Contains(r, "go build") && strings.Contains(r, "./cmd/signalrd") {
			build = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "-o /out/signalrd"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile: go build line %q lacks %s", build, want)
		}
	}
	if !slices.Contains(d.args, "VERSION") {
		t.Error("Dockerfile: no ARG VERSION")
	}
	if _, ok := d.copies["--from=build /out/signalrd /signalrd"]; !ok {
		t.Errorf("Dockerfile: final stage does not COPY --from=build /out/signalrd /signalrd (COPY lines %q)", slices.Collect(maps.Keys(d.copies)))
	}
	if !slices.Equal(d.entrypoint, []string{"/signalrd", "serve"}) {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want [/signalrd serve]", d.entrypoint)
	}
	checkServeEnv(t, "Dockerfile ENV", d.env)
	if _, ok := d.env["SIGNALRD_ACCESS_KEY"]; ok {
		t.Error("Dockerfile: an access key baked into the image")
	}

	// The image as shipped refuses to start on the development key...
	if _, _, err := serveConfig(t, d.env, nil); err == nil || !strings.Contains(err.Error(), "development key") {
		t.Errorf("image without SIGNALRD_ACCESS_KEY: err = %v, want the development key refused", err)
	}
	// ...starts with a key (or --allow-dev-key), and exposes both listeners.
	env := map[string]string{"SIGNALRD_ACCESS_KEY": testKeyPack}
	for k, v := range d.env {
		env[k] = v
	}
	_, cfg, err := serveConfig(t, env, nil)
	if err != nil {
		t.Fatalf("image with SIGNALRD_ACCESS_KEY: %v", err)
	}
	if _, _, err := serveConfig(t, d.env, []string{"--allow-dev-key"}); err != nil {
		t.Errorf("image with --allow-dev-key: %v", err)
	}
	listen, admin := checkListens(t, "Dockerfile ENV", cfg)
	for _, p := range []int{listen, admin} {
		if !slices.Contains(d.expose, p) {
			t.Errorf("Dockerfile: port %d listened on but not in EXPOSE %v", p, d.expose)
		}
	}

	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := strings.Fields(string(ignore))
	for _, want := range []string{".git", "bin", "e2e/js/node_modules"} {
		if !slices.Contains(ignored, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd", "e2e", "e2e/js/package.json"} {
		if slices.Contains(ignored, need) {
			t.Errorf(".dockerignore excludes %s, which the builds need", need)
		}
	}
}

// TestPackagingVersionStamp builds signalrd with the Dockerfile's ldflags and checks that
// `signalrd version` prints the stamped version.
func TestPackagingVersionStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(strings.Join(d.runs, "\n"))
	if m == nil {
		t.Fatal("Dockerfile: no -ldflags on the go build line")
	}
	const ver = "v9.8.7-packaging"
	ldflags := strings.ReplaceAll(m[1], "${VERSION}", ver)
	bin := filepath.Join(t.TempDir(), "signalrd")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", ldflags, err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("signalrd version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "signalrd "+ver {
		t.Fatalf("signalrd version = %q, want %q", got, "signalrd "+ver)
	}
}

type composeService struct {
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Image       string            `yaml:"image"`
	Environment map[string]string `yaml:"environment"`
	Command     []string          `yaml:"command"`
	Expose      []string          `yaml:"expose"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   composeDeps       `yaml:"depends_on"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

// composeDeps is depends_on in either form: a list of services, or a map of service to condition.
type composeDeps []string

func (d *composeDeps) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*d = l
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			*d = append(*d, n.Content[i].Value)
		}
	default:
		return fmt.Errorf("depends_on: a list or a map, not %v", n.Tag)
	}
	return nil
}

// composeInterpolate replaces ${VAR}, ${VAR:?msg} and ${VAR:-default} as docker compose does.
func composeInterpolate(s string, vars map[string]string) string {
	return regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)(?::[?-][^}]*)?\}`).ReplaceAllStringFunc(s, func(m string) string {
		name := regexp.MustCompile(`^\$\{([A-Z_][A-Z0-9_]*)`).FindStringSubmatch(m)[1]
		return vars[name]
	})
}

// redisAddr is the host and port of a single-address Redis URL (redis://host:port[/db], host:port).
func redisAddr(t *testing.T, where, raw string) (string, int) {
	t.Helper()
	rest := raw
	if _, after, ok := strings.Cut(raw, "://"); ok {
		rest = after
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	rest, _, _ = strings.Cut(rest, "/")
	host, _, err := net.SplitHostPort(rest)
	if err != nil {
		t.Fatalf("%s: Redis %q: want one host:port: %v", where, raw, err)
	}
	return host, portOf(t, where, rest)
}

// clusterNode is one signalrd service of the compose file, as configured.
type clusterNode struct {
	name          string
	listen, admin int
	cfg           server.Config
}

// TestPackagingCompose checks the compose example: three signalrd nodes sharing the redis
// service, behind nginx with no sticky sessions, and the chat app reaching them through nginx.
func TestPackagingCompose(t *testing.T) {
	dir := filepath.Join(repoRoot, "docs", "deploy")
	var c composeFile
	readYAML(t, filepath.Join(dir, "compose.yaml"), &c)
	vars := map[string]string{"SIGNALRD_ACCESS_KEY": testKeyPack}

	for name, s := range c.Services {
		if s.Build != nil {
			df := filepath.Join(dir, s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("compose.yaml: service %s builds from a missing Dockerfile: %v", name, err)
			}
		}
		for _, dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("compose.yaml: service %s depends on unknown service %s", name, dep)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("compose.yaml: service %s publishes %q beyond localhost", name, p)
			}
		}
	}

	// The nodes: signalrd-1, signalrd-2, signalrd-3, each a valid serve configuration.
	var names []string
	for name := range c.Services {
		if strings.HasPrefix(name, "signalrd-") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) != 3 {
		t.Fatalf("compose.yaml: signalrd nodes %v, want three (signalrd-1, -2, -3)", names)
	}
	redisSvc, ok := c.Services["redis"]
	if !ok {
		t.Fatal("compose.yaml: no redis service")
	}
	var nodes []clusterNode
	for _, name := range names {
		sd := c.Services[name]
		where := "compose.yaml " + name
		if sd.Build == nil || filepath.Clean(filepath.Join(dir, sd.Build.Context, sd.Build.Dockerfile)) != filepath.Clean(filepath.Join(repoRoot, "Dockerfile")) {
			t.Errorf("%s: not built from the repository's Dockerfile", where)
		}
		if !strings.Contains(sd.Environment["SIGNALRD_ACCESS_KEY"], "${SIGNALRD_ACCESS_KEY:?") {
			t.Errorf("%s: SIGNALRD_ACCESS_KEY = %q, want it required from the caller (${SIGNALRD_ACCESS_KEY:?…})", where, sd.Environment["SIGNALRD_ACCESS_KEY"])
		}
		env := map[string]string{}
		for k, v := range sd.Environment {
			env[k] = composeInterpolate(v, vars)
		}
		checkServeEnv(t, where+" environment", env)
		checkServeArgs(t, where+" command", sd.Command)
		_, cfg, err := serveConfig(t, env, sd.Command)
		if err != nil {
			t.Fatalf("%s: configuration: %v", where, err)
		}
		listen, admin := checkListens(t, where, cfg)
		for _, p := range []int{listen, admin} {
			if !slices.Contains(sd.Expose, strconv.Itoa(p)) {
				t.Errorf("%s: listens on %d but exposes %v", where, p, sd.Expose)
			}
		}
		// It joins the cluster of the redis service, under its own name, reachable by its peers.
		if cfg.Redis == "" {
			t.Fatalf("%s: no SIGNALRD_REDIS: the node would run alone", where)
		}
		host, port := redisAddr(t, where, cfg.Redis)
		if host != "redis" || !slices.Contains(redisSvc.Expose, strconv.Itoa(port)) {
			t.Errorf("%s: Redis %s, want the redis service on a port it exposes (%v)", where, cfg.Redis, redisSvc.Expose)
		}
		if !slices.Contains(sd.DependsOn, "redis") {
			t.Errorf("%s: does not depend on redis (a node exits when Redis is unreachable at start)", where)
		}
		if cfg.NodeID != name {
			t.Errorf("%s: node id %q, want the service name", where, cfg.NodeID)
		}
		adv, err := url.Parse(cfg.AdvertiseURL)
		if err != nil || adv.Scheme != "http" || adv.Hostname() != name || adv.Port() != strconv.Itoa(listen) {
			t.Errorf("%s: advertise URL %q, want http://%s:%d (its peers forward requests there)", where, cfg.AdvertiseURL, name, listen)
		}
		nodes = append(nodes, clusterNode{name, listen, admin, cfg})
	}
	for _, n := range nodes[1:] {
		a, b := nodes[0], n
		if a.cfg.Redis != b.cfg.Redis || a.cfg.RedisPrefix != b.cfg.RedisPrefix || a.cfg.Heartbeat != b.cfg.Heartbeat {
			t.Errorf("compose.yaml: %s and %s are not in one cluster (redis %q/%q, prefix %q/%q, heartbeat %v/%v)",
				a.name, b.name, a.cfg.Redis, b.cfg.Redis, a.cfg.RedisPrefix, b.cfg.RedisPrefix, a.cfg.Heartbeat, b.cfg.Heartbeat)
		}
		if !reflect.DeepEqual(a.cfg.Instances, b.cfg.Instances) || !reflect.DeepEqual(a.cfg.Defaults, b.cfg.Defaults) {
			t.Errorf("compose.yaml: %s and %s serve different instances or settings: every node needs the same", a.name, b.name)
		}
	}
	if !regexp.MustCompile(`^redis:(\d+)`).MatchString(redisSvc.Image) {
		t.Errorf("compose.yaml: redis image %q, want redis:<version>", redisSvc.Image)
	} else if v, _ := strconv.Atoi(regexp.MustCompile(`^redis:(\d+)`).FindStringSubmatch(redisSvc.Image)[1]); v < 7 {
		t.Errorf("compose.yaml: redis image %q: storage needs Redis 6.2 or later (7 for a Cluster)", redisSvc.Image)
	}

	// nginx: publishes the browser port, keeps an internal one for app servers, and balances
	// over every node without stickiness.
	ngx, ok := c.Services["nginx"]
	if !ok {
		t.Fatal("compose.yaml: no nginx service")
	}
	var conf []byte
	var err error
	for _, v := range ngx.Volumes {
		if src, _, ok := strings.Cut(v, ":"); ok && strings.HasSuffix(src, "nginx.conf") {
			if conf, err = os.ReadFile(filepath.Join(dir, src)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if conf == nil {
		t.Fatal("compose.yaml: nginx does not mount nginx.conf")
	}
	ng := parseNginx(t, string(conf))
	up := ng.find("upstream", "signalrd")
	if up == nil {
		t.Fatal("nginx.conf: no upstream signalrd")
	}
	var servers, want []string
	for _, d := range up.children {
		switch d.name {
		case "server":
			servers = append(servers, d.args[0])
		case "ip_hash", "hash", "sticky":
			t.Errorf("nginx.conf: upstream signalrd uses %s: the nodes need no sticky sessions (docs/scale-out.md)", d.name)
		}
	}
	for _, n := range nodes {
		want = append(want, n.name+":"+strconv.Itoa(n.listen))
		if !slices.Contains(ngx.DependsOn, n.name) {
			t.Errorf("compose.yaml: nginx does not depend on %s (nginx resolves its upstreams at start)", n.name)
		}
	}
	slices.Sort(servers)
	if !slices.Equal(servers, want) {
		t.Errorf("nginx.conf: upstream signalrd servers %v, want every node %v", servers, want)
	}
	// proxy_set_header is not inherited by a block that sets any: each location sets them all.
	for _, loc := range ng.deep("location") {
		if loc.has("proxy_set_header") {
			for _, h := range []string{"Host", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Proto"} {
				if loc.header(h) == "" {
					t.Errorf("nginx.conf: location %s sets headers but not %s (the server-level ones are not inherited)", strings.Join(loc.args, " "), h)
				}
			}
		}
		if p := loc.get("proxy_pass"); p != "" && loc.get("proxy_http_version") != "1.1" {
			t.Errorf("nginx.conf: location %s proxies without proxy_http_version 1.1", strings.Join(loc.args, " "))
		}
	}
	// streaming checks a location that carries client transports or app-server sockets.
	streaming := func(where string, loc *nginxDirective) {
		t.Helper()
		for h, v := range map[string]string{"Upgrade": "$http_upgrade", "Connection": "$connection_upgrade"} {
			if loc.header(h) != v {
				t.Errorf("nginx.conf: %s: proxy_set_header %s is %q, want %s", where, h, loc.header(h), v)
			}
		}
		if loc.get("proxy_buffering") != "off" {
			t.Errorf("nginx.conf: %s: proxy_buffering is not off (Server-Sent Events and long polls would stall)", where)
		}
		if d, err := time.ParseDuration(loc.get("proxy_read_timeout")); err != nil || d <= 90*time.Second {
			t.Errorf("nginx.conf: %s: proxy_read_timeout %q, want above poll-timeout (90s)", where, loc.get("proxy_read_timeout"))
		}
	}

	// The chat app: its connection string reaches signalrd through nginx's internal port, sends
	// browsers to nginx's public one, and carries the same key.
	chat, ok := c.Services["chat"]
	if !ok {
		t.Fatal("compose.yaml: no chat service")
	}
	cs, err := auth.ParseConnectionString(composeInterpolate(chat.Environment["SIGNALRD_CONNECTION_STRING"], vars))
	if err != nil {
		t.Fatalf("compose.yaml: chat SIGNALRD_CONNECTION_STRING: %v", err)
	}
	if cs.AccessKey != testKeyPack {
		t.Errorf("compose.yaml: chat's access key is not ${SIGNALRD_ACCESS_KEY}")
	}
	if cs.ClientEndpoint == nil {
		t.Fatal("compose.yaml: chat connection string has no ClientEndpoint (browsers cannot resolve the nodes)")
	}
	if cs.Endpoint.Hostname() != "nginx" {
		t.Errorf("compose.yaml: chat reaches signalrd at %s, want through nginx (its sockets spread over the nodes)", cs.Endpoint)
	}
	internal := ng.serverListening(cs.Port)
	if internal == nil {
		t.Fatalf("nginx.conf: no server listens on %d, the port of chat's Endpoint", cs.Port)
	}
	if loc := internal.location("/"); loc == nil || loc.get("proxy_pass") != "http://signalrd" {
		t.Errorf("nginx.conf: the server on %d does not proxy / (app-server sockets, REST) to signalrd", cs.Port)
	} else {
		streaming(fmt.Sprintf("internal server %d", cs.Port), loc)
	}
	if !slices.Contains(ngx.Expose, strconv.Itoa(cs.Port)) {
		t.Errorf("compose.yaml: nginx does not expose %d, the port chat reaches signalrd on (expose %v)", cs.Port, ngx.Expose)
	}
	for _, p := range ngx.Ports {
		if parts := strings.Split(p, ":"); parts[len(parts)-1] == strconv.Itoa(cs.Port) {
			t.Errorf("compose.yaml: nginx publishes %q: app-server sockets and the REST API stay inside the network", p)
		}
	}

	// The public server: publishes the port ClientEndpoint names, and sends /client/ (and only
	// client traffic and health) to signalrd, / to the chat app.
	var public *nginxDirective
	for _, p := range ngx.Ports {
		parts := strings.Split(p, ":")
		if len(parts) >= 2 && parts[len(parts)-2] == cs.ClientEndpoint.Port() {
			if n, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
				public = ng.serverListening(n)
			}
		}
	}
	if public == nil {
		t.Fatalf("compose.yaml: nginx ports %v publish no nginx server on ClientEndpoint's port %s", ngx.Ports, cs.ClientEndpoint.Port())
	}
	if loc := public.location("/client/"); loc == nil || loc.get("proxy_pass") != "http://signalrd" {
		t.Error("nginx.conf: the public server does not proxy /client/ to signalrd")
	} else {
		streaming("public location /client/", loc)
	}
	for _, loc := range public.all("location") {
		path := strings.Join(loc.args, " ")
		if loc.get("proxy_pass") == "http://signalrd" && path != "/client/" && path != "= /api/health" {
			t.Errorf("nginx.conf: the public server sends %s to signalrd: only /client/ and /api/health belong there", path)
		}
	}
	chatDF := parseDockerfile(t, filepath.Join(dir, chat.Build.Context, chat.Build.Dockerfile))
	chatListen := ""
	for i, a := range chatDF.entrypoint {
		if a == "--listen" && i+1 < len(chatDF.entrypoint) {
			chatListen = chatDF.entrypoint[i+1]
		}
	}
	chatPort := portOf(t, "chat.Dockerfile --listen", chatListen)
	if !slices.Contains(chat.Expose, strconv.Itoa(chatPort)) || !slices.Contains(chatDF.expose, chatPort) {
		t.Errorf("compose.yaml/chat.Dockerfile: chat listens on %d, exposes %v / EXPOSE %v", chatPort, chat.Expose, chatDF.expose)
	}
	if up := ng.find("upstream", "chat"); up == nil || up.get("server") != "chat:"+strconv.Itoa(chatPort) {
		t.Errorf("nginx.conf: upstream chat is not chat:%d", chatPort)
	}
	if loc := public.location("/"); loc == nil || loc.get("proxy_pass") != "http://chat" {
		t.Error("nginx.conf: the public server does not proxy / to the chat app")
	}
	if !slices.Contains(ngx.DependsOn, "chat") {
		t.Error("compose.yaml: nginx does not depend on chat (nginx resolves its upstreams at start)")
	}
	chatMain, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "signalrd-chat", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range chatDF.entrypoint[1:] {
		if name, ok := strings.CutPrefix(a, "--"); ok && !bytes.Contains(chatMain, []byte(`fs.String("`+name+`"`)) {
			t.Errorf("chat.Dockerfile: --%s is not a flag of signalrd-chat", name)
		}
	}
	if !bytes.Contains(chatMain, []byte(`"SIGNALRD_CONNECTION_STRING"`)) {
		t.Error("signalrd-chat no longer reads SIGNALRD_CONNECTION_STRING")
	}
}

// nginxDirective is one directive of an nginx configuration, with its block's directives.
type nginxDirective struct {
	name     string
	args     []string
	children []*nginxDirective
}

// parseNginx reads an nginx configuration: directives end with ';' or a {…} block; '#' starts
// a comment; quotes group words.
func parseNginx(t *testing.T, conf string) *nginxDirective {
	t.Helper()
	var toks []string
	for _, line := range strings.Split(conf, "\n") {
		for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimSpace(rest) {
			switch {
			case rest[0] == '#':
				rest = ""
				continue
			case strings.ContainsRune(";{}", rune(rest[0])):
				toks = append(toks, rest[:1])
				rest = rest[1:]
			case rest[0] == '\'' || rest[0] == '"':
				end := strings.IndexByte(rest[1:], rest[0])
				if end < 0 {
					t.Fatalf("nginx.conf: unterminated quote in %q", line)
				}
				toks = append(toks, rest[1:end+1])
				rest = rest[end+2:]
			default:
				end := strings.IndexAny(rest, " \t;{}#")
				if end < 0 {
					end = len(rest)
				}
				toks = append(toks, rest[:end])
				rest = rest[end:]
			}
		}
	}
	root := &nginxDirective{}
	stack := []*nginxDirective{root}
	var cur *nginxDirective
	for _, tok := range toks {
		top := stack[len(stack)-1]
		switch tok {
		case ";":
			if cur == nil {
				t.Fatal("nginx.conf: empty directive")
			}
			top.children = append(top.children, cur)
			cur = nil
		case "{":
			if cur == nil {
				t.Fatal("nginx.conf: block without a directive")
			}
			top.children = append(top.children, cur)
			stack = append(stack, cur)
			cur = nil
		case "}":
			if cur != nil || len(stack) == 1 {
				t.Fatal("nginx.conf: unbalanced }")
			}
			stack = stack[:len(stack)-1]
		default:
			if cur == nil {
				cur = &nginxDirective{name: tok}
			} else {
				cur.args = append(cur.args, tok)
			}
		}
	}
	if cur != nil || len(stack) != 1 {
		t.Fatal("nginx.conf: unterminated directive or block")
	}
	return root
}

// all lists the directives named name in d's block.
func (d *nginxDirective) all(name string) []*nginxDirective {
	var out []*nginxDirective
	for _, c := range d.children {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}

// deep lists the directives named name at any depth.
func (d *nginxDirective) deep(name string) []*nginxDirective {
	var out []*nginxDirective
	for _, c := range d.children {
		if c.name == name {
			out = append(out, c)
		}
		out = append(out, c.deep(name)...)
	}
	return out
}

// find returns the block named name whose arguments are args, at any depth.
func (d *nginxDirective) find(name string, args ...string) *nginxDirective {
	for _, c := range d.children {
		if c.name == name && slices.Equal(c.args, args) {
			return c
		}
		if f := c.find(name, args...); f != nil {
			return f
		}
	}
	return nil
}

func (d *nginxDirective) has(name string) bool { return len(d.all(name)) > 0 }

// get is the first argument of the first directive named name ("" when there is none).
func (d *nginxDirective) get(name string) string {
	for _, c := range d.all(name) {
		if len(c.args) > 0 {
			return c.args[0]
		}
	}
	return ""
}

// header is the value proxy_set_header gives h in d's block.
func (d *nginxDirective) header(h string) string {
	for _, c := range d.all("proxy_set_header") {
		if len(c.args) == 2 && strings.EqualFold(c.args[0], h) {
			return c.args[1]
		}
	}
	return ""
}

// location returns the location block with exactly these arguments.
func (d *nginxDirective) location(args ...string) *nginxDirective {
	for _, c := range d.all("location") {
		if slices.Equal(c.args, args) {
			return c
		}
	}
	return nil
}

// serverListening returns the server block listening on port.
func (d *nginxDirective) serverListening(port int) *nginxDirective {
	for _, c := range d.deep("server") {
		if len(c.args) == 0 && c.get("listen") == strconv.Itoa(port) {
			return c
		}
	}
	return nil
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sEnvVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type k8sContainer struct {
	Name    string      `yaml:"name"`
	Image   string      `yaml:"image"`
	Command []string    `yaml:"command"`
	Args    []string    `yaml:"args"`
	Env     []k8sEnvVar `yaml:"env"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type k8sDeployment struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sService struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Selector        map[string]string `yaml:"selector"`
		SessionAffinity string            `yaml:"sessionAffinity"`
		Ports           []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
		MinAvailable   any `yaml:"minAvailable"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

// subsetOf reports whether every label of sel is in labels (and sel is not empty).
func subsetOf(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// readYAMLDocs decodes each document of a multi-document file into a new T chosen by its kind.
func readYAMLDocs(t *testing.T, path string) map[string][]yaml.Node {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]yaml.Node{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var head struct {
			Kind string `yaml:"kind"`
		}
		if err := n.Decode(&head); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out[head.Kind] = append(out[head.Kind], n)
	}
}

// Downward API values the kubelet would give the test pod.
const (
	testPodName = "signalrd-5d8c7b9f4-x2k9q"
	testPodIP   = "10.244.1.17"
)

// podEnv is the environment the kubelet gives a container: Secret references get the test
// key, fieldRefs the test pod's name and IP, and $(VAR) expands variables defined earlier in
// the list, as Kubernetes does.
func podEnv(t *testing.T, where string, vars []k8sEnvVar) map[string]string {
	t.Helper()
	env := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range vars {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = testKeyPack
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[e.Name] = testPodName
			case "status.podIP":
				env[e.Name] = testPodIP
			default:
				t.Errorf("%s: %s: fieldRef %s is not modelled by this test", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			env[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(m string) string {
				if v, ok := env[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
		}
	}
	return env
}

func TestPackagingKubernetes(t *testing.T) {
	dir := filepath.Join(repoRoot, "docs", "deploy", "k8s")
	var dep k8sDeployment
	readYAML(t, filepath.Join(dir, "deployment.yaml"), &dep)
	if dep.APIVersion != "apps/v1" || dep.Kind != "Deployment" {
		t.Fatalf("deployment.yaml: %s %s", dep.APIVersion, dep.Kind)
	}
	pod := dep.Spec.Template
	if !subsetOf(dep.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
		t.Errorf("deployment.yaml: selector %v does not match the pod labels %v", dep.Spec.Selector.MatchLabels, pod.Metadata.Labels)
	}
	if dep.Spec.Replicas < 2 {
		t.Errorf("deployment.yaml: %d replicas: the example is a cluster", dep.Spec.Replicas)
	}
	if dep.Spec.Strategy.Type == "Recreate" {
		t.Error("deployment.yaml: strategy Recreate stops every node at once; a cluster rolls one node at a time")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("deployment.yaml: %d containers, want 1", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	if len(ctr.Command) > 0 {
		t.Errorf("deployment.yaml: command %q replaces the image's ENTRYPOINT; use args", ctr.Command)
	}
	if !pod.Spec.SecurityContext.RunAsNonRoot {
		t.Error("deployment.yaml: runAsNonRoot is not set")
	}
	if ctr.Resources.Requests["cpu"] == "" || ctr.Resources.Requests["memory"] == "" || ctr.Resources.Limits["memory"] == "" {
		t.Errorf("deployment.yaml: resources %+v, want cpu and memory requests and a memory limit", ctr.Resources)
	}
	checkServeArgs(t, "deployment.yaml args", ctr.Args)
	for _, e := range ctr.Env {
		if e.Name == "SIGNALRD_ACCESS_KEY" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Error("deployment.yaml: SIGNALRD_ACCESS_KEY is not read from a Secret")
		}
	}
	env := podEnv(t, "deployment.yaml", ctr.Env)
	if _, ok := env["SIGNALRD_ACCESS_KEY"]; !ok {
		t.Error("deployment.yaml: no SIGNALRD_ACCESS_KEY: the pod would refuse the development key")
	}
	checkServeEnv(t, "deployment.yaml env", env)
	_, cfg, err := serveConfig(t, env, ctr.Args)
	if err != nil {
		t.Fatalf("deployment.yaml: configuration: %v", err)
	}
	listen, admin := checkListens(t, "deployment.yaml", cfg)
	ports := map[string]int{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, p := range []int{listen, admin} {
		if !slices.Contains(slices.Collect(maps.Values(ports)), p) {
			t.Errorf("deployment.yaml: listens on %d but containerPorts are %v", p, ports)
		}
	}
	resolve := func(ports map[string]int, port any) int {
		switch p := port.(type) {
		case int:
			return p
		case string:
			return ports[p]
		}
		return 0
	}
	grace := time.Duration(pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= cfg.ShutdownTimeout {
		t.Errorf("deployment.yaml: terminationGracePeriodSeconds %v is not above shutdown-timeout %v", grace, cfg.ShutdownTimeout)
	}

	// Every pod is a node of one cluster: named after the pod, reachable by its peers at the pod
	// IP on the service port.
	if cfg.Redis == "" {
		t.Fatal("deployment.yaml: no SIGNALRD_REDIS: each pod would run alone, splitting clients from their app servers")
	}
	if cfg.NodeID != testPodName {
		t.Errorf("deployment.yaml: node id %q, want the pod name (fieldRef metadata.name)", cfg.NodeID)
	}
	if want := "http://" + net.JoinHostPort(testPodIP, strconv.Itoa(listen)); cfg.AdvertiseURL != want {
		t.Errorf("deployment.yaml: advertise URL %q, want %s (the pod IP, fieldRef status.podIP, and the listen port)", cfg.AdvertiseURL, want)
	}

	// The probes hit the admin port, and their paths answer 200 on a running admin listener.
	probes := map[string]*k8sProbe{"readinessProbe": ctr.ReadinessProbe, "livenessProbe": ctr.LivenessProbe}
	wantPath := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
	for name, pr := range probes {
		if pr == nil {
			t.Errorf("deployment.yaml: no %s", name)
			continue
		}
		if pr.HTTPGet.Path != wantPath[name] || resolve(ports, pr.HTTPGet.Port) != admin {
			t.Errorf("deployment.yaml: %s GET %s on port %d, want %s on the admin port %d", name, pr.HTTPGet.Path, resolve(ports, pr.HTTPGet.Port), wantPath[name], admin)
		}
	}
	checkAdminPaths(t, wantPath["readinessProbe"], wantPath["livenessProbe"])

	var svc k8sService
	readYAML(t, filepath.Join(dir, "service.yaml"), &svc)
	if svc.Kind != "Service" || !subsetOf(svc.Spec.Selector, pod.Metadata.Labels) {
		t.Errorf("service.yaml: kind %s selector %v does not select the pod labels %v", svc.Kind, svc.Spec.Selector, pod.Metadata.Labels)
	}
	if svc.Spec.SessionAffinity != "" && svc.Spec.SessionAffinity != "None" {
		t.Errorf("service.yaml: sessionAffinity %s: not needed, a node forwards requests to the node holding their connection", svc.Spec.SessionAffinity)
	}
	var svcTargets []int
	for _, p := range svc.Spec.Ports {
		tp := resolve(ports, p.TargetPort)
		if tp == 0 {
			t.Errorf("service.yaml: port %s targets %v, not a container port", p.Name, p.TargetPort)
		}
		svcTargets = append(svcTargets, tp)
	}
	if !slices.Contains(svcTargets, listen) {
		t.Errorf("service.yaml: no port targets the service listener %d", listen)
	}

	var pdb k8sPDB
	readYAML(t, filepath.Join(dir, "pdb.yaml"), &pdb)
	if pdb.APIVersion != "policy/v1" || pdb.Kind != "PodDisruptionBudget" {
		t.Errorf("pdb.yaml: %s %s", pdb.APIVersion, pdb.Kind)
	}
	if !subsetOf(pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
		t.Errorf("pdb.yaml: selector %v does not select the pod labels %v", pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels)
	}
	if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
		t.Error("pdb.yaml: set exactly one of minAvailable and maxUnavailable")
	}
	if n, ok := pdb.Spec.MinAvailable.(int); ok && n >= dep.Spec.Replicas {
		t.Errorf("pdb.yaml: minAvailable %d with %d replicas blocks every node drain", n, dep.Spec.Replicas)
	}

	// redis.yaml: the Redis SIGNALRD_REDIS names, a Service in front of a Redis 6.2+ pod.
	docs := readYAMLDocs(t, filepath.Join(dir, "redis.yaml"))
	host, port := redisAddr(t, "deployment.yaml", cfg.Redis)
	var rsvc *k8sService
	for _, n := range docs["Service"] {
		var s k8sService
		if err := n.Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s.Metadata.Name == host {
			rsvc = &s
		}
	}
	if rsvc == nil {
		t.Fatalf("redis.yaml: no Service %q, the host of SIGNALRD_REDIS %s", host, cfg.Redis)
	}
	if len(docs["Deployment"]) != 1 {
		t.Fatalf("redis.yaml: %d Deployments, want 1", len(docs["Deployment"]))
	}
	var rdep k8sDeployment
	if err := docs["Deployment"][0].Decode(&rdep); err != nil {
		t.Fatal(err)
	}
	rpod := rdep.Spec.Template
	if !subsetOf(rdep.Spec.Selector.MatchLabels, rpod.Metadata.Labels) || !subsetOf(rsvc.Spec.Selector, rpod.Metadata.Labels) {
		t.Errorf("redis.yaml: selectors %v / %v do not match the pod labels %v", rdep.Spec.Selector.MatchLabels, rsvc.Spec.Selector, rpod.Metadata.Labels)
	}
	if subsetOf(rsvc.Spec.Selector, pod.Metadata.Labels) || subsetOf(svc.Spec.Selector, rpod.Metadata.Labels) {
		t.Error("redis.yaml: the Redis and signalrd Services select each other's pods")
	}
	if len(rpod.Spec.Containers) != 1 || !regexp.MustCompile(`^redis:([7-9]|[1-9][0-9])`).MatchString(rpod.Spec.Containers[0].Image) {
		t.Fatalf("redis.yaml: want one redis:7 (or later) container")
	}
	rports := map[string]int{}
	for _, p := range rpod.Spec.Containers[0].Ports {
		rports[p.Name] = p.ContainerPort
	}
	found := false
	for _, p := range rsvc.Spec.Ports {
		if p.Port == port && resolve(rports, p.TargetPort) != 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("redis.yaml: Service %s has no port %d targeting a Redis container port", host, port)
	}
}

// checkAdminPaths runs a server with an admin listener on loopback and GETs paths on it, and
// /api/health on the service listener.
func checkAdminPaths(t *testing.T, paths ...string) {
	t.Helper()
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func(a net.Addr) { addrc <- a }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("server: %v", err)
	}
	get := func(url string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", url, resp.Status)
		}
	}
	for _, p := range paths {
		get("http://" + srv.AdminAddr().String() + p)
	}
	get("http://" + addr.String() + "/api/health")
}

// TestPackagingDocs keeps docs/deploy/README.md and the Makefile in step with the files.
func TestPackagingDocs(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(repoRoot, "docs", "deploy")
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "README.md" {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !bytes.Contains(readme, []byte(filepath.ToSlash(rel))) {
			t.Errorf("docs/deploy/README.md does not mention %s", filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"What is tested here and what is not", "Dockerfile", "make image"} {
		if !bytes.Contains(readme, []byte(want)) {
			t.Errorf("docs/deploy/README.md does not mention %q", want)
		}
	}
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^image:.*\n(\t.*\n)*\t.*docker build .*--build-arg VERSION=`).Match(mk) {
		t.Error("Makefile: no `image` target running docker build --build-arg VERSION=…")
	}
}
