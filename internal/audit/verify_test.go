package audit

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// replaceIn changes the first old in line to new, failing if absent.
func replaceIn(t *testing.T, line, old, new string) string {
	t.Helper()
	if !strings.Contains(line, old) {
		t.Fatalf("%q not in line %s", old, line)
	}
	return strings.Replace(line, old, new, 1)
}

func TestVerifyDetectsTampering(t *testing.T) {
	cfg, _ := testConfig(t)
	l := openLog(t, cfg)
	for i := range 10 {
		r := stanzaRecord(i)
		if i == 4 {
			r.Decision, r.Reason = "deny", "not on the allowlist"
			r.Stanza = "<message><body>secret</body></message>"
		}
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	closeLog(t, l)
	orig := readFileLines(t, cfg.Path)
	orig = orig[:len(orig)-1] // the empty string after the last newline

	for _, tc := range []struct {
		name     string
		tamper   func(lines []string) []string
		wantLine int
		wantSeq  uint64
		reason   string
	}{
		{"edit decision", func(ls []string) []string {
			ls[4] = replaceIn(t, ls[4], `"decision":"deny"`, `"decision":"allo"`)
			return ls
		}, 5, 5, "hash mismatch"},
		{"edit from", func(ls []string) []string { ls[2] = replaceIn(t, ls[2], "alice@", "alicf@"); return ls }, 3, 3, "hash mismatch"},
		{"edit to", func(ls []string) []string { ls[6] = replaceIn(t, ls[6], "bob@", "bod@"); return ls }, 7, 7, "hash mismatch"},
		{"edit time", func(ls []string) []string { ls[0] = replaceIn(t, ls[0], `"time":"2`, `"time":"1`); return ls }, 1, 1, "hash mismatch"},
		{"edit stanza", func(ls []string) []string { ls[4] = replaceIn(t, ls[4], "secret", "public"); return ls }, 5, 5, "hash mismatch"},
		{"edit size", func(ls []string) []string { ls[8] = replaceIn(t, ls[8], `"size":3`, `"size":4`); return ls }, 9, 9, "hash mismatch"},
		{"edit seq", func(ls []string) []string { ls[3] = replaceIn(t, ls[3], `{"seq":4,`, `{"seq":5,`); return ls }, 4, 5, "hash mismatch"},
		{"edit hash", func(ls []string) []string {
			i := strings.LastIndex(ls[5], `"hash":"`) + len(`"hash":"`)
			c := "0"
			if ls[5][i] == '0' {
				c = "1"
			}
			ls[5] = ls[5][:i] + c + ls[5][i+1:]
			return ls
		}, 6, 6, "hash mismatch"},
		{"remove a member", func(ls []string) []string { ls[1] = replaceIn(t, ls[1], `"type":"chat",`, ``); return ls }, 2, 2, "hash mismatch"},
		{"delete a line", func(ls []string) []string { return append(ls[:3:3], ls[4:]...) }, 4, 5, "sequence gap: expected 4, found 5"},
		{"delete the first line", func(ls []string) []string { return ls[1:] }, 0, 0, ""}, // undetectable alone: reported as FirstPrev
		{"swap two lines", func(ls []string) []string { ls[5], ls[6] = ls[6], ls[5]; return ls }, 6, 7, "sequence gap: expected 6, found 7"},
		{"insert a copied line", func(ls []string) []string {
			return append(ls[:3:3], append([]string{ls[1]}, ls[3:]...)...)
		}, 4, 2, "sequence goes back: expected 4, found 2"},
		{"truncate the last line", func(ls []string) []string { ls[9] = ls[9][:len(ls[9])-20]; return ls }, 10, 10, "torn last line"},
		{"drop the last newline", func(ls []string) []string { ls[9] = strings.TrimSuffix(ls[9], "\n"); return ls }, 10, 10, "torn last line"},
		{"blank line", func(ls []string) []string { return append(ls[:2:2], append([]string{"\n"}, ls[2:]...)...) }, 3, 3, "empty line"},
		{"garbage line", func(ls []string) []string { ls[7] = "hello\n"; return ls }, 8, 8, "not JSON"},
		{"JSON but not a record", func(ls []string) []string { ls[7] = `{"seq":8}` + "\n"; return ls }, 8, 8, "not an audit record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := tc.tamper(append([]string(nil), orig...))
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeFile(t, path, strings.Join(lines, ""))
			res, err := Verify([]string{path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkVerifyEach(t, path, res)
			if tc.wantLine == 0 {
				if !res.OK || res.FirstPrev == "" || res.FirstSeq != 2 {
					t.Errorf("want intact but visibly mid-chain (FirstSeq 2, FirstPrev set): %+v", res)
				}
				return
			}
			if res.OK {
				t.Fatalf("tampering not detected: %+v", res)
			}
			if res.File != path || res.Line != tc.wantLine || res.Seq != tc.wantSeq || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("break at %s line %d seq %d: %q\nwant line %d seq %d: %q", res.File, res.Line, res.Seq, res.Reason, tc.wantLine, tc.wantSeq, tc.reason)
			}
			if res.Records != uint64(tc.wantLine-1) {
				t.Errorf("Records = %d, want %d verified before the break", res.Records, tc.wantLine-1)
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	if _, err := Verify(nil, nil); err == nil {
		t.Error("Verify of no files: no error")
	}
	if _, err := Verify([]string{filepath.Join(t.TempDir(), "missing")}, nil); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("Verify of a missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// checkVerifyEach holds VerifyEach to Verify's result: the same result,
// and exactly the records verified before the break handed on, in order.
func checkVerifyEach(t *testing.T, path string, want VerifyResult) {
	t.Helper()
	var seqs []uint64
	res, err := VerifyEach([]string{path}, nil, func(r *Record, line []byte) error {
		if !strings.HasSuffix(string(line), `"hash":"`+r.Hash+`"}`) {
			t.Errorf("seq %d: the line handed on is not the record's: %s", r.Seq, line)
		}
		seqs = append(seqs, r.Seq)
		return nil
	})
	if err != nil || !reflect.DeepEqual(res, want) {
		t.Fatalf("VerifyEach = %+v, %v; Verify = %+v", res, err, want)
	}
	if uint64(len(seqs)) != want.Records {
		t.Fatalf("VerifyEach handed on %d records, %d verified", len(seqs), want.Records)
	}
	for i, seq := range seqs {
		if seq != want.FirstSeq+uint64(i) {
			t.Fatalf("record %d handed on has seq %d, want %d", i, seq, want.FirstSeq+uint64(i))
		}
	}
}

// VerifyEach stops with the error its function returns.
func TestVerifyEachStops(t *testing.T) {
	cfg, _ := testConfig(t)
	l := openLog(t, cfg)
	for i := range 3 {
		if _, err := l.Append(stanzaRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeLog(t, l)
	stop := errors.New("archive full")
	n := 0
	_, err := VerifyEach([]string{cfg.Path}, nil, func(*Record, []byte) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("VerifyEach: %v after %d records, want %v after 2", err, n, stop)
	}
}
