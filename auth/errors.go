package auth

import "errors"

// Sentinels. Every error returned by Verify wraps ErrInvalidToken plus, where it applies, one of
// the more specific token sentinels, so a transport can map errors.Is(err, ErrInvalidToken) to 401.
var (
	ErrInvalidToken     = errors.New("auth: invalid token")
	ErrExpired          = errors.New("auth: token expired")
	ErrNotYetValid      = errors.New("auth: token not yet valid")
	ErrAudience         = errors.New("auth: audience mismatch")
	ErrSignature        = errors.New("auth: invalid signature")
	ErrConnectionString = errors.New("auth: invalid connection string")
	ErrIssue            = errors.New("auth: cannot issue token")
)

// opError names the failed operation and carries the sentinels it matches. A dedicated type
// (rather than fmt.Errorf with several %w) keeps the message free of repeated "auth:" prefixes.
type opError struct {
	op     string
	detail string
	kinds  []error
	cause  error
}

func (e *opError) Error() string {
	s := "auth: " + e.op + ": " + e.detail
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *opError) Unwrap() []error {
	errs := make([]error, 0, len(e.kinds)+1)
	errs = append(errs, e.kinds...)
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

func tokenErr(kind error, detail string) error {
	kinds := []error{ErrInvalidToken}
	if kind != nil && kind != ErrInvalidToken {
		kinds = []error{kind, ErrInvalidToken}
	}
	return &opError{op: "verify token", detail: detail, kinds: kinds}
}

func tokenErrCause(kind error, detail string, cause error) error {
	e := tokenErr(kind, detail).(*opError)
	e.cause = cause
	return e
}

func connStrErr(detail string) error {
	return &opError{op: "parse connection string", detail: detail, kinds: []error{ErrConnectionString}}
}

func issueErr(detail string) error {
	return &opError{op: "issue token", detail: detail, kinds: []error{ErrIssue}}
}
