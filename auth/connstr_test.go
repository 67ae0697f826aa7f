package auth

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParseConnectionStringValid(t *testing.T) {
	t.Parallel()
	const key = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	tests := []struct {
		name                       string
		in                         string
		endpoint, accessKey, ver   string
		port                       int
		clientEndpoint, serverEndp string // "" = nil
		authType, clientID         string
	}{
		{name: "emulator", in: "Endpoint=http://localhost;Port=8888;AccessKey=" + key + ";Version=1.0;",
			endpoint: "http://localhost:8888", accessKey: key, ver: "1.0", port: 8888},
		{name: "minimal two segments", in: "Endpoint=https://aaa;AccessKey=bbb",
			endpoint: "https://aaa", accessKey: "bbb"},
		{name: "keys case-insensitive and trimmed, values trimmed", in: "  eNdPoInT = https://aaa.service.signalr.net  ; ACCESSKEY =  bbb ",
			endpoint: "https://aaa.service.signalr.net", accessKey: "bbb"},
		{name: "empty segments ignored", in: ";;Endpoint=https://aaa;;;AccessKey=bbb;;",
			endpoint: "https://aaa", accessKey: "bbb"},
		{name: "segment without = ignored", in: "Endpoint=https://aaa;garbage;AccessKey=bbb",
			endpoint: "https://aaa", accessKey: "bbb"},
		{name: "split on first =", in: "Endpoint=https://aaa;AccessKey=abc==;",
			endpoint: "https://aaa", accessKey: "abc=="},
		{name: "trailing slashes trimmed", in: "Endpoint=https://aaa//;AccessKey=bbb",
			endpoint: "https://aaa", accessKey: "bbb"},
		{name: "path kept without trailing slash", in: "Endpoint=https://aaa/sub/;AccessKey=bbb",
			endpoint: "https://aaa/sub", accessKey: "bbb"},
		{name: "port replaces endpoint port", in: "Endpoint=http://aaa:500;AccessKey=bbb;Port=400",
			endpoint: "http://aaa:400", accessKey: "bbb", port: 400},
		{name: "port with plus sign like int.TryParse", in: "Endpoint=http://aaa;AccessKey=bbb;Port=+65535",
			endpoint: "http://aaa:65535", accessKey: "bbb", port: 65535},
		{name: "port 1", in: "Endpoint=http://aaa;AccessKey=bbb;Port=1",
			endpoint: "http://aaa:1", accessKey: "bbb", port: 1},
		{name: "upper-case scheme and host normalized", in: "Endpoint=HTTPS://AAA.Example;AccessKey=bbb",
			endpoint: "https://aaa.example", accessKey: "bbb"},
		{name: "ipv6 with port", in: "Endpoint=http://[::1];AccessKey=k;Port=8080",
			endpoint: "http://[::1]:8080", accessKey: "k", port: 8080},
		{name: "version preview", in: "Endpoint=https://aaa;AccessKey=bbb;Version=1.1-preview",
			endpoint: "https://aaa", accessKey: "bbb", ver: "1.1-preview"},
		{name: "version unicode digits like .NET \\d", in: "Endpoint=https://aaa;AccessKey=bbb;Version=1.٣",
			endpoint: "https://aaa", accessKey: "bbb", ver: "1.٣"},
		{name: "client and server endpoints without port applied", in: "endpoint=http://aaa:500;accesskey=k;port=400;clientEndpoint=http://bbb;serverEndpoint=http://ccc:500/",
			endpoint: "http://aaa:400", accessKey: "k", port: 400, clientEndpoint: "http://bbb", serverEndp: "http://ccc:500/"},
		{name: "empty access key value is present", in: "Endpoint=https://aaa;AccessKey=",
			endpoint: "https://aaa"},
		{name: "aad system msi", in: "endpoint=https://aaa;AuthType=aad;",
			endpoint: "https://aaa", authType: "aad"},
		{name: "aad user msi", in: "endpoint=https://aaa;AuthType=AAD;clientId=123;",
			endpoint: "https://aaa", authType: "AAD", clientID: "123"},
		{name: "aad app secret", in: "endpoint=https://aaa;AuthType=aad;clientId=foo;clientSecret=bar;tenantId=t",
			endpoint: "https://aaa", authType: "aad", clientID: "foo"},
		{name: "aad tenant only ignored", in: "endpoint=https://aaa;AuthType=aad;tenantId=xxxx;",
			endpoint: "https://aaa", authType: "aad"},
		{name: "azure default credential", in: "endpoint=https://aaa;AuthType=Azure;clientSecret=x",
			endpoint: "https://aaa", authType: "Azure"},
		{name: "azure.msi", in: "endpoint=https://aaa;AuthType=azure.msi;clientId=1",
			endpoint: "https://aaa", authType: "azure.msi", clientID: "1"},
		{name: "azure.app cert", in: "endpoint=https://aaa;AuthType=azure.app;clientId=1;tenantId=2;clientCert=/p.pem",
			endpoint: "https://aaa", authType: "azure.app", clientID: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, err := ParseConnectionString(tt.in)
			if err != nil {
				t.Fatalf("ParseConnectionString(%q) error: %v", tt.in, err)
			}
			if got := cs.Endpoint.String(); got != tt.endpoint {
				t.Errorf("Endpoint = %q, want %q", got, tt.endpoint)
			}
			if cs.AccessKey != tt.accessKey || cs.Version != tt.ver || cs.Port != tt.port {
				t.Errorf("AccessKey/Version/Port = %q/%q/%d, want %q/%q/%d", cs.AccessKey, cs.Version, cs.Port, tt.accessKey, tt.ver, tt.port)
			}
			if cs.AuthType != tt.authType || cs.ClientID != tt.clientID {
				t.Errorf("AuthType/ClientID = %q/%q, want %q/%q", cs.AuthType, cs.ClientID, tt.authType, tt.clientID)
			}
			checkURL(t, "ClientEndpoint", cs.ClientEndpoint, tt.clientEndpoint)
			checkURL(t, "ServerEndpoint", cs.ServerEndpoint, tt.serverEndp)
		})
	}
}

func checkURL(t *testing.T, name string, got *url.URL, want string) {
	t.Helper()
	switch {
	case want == "" && got != nil:
		t.Errorf("%s = %q, want nil", name, got.String())
	case want != "" && got == nil:
		t.Errorf("%s = nil, want %q", name, want)
	case want != "" && got.String() != want:
		t.Errorf("%s = %q, want %q", name, got.String(), want)
	}
}

func TestParseConnectionStringInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "fewer than two segments"},
		{"single segment", "Endpoint=https://aaa", "fewer than two segments"},
		{"single access key", "AccessKey=xxx", "fewer than two segments"},
		{"single no equals", "XXX", "fewer than two segments"},
		{"only separators", ";;;", "fewer than two segments"},
		{"missing endpoint", "AccessKey=a;Version=1.0", "missing required property Endpoint"},
		{"two segments without =", "foo;bar", "missing required property Endpoint"},
		{"duplicate key", "Endpoint=https://a;AccessKey=b;accesskey=c", `duplicate property "accesskey"`},
		{"duplicate key after trim", "Endpoint=https://a;AccessKey=b; ACCESSKEY =b", `duplicate property "ACCESSKEY"`},
		{"endpoint not absolute", "Endpoint=aaa;AccessKey=bbb;", "invalid value for Endpoint"},
		{"endpoint value with =", "Endpoint=endpoint=aaa;AccessKey=bbb;", "invalid value for Endpoint"},
		{"endpoint ftp", "Endpoint=ftp://aaa;AccessKey=bbb", "invalid value for Endpoint"},
		{"endpoint ws", "Endpoint=ws://aaa;AccessKey=bbb", "invalid value for Endpoint"},
		{"endpoint empty host", "Endpoint=http://;AccessKey=bbb", "invalid value for Endpoint"},
		{"endpoint only slashes", "Endpoint=http:///;AccessKey=bbb", "invalid value for Endpoint"},
		{"endpoint opaque", "Endpoint=http:aaa;AccessKey=bbb", "invalid value for Endpoint"},
		{"endpoint bad port", "Endpoint=http://aaa:70000;AccessKey=bbb", "invalid value for Endpoint"},
		{"endpoint empty", "Endpoint=;AccessKey=bbb", "invalid value for Endpoint"},
		{"version abc", "Endpoint=https://aaa;AccessKey=bbb;version=abc", `Version "abc" is not supported`},
		{"version 1.x", "Endpoint=https://aaa;AccessKey=bbb;version=1.x", `Version "1.x" is not supported`},
		{"version 2.0", "Endpoint=https://aaa;AccessKey=bbb;version=2.0", `Version "2.0" is not supported`},
		{"version 1", "Endpoint=https://aaa;AccessKey=bbb;version=1", `Version "1" is not supported`},
		{"version empty", "Endpoint=https://aaa;AccessKey=bbb;version=", `Version "" is not supported`},
		{"version bad suffix char", "Endpoint=https://aaa;AccessKey=bbb;version=1.0+x", `Version "1.0+x" is not supported`},
		{"port fraction", "Endpoint=https://aaa;AccessKey=bbb;version=1.0;port=2.3", "invalid value for Port"},
		{"port too large", "Endpoint=https://aaa;AccessKey=bbb;port=1000000", "invalid value for Port"},
		{"port 65536", "Endpoint=https://aaa;AccessKey=bbb;port=65536", "invalid value for Port"},
		{"port zero", "Endpoint=https://aaa;AccessKey=bbb;port=0", "invalid value for Port"},
		{"port negative", "Endpoint=https://aaa;AccessKey=bbb;port=-1", "invalid value for Port"},
		{"port empty", "Endpoint=https://aaa;AccessKey=bbb;port=", "invalid value for Port"},
		{"port text", "Endpoint=https://aaa;AccessKey=bbb;port=http", "invalid value for Port"},
		{"client endpoint relative", "endpoint=https://aaa;clientEndpoint=aaa;AccessKey=bbb;", "invalid value for ClientEndpoint"},
		{"client endpoint with =", "endpoint=https://aaa;ClientEndpoint=endpoint=aaa;AccessKey=bbb;", "invalid value for ClientEndpoint"},
		{"client endpoint ws", "endpoint=https://aaa;ClientEndpoint=wss://aaa;AccessKey=bbb;", "invalid value for ClientEndpoint"},
		{"server endpoint relative", "endpoint=https://aaa;serverEndpoint=/x;AccessKey=bbb;", "invalid value for ServerEndpoint"},
		{"missing access key", "Endpoint=https://aaa;Version=1.0", "missing required property AccessKey"},
		{"unknown auth type needs key", "Endpoint=https://aaa;AuthType=foo", "missing required property AccessKey"},
		{"aad app without secret", "endpoint=https://aaa;AuthType=aad;clientId=123;tenantId=t", "ClientSecret or ClientCert"},
		{"azure.app without secret", "endpoint=https://aaa;AuthType=azure.app;clientId=123;tenantId=t", "ClientSecret or ClientCert"},
		{"azure.app without client id", "endpoint=https://aaa;AuthType=azure.app;tenantId=t;clientSecret=s", "missing required property ClientId"},
		{"azure.app without tenant", "endpoint=https://aaa;AuthType=azure.app;clientId=c;clientSecret=s", "missing required property TenantId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConnectionString(tt.in)
			if err == nil {
				t.Fatalf("ParseConnectionString(%q) succeeded, want error containing %q", tt.in, tt.wantErr)
			}
			if !errors.Is(err, ErrConnectionString) {
				t.Errorf("error %v does not wrap ErrConnectionString", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "auth: parse connection string: ") {
				t.Errorf("error %q lacks the operation prefix", err)
			}
		})
	}
}

func TestParseConnectionStringNeverLeaksSecrets(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"Endpoint=https://aaa;AccessKey=SECRETKEY;accesskey=SECRETKEY",
		"endpoint=https://aaa;AuthType=azure.app;clientId=c;clientSecret=SECRETKEY;clientSecret=SECRETKEY",
		"Endpoint=bad;AccessKey=SECRETKEY",
	} {
		_, err := ParseConnectionString(in)
		if err == nil || strings.Contains(err.Error(), "SECRETKEY") {
			t.Errorf("ParseConnectionString(%q) error %v: want an error without the secret", in, err)
		}
	}
}

func TestFormatConnectionString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		endpoint string
		port     int
		key      string
		want     string
	}{
		{"http://localhost", 8888, "ABC", "Endpoint=http://localhost;Port=8888;AccessKey=ABC;Version=1.0;"},
		{"https://x.example", 0, "k=", "Endpoint=https://x.example;AccessKey=k=;Version=1.0;"},
	}
	for _, tt := range tests {
		got := FormatConnectionString(tt.endpoint, tt.port, tt.key)
		if got != tt.want {
			t.Errorf("FormatConnectionString = %q, want %q", got, tt.want)
		}
		cs, err := ParseConnectionString(got)
		if err != nil {
			t.Fatalf("round trip parse: %v", err)
		}
		if cs.AccessKey != tt.key || cs.Port != tt.port || cs.Version != "1.0" {
			t.Errorf("round trip = %+v", cs)
		}
	}
}

func TestHubID(t *testing.T) {
	t.Parallel()
	tests := []struct{ app, hub, want string }{
		{"", "ChatHub", "chathub"},
		{"MyApp", "ChatHub", "myapp_chathub"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := HubID(tt.app, tt.hub); got != tt.want {
			t.Errorf("HubID(%q, %q) = %q, want %q", tt.app, tt.hub, got, tt.want)
		}
	}
}

func mustParse(t testing.TB, s string) ConnectionString {
	t.Helper()
	cs, err := ParseConnectionString(s)
	if err != nil {
		t.Fatalf("ParseConnectionString(%q): %v", s, err)
	}
	return cs
}

func TestURLBuilders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                          string
		cs                            string
		audBase, serverURL, clientURL string
		serverAud, clientAud          string
	}{
		{
			name:      "local dev",
			cs:        "Endpoint=http://localhost:8080;AccessKey=k;Version=1.0;",
			audBase:   "http://localhost/",
			serverURL: "ws://localhost:8080/server/?hub=chat&cid=c1",
			clientURL: "http://localhost:8080/client/?hub=chat",
			serverAud: "http://localhost/server/?hub=chat",
			clientAud: "http://localhost/client/?hub=chat",
		},
		{
			name:      "emulator port property",
			cs:        "Endpoint=http://localhost;Port=8888;AccessKey=k;Version=1.0;",
			audBase:   "http://localhost/",
			serverURL: "ws://localhost:8888/server/?hub=chat&cid=c1",
			clientURL: "http://localhost:8888/client/?hub=chat",
			serverAud: "http://localhost/server/?hub=chat",
			clientAud: "http://localhost/client/?hub=chat",
		},
		{
			name:      "https default port dropped like AbsoluteUri",
			cs:        "Endpoint=https://Res.service.signalr.net:443/;AccessKey=k",
			audBase:   "https://res.service.signalr.net/",
			serverURL: "wss://res.service.signalr.net/server/?hub=chat&cid=c1",
			clientURL: "https://res.service.signalr.net/client/?hub=chat",
			serverAud: "https://res.service.signalr.net/server/?hub=chat",
			clientAud: "https://res.service.signalr.net/client/?hub=chat",
		},
		{
			name:      "endpoint path quirk: no trailing slash after trim",
			cs:        "Endpoint=https://h/p/;AccessKey=k",
			audBase:   "https://h/",
			serverURL: "wss://h/pserver/?hub=chat&cid=c1",
			clientURL: "https://h/pclient/?hub=chat",
			serverAud: "https://h/server/?hub=chat",
			clientAud: "https://h/client/?hub=chat",
		},
		{
			name:      "server and client endpoints, audience still from Endpoint",
			cs:        "Endpoint=https://res.example:8443;AccessKey=k;ServerEndpoint=http://internal:9000/;ClientEndpoint=https://proxy.example/signalr/",
			audBase:   "https://res.example/",
			serverURL: "ws://internal:9000/server/?hub=chat&cid=c1",
			clientURL: "https://proxy.example/signalr/client/?hub=chat",
			serverAud: "https://res.example/server/?hub=chat",
			clientAud: "https://res.example/client/?hub=chat",
		},
		{
			name:      "server endpoint path without slash is concatenated as-is",
			cs:        "Endpoint=https://res.example;AccessKey=k;ServerEndpoint=https://gw.example/p;ClientEndpoint=http://c.example/q",
			audBase:   "https://res.example/",
			serverURL: "wss://gw.example/pserver/?hub=chat&cid=c1",
			clientURL: "http://c.example/qclient/?hub=chat",
			serverAud: "https://res.example/server/?hub=chat",
			clientAud: "https://res.example/client/?hub=chat",
		},
		{
			name:      "existing query kept",
			cs:        "Endpoint=http://localhost:8080;AccessKey=k;ServerEndpoint=http://gw:81/x/?tenant=a&b=1;ClientEndpoint=https://c/?x=y",
			audBase:   "http://localhost/",
			serverURL: "ws://gw:81/x/server/?hub=chat&tenant=a&b=1&cid=c1",
			clientURL: "https://c/client/?hub=chat&x=y",
			serverAud: "http://localhost/server/?hub=chat",
			clientAud: "http://localhost/client/?hub=chat",
		},
		{
			name:      "ipv6",
			cs:        "Endpoint=http://[::1]:8080;AccessKey=k",
			audBase:   "http://[::1]/",
			serverURL: "ws://[::1]:8080/server/?hub=chat&cid=c1",
			clientURL: "http://[::1]:8080/client/?hub=chat",
			serverAud: "http://[::1]/server/?hub=chat",
			clientAud: "http://[::1]/client/?hub=chat",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs := mustParse(t, tt.cs)
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %q, want %q", what, got, want)
				}
			}
			check("AudienceBase", cs.AudienceBase(), tt.audBase)
			check("ServerURL", cs.ServerURL("chat", "c1"), tt.serverURL)
			check("ClientURL", cs.ClientURL("chat"), tt.clientURL)
			check("ServerAudience", cs.ServerAudience("chat"), tt.serverAud)
			check("ClientAudience", cs.ClientAudience("chat"), tt.clientAud)
		})
	}
}

func TestServerURLWithTarget(t *testing.T) {
	t.Parallel()
	cs := mustParse(t, "Endpoint=https://res.example;AccessKey=k")
	got := cs.ServerURLWithTarget("app_chat", "0f9c", "inst 1/a")
	want := "wss://res.example/server/?hub=app_chat&cid=0f9c&target=inst+1%2Fa"
	if got != want {
		t.Errorf("ServerURLWithTarget = %q, want %q", got, want)
	}
}

func TestZeroConnectionStringBuilders(t *testing.T) {
	t.Parallel()
	var cs ConnectionString
	if cs.AudienceBase() != "" || cs.ServerURL("h", "c") != "" || cs.ClientURL("h") != "" {
		t.Error("zero ConnectionString should build empty strings, not panic")
	}
}
