package loadgen

import (
	"errors"
	"testing"
	"time"
)

func TestParseStamp(t *testing.T) {
	tests := []struct {
		id   string
		want Stamp
		ok   bool
	}{
		{"xl.0123abcd.0.0", Stamp{Run: "0123abcd"}, true},
		{"xl.0123abcd.42.1500000", Stamp{Run: "0123abcd", Seq: 42, Sent: 1500 * time.Microsecond}, true},
		{"xl.ffffffff.18446744073709551615.9223372036854775807", Stamp{Run: "ffffffff", Seq: 1<<64 - 1, Sent: 1<<63 - 1}, true},
		{"", Stamp{}, false},
		{"xl.", Stamp{}, false},
		{"m00000001", Stamp{}, false},
		{"xl.0123ABCD.1.1", Stamp{}, false},                    // upper-case run id
		{"xl.0123abc.1.1", Stamp{}, false},                     // short run id
		{"xl.0123abcde.1.1", Stamp{}, false},                   // long run id
		{"xl.0123abcd.01.1", Stamp{}, false},                   // leading zero
		{"xl.0123abcd.1.+1", Stamp{}, false},                   // sign
		{"xl.0123abcd.1.-1", Stamp{}, false},                   // sign
		{"xl.0123abcd.1", Stamp{}, false},                      // no time
		{"xl.0123abcd.1.1.1", Stamp{}, false},                  // too many parts
		{"xl.0123abcd..1", Stamp{}, false},                     // empty sequence
		{"xl.0123abcd.1.", Stamp{}, false},                     // empty time
		{"xl.0123abcd.1.9223372036854775808", Stamp{}, false},  // time overflows a Duration
		{"xl.0123abcd.18446744073709551616.1", Stamp{}, false}, // sequence overflows
		{"xl.0123abcd.1 .1", Stamp{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := ParseStamp(tt.id)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseStamp(%q) = %+v, %v; want ok=%v", tt.id, got, err, tt.ok)
			}
			if !tt.ok {
				if !errors.Is(err, ErrNotStamp) {
					t.Errorf("error %v is not ErrNotStamp", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("ParseStamp(%q) = %+v, want %+v", tt.id, got, tt.want)
			}
			if back := string(AppendID(nil, got)); back != tt.id {
				t.Errorf("AppendID(ParseStamp(%q)) = %q", tt.id, back)
			}
		})
	}
}

// FuzzParseStamp: ParseStamp never panics, and what it accepts is written
// back by AppendID byte for byte (one form per stamp); a stamp written by
// AppendID parses back to itself.
func FuzzParseStamp(f *testing.F) {
	for _, s := range []string{"xl.0123abcd.42.1500000", "xl.ffffffff.0.0", "xl.0123abcd.01.1", "xl.", "", "xl.0123abcd.1.9223372036854775808"} {
		f.Add(s, uint64(7), int64(1234))
	}
	f.Fuzz(func(t *testing.T, id string, seq uint64, ns int64) {
		if st, err := ParseStamp(id); err == nil {
			if back := string(AppendID(nil, st)); back != id {
				t.Fatalf("ParseStamp(%q) = %+v, written back as %q", id, st, back)
			}
		}
		if ns < 0 {
			ns = -(ns + 1)
		}
		want := Stamp{Run: "5eed0f00", Seq: seq, Sent: time.Duration(ns)}
		got, err := ParseStamp(string(AppendID([]byte("junk"), want))[4:])
		if err != nil || got != want {
			t.Fatalf("round trip of %+v: %+v, %v", want, got, err)
		}
	})
}
