package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// varintGolden pins the VarInt encoding at every length boundary (7 bits per byte, LSB group first).
var varintGolden = []struct {
	n    int
	want []byte
}{
	{0, []byte{0x00}},
	{1, []byte{0x01}},
	{127, []byte{0x7f}},
	{128, []byte{0x80, 0x01}},
	{300, []byte{0xac, 0x02}},
	{16383, []byte{0xff, 0x7f}},
	{16384, []byte{0x80, 0x80, 0x01}},
	{1<<21 - 1, []byte{0xff, 0xff, 0x7f}},
	{1 << 21, []byte{0x80, 0x80, 0x80, 0x01}},
	{1<<28 - 1, []byte{0xff, 0xff, 0xff, 0x7f}},
	{1 << 28, []byte{0x80, 0x80, 0x80, 0x80, 0x01}},
	{math.MaxInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x07}},
}

func TestAppendVarintGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range varintGolden {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			t.Parallel()
			if got := AppendVarint(nil, tc.n); !bytes.Equal(got, tc.want) {
				t.Errorf("AppendVarint(nil, %d) = % x; want % x", tc.n, got, tc.want)
			}
			// Appending keeps what dst already holds.
			if got := AppendVarint([]byte{0xaa, 0xbb}, tc.n); !bytes.Equal(got, append([]byte{0xaa, 0xbb}, tc.want...)) {
				t.Errorf("AppendVarint(aa bb, %d) = % x; want aa bb % x", tc.n, got, tc.want)
			}
			if got := VarintLen(tc.n); got != len(tc.want) {
				t.Errorf("VarintLen(%d) = %d; want %d", tc.n, got, len(tc.want))
			}
			n, size, err := ReadVarint(tc.want)
			if err != nil || n != tc.n || size != len(tc.want) {
				t.Errorf("ReadVarint(% x) = %d, %d, %v; want %d, %d, nil", tc.want, n, size, err, tc.n, len(tc.want))
			}
		})
	}
}

func TestAppendFrameGolden(t *testing.T) {
	t.Parallel()
	body128 := bytes.Repeat([]byte{'x'}, 128)
	body300 := bytes.Repeat([]byte{'y'}, 300)
	tests := []struct {
		name      string
		dst, body []byte
		want      []byte
	}{
		{"empty body", nil, nil, []byte{0x00}},
		{"empty non-nil body", nil, []byte{}, []byte{0x00}},
		{"short body", nil, []byte("abc"), []byte{0x03, 'a', 'b', 'c'}},
		{"keeps dst", []byte{0xee}, []byte("abc"), []byte{0xee, 0x03, 'a', 'b', 'c'}},
		{"127 bytes", nil, body128[:127], append([]byte{0x7f}, body128[:127]...)},
		{"128 bytes", nil, body128, append([]byte{0x80, 0x01}, body128...)},
		{"300 bytes", nil, body300, append([]byte{0xac, 0x02}, body300...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := AppendFrame(tc.dst, tc.body); !bytes.Equal(got, tc.want) {
				t.Errorf("AppendFrame = % x; want % x", got, tc.want)
			}
		})
	}
}

func TestReadVarint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       []byte
		wantN    int
		wantSize int
		wantErr  error
	}{
		{"empty", nil, 0, 0, ErrIncomplete},
		{"incomplete after 1", []byte{0x80}, 0, 0, ErrIncomplete},
		{"incomplete after 2", []byte{0xff, 0x80}, 0, 0, ErrIncomplete},
		{"incomplete after 3", []byte{0x80, 0x80, 0x80}, 0, 0, ErrIncomplete},
		{"incomplete after 4", []byte{0xff, 0xff, 0xff, 0xff}, 0, 0, ErrIncomplete},
		{"5th byte 0x08", []byte{0x80, 0x80, 0x80, 0x80, 0x08}, 0, 0, ErrBadLength},
		{"5th byte 0x0f (2^32-1)", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 0, 0, ErrBadLength},
		{"5th byte continues", []byte{0xff, 0xff, 0xff, 0xff, 0x87}, 0, 0, ErrBadLength},
		{"six bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, 0, ErrBadLength},
		{"five bytes max", []byte{0xff, 0xff, 0xff, 0xff, 0x07}, math.MaxInt32, 5, nil},
		{"trailing bytes ignored", []byte{0x05, 0xaa, 0xbb}, 5, 1, nil},
		{"two bytes then body", []byte{0xac, 0x02, 0x00}, 300, 2, nil},
		// Non-minimal encodings are accepted, as by the reference readers.
		{"non-minimal zero", []byte{0x80, 0x00}, 0, 2, nil},
		{"non-minimal five bytes", []byte{0x81, 0x80, 0x80, 0x80, 0x00}, 1, 5, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, size, err := ReadVarint(tc.in)
			if !errors.Is(err, tc.wantErr) || n != tc.wantN || size != tc.wantSize {
				t.Errorf("ReadVarint(% x) = %d, %d, %v; want %d, %d, %v", tc.in, n, size, err, tc.wantN, tc.wantSize, tc.wantErr)
			}
		})
	}
}

// sameStart reports whether a and b start at the same address (a aliases b).
func sameStart(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:1][0] == &b[:1][0]
}

func TestCutBinary(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte{'b'}, 200)
	tests := []struct {
		name      string
		in        []byte
		max       int
		wantMsg   []byte
		wantFrame []byte
		wantRest  []byte
		wantErr   error
	}{
		{name: "empty", in: nil, wantErr: ErrIncomplete},
		{name: "prefix incomplete", in: []byte{0xc8}, wantErr: ErrIncomplete},
		{name: "body incomplete", in: []byte{0x03, 'a', 'b'}, wantErr: ErrIncomplete},
		{name: "bad prefix", in: []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, wantErr: ErrBadLength},
		{name: "empty message", in: []byte{0x00, 0x01}, wantMsg: []byte{}, wantFrame: []byte{0x00}, wantRest: []byte{0x01}},
		{name: "one message", in: []byte{0x03, 'a', 'b', 'c'}, wantMsg: []byte("abc"), wantFrame: []byte{0x03, 'a', 'b', 'c'}, wantRest: []byte{}},
		{name: "message and rest", in: []byte{0x02, 'a', 'b', 0x01}, wantMsg: []byte("ab"), wantFrame: []byte{0x02, 'a', 'b'}, wantRest: []byte{0x01}},
		{name: "two byte prefix", in: AppendFrame(nil, body), max: 200, wantMsg: body, wantFrame: AppendFrame(nil, body), wantRest: []byte{}},
		{name: "exactly max", in: []byte{0x03, 'a', 'b', 'c'}, max: 3, wantMsg: []byte("abc"), wantFrame: []byte{0x03, 'a', 'b', 'c'}, wantRest: []byte{}},
		{name: "too large", in: []byte{0x04, 'a', 'b', 'c', 'd'}, max: 3, wantErr: ErrTooLarge},
		// The limit applies as soon as the prefix is known, before the body arrives.
		{name: "too large prefix only", in: []byte{0xff, 0xff, 0x7f}, max: 1 << 20, wantErr: ErrTooLarge},
		{name: "no limit", in: []byte{0x04, 'a', 'b', 'c', 'd'}, max: 0, wantMsg: []byte("abcd"), wantFrame: []byte{0x04, 'a', 'b', 'c', 'd'}, wantRest: []byte{}},
		{name: "negative max no limit", in: []byte{0x01, 'a'}, max: -1, wantMsg: []byte("a"), wantFrame: []byte{0x01, 'a'}, wantRest: []byte{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg, frame, rest, err := CutBinary(tc.in, tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CutBinary(% x, %d) err = %v; want %v", tc.in, tc.max, err, tc.wantErr)
			}
			if err != nil {
				if msg != nil || frame != nil || !bytes.Equal(rest, tc.in) || len(rest) != len(tc.in) {
					t.Errorf("on error got msg % x, frame % x, rest % x; want nil, nil, the input", msg, frame, rest)
				}
				return
			}
			checkCut(t, tc.in, msg, frame, rest, tc.wantMsg, tc.wantFrame, tc.wantRest)
		})
	}
}

func TestCutText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		max       int
		wantMsg   string
		wantFrame string
		wantRest  string
		wantErr   error
	}{
		{name: "empty", in: "", wantErr: ErrIncomplete},
		{name: "unterminated", in: `{"type":1`, wantErr: ErrIncomplete},
		{name: "empty message", in: "\x1e{", wantMsg: "", wantFrame: "\x1e", wantRest: "{"},
		{name: "one message", in: "{}\x1e", wantMsg: "{}", wantFrame: "{}\x1e", wantRest: ""},
		{name: "two messages", in: "{}\x1e[]\x1e", wantMsg: "{}", wantFrame: "{}\x1e", wantRest: "[]\x1e"},
		{name: "exactly max", in: "abcd\x1e", max: 4, wantMsg: "abcd", wantFrame: "abcd\x1e", wantRest: ""},
		{name: "over max", in: "abcde\x1e", max: 4, wantErr: ErrTooLarge},
		{name: "unterminated at max", in: "abcd", max: 4, wantErr: ErrIncomplete},
		{name: "unterminated over max", in: "abcde", max: 4, wantErr: ErrTooLarge},
		{name: "no limit", in: strings.Repeat("x", 1000) + "\x1e", wantMsg: strings.Repeat("x", 1000), wantFrame: strings.Repeat("x", 1000) + "\x1e", wantRest: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := []byte(tc.in)
			msg, frame, rest, err := CutText(in, tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CutText(%q, %d) err = %v; want %v", tc.in, tc.max, err, tc.wantErr)
			}
			if err != nil {
				if msg != nil || frame != nil || !bytes.Equal(rest, in) || len(rest) != len(in) {
					t.Errorf("on error got msg %q, frame %q, rest %q; want nil, nil, the input", msg, frame, rest)
				}
				return
			}
			checkCut(t, in, msg, frame, rest, []byte(tc.wantMsg), []byte(tc.wantFrame), []byte(tc.wantRest))
		})
	}
}

// checkCut verifies a successful cut's contents and that msg, frame and rest alias in without
// letting an append to msg or frame overwrite the bytes that follow them.
func checkCut(t *testing.T, in, msg, frame, rest, wantMsg, wantFrame, wantRest []byte) {
	t.Helper()
	if !bytes.Equal(msg, wantMsg) || !bytes.Equal(frame, wantFrame) || !bytes.Equal(rest, wantRest) {
		t.Fatalf("cut = msg %q, frame %q, rest %q; want %q, %q, %q", msg, frame, rest, wantMsg, wantFrame, wantRest)
	}
	if !sameStart(frame, in) {
		t.Errorf("frame does not alias the input")
	}
	if start := bytes.Index(frame, msg); len(msg) > 0 && !sameStart(msg, frame[start:]) {
		t.Errorf("msg does not alias the frame")
	}
	if cap(msg) != len(msg) || cap(frame) != len(frame) {
		t.Errorf("cap(msg)=%d len=%d, cap(frame)=%d len=%d: appends would clobber the rest", cap(msg), len(msg), cap(frame), len(frame))
	}
	if len(frame)+len(rest) != len(in) {
		t.Errorf("len(frame)+len(rest) = %d; want %d", len(frame)+len(rest), len(in))
	}
	if len(rest) > 0 && !sameStart(rest, in[len(frame):]) {
		t.Errorf("rest does not alias the input after the frame")
	}
}

// testMessages is a stream's worth of bodies: empty, short, at the 1- and 2-byte prefix boundaries.
func testMessages() [][]byte {
	return [][]byte{
		[]byte(`{"type":6}`),
		{},
		[]byte("a"),
		bytes.Repeat([]byte{'m'}, 127),
		bytes.Repeat([]byte{'n'}, 128),
		bytes.Repeat([]byte{'o'}, 300),
		[]byte(`{"type":1,"target":"send","arguments":["hi"]}`),
	}
}

// encodeStream frames msgs in format f.
func encodeStream(f Format, msgs [][]byte) []byte {
	var b []byte
	for _, m := range msgs {
		if f == Binary {
			b = AppendFrame(b, m)
		} else {
			b = append(append(b, m...), RecordSeparator)
		}
	}
	return b
}

// feed writes data to s in chunks of the given size and drains s after each write. It returns
// copies of the messages and frames and the first error other than ErrIncomplete.
func feed(s *Splitter, data []byte, chunk int) (msgs, frames [][]byte, err error) {
	for len(data) > 0 {
		n := min(chunk, len(data))
		s.Write(data[:n])
		data = data[n:]
		for {
			msg, frame, err := s.Next()
			if errors.Is(err, ErrIncomplete) {
				break
			}
			if err != nil {
				return msgs, frames, err
			}
			msgs = append(msgs, bytes.Clone(msg))
			frames = append(frames, bytes.Clone(frame))
		}
	}
	return msgs, frames, nil
}

func formatName(f Format) string {
	if f == Binary {
		return "Binary"
	}
	return "Text"
}

func TestSplitterEveryChunkSize(t *testing.T) {
	t.Parallel()
	for _, f := range []Format{Text, Binary} {
		t.Run(formatName(f), func(t *testing.T) {
			t.Parallel()
			want := testMessages()
			stream := encodeStream(f, want)
			for chunk := 1; chunk <= len(stream); chunk++ {
				s := &Splitter{Format: f}
				msgs, frames, err := feed(s, stream, chunk)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if len(msgs) != len(want) {
					t.Fatalf("chunk %d: got %d messages; want %d", chunk, len(msgs), len(want))
				}
				for i := range want {
					if !bytes.Equal(msgs[i], want[i]) {
						t.Fatalf("chunk %d: message %d = %q; want %q", chunk, i, msgs[i], want[i])
					}
					if wf := encodeStream(f, want[i:i+1]); !bytes.Equal(frames[i], wf) {
						t.Fatalf("chunk %d: frame %d = % x; want % x", chunk, i, frames[i], wf)
					}
				}
				if s.Buffered() != 0 {
					t.Fatalf("chunk %d: Buffered() = %d after the whole stream", chunk, s.Buffered())
				}
			}
		})
	}
}

func TestSplitterZeroValueIsUnlimitedText(t *testing.T) {
	t.Parallel()
	var s Splitter
	big := bytes.Repeat([]byte{'z'}, 1<<17)
	s.Write(append(bytes.Clone(big), RecordSeparator))
	msg, frame, err := s.Next()
	if err != nil || !bytes.Equal(msg, big) || len(frame) != len(big)+1 {
		t.Fatalf("Next = %d-byte msg, %d-byte frame, %v; want the %d-byte message", len(msg), len(frame), err, len(big))
	}
	if _, _, err := s.Next(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Next on empty splitter = %v; want ErrIncomplete", err)
	}
}

func TestSplitterMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		format  Format
		max     int
		writes  []string
		want    []string // messages before the error
		wantErr error    // nil: the stream ends incomplete or empty
	}{
		{"binary exactly max", Binary, 3, []string{"\x03abc\x00"}, []string{"abc", ""}, nil},
		{"binary over max", Binary, 3, []string{"\x01a\x04abcd"}, []string{"a"}, ErrTooLarge},
		// The prefix alone is enough to refuse: the body is never buffered.
		{"binary over max on prefix", Binary, 100, []string{"\x01a", "\xc8", "\x01"}, []string{"a"}, ErrTooLarge},
		{"binary prefix split", Binary, 200, []string{"\xc8"}, nil, nil},
		{"binary bad length", Binary, 0, []string{"\x80\x80\x80\x80\x10"}, nil, ErrBadLength},
		{"text exactly max", Text, 3, []string{"abc\x1e\x1e"}, []string{"abc", ""}, nil},
		{"text over max", Text, 3, []string{"a\x1eabcd\x1e"}, []string{"a"}, ErrTooLarge},
		{"text unterminated at max", Text, 3, []string{"a\x1e", "abc"}, []string{"a"}, nil},
		{"text unterminated over max", Text, 3, []string{"a\x1e", "ab", "cd"}, []string{"a"}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &Splitter{Format: tc.format, Max: tc.max}
			var got []string
			var gotErr error
		writes:
			for _, w := range tc.writes {
				s.Write([]byte(w))
				for {
					msg, _, err := s.Next()
					if errors.Is(err, ErrIncomplete) {
						break
					}
					if err != nil {
						gotErr = err
						break writes
					}
					got = append(got, string(msg))
				}
			}
			if !errors.Is(gotErr, tc.wantErr) || (tc.wantErr == nil && gotErr != nil) {
				t.Fatalf("error = %v; want %v", gotErr, tc.wantErr)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("messages = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestSplitterBufferedAndRest(t *testing.T) {
	t.Parallel()
	s := &Splitter{Format: Binary}
	if s.Buffered() != 0 || len(s.Rest()) != 0 {
		t.Fatalf("empty splitter: Buffered %d, Rest %q", s.Buffered(), s.Rest())
	}
	s.Write([]byte{0x02, 'h', 'i', 0x05, 'a'})
	if got := s.Buffered(); got != 5 {
		t.Fatalf("Buffered() before Next = %d; want 5", got)
	}
	if msg, _, err := s.Next(); err != nil || string(msg) != "hi" {
		t.Fatalf("Next = %q, %v; want hi", msg, err)
	}
	if got := s.Buffered(); got != 2 {
		t.Fatalf("Buffered() after Next = %d; want 2", got)
	}
	if _, _, err := s.Next(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Next = %v; want ErrIncomplete", err)
	}
	s.Write([]byte{'b'})
	if got := s.Buffered(); got != 3 {
		t.Fatalf("Buffered() after partial write = %d; want 3", got)
	}
	rest := s.Rest()
	if !bytes.Equal(rest, []byte{0x05, 'a', 'b'}) {
		t.Fatalf("Rest() = % x; want 05 61 62", rest)
	}
	if s.Buffered() != 0 {
		t.Fatalf("Buffered() after Rest = %d; want 0", s.Buffered())
	}
	// Rest is a copy: the splitter reusing its buffer must not change it.
	s.Write([]byte{0x01, 'x', 0x01, 'y'})
	if !bytes.Equal(rest, []byte{0x05, 'a', 'b'}) {
		t.Fatalf("Rest() result changed to % x after a Write", rest)
	}
	if msg, _, err := s.Next(); err != nil || string(msg) != "x" {
		t.Fatalf("Next after Rest = %q, %v; want x", msg, err)
	}
}

func TestSplitterCompactsPartialTail(t *testing.T) {
	t.Parallel()
	// Each write completes one message and starts the next, so the buffer always holds a partial
	// tail: compaction must neither lose bytes nor let the buffer grow with the stream.
	s := &Splitter{Format: Binary}
	var stream []byte
	var msgs [][]byte
	for i := range 500 {
		m := bytes.Repeat([]byte{byte(i)}, 1+i%200)
		msgs = append(msgs, m)
		stream = AppendFrame(stream, m)
	}
	out, _, err := feed(s, stream, 97)
	if err != nil || len(out) != len(msgs) {
		t.Fatalf("got %d messages, %v; want %d", len(out), err, len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(out[i], msgs[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
	if cap(s.buf) > 4<<10 {
		t.Fatalf("buffer grew to %d bytes for messages under 256 bytes", cap(s.buf))
	}
}

func TestSplitterReleasesLargeBuffer(t *testing.T) {
	t.Parallel()
	for _, f := range []Format{Text, Binary} {
		t.Run(formatName(f), func(t *testing.T) {
			t.Parallel()
			big := bytes.Repeat([]byte{'L'}, 1<<20)
			s := &Splitter{Format: f}
			s.Write(encodeStream(f, [][]byte{big}))
			if msg, _, err := s.Next(); err != nil || len(msg) != len(big) {
				t.Fatalf("Next = %d bytes, %v; want %d", len(msg), err, len(big))
			}
			if c := cap(s.buf); c < len(big) {
				t.Fatalf("cap before the next Write = %d; want the large buffer", c)
			}
			small := encodeStream(f, [][]byte{[]byte("small")})
			s.Write(small)
			if c := cap(s.buf); c > maxIdleBuffer {
				t.Fatalf("cap after Write = %d; want the %d-byte buffer released (<= %d)", c, len(big), maxIdleBuffer)
			}
			if msg, _, err := s.Next(); err != nil || string(msg) != "small" {
				t.Fatalf("Next = %q, %v; want small", msg, err)
			}
		})
	}
}

func TestSplitterKeepsSmallBuffer(t *testing.T) {
	t.Parallel()
	s := &Splitter{Format: Binary}
	s.Write(AppendFrame(nil, make([]byte, 1000)))
	if _, _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	before := cap(s.buf)
	s.Write([]byte{0x01, 'a'})
	if cap(s.buf) != before {
		t.Fatalf("cap changed %d -> %d: a small idle buffer should be reused", before, cap(s.buf))
	}
}

// FuzzReadVarint checks that ReadVarint never panics, accepts only values in [0, 2^31-1] from at
// most 5 bytes, and that AppendVarint/VarintLen round-trip every value it accepts and every value
// in range.
func FuzzReadVarint(f *testing.F) {
	for _, tc := range varintGolden {
		f.Add(tc.want, uint32(tc.n))
	}
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x08}, uint32(0))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, uint32(math.MaxUint32))
	f.Add([]byte{0x80, 0x00}, uint32(1<<31))
	f.Fuzz(func(t *testing.T, b []byte, v uint32) {
		n, size, err := ReadVarint(b)
		switch {
		case errors.Is(err, ErrIncomplete):
			if len(b) >= MaxVarintLen {
				t.Fatalf("ReadVarint(% x): ErrIncomplete with %d bytes", b, len(b))
			}
			for _, c := range b {
				if c&0x80 == 0 {
					t.Fatalf("ReadVarint(% x): ErrIncomplete though byte %#x ends the prefix", b, c)
				}
			}
		case errors.Is(err, ErrBadLength):
			if len(b) < MaxVarintLen {
				t.Fatalf("ReadVarint(% x): ErrBadLength with only %d bytes", b, len(b))
			}
		case err != nil:
			t.Fatalf("ReadVarint(% x): unexpected error %v", b, err)
		default:
			if n < 0 || n > math.MaxInt32 || size < 1 || size > MaxVarintLen || size > len(b) {
				t.Fatalf("ReadVarint(% x) = %d, %d", b, n, size)
			}
			enc := AppendVarint(nil, n)
			if len(enc) != VarintLen(n) || len(enc) > size {
				t.Fatalf("AppendVarint(%d) = % x (VarintLen %d); decoded from %d bytes", n, enc, VarintLen(n), size)
			}
			if b[size-1]&0x80 != 0 {
				t.Fatalf("ReadVarint(% x) stopped at a continued byte", b)
			}
		}

		in := int(v & math.MaxInt32)
		enc := AppendVarint(nil, in)
		if len(enc) != VarintLen(in) {
			t.Fatalf("AppendVarint(%d) = % x; VarintLen says %d", in, enc, VarintLen(in))
		}
		got, size, err := ReadVarint(append(enc, b...))
		if err != nil || got != in || size != len(enc) {
			t.Fatalf("ReadVarint(AppendVarint(%d) = % x) = %d, %d, %v", in, enc, got, size, err)
		}
	})
}

// FuzzSplitterChunked writes random bytes to a Splitter in random chunks, in both formats and with a
// random limit. It never panics; the frames returned plus what stays buffered are exactly the bytes
// written; every msg is its frame minus the framing; and chunking changes nothing: the messages and
// the final error match those of writing everything at once.
func FuzzSplitterChunked(f *testing.F) {
	f.Add(encodeStream(Text, testMessages()), []byte{1, 2, 3}, false, uint16(0))
	f.Add(encodeStream(Binary, testMessages()), []byte{7}, true, uint16(0))
	f.Add(encodeStream(Binary, testMessages()), []byte{0, 200}, true, uint16(128))
	f.Add([]byte("abcdef\x1e"), []byte{2}, false, uint16(3))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x10}, []byte{1}, true, uint16(0))
	f.Fuzz(func(t *testing.T, data, cuts []byte, binary bool, max uint16) {
		format := Text
		if binary {
			format = Binary
		}
		run := func(chunks [][]byte) (msgs, frames [][]byte, rest []byte, written int, err error) {
			s := &Splitter{Format: format, Max: int(max)}
			for _, c := range chunks {
				s.Write(c)
				written += len(c)
				for {
					msg, frame, nerr := s.Next()
					if errors.Is(nerr, ErrIncomplete) {
						break
					}
					if nerr != nil {
						if !errors.Is(nerr, ErrTooLarge) && !errors.Is(nerr, ErrBadLength) {
							t.Fatalf("Next: unexpected error %v", nerr)
						}
						buffered := s.Buffered()
						rest = s.Rest()
						if len(rest) != buffered {
							t.Fatalf("Rest() = %d bytes; Buffered() said %d", len(rest), buffered)
						}
						return msgs, frames, rest, written, nerr
					}
					checkMessage(t, format, int(max), msg, frame)
					msgs = append(msgs, bytes.Clone(msg))
					frames = append(frames, bytes.Clone(frame))
				}
			}
			buffered := s.Buffered()
			rest = s.Rest()
			if len(rest) != buffered {
				t.Fatalf("Rest() = %d bytes; Buffered() said %d", len(rest), buffered)
			}
			return msgs, frames, rest, written, nil
		}

		var chunks [][]byte
		rem := data
		for i := 0; len(rem) > 0; i++ {
			n := len(rem)
			if len(cuts) > 0 {
				n = min(int(cuts[i%len(cuts)])+1, len(rem))
			}
			chunks = append(chunks, rem[:n])
			rem = rem[n:]
		}
		msgs, frames, rest, written, err := run(chunks)
		consumed := append(bytes.Join(frames, nil), rest...)
		if !bytes.Equal(consumed, data[:written]) {
			t.Fatalf("frames + rest = % x; want the %d bytes written % x", consumed, written, data[:written])
		}

		wantMsgs, _, _, _, wantErr := run([][]byte{data})
		if (err == nil) != (wantErr == nil) || (err != nil && errors.Is(err, ErrTooLarge) != errors.Is(wantErr, ErrTooLarge)) {
			t.Fatalf("chunked error %v; one write error %v", err, wantErr)
		}
		if len(msgs) != len(wantMsgs) {
			t.Fatalf("chunked: %d messages; one write: %d", len(msgs), len(wantMsgs))
		}
		for i := range msgs {
			if !bytes.Equal(msgs[i], wantMsgs[i]) {
				t.Fatalf("message %d: chunked % x; one write % x", i, msgs[i], wantMsgs[i])
			}
		}
	})
}

// checkMessage verifies that frame is msg with format's framing and that msg respects max.
func checkMessage(t *testing.T, format Format, max int, msg, frame []byte) {
	t.Helper()
	if max > 0 && len(msg) > max {
		t.Fatalf("message of %d bytes exceeds Max %d", len(msg), max)
	}
	if format == Binary {
		// A non-minimal prefix is accepted, so compare the decoded length and the body.
		n, size, err := ReadVarint(frame)
		if err != nil || n != len(msg) || !bytes.Equal(frame[size:], msg) {
			t.Fatalf("frame % x does not frame msg % x (%d, %d, %v)", frame, msg, n, size, err)
		}
		return
	}
	if bytes.IndexByte(msg, RecordSeparator) >= 0 {
		t.Fatalf("text message %q contains a record separator", msg)
	}
	if want := append(bytes.Clone(msg), RecordSeparator); !bytes.Equal(frame, want) {
		t.Fatalf("frame %q; want %q", frame, want)
	}
}

func BenchmarkSplitter(b *testing.B) {
	for _, f := range []Format{Binary, Text} {
		b.Run(formatName(f), func(b *testing.B) {
			msgs := make([][]byte, 64)
			for i := range msgs {
				msgs[i] = fmt.Appendf(nil, `{"type":1,"target":"send","arguments":["message %d"]}`, i)
			}
			stream := encodeStream(f, msgs)
			s := &Splitter{Format: f, Max: 1 << 15}
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				s.Write(stream)
				n := 0
				for {
					_, _, err := s.Next()
					if err != nil {
						if !errors.Is(err, ErrIncomplete) {
							b.Fatal(err)
						}
						break
					}
					n++
				}
				if n != len(msgs) {
					b.Fatalf("got %d messages; want %d", n, len(msgs))
				}
			}
		})
	}
}
