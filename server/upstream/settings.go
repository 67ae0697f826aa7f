package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Auth types of a template (the emulator's and ARM's names).
const (
	AuthNone            = "None"
	AuthManagedIdentity = "ManagedIdentity"
)

// Categories of upstream events.
const (
	CategoryConnections = "connections"
	CategoryMessages    = "messages"
)

// Events of the connections category.
const (
	EventConnected    = "connected"
	EventDisconnected = "disconnected"
)

// SettingsFileName is the emulator's settings file name, written by `upstream init` and looked
// up when a directory is given to LoadSettings.
const SettingsFileName = "settings.json"

// ErrInvalidSettings is matched (errors.Is) by every error ParseSettings and LoadSettings return
// for a file that was read but is not acceptable; the error is a *SettingsError.
var ErrInvalidSettings = errors.New("upstream: invalid settings")

// SettingsError lists every problem found in upstream settings, each prefixed with the path of
// the offending value (e.g. "UpstreamSettings.Templates[1].UrlTemplate: ...").
type SettingsError struct{ Problems []string }

func (e *SettingsError) Error() string {
	return "upstream: invalid settings: " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrInvalidSettings) true.
func (e *SettingsError) Is(target error) bool { return target == ErrInvalidSettings }

// Auth is a template's upstream authentication. Only None can be honoured by signalrd (see the
// package documentation).
type Auth struct {
	Type     string `json:"Type"`               // AuthNone or AuthManagedIdentity
	Resource string `json:"Resource,omitempty"` // the token audience for ManagedIdentity
}

// Template is one upstream template. Patterns are "*", a comma-separated list of names (trimmed)
// or one name; "" means "*". URLTemplate may contain {hub}, {category} and {event}.
type Template struct {
	URLTemplate     string `json:"UrlTemplate"`
	HubPattern      string `json:"HubPattern"`
	CategoryPattern string `json:"CategoryPattern"`
	EventPattern    string `json:"EventPattern"`
	Auth            *Auth  `json:"Auth,omitempty"`
}

// Settings is the ordered list of templates; the first match wins. No templates means no event
// is sent anywhere.
type Settings struct {
	Templates []Template `json:"Templates"`
}

// Validate reports every problem of s as a *SettingsError, or nil. Settings from ParseSettings
// are always valid; Validate is for settings built in code.
func (s Settings) Validate() error {
	_, err := compile(s, "Templates")
	return err
}

// StarterSettings is what `signalrd upstream init` writes: the emulator's default, one template
// sending every event of every hub to a local Azure Functions host.
func StarterSettings() []byte {
	return []byte(`{
  "UpstreamSettings": {
    "Templates": [
      {
        "UrlTemplate": "http://localhost:7071/runtime/webhooks/signalr",
        "HubPattern": "*",
        "CategoryPattern": "*",
        "EventPattern": "*"
      }
    ]
  }
}
`)
}

// LoadSettings reads and parses a settings file. A directory means its settings.json, like the
// emulator's `-c <folder>`.
func LoadSettings(path string) (Settings, error) {
	data, err := readSettingsFile(path)
	if err != nil {
		return Settings{}, err
	}
	s, err := ParseSettings(data)
	if err != nil {
		return Settings{}, fmt.Errorf("upstream: load settings %s: %w", path, err)
	}
	return s, nil
}

// maxSettingsBytes bounds what LoadSettings reads: settings files are a few hundred bytes.
const maxSettingsBytes = 4 << 20

func readSettingsFile(path string) ([]byte, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, SettingsFileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("upstream: load settings: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSettingsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("upstream: load settings %s: %w", path, err)
	}
	if len(data) > maxSettingsBytes {
		return nil, fmt.Errorf("upstream: load settings %s: %w", path,
			&SettingsError{Problems: []string{fmt.Sprintf("file larger than %d bytes", maxSettingsBytes)}})
	}
	return data, nil
}

// ParseSettings parses upstream settings and validates every template, reporting all problems at
// once as a *SettingsError.
//
// Accepted shapes, with property names matched case-insensitively (like .NET configuration):
// the emulator's {"UpstreamSettings":{"Templates":[...]}}, a bare {"Templates":[...]}, and the
// ARM shapes {"Upstream":{"Templates":[...]}} and {"Properties":{"Upstream":{"Templates":[...]}}}
// (searched in that order; other top-level properties are ignored, so an appsettings.json works).
// A template with ARM's {"Auth":{"Type":"ManagedIdentity","ManagedIdentity":{"Resource":...}}}
// is accepted too. Input starting with '{' (after comments) is JSON, with the comments, trailing
// commas and byte order mark .NET's configuration reader tolerates; anything else is YAML (quote
// "*" there: a bare * starts a YAML alias).
//
// Validation: every template property must be known (a misspelt pattern silently matching
// everything would send events to the wrong place); patterns are trimmed, "" means "*", list
// entries are trimmed and empty ones skipped; CategoryPattern names must be "connections" or
// "messages"; UrlTemplate placeholders must be {hub}, {category} or {event} and the URL must be
// an absolute http or https URL; Key Vault references are rejected; Auth.Type must be None or
// ManagedIdentity.
func ParseSettings(data []byte) (Settings, error) {
	root, err := decodeTree(data)
	if err != nil {
		return Settings{}, &SettingsError{Problems: []string{err.Error()}}
	}
	var p problems
	list, path := findTemplates(root, &p)
	var s Settings
	switch l := list.(type) {
	case nil:
	case []any:
		for i, item := range l {
			tp := fmt.Sprintf("%s[%d]", path, i)
			before := len(p)
			t := parseTemplate(item, tp, &p)
			if len(p) == before {
				// Only well-typed templates are checked further: "must be a string" followed by
				// "is required" for the same value would be noise.
				ct := compileTemplate(t, tp, &p)
				t = ct.Template
			}
			s.Templates = append(s.Templates, t)
		}
	default:
		p.add(path, "must be a list of templates")
	}
	if len(p) > 0 {
		return Settings{}, &SettingsError{Problems: p}
	}
	return s, nil
}

type problems []string

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}

// decodeTree turns JSON or YAML into maps (map[string]any), lists ([]any), strings, json.Number,
// bools and nils. YAML scalars all become strings: YAML has no types a settings file cares about.
func decodeTree(data []byte) (any, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("the settings are empty")
	}
	var v any
	if startsJSON(trimmed) {
		jv, err := decodeJSON(data)
		if err != nil {
			return nil, err
		}
		v = jv
	} else {
		if err := yaml.Unmarshal(data, &v); err != nil {
			msg := "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")
			if bytes.Contains(data, []byte(": *")) {
				msg += ` (quote "*" in YAML, e.g. HubPattern: "*")`
			}
			return nil, errors.New(msg)
		}
		v = yamlTree(v)
	}
	if _, ok := v.(map[string]any); !ok {
		if v == nil {
			return nil, errors.New("the settings are empty")
		}
		return nil, errors.New("the settings must be an object (mapping)")
	}
	return v, nil
}

// startsJSON reports whether the first thing after leading comments is '{': the settings are
// then JSON (YAML flow mappings are not supported).
func startsJSON(b []byte) bool {
	for {
		b = bytes.TrimSpace(b)
		switch {
		case bytes.HasPrefix(b, []byte("//")):
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return false
			}
			b = b[i+1:]
		case bytes.HasPrefix(b, []byte("/*")):
			i := bytes.Index(b[2:], []byte("*/"))
			if i < 0 {
				return false
			}
			b = b[2+i+2:]
		default:
			return len(b) > 0 && b[0] == '{'
		}
	}
}

func decodeJSON(data []byte) (any, error) {
	clean := stripJSONC(data)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(clean, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := lineCol(clean, int(dec.InputOffset())-1) // the offset is past the token
		return nil, fmt.Errorf("invalid JSON at line %d, column %d: data after the top-level object", line, col)
	}
	return v, nil
}

func jsonError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, int(se.Offset)-1) // Offset counts the offending byte
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

func lineCol(data []byte, off int) (line, col int) {
	off = min(max(off, 0), len(data))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = off - bytes.LastIndexByte(before, '\n')
	return line, col
}

// stripJSONC blanks out // and /* */ comments and drops commas before a closing bracket, outside
// strings, keeping every other byte (and newline) in place so error positions stay right.
func stripJSONC(data []byte) []byte {
	if !bytes.Contains(data, []byte("/")) && !bytes.Contains(data, []byte(",")) {
		return data
	}
	out := slices.Clone(data)
	inString := false
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for ; i < len(out) && out[i] != '\n'; i++ {
				out[i] = ' '
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			end := bytes.Index(out[i+2:], []byte("*/"))
			stop := len(out)
			if end >= 0 {
				stop = i + 2 + end + 2
			}
			for ; i < stop; i++ {
				if out[i] != '\n' {
					out[i] = ' '
				}
			}
			i--
		case c == ',':
			j := i + 1
			for j < len(out) && (out[j] == ' ' || out[j] == '\t' || out[j] == '\n' || out[j] == '\r') {
				j++
			}
			if j < len(out) && (out[j] == '}' || out[j] == ']') {
				out[i] = ' '
			}
		}
	}
	return out
}

// yamlTree converts what yaml.v3 decodes into the JSON-like tree: non-string map keys and all
// scalars become strings.
func yamlTree(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = yamlTree(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = yamlTree(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = yamlTree(e)
		}
		return t
	case nil, string:
		return t
	default:
		return fmt.Sprint(t)
	}
}

// lookup finds a property case-insensitively; two spellings of one name are a problem.
func lookup(m map[string]any, name, path string, p *problems) (any, bool) {
	var (
		val   any
		found string
	)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic problem text
	for _, k := range keys {
		if !strings.EqualFold(k, name) {
			continue
		}
		if found != "" {
			p.add(path, "property %s appears twice (%q and %q); names are case-insensitive", name, found, k)
			continue
		}
		found, val = k, m[k]
	}
	return val, found != ""
}

// findTemplates returns the templates list (nil when absent) and its path for messages.
func findTemplates(root any, p *problems) (any, string) {
	m := root.(map[string]any)
	for _, shape := range [][]string{
		{"UpstreamSettings", "Templates"},
		{"Templates"},
		{"Upstream", "Templates"},
		{"Properties", "Upstream", "Templates"},
	} {
		cur, path := m, ""
		for i, name := range shape {
			if path != "" {
				path += "."
			}
			path += name
			v, ok := lookup(cur, name, path, p)
			if !ok {
				break
			}
			if i == len(shape)-1 {
				return v, path
			}
			if v == nil {
				return nil, path
			}
			next, isMap := v.(map[string]any)
			if !isMap {
				p.add(path, "must be an object")
				return nil, path
			}
			cur = next
		}
	}
	return nil, "Templates"
}

func stringProp(m map[string]any, name, path string, p *problems) string {
	v, ok := lookup(m, name, path, p)
	if !ok || v == nil {
		return ""
	}
	s, isString := v.(string)
	if !isString {
		p.add(path+"."+name, "must be a string")
		return ""
	}
	return s
}

func parseTemplate(item any, path string, p *problems) Template {
	m, ok := item.(map[string]any)
	if !ok {
		p.add(path, "must be an object")
		return Template{}
	}
	for k := range m {
		switch strings.ToLower(k) {
		case "urltemplate", "hubpattern", "categorypattern", "eventpattern", "auth":
		default:
			p.add(path, "unknown property %q (want UrlTemplate, HubPattern, CategoryPattern, EventPattern, Auth)", k)
		}
	}
	t := Template{
		URLTemplate:     stringProp(m, "UrlTemplate", path, p),
		HubPattern:      stringProp(m, "HubPattern", path, p),
		CategoryPattern: stringProp(m, "CategoryPattern", path, p),
		EventPattern:    stringProp(m, "EventPattern", path, p),
	}
	av, _ := lookup(m, "Auth", path, p)
	switch a := av.(type) {
	case nil:
	case map[string]any:
		apath := path + ".Auth"
		for k := range a {
			switch strings.ToLower(k) {
			case "type", "resource", "managedidentity":
			default:
				p.add(apath, "unknown property %q (want Type, Resource)", k)
			}
		}
		t.Auth = &Auth{Type: stringProp(a, "Type", apath, p), Resource: stringProp(a, "Resource", apath, p)}
		mi, _ := lookup(a, "ManagedIdentity", apath, p)
		switch mv := mi.(type) {
		case nil:
		case map[string]any:
			if r := stringProp(mv, "Resource", apath+".ManagedIdentity", p); r != "" && t.Auth.Resource == "" {
				t.Auth.Resource = r
			}
		default:
			p.add(apath+".ManagedIdentity", "must be an object")
		}
	default:
		p.add(path+".Auth", "must be an object")
	}
	return t
}

// normalize writes patterns and the auth type in their canonical form.
func normalize(t *Template) {
	t.URLTemplate = strings.TrimSpace(t.URLTemplate)
	for _, pat := range []*string{&t.HubPattern, &t.CategoryPattern, &t.EventPattern} {
		*pat = strings.TrimSpace(*pat)
		if *pat == "" {
			*pat = "*"
		}
	}
	if t.Auth != nil {
		if t.Auth.Type == "" || strings.EqualFold(t.Auth.Type, AuthNone) {
			t.Auth.Type = AuthNone
		} else if strings.EqualFold(t.Auth.Type, AuthManagedIdentity) {
			t.Auth.Type = AuthManagedIdentity
		}
	}
}

// pattern is a compiled HubPattern/CategoryPattern/EventPattern.
type pattern struct {
	all   bool
	names []string
}

func (p pattern) match(s string) bool {
	if p.all {
		return true
	}
	for _, n := range p.names {
		if strings.EqualFold(n, s) {
			return true
		}
	}
	return false
}

func compilePattern(s, path string, p *problems) pattern {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return pattern{all: true}
	}
	var pt pattern
	for n := range strings.SplitSeq(s, ",") {
		n = strings.TrimSpace(n)
		switch n {
		case "":
		case "*":
			pt.all = true // the emulator lets "*" in a list match everything too
		default:
			pt.names = append(pt.names, n)
		}
	}
	if !pt.all && len(pt.names) == 0 {
		p.add(path, "%q names nothing (use \"*\" to match everything)", s)
	}
	return pt
}

// urlPart is a literal piece of a URL template or a placeholder.
type urlPart struct {
	lit string
	ph  placeholder
}

type placeholder uint8

const (
	phNone placeholder = iota
	phHub
	phCategory
	phEvent
)

func compileURL(tmpl, path string, p *problems) []urlPart {
	tmpl = strings.TrimSpace(tmpl)
	if tmpl == "" {
		p.add(path, "is required")
		return nil
	}
	if strings.Contains(tmpl, "{@") {
		p.add(path, "Key Vault references ({@Microsoft.KeyVault(...)}) are not supported by signalrd; write the URL, including any secret, directly")
		return nil
	}
	var parts []urlPart
	rest, ok := tmpl, true
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			parts = append(parts, urlPart{lit: rest})
			break
		}
		if i > 0 {
			parts = append(parts, urlPart{lit: rest[:i]})
		}
		if rest[i] == '}' {
			p.add(path, "unmatched '}' in %q", tmpl)
			return nil
		}
		j := strings.IndexAny(rest[i+1:], "{}")
		if j < 0 || rest[i+1+j] == '{' {
			p.add(path, "unmatched '{' in %q", tmpl)
			return nil
		}
		name := rest[i : i+1+j+1]
		switch name {
		case "{hub}":
			parts = append(parts, urlPart{ph: phHub})
		case "{category}":
			parts = append(parts, urlPart{ph: phCategory})
		case "{event}":
			parts = append(parts, urlPart{ph: phEvent})
		default:
			p.add(path, "unknown placeholder %s (only {hub}, {category} and {event}, lower case, are replaced)", name)
			ok = false
		}
		rest = rest[i+1+j+1:]
	}
	if !ok {
		return nil
	}
	sample := expand(parts, "hub", CategoryConnections, EventConnected)
	u, err := url.Parse(sample)
	switch {
	case err != nil:
		p.add(path, "%q is not a valid URL: %v", tmpl, unwrapURLError(err))
		return nil
	case !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https"):
		p.add(path, "%q must be an absolute http:// or https:// URL", tmpl)
		return nil
	case u.Host == "":
		p.add(path, "%q has no host", tmpl)
		return nil
	}
	return parts
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func expand(parts []urlPart, hub, category, event string) string {
	var b strings.Builder
	for _, pt := range parts {
		switch pt.ph {
		case phNone:
			b.WriteString(pt.lit)
		case phHub:
			b.WriteString(escapeDataString(hub))
		case phCategory:
			b.WriteString(escapeDataString(category))
		case phEvent:
			b.WriteString(escapeDataString(event))
		}
	}
	return b.String()
}

// escapeDataString percent-encodes everything but RFC 3986 unreserved characters, like .NET's
// Uri.EscapeDataString, which the emulator uses for placeholders.
func escapeDataString(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// compiledTemplate is a validated template ready for matching.
type compiledTemplate struct {
	Template
	hub, category, event pattern
	url                  []urlPart
}

type compiledSettings struct {
	settings  Settings
	templates []*compiledTemplate
}

func compile(s Settings, path string) (*compiledSettings, error) {
	var p problems
	cs := &compiledSettings{}
	for i, t := range s.Templates {
		ct := compileTemplate(t, fmt.Sprintf("%s[%d]", path, i), &p)
		cs.templates = append(cs.templates, ct)
		cs.settings.Templates = append(cs.settings.Templates, ct.Template)
	}
	if len(p) > 0 {
		return nil, &SettingsError{Problems: p}
	}
	return cs, nil
}

// compileTemplate validates one template (adding to p) and returns it compiled, with a
// normalized deep copy of t.
func compileTemplate(t Template, path string, p *problems) *compiledTemplate {
	ct := &compiledTemplate{
		url:      compileURL(t.URLTemplate, path+".UrlTemplate", p),
		hub:      compilePattern(t.HubPattern, path+".HubPattern", p),
		category: compilePattern(t.CategoryPattern, path+".CategoryPattern", p),
		event:    compilePattern(t.EventPattern, path+".EventPattern", p),
	}
	for _, n := range ct.category.names {
		if !strings.EqualFold(n, CategoryConnections) && !strings.EqualFold(n, CategoryMessages) {
			p.add(path+".CategoryPattern", "unknown category %q (want connections, messages or *)", n)
		}
	}
	if t.Auth != nil && t.Auth.Type != "" && !strings.EqualFold(t.Auth.Type, AuthNone) &&
		!strings.EqualFold(t.Auth.Type, AuthManagedIdentity) {
		p.add(path+".Auth.Type", "unknown type %q (want None or ManagedIdentity)", t.Auth.Type)
	}
	if t.Auth != nil {
		a := *t.Auth
		t.Auth = &a
	}
	normalize(&t)
	ct.Template = t
	return ct
}

// match returns the index of the first template matching the event and its URL.
func (cs *compiledSettings) match(hub, category, event string) (int, string, bool) {
	for i, t := range cs.templates {
		if t.hub.match(hub) && t.category.match(category) && t.event.match(event) {
			return i, expand(t.url, hub, category, event), true
		}
	}
	return -1, "", false
}

// Clone returns a deep copy of s.
func (s Settings) Clone() Settings {
	out := Settings{Templates: slices.Clone(s.Templates)}
	for i := range out.Templates {
		if a := out.Templates[i].Auth; a != nil {
			c := *a
			out.Templates[i].Auth = &c
		}
	}
	return out
}
