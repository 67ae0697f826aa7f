package appserver

import (
	"strings"
	"testing"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// FuzzBind feeds arbitrary argument bytes of both protocols to the reflection binder: it may
// reject them but must never panic.
func FuzzBind(f *testing.F) {
	type item struct {
		A int               `json:"a"`
		B []string          `json:"b"`
		C map[string]string `json:"c"`
		D *item             `json:"d"`
	}
	m, err := newHubMethod("m", func(c *Context, n int, s string, it item, xs []float64, p *item, a any) {})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{[]byte(`1`), []byte(`"x"`), []byte(`{"a":1,"b":["x"],"d":{"a":2}}`), {0x81, 0xa1, 0x61, 0x01}, {0x93, 0x01, 0x02, 0x03}, {0xc0}, {}} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, msgpack bool) {
		var codec hubproto.Codec = hubproto.JSON()
		if msgpack {
			codec = hubproto.MessagePack()
		}
		raws := []hubproto.Raw{raw, raw, raw, raw, raw, raw}
		_, _ = m.bind(codec, raws)
		_, _ = m.bind(codec, raws[:1])
	})
}

// FuzzPrincipal checks the claim filter on arbitrary claim lists: every principal claim comes
// from an input claim (verbatim or with asrs.u. stripped), asrs.s.* and reserved JWT claims are
// never copied verbatim, and the user id is one of the claim values.
func FuzzPrincipal(f *testing.F) {
	f.Add("asrs.s.uid", "u", "sub", "s", "asrs.u.aud", "x")
	f.Add(auth.ClaimTypeNameIdentifier, "n", "aud", "a", "asrs.s.sn", "srv")
	f.Fuzz(func(t *testing.T, t1, v1, t2, v2, t3, v3 string) {
		in := []svcproto.Claim{{Type: t1, Value: v1}, {Type: t2, Value: v2}, {Type: t3, Value: v3}}
		claims, uid := principal(in)
		if len(claims) > len(in) {
			t.Fatalf("%d claims out of %d", len(claims), len(in))
		}
		for _, c := range claims {
			ok := false
			for _, x := range in {
				if x.Value != c.Value {
					continue
				}
				if x.Type == auth.ClaimUserPrefix+c.Type {
					ok = true
				}
				if x.Type == c.Type && !systemClaims[c.Type] && !strings.HasPrefix(c.Type, auth.ClaimSysPrefix) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("claim %+v does not derive from %+v", c, in)
			}
		}
		if uid != "" && uid != v1 && uid != v2 && uid != v3 {
			t.Errorf("user id %q is not a claim value", uid)
		}
	})
}
