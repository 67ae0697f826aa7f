package transport

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (a pump, a WebSocket reader).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
