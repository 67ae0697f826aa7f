package jsclient

import (
	"testing"

	"go.uber.org/goleak"
)

// The Driver promises that cleanup leaves no goroutine behind; check it for
// the whole package (fake hub handlers included).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
