package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// chainOf encodes records as the log would, chained from the empty prev.
func chainOf(key []byte, recs ...*Record) []byte {
	c := newChainHasher(key)
	var out []byte
	prev := ""
	for i, r := range recs {
		r.Seq = uint64(i + 1)
		r.Prev = prev
		start := len(out)
		out = encodeLine(out, r, c)
		p, _ := splitLine(out[start : len(out)-1])
		prev = string(p.hash)
	}
	return out
}

func verifyBytes(data []byte, key []byte) VerifyResult {
	v := newChainVerifier(key)
	if broken, _ := v.verifyFile("fuzz", bytes.NewReader(data)); !broken {
		v.res.OK = true
	}
	return v.res
}

// FuzzVerify feeds the line parser and chain verifier arbitrary files: it
// must never panic, and whatever it accepts must be records that decode.
func FuzzVerify(f *testing.F) {
	base := time.Date(2026, 3, 15, 10, 20, 30, 123456789, time.UTC)
	good := chainOf(nil,
		&Record{Time: base, Node: "n", Event: EventStanza, From: "a@x/r", To: "b@y", Decision: "allow", Stanza: "<message>\"q\"\n</message>"},
		&Record{Time: base, Node: "n", Event: EventSessionOpen, RemoteDomain: "y", Size: 7},
		&Record{Time: base, Node: "n", Event: EventLogRecovered, DroppedOffset: 10, DroppedBytes: 3, DroppedSHA256: "ab"},
		&Record{Time: base, Node: "n", Event: EventCheckpoint, Heads: StringsOf("n 3 ab", "m 1 cd")},
		&Record{Time: base, Node: "n", Event: EventAnchor, AnchorSeq: 1, AnchorPrev: strings.Repeat("c", 64), DeletedFiles: StringsOf("a.1", "a.2")},
	)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add(bytes.Replace(good, []byte("allow"), []byte("deny!"), 1))
	f.Add([]byte(`{"seq":1,"prev":"","hash":"` + strings.Repeat("0", 64) + `"}` + "\n"))
	f.Add([]byte(`{"seq":01,"prev":"` + strings.Repeat("a", 64) + `","hash":"` + strings.Repeat("0", 64) + `"}` + "\n"))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"seq":18446744073709551616,"prev":"","hash":"` + strings.Repeat("f", 64) + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := verifyBytes(data, nil)
		if !res.OK {
			if res.Line < 1 || res.Reason == "" {
				t.Fatalf("broken without a position or reason: %+v", res)
			}
			return
		}
		// Accepted: every line is a complete JSON record that decodes.
		n := 0
		for line := range bytes.Lines(data) {
			n++
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("accepted line %d does not decode: %v", n, err)
			}
		}
		if uint64(n) != res.Records {
			t.Fatalf("accepted %d records, file has %d lines", res.Records, n)
		}
	})
}

// FuzzRecordEncoding: any field values encode to one line of valid JSON
// that verifies, decodes to the same values (invalid UTF-8 turned into
// U+FFFD) and re-encodes to the same bytes.
func FuzzRecordEncoding(f *testing.F) {
	f.Add("alice@company.test/phone", "<message><body>hi \"there\" \\ </body></message>", "not on the allowlist\n", int64(1700000000123456789), 42)
	f.Add("\x00\x1f\x7f", "\xff\xfe invalid", "\u2028\u2029", int64(0), -1)
	f.Add(`","hash":"`, `,"prev":"`, "\t\r\n", int64(-1), 0)
	f.Fuzz(func(t *testing.T, from, stanza, reason string, nanos int64, size int) {
		in := &Record{
			Time:   time.Unix(0, nanos).UTC(),
			Node:   "node",
			Event:  EventStanza,
			From:   from,
			To:     from + "x",
			Stanza: stanza,
			Reason: reason,
			Size:   size,
		}
		line := chainOf(nil, in)
		if bytes.Count(line, []byte{'\n'}) != 1 || !json.Valid(line) {
			t.Fatalf("not one line of JSON: %q", line)
		}
		if res := verifyBytes(line, nil); !res.OK {
			t.Fatalf("does not verify: %+v\n%q", res, line)
		}
		var out Record
		if err := json.Unmarshal(line, &out); err != nil {
			t.Fatal(err)
		}
		if out.From != valid(from) || out.Stanza != valid(stanza) || out.Reason != valid(reason) || out.Size != size || !out.Time.Equal(in.Time) {
			t.Fatalf("round trip changed the record:\nin  %+v\nout %+v", in, out)
		}
		again := encodeLine(nil, &out, newChainHasher(nil))
		if !bytes.Equal(again, line) {
			t.Fatalf("re-encoding differs:\n%q\n%q", line, again)
		}
		if !utf8.Valid(line) {
			t.Fatalf("line is not valid UTF-8: %q", line)
		}
	})
}

func TestJSONStringEscaping(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\n\r\t\x00\x1f", `"\n\r\t\u0000\u001f"`},
		{"<a>&amp;</a>", `"<a>&amp;</a>"`},
		{"ünï \u2028\u2029", `"ünï \u2028\u2029"`},
		{"bad\xffutf8", "\"bad\uFFFDutf8\""},
		{"\x7f", "\"\x7f\""},
	} {
		if got := string(appendJSONString(nil, tc.in)); got != tc.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		var back string
		if err := json.Unmarshal(appendJSONString(nil, tc.in), &back); err != nil || back != valid(tc.in) {
			t.Errorf("%q does not decode back: %q %v", tc.in, back, err)
		}
	}
}

// valid replaces each invalid UTF-8 byte of s with U+FFFD, as the encoder
// (and encoding/json) does.
func valid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}
