package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
// and selectors agree, and that the Dockerfile's build line stamps the version.

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

type composeFile struct {
	Services map[string]struct {
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
		DependsOn   []string          `yaml:"depends_on"`
	} `yaml:"services"`
}

// composeInterpolate replaces ${VAR}, ${VAR:?msg} and ${VAR:-default} as docker compose does.
func composeInterpolate(s string, vars map[string]string) string {
	return regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)(?::[?-][^}]*)?\}`).ReplaceAllStringFunc(s, func(m string) string {
		name := regexp.MustCompile(`^\$\{([A-Z_][A-Z0-9_]*)`).FindStringSubmatch(m)[1]
		return vars[name]
	})
}

func TestPackagingCompose(t *testing.T) {
	dir := filepath.Join(repoRoot, "docs", "deploy")
	var c composeFile
	readYAML(t, filepath.Join(dir, "compose.yaml"), &c)
	vars := map[string]string{"SIGNALRD_ACCESS_KEY": testKeyPack}

	sd, ok := c.Services["signalrd"]
	if !ok {
		t.Fatal("compose.yaml: no signalrd service")
	}
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
	}
	if sd.Build == nil || filepath.Clean(filepath.Join(dir, sd.Build.Context, sd.Build.Dockerfile)) != filepath.Clean(filepath.Join(repoRoot, "Dockerfile")) {
		t.Error("compose.yaml: signalrd is not built from the repository's Dockerfile")
	}
	if !strings.Contains(sd.Environment["SIGNALRD_ACCESS_KEY"], "${SIGNALRD_ACCESS_KEY:?") {
		t.Errorf("compose.yaml: SIGNALRD_ACCESS_KEY = %q, want it required from the caller (${SIGNALRD_ACCESS_KEY:?…})", sd.Environment["SIGNALRD_ACCESS_KEY"])
	}
	env := map[string]string{}
	for k, v := range sd.Environment {
		env[k] = composeInterpolate(v, vars)
	}
	checkServeEnv(t, "compose.yaml signalrd environment", env)
	checkServeArgs(t, "compose.yaml signalrd command", sd.Command)
	_, cfg, err := serveConfig(t, env, sd.Command)
	if err != nil {
		t.Fatalf("compose.yaml: signalrd configuration: %v", err)
	}
	listen, admin := checkListens(t, "compose.yaml signalrd", cfg)
	for _, p := range []int{listen, admin} {
		if !slices.Contains(sd.Expose, strconv.Itoa(p)) {
			t.Errorf("compose.yaml: signalrd listens on %d but exposes %v", p, sd.Expose)
		}
	}

	// The chat app: its connection string reaches signalrd by service name and port, sends
	// browsers to nginx, and carries the same key.
	chat, ok := c.Services["chat"]
	if !ok {
		t.Fatal("compose.yaml: no chat service")
	}
	cs, err := auth.ParseConnectionString(composeInterpolate(chat.Environment["SIGNALRD_CONNECTION_STRING"], vars))
	if err != nil {
		t.Fatalf("compose.yaml: chat SIGNALRD_CONNECTION_STRING: %v", err)
	}
	if cs.Endpoint.Hostname() != "signalrd" || cs.Port != listen {
		t.Errorf("compose.yaml: chat reaches signalrd at %s port %d, want host signalrd port %d", cs.Endpoint, cs.Port, listen)
	}
	if cs.AccessKey != testKeyPack {
		t.Errorf("compose.yaml: chat's access key is not ${SIGNALRD_ACCESS_KEY}")
	}
	if cs.ClientEndpoint == nil {
		t.Fatal("compose.yaml: chat connection string has no ClientEndpoint (browsers cannot resolve http://signalrd)")
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

	// nginx: proxies to both services on their ports, publishes the port ClientEndpoint names,
	// passes WebSocket upgrades and does not buffer.
	ngx, ok := c.Services["nginx"]
	if !ok {
		t.Fatal("compose.yaml: no nginx service")
	}
	var conf []byte
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
	for _, want := range []string{
		"server signalrd:" + strconv.Itoa(listen) + ";",
		"server chat:" + strconv.Itoa(chatPort) + ";",
		"location /client/",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_buffering off;",
		"proxy_http_version 1.1;",
	} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("nginx.conf lacks %q", want)
		}
	}
	ngxListen := regexp.MustCompile(`(?m)^\s*listen (\d+);`).FindSubmatch(conf)
	if ngxListen == nil {
		t.Fatal("nginx.conf: no listen port")
	}
	published := false
	for _, p := range ngx.Ports {
		parts := strings.Split(p, ":")
		if len(parts) >= 2 && parts[len(parts)-1] == string(ngxListen[1]) && parts[len(parts)-2] == cs.ClientEndpoint.Port() {
			published = true
		}
	}
	if !published {
		t.Errorf("compose.yaml: nginx ports %v do not publish nginx's %s on ClientEndpoint's port %s", ngx.Ports, ngxListen[1], cs.ClientEndpoint.Port())
	}
	if _, ok := c.Services["redis"]; ok {
		t.Error("compose.yaml: a redis service runs, but signalrd does not use Redis yet: keep it commented until scale-out")
	}
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sDeployment struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
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
				Containers []struct {
					Name    string   `yaml:"name"`
					Command []string `yaml:"command"`
					Args    []string `yaml:"args"`
					Env     []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom *struct {
							SecretKeyRef *struct {
								Name string `yaml:"name"`
								Key  string `yaml:"key"`
							} `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
					LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
					Resources      struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sService struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
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
	env := map[string]string{}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = testKeyPack
		default:
			env[e.Name] = e.Value
		}
		if e.Name == "SIGNALRD_ACCESS_KEY" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Error("deployment.yaml: SIGNALRD_ACCESS_KEY is not read from a Secret")
		}
	}
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
	resolve := func(port any) int {
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

	// The probes hit the admin port, and their paths answer 200 on a running admin listener.
	probes := map[string]*k8sProbe{"readinessProbe": ctr.ReadinessProbe, "livenessProbe": ctr.LivenessProbe}
	wantPath := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
	for name, pr := range probes {
		if pr == nil {
			t.Errorf("deployment.yaml: no %s", name)
			continue
		}
		if pr.HTTPGet.Path != wantPath[name] || resolve(pr.HTTPGet.Port) != admin {
			t.Errorf("deployment.yaml: %s GET %s on port %d, want %s on the admin port %d", name, pr.HTTPGet.Path, resolve(pr.HTTPGet.Port), wantPath[name], admin)
		}
	}
	checkAdminPaths(t, wantPath["readinessProbe"], wantPath["livenessProbe"])

	var svc k8sService
	readYAML(t, filepath.Join(dir, "service.yaml"), &svc)
	if svc.Kind != "Service" || !subsetOf(svc.Spec.Selector, pod.Metadata.Labels) {
		t.Errorf("service.yaml: kind %s selector %v does not select the pod labels %v", svc.Kind, svc.Spec.Selector, pod.Metadata.Labels)
	}
	var svcTargets []int
	for _, p := range svc.Spec.Ports {
		tp := resolve(p.TargetPort)
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
