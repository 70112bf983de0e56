package audit

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChainLinesVerify: lines made by Chain, written one after the other,
// pass Verify (with and without a key), decode to the records given, and
// a chain resumed from its last line goes on without a break.
func TestChainLinesVerify(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"sha256", nil},
		{"hmac", []byte("0123456789abcdef0123")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewChain("edge-1", tc.key)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 3, 15, 10, 20, 30, 123456789, time.UTC)
			var out []byte
			var last []byte
			for i := range 5 {
				r := stanzaRecord(i)
				if i == 2 {
					r = &Record{Event: EventCheckpoint, Heads: StringsOf("edge-1 2 "+strings.Repeat("a", 64), "edge-2 9 "+strings.Repeat("b", 64))}
				}
				start := len(out)
				out = c.Next(out, r, now)
				last = out[start : len(out)-1]
				var got Record
				if err := json.Unmarshal(last, &got); err != nil {
					t.Fatal(err)
				}
				if got != *r {
					t.Fatalf("line %d decodes to %+v, want %+v", i, got, *r)
				}
			}
			// A resumed chain continues from the last line.
			c2, err := NewChain("edge-1", tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if err := c2.Resume(last); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			if seq, hash := c2.Head(); seq != 5 || hash == "" {
				t.Fatalf("Head after Resume = %d %q", seq, hash)
			}
			out = c2.Next(out, stanzaRecord(9), now)
			path := filepath.Join(t.TempDir(), "chain.jsonl")
			writeFile(t, path, string(out))
			res := mustVerify(t, []string{path}, tc.key)
			if res.Records != 6 || res.FirstPrev != "" {
				t.Fatalf("Verify = %+v", res)
			}
		})
	}
}

func TestChainResumeRefuses(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	c, _ := NewChain("edge-1", key)
	line := bytes.TrimSuffix(c.Next(nil, stanzaRecord(1), time.Now()), []byte("\n"))
	for _, tc := range []struct {
		name string
		node string
		key  []byte
		line []byte
	}{
		{"other key", "edge-1", []byte("another key of 20 b"), line},
		{"no key", "edge-1", nil, line},
		{"other node", "edge-2", key, line},
		{"edited", "edge-1", key, bytes.Replace(line, []byte("bob@"), []byte("eve@"), 1)},
		{"not a record", "edge-1", key, []byte(`{"a":1}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c2, err := NewChain(tc.node, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if err := c2.Resume(tc.line); err == nil {
				t.Fatal("Resume accepted the line")
			}
			if seq, _ := c2.Head(); seq != 0 {
				t.Fatalf("head moved to %d", seq)
			}
		})
	}
	if _, err := NewChain("", nil); err == nil {
		t.Fatal("NewChain accepted an empty node name")
	}
	if _, err := NewChain("n", []byte("short")); err == nil {
		t.Fatal("NewChain accepted a short key")
	}
}

// FuzzChainResume: Resume never panics, and it accepts a line only if the
// line is a record of the chain's node whose hash verifies; a chain
// resumed from it continues to a file that Verify accepts.
func FuzzChainResume(f *testing.F) {
	c, _ := NewChain("n", nil)
	now := time.Date(2026, 3, 15, 10, 20, 30, 0, time.UTC)
	good := c.Next(nil, stanzaRecord(1), now)
	f.Add(bytes.TrimSuffix(good, []byte("\n")))
	f.Add([]byte(`{"seq":1,"time":"x","node":"n","event":"e","prev":"","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		c, _ := NewChain("n", nil)
		if err := c.Resume(line); err != nil {
			return
		}
		out := append(append([]byte{}, line...), '\n')
		out = c.Next(out, stanzaRecord(2), now)
		path := filepath.Join(t.TempDir(), "a.jsonl")
		writeFile(t, path, string(out))
		if res, err := Verify([]string{path}, nil); err != nil || !res.OK {
			t.Fatalf("resumed from %q: %+v %v", line, res, err)
		}
	})
}
