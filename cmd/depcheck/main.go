package main

// The rules: which project packages may import which, and that viper stays in cmd. Input is
// `go list -json ./...`.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

const module = "github.com/signalrd/signalrd/"

// allowed lists, per package prefix, the project package prefixes it may import.
var allowed = []struct {
	pkg   string
	may   []string
	never []string
}{
	{"protocol/", []string{"protocol"}, nil},
	{"protocol", []string{}, nil},
	{"router", []string{}, nil},
	{"auth", []string{}, nil},
	{"storage", []string{}, nil},
	{"transport", []string{"protocol"}, nil},
	{"sdk/", []string{"protocol", "auth", "sdk"}, nil},
	{"server/servertest", []string{"server", "auth", "protocol", "router", "transport", "storage"}, nil},
	{"server/upstream", []string{"protocol", "auth"}, nil},
	{"server", []string{"protocol", "router", "transport", "auth", "storage", "server/upstream"}, nil},
	{"cmd/", []string{"server", "auth", "protocol", "sdk", "storage", "router", "transport", "e2e/chatapp"}, nil},
	// The chat sample is an app server like any user's: the SDK only, never the service.
	{"e2e/chatapp", []string{"sdk", "auth", "protocol"}, nil},
	{"e2e", []string{"server", "auth", "protocol", "sdk", "router", "transport", "storage", "e2e"}, nil},
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func main() {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "depcheck: go list:", err)
		os.Exit(2)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	bad := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "depcheck:", err)
			os.Exit(2)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			if strings.Contains(imp, "spf13/viper") && !strings.HasPrefix(rel, "cmd/") {
				fmt.Printf("%s imports viper: only cmd may\n", rel)
				bad++
			}
			if strings.HasPrefix(imp, "nhooyr.io/websocket") {
				fmt.Printf("%s imports nhooyr.io/websocket: use github.com/coder/websocket\n", rel)
				bad++
			}
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if !permitted(rel, dep) {
				fmt.Printf("%s must not import %s\n", rel, dep)
				bad++
			}
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
	fmt.Println("depcheck: import rules hold")
}

func permitted(pkg, dep string) bool {
	if dep == pkg || strings.HasPrefix(dep, pkg+"/") && pkg != "server" && pkg != "protocol" {
		return true
	}
	for _, rule := range allowed {
		if pkg == rule.pkg || strings.HasPrefix(pkg, strings.TrimSuffix(rule.pkg, "/")+"/") && strings.HasSuffix(rule.pkg, "/") {
			for _, m := range rule.may {
				if dep == m || strings.HasPrefix(dep, m+"/") {
					return true
				}
			}
			return false
		}
	}
	return true
}
