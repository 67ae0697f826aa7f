package upstream

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func tmpl(url, hub, cat, ev string) Template {
	return Template{URLTemplate: url, HubPattern: hub, CategoryPattern: cat, EventPattern: ev}
}

func TestParseSettings(t *testing.T) {
	t.Parallel()
	const fn = "http://localhost:7071/runtime/webhooks/signalr"
	all := tmpl(fn, "*", "*", "*")
	for _, tc := range []struct {
		name string
		in   string
		want Settings
	}{
		{"emulator shape", `{"UpstreamSettings":{"Templates":[{"UrlTemplate":"` + fn + `","EventPattern":"*","HubPattern":"*","CategoryPattern":"*"}]}}`,
			Settings{Templates: []Template{all}}},
		{"case-insensitive names", `{"upstreamsettings":{"TEMPLATES":[{"urlTemplate":"` + fn + `","eventpattern":"*","hubPattern":"*","categoryPATTERN":"*"}]}}`,
			Settings{Templates: []Template{all}}},
		{"bare templates", `{"Templates":[{"UrlTemplate":"` + fn + `"}]}`, Settings{Templates: []Template{all}}},
		{"ARM shape", `{"properties":{"upstream":{"templates":[{"urlTemplate":"https://f.example/api/{hub}","hubPattern":"chat",
			"auth":{"type":"ManagedIdentity","managedIdentity":{"resource":"api://x"}}}]}}}`,
			Settings{Templates: []Template{{URLTemplate: "https://f.example/api/{hub}", HubPattern: "chat", CategoryPattern: "*", EventPattern: "*",
				Auth: &Auth{Type: AuthManagedIdentity, Resource: "api://x"}}}}},
		{"upstream shape, auth none", `{"Upstream":{"Templates":[{"UrlTemplate":"` + fn + `","Auth":{"Type":"none"}}]}}`,
			Settings{Templates: []Template{{URLTemplate: fn, HubPattern: "*", CategoryPattern: "*", EventPattern: "*", Auth: &Auth{Type: AuthNone}}}}},
		{"patterns trimmed, empty means all", `{"Templates":[{"UrlTemplate":"  ` + fn + ` ","HubPattern":" a, b ","CategoryPattern":"","EventPattern":null}]}`,
			Settings{Templates: []Template{tmpl(fn, "a, b", "*", "*")}}},
		{"order kept", `{"Templates":[{"UrlTemplate":"http://a/"},{"UrlTemplate":"http://b/{event}","CategoryPattern":"messages"}]}`,
			Settings{Templates: []Template{tmpl("http://a/", "*", "*", "*"), tmpl("http://b/{event}", "*", "messages", "*")}}},
		{"no section", `{"Logging":{"LogLevel":{"Default":"Information"}}}`, Settings{}},
		{"null templates", `{"UpstreamSettings":{"Templates":null}}`, Settings{}},
		{"empty templates", `{"UpstreamSettings":{"Templates":[]}}`, Settings{}},
		{"jsonc", "\xef\xbb\xbf// written by hand\n{\"UpstreamSettings\": {/* list */ \"Templates\": [{\"UrlTemplate\": \"http://a//b\",},],},}\n",
			Settings{Templates: []Template{tmpl("http://a//b", "*", "*", "*")}}},
		{"yaml", "UpstreamSettings:\n  Templates:\n    - UrlTemplate: http://localhost:7071/api/{hub}/{category}/{event}\n      HubPattern: \"*\"\n      categorypattern: messages\n      EventPattern: send, broadcast\n",
			Settings{Templates: []Template{tmpl("http://localhost:7071/api/{hub}/{category}/{event}", "*", "messages", "send, broadcast")}}},
		{"yaml bare, numeric scalar", "templates:\n- urltemplate: https://x.example/\n  eventpattern: 42\n",
			Settings{Templates: []Template{tmpl("https://x.example/", "*", "*", "42")}}},
		{"star in list", `{"Templates":[{"UrlTemplate":"http://a/","HubPattern":"a,*"}]}`, Settings{Templates: []Template{tmpl("http://a/", "a,*", "*", "*")}}},
		{"empty list entries skipped", `{"Templates":[{"UrlTemplate":"http://a/","EventPattern":"a,,b,"}]}`, Settings{Templates: []Template{tmpl("http://a/", "*", "*", "a,,b,")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSettings([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseSettingsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want []string // every problem, in order
	}{
		{"empty", "", []string{"the settings are empty"}},
		{"blank", " \n\t", []string{"the settings are empty"}},
		{"yaml comment only", "# nothing\n", []string{"the settings are empty"}},
		{"bad json", "{\n  \"Templates\": [\n    {\"UrlTemplate\" \"x\"}\n  ]\n}", []string{
			"invalid JSON at line 3, column 20: invalid character '\"' after object key"}},
		{"truncated json", `{"Templates":[`, []string{"invalid JSON: unexpected end of input"}},
		{"yaml flow mapping is read as JSON", `{Templates: []}`, []string{"invalid JSON at line 1, column 2: invalid character 'T' looking for beginning of object key string"}},
		{"trailing data", `{"Templates":[]} {}`, []string{"invalid JSON at line 1, column 18: data after the top-level object"}},
		{"top-level list", `- a`, []string{"the settings must be an object (mapping)"}},
		{"json top-level list", `[{"UrlTemplate":"http://a/"}]`, []string{"the settings must be an object (mapping)"}},
		{"yaml unquoted star", "Templates:\n  - UrlTemplate: http://a/\n    HubPattern: *\n", []string{
			`invalid YAML: line 3: did not find expected alphabetic or numeric character (quote "*" in YAML, e.g. HubPattern: "*")`}},
		{"section not object", `{"UpstreamSettings":[]}`, []string{"UpstreamSettings: must be an object"}},
		{"templates not list", `{"UpstreamSettings":{"Templates":{"UrlTemplate":"http://a/"}}}`, []string{"UpstreamSettings.Templates: must be a list of templates"}},
		{"template not object", `{"Templates":["http://a/"]}`, []string{"Templates[0]: must be an object"}},
		{"missing url", `{"Templates":[{"HubPattern":"chat"}]}`, []string{"Templates[0].UrlTemplate: is required"}},
		{"relative url", `{"Templates":[{"UrlTemplate":"/api/{hub}"}]}`, []string{`Templates[0].UrlTemplate: "/api/{hub}" must be an absolute http:// or https:// URL`}},
		{"other scheme", `{"Templates":[{"UrlTemplate":"ftp://a/"}]}`, []string{`Templates[0].UrlTemplate: "ftp://a/" must be an absolute http:// or https:// URL`}},
		{"no host", `{"Templates":[{"UrlTemplate":"http:///x"}]}`, []string{`Templates[0].UrlTemplate: "http:///x" has no host`}},
		{"unparsable url", `{"Templates":[{"UrlTemplate":"http://a b/"}]}`, []string{`Templates[0].UrlTemplate: "http://a b/" is not a valid URL: invalid character " " in host name`}},
		{"unknown placeholder", `{"Templates":[{"UrlTemplate":"http://a/{Hub}/{connection}"}]}`, []string{
			"Templates[0].UrlTemplate: unknown placeholder {Hub} (only {hub}, {category} and {event}, lower case, are replaced)",
			"Templates[0].UrlTemplate: unknown placeholder {connection} (only {hub}, {category} and {event}, lower case, are replaced)"}},
		{"unmatched open", `{"Templates":[{"UrlTemplate":"http://a/{hub"}]}`, []string{`Templates[0].UrlTemplate: unmatched '{' in "http://a/{hub"`}},
		{"unmatched close", `{"Templates":[{"UrlTemplate":"http://a/hub}"}]}`, []string{`Templates[0].UrlTemplate: unmatched '}' in "http://a/hub}"`}},
		{"key vault", `{"Templates":[{"UrlTemplate":"https://f.example/api?code={@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/k)}"}]}`, []string{
			"Templates[0].UrlTemplate: Key Vault references ({@Microsoft.KeyVault(...)}) are not supported by signalrd; write the URL, including any secret, directly"}},
		{"unknown category", `{"Templates":[{"UrlTemplate":"http://a/","CategoryPattern":"messages, connection"}]}`, []string{
			`Templates[0].CategoryPattern: unknown category "connection" (want connections, messages or *)`}},
		{"pattern names nothing", `{"Templates":[{"UrlTemplate":"http://a/","EventPattern":" , "}]}`, []string{
			`Templates[0].EventPattern: "," names nothing (use "*" to match everything)`}},
		{"non-string", `{"Templates":[{"UrlTemplate":42,"HubPattern":true}]}`, []string{
			"Templates[0].UrlTemplate: must be a string", "Templates[0].HubPattern: must be a string"}},
		{"unknown property", `{"Templates":[{"UrlTemplate":"http://a/","HubPatern":"chat"}]}`, []string{
			`Templates[0]: unknown property "HubPatern" (want UrlTemplate, HubPattern, CategoryPattern, EventPattern, Auth)`}},
		{"duplicate property", `{"Templates":[{"UrlTemplate":"http://a/","urltemplate":"http://b/"}]}`, []string{
			`Templates[0]: property UrlTemplate appears twice ("UrlTemplate" and "urltemplate"); names are case-insensitive`}},
		{"bad auth type", `{"Templates":[{"UrlTemplate":"http://a/","Auth":{"Type":"Basic"}}]}`, []string{
			`Templates[0].Auth.Type: unknown type "Basic" (want None or ManagedIdentity)`}},
		{"auth not object", `{"Templates":[{"UrlTemplate":"http://a/","Auth":"None"}]}`, []string{"Templates[0].Auth: must be an object"}},
		{"auth unknown property", `{"Templates":[{"UrlTemplate":"http://a/","Auth":{"Type":"None","Key":"x"}}]}`, []string{
			`Templates[0].Auth: unknown property "Key" (want Type, Resource)`}},
		{"every problem listed", `{"UpstreamSettings":{"Templates":[
			{"UrlTemplate":"http://ok/"},
			{"UrlTemplate":"nope","CategoryPattern":"message"},
			{"HubPattern":1},
			{"UrlTemplate":"http://x/{@Microsoft.KeyVault(SecretUri=u)}","Auth":{"Type":"Cert"}}]}}`, []string{
			`UpstreamSettings.Templates[1].UrlTemplate: "nope" must be an absolute http:// or https:// URL`,
			`UpstreamSettings.Templates[1].CategoryPattern: unknown category "message" (want connections, messages or *)`,
			"UpstreamSettings.Templates[2].HubPattern: must be a string",
			"UpstreamSettings.Templates[3].UrlTemplate: Key Vault references ({@Microsoft.KeyVault(...)}) are not supported by signalrd; write the URL, including any secret, directly",
			`UpstreamSettings.Templates[3].Auth.Type: unknown type "Cert" (want None or ManagedIdentity)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSettings([]byte(tc.in))
			var se *SettingsError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSettings) {
				t.Fatalf("err = %v, want a *SettingsError", err)
			}
			if !reflect.DeepEqual(se.Problems, tc.want) {
				t.Fatalf("problems:\n got  %q\n want %q", se.Problems, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "upstream: invalid settings: ") {
				t.Fatalf("error text %q", err)
			}
		})
	}
}

func TestValidateStatic(t *testing.T) {
	t.Parallel()
	if err := (Settings{Templates: []Template{tmpl("http://a/{hub}", "", "messages", "")}}).Validate(); err != nil {
		t.Fatal(err)
	}
	err := Settings{Templates: []Template{tmpl("", "", "", ""), {URLTemplate: "http://a/", Auth: &Auth{Type: "x"}}}}.Validate()
	var se *SettingsError
	if !errors.As(err, &se) || len(se.Problems) != 2 {
		t.Fatalf("err = %v", err)
	}
	if _, err := New(Options{Settings: Settings{Templates: []Template{tmpl("x", "", "", "")}}}); !errors.Is(err, ErrInvalidSettings) {
		t.Fatalf("New with invalid static settings: %v", err)
	}
}

func TestStarterSettings(t *testing.T) {
	t.Parallel()
	s, err := ParseSettings(StarterSettings())
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{Templates: []Template{tmpl("http://localhost:7071/runtime/webhooks/signalr", "*", "*", "*")}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v", s)
	}
	if !json.Valid(StarterSettings()) {
		t.Fatal("starter settings are not plain JSON")
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	c, err := New(Options{Settings: Settings{Templates: []Template{
		tmpl("http://one/{hub}/{category}/{event}", "chat", "messages", "send, Broadcast"),
		tmpl("http://two/{event}", "chat, game", "connections", "connected"),
		tmpl("http://three/", "*", "messages", "*"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		hub, cat, ev string
		want         string
	}{
		{"chat", "messages", "send", "http://one/chat/messages/send"},
		{"Chat", "MESSAGES", "broadcast", "http://one/Chat/MESSAGES/broadcast"}, // case-insensitive, values as given
		{"chat", "messages", "other", "http://three/"},                          // first match wins, falls through
		{"game", "connections", "connected", "http://two/connected"},
		{"game", "connections", "disconnected", ""},
		{"lobby", "messages", "send", "http://three/"},
		{"lobby", "connections", "connected", ""},
	} {
		got, ok := c.Match(tc.hub, tc.cat, tc.ev)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("Match(%q, %q, %q) = %q, %v; want %q", tc.hub, tc.cat, tc.ev, got, ok, tc.want)
		}
	}
	empty, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := empty.Match("h", "messages", "e"); ok {
		t.Fatalf("no templates matched %q", u)
	}
}

func TestPlaceholderEscaping(t *testing.T) {
	t.Parallel()
	c, err := New(Options{Settings: Settings{Templates: []Template{tmpl("https://f.example/api/{hub}/{event}?cat={category}&code=k", "", "", "")}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.Match("a b/c", "messages", "x&y=z?#%é~._-")
	want := "https://f.example/api/a%20b%2Fc/x%26y%3Dz%3F%23%25%C3%A9~._-?cat=messages&code=k"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{string(ConnectedBody()), `{"type":10}`},
		{string(DisconnectedBody("")), `{"Type":11}`},
		{string(DisconnectedBody("Connection closed with an error.")), `{"Type":11,"Error":"Connection closed with an error."}`},
		{string(DisconnectedBody("a \"q\" <b>\n")), `{"Type":11,"Error":"a \"q\" <b>\n"}`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

func TestSignature(t *testing.T) {
	t.Parallel()
	// HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), a published vector.
	const v = "sha256=F7BC83F430538424B13298E6AA6FB143EF4D59A14946175997479DBC2D1A3CD8"
	if got := Signature("The quick brown fox jumps over the lazy dog", []string{"key"}); got != v {
		t.Fatalf("got %s", got)
	}
	if got := Signature("The quick brown fox jumps over the lazy dog", []string{"key", "", "key"}); got != v+","+v {
		t.Fatalf("got %s", got)
	}
	if got := Signature("c", nil); got != "" {
		t.Fatalf("got %q", got)
	}
}

func FuzzParseSettings(f *testing.F) {
	f.Add(StarterSettings())
	f.Add([]byte(`{"Templates":[{"UrlTemplate":"http://a/{hub}/{event}","HubPattern":"a, b","Auth":{"Type":"ManagedIdentity"}}]}`))
	f.Add([]byte("Templates:\n - UrlTemplate: https://x/{category}\n   EventPattern: \"*\"\n"))
	f.Add([]byte("// c\n{\"Templates\":[{\"UrlTemplate\":\"http://a/\",},]}"))
	f.Add([]byte(`{"Templates":[{"UrlTemplate":"http://a/{@x}"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSettings(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSettings) {
				t.Fatalf("error %v is not ErrInvalidSettings", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed settings do not validate: %v", err)
		}
		// Round trip: what we accept, written back as JSON, reads the same.
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParseSettings(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(s, s2) && !(len(s.Templates) == 0 && len(s2.Templates) == 0) {
			t.Fatalf("round trip changed settings:\n%+v\n%+v", s, s2)
		}
		cs, err := compile(s, "Templates")
		if err != nil {
			t.Fatal(err)
		}
		for i := range cs.templates {
			cs.match("h", CategoryMessages, "e")
			_ = i
		}
	})
}
