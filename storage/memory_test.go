package storage

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMemoryOverloaded(t *testing.T) {
	t.Parallel()
	m := NewMemory(Options{DeliveryBuffer: 100})
	defer m.Close()
	release := make(chan struct{})
	got := newInbox()
	sub := mustSubscribe(t, m, "slow", func(topic string, p []byte) {
		<-release
		got.handle(topic, p)
	})
	defer sub.Close()
	ctx := testCtx(t)
	payload := []byte(strings.Repeat("x", 60))
	var ok, overloaded int
	for range 10 {
		switch err := m.Publish(ctx, "slow", payload); {
		case err == nil:
			ok++
		case errors.Is(err, ErrOverloaded):
			overloaded++
		default:
			t.Fatal(err)
		}
	}
	if overloaded == 0 || m.Stats().PublishErrors != uint64(overloaded) {
		t.Fatalf("ok %d, overloaded %d, stats %+v", ok, overloaded, m.Stats())
	}
	close(release)
	got.waitN(t, ok)
}

// TestMemorySweep: expired entries nobody reads are dropped, so a Memory does not grow with
// churn.
func TestMemorySweep(t *testing.T) {
	t.Parallel()
	m := NewMemory(Options{})
	defer m.Close()
	ctx := testCtx(t)
	for i := range 100 {
		k := string(rune('a' + i%26))
		if err := m.Namespace(k).SetAdd(ctx, "s", k, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := m.Namespace(k).Put(ctx, k, nil, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the sweep", func() bool {
		_ = m.Put(ctx, "tick", nil, 0) // writes trigger the periodic sweep
		m.c.mu.Lock()
		defer m.c.mu.Unlock()
		return len(m.c.sets) == 0 && len(m.c.values) == 1
	})
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"a{", "b}", "with space", "tab\t"} {
		if err := (Options{Prefix: p}).Validate(); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if err := (Options{Prefix: "prod-eu:signalrd"}).Validate(); err != nil {
		t.Errorf("valid prefix: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewMemory accepted invalid options")
		}
	}()
	NewMemory(Options{Prefix: "{x}"})
}

func TestChildNamespace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ns, name, want string }{
		{"", "a", "/a"},
		{"/a", "b", "/a/b"},
		{"", "a/b", "/a%2Fb"},
		{"", "a:b{c}%", "/a%3Ab%7Bc%7D%25"},
		{"", "", "/"},
	} {
		if got := childNamespace(tc.ns, tc.name); got != tc.want {
			t.Errorf("childNamespace(%q, %q) = %q, want %q", tc.ns, tc.name, got, tc.want)
		}
	}
}

func TestLossLog(t *testing.T) {
	t.Parallel()
	log, buf := bufferLogger()
	l := &lossLog{log: log, what: "thing"}
	l.ok()
	for range 5 {
		l.fail(errors.New("boom"))
	}
	l.ok()
	l.ok()
	out := buf.String()
	if strings.Count(out, "thing failed") != 1 || strings.Count(out, "thing recovered") != 1 || !strings.Contains(out, "failures=5") {
		t.Fatalf("log:\n%s", out)
	}
}
