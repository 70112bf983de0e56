package loadgen

import (
	"bytes"
	"testing"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    Mix
		wantErr bool
	}{
		{"1:0:0", Mix{1, 0, 0}, false},
		{"8:1:1", Mix{8, 1, 1}, false},
		{"0:0:3", Mix{0, 0, 3}, false},
		{"message", Mix{1, 0, 0}, false},
		{"presence", Mix{0, 1, 0}, false},
		{"iq", Mix{0, 0, 1}, false},
		{"0:0:0", Mix{}, true},
		{"1:1", Mix{}, true},
		{"1:x:1", Mix{}, true},
		{"1:-1:1", Mix{}, true},
		{"1:1001:1", Mix{}, true},
		{"", Mix{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseMix(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMixKind(t *testing.T) {
	tests := []struct {
		mix  Mix
		want [3]int // kinds counted over 100 sequence numbers
	}{
		{Mix{1, 0, 0}, [3]int{100, 0, 0}},
		{Mix{0, 1, 0}, [3]int{0, 100, 0}},
		{Mix{2, 1, 1}, [3]int{50, 25, 25}},
		{Mix{8, 1, 1}, [3]int{80, 10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.mix.String(), func(t *testing.T) {
			var got [3]int
			for seq := uint64(0); seq < 100; seq++ {
				got[tt.mix.Kind(seq)]++
			}
			if got != tt.want {
				t.Errorf("kinds over 100 stanzas: %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAppendStanza: every kind is one well-formed jabber:server element
// of the size asked (or its bare markup when that is longer), with its
// addresses and id.
func TestAppendStanza(t *testing.T) {
	tests := []struct {
		kind  Kind
		size  int
		local string
	}{
		{Message, 400, "message"},
		{Message, 10, "message"},
		{Presence, 300, "presence"},
		{IQ, 1000, "iq"},
		{IQ, 0, "iq"},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			id := string(AppendID(nil, Stamp{Run: "0123abcd", Seq: 5, Sent: 99}))
			b := AppendStanza([]byte("keep"), tt.kind, "u0@load1.test/x", "load0@company.test/load", id, tt.size)
			if !bytes.HasPrefix(b, []byte("keep")) {
				t.Fatalf("the buffer's start was overwritten: %q", b)
			}
			b = b[4:]
			if tt.size > 200 && len(b) != tt.size {
				t.Errorf("size %d, want %d: %s", len(b), tt.size, b)
			}
			doc := "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>" + string(b)
			r := xmlstream.NewReader(bytes.NewReader([]byte(doc)), xmlstream.Limits{})
			if _, err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			el, err := r.Next()
			if err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			if el.Local != tt.local || el.Space != xmlstream.NSServer || el.ID != id || el.From != "u0@load1.test/x" || el.To != "load0@company.test/load" {
				t.Errorf("element %s {%s}%s id=%q from=%q to=%q", b, el.Space, el.Local, el.ID, el.From, el.To)
			}
			if !bytes.Equal(el.Raw, b) {
				t.Errorf("more than one element: %q", b)
			}
		})
	}
}
