package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestConfigReferenceCoversEveryKey keeps docs/config.md in step with the config structs.
func TestConfigReferenceCoversEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{fileConfig{}, fileInstance{}, fileSettings{}, fileNetwork{}} {
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			key := rt.Field(i).Tag.Get("mapstructure")
			if key == "" || key == "-" {
				continue
			}
			if !strings.Contains(string(doc), "`"+key+"`") {
				t.Errorf("docs/config.md does not document %s.%s (`%s`)", rt.Name(), rt.Field(i).Name, key)
			}
		}
	}
}
