package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// parsePayloadReference is the straightforward encoding/json token-API walk the scanner in
// parsePayload replaced; FuzzParsePayloadDifferential checks both agree.
// It walks the payload object token by token so claim order and duplicate names
// survive (a map would lose both).
func parsePayloadReference(data []byte) (payload, error) {
	var p payload
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return p, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return p, errors.New("payload is not a JSON object")
	}
	seen := make(map[string]bool, 4)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return p, err
		}
		name, ok := tok.(string)
		if !ok {
			return p, errors.New("payload key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return p, err
		}
		raw = bytes.TrimSpace(raw)
		switch name {
		case "exp", "nbf", "iat", "aud":
			// A second exp/nbf/aud would make the token mean different things to different
			// parsers; refuse instead of picking one.
			if seen[name] {
				return p, errors.New("duplicate " + name + " claim")
			}
			seen[name] = true
		}
		switch name {
		case "exp":
			if p.exp, err = numericDate(raw); err != nil {
				return p, err
			}
			p.hasExp = true
		case "nbf":
			if p.nbf, err = numericDate(raw); err != nil {
				return p, err
			}
			p.hasNbf = true
		case "iat":
			// iat is informational (the service does not validate it); ignore odd values.
			if t, err := numericDate(raw); err == nil {
				p.iat, p.hasIat = t, true
			}
		}
		start := len(p.claims)
		if len(raw) > 0 && raw[0] == '[' {
			var elems []json.RawMessage
			if err := json.Unmarshal(raw, &elems); err != nil {
				return p, err
			}
			for _, e := range elems {
				val, err := claimValue(e)
				if err != nil {
					return p, err
				}
				p.claims = append(p.claims, Claim{name, val})
			}
		} else {
			val, err := claimValue(raw)
			if err != nil {
				return p, err
			}
			p.claims = append(p.claims, Claim{name, val})
		}
		if name == "aud" {
			for _, c := range p.claims[start:] {
				p.aud = append(p.aud, c.Value)
			}
			if len(raw) > 0 && raw[0] != '"' && raw[0] != '[' {
				return p, errors.New("aud is not a string or array")
			}
		}
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return p, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return p, errors.New("trailing data after payload object")
	}
	return p, nil
}

func FuzzParsePayloadDifferential(f *testing.F) {
	for _, s := range []string{
		`{"a":"b","a":["c",1,{"d" : [ 2 ]}],"exp":1700003600,"nbf":1,"iat":"x","aud":["u", "v"]}`,
		` { "esc\u0041" : "\ud83d\ude00\n" , "n" : -0.5e-3 , "t" : true , "z" : null } `,
		`{"bad":"\xff"}`,
		`{"aud":5}`,
		`{"exp":1,"exp":2}`,
		`{}`, `[]`, `{`, `{"a":1}x`, `"s"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err1 := parsePayload(data)
		want, err2 := parsePayloadReference(data)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("error mismatch: scanner %v, reference %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scanner %+v\nreference %+v", got, want)
		}
	})
}
