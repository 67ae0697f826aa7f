package server

import (
	"crypto/rand"
	"encoding/base64"
)

// newID returns 16 random bytes as 22 URL-safe characters, like ASP.NET Core connection ids.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}
