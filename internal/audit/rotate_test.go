package audit

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRotationBySizeContinuesChain(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.RotateSize = 8 << 10
	l := openLog(t, cfg)
	ctx := testContext(t)
	const n = 400
	for i := range n {
		seq, err := l.Append(stanzaRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 { // make batches small so that files stay near the size
			if err := l.WaitDurable(ctx, seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	closeLog(t, l)

	rotated, err := RotatedFiles(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) < 4 {
		t.Fatalf("%d rotated files, want several", len(rotated))
	}
	series, err := SeriesFiles(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(series, append(slices.Clone(rotated), cfg.Path)) {
		t.Errorf("SeriesFiles = %v", series)
	}
	// Names sort lexically in chain order too (zero-padded seq).
	if !slices.IsSorted(rotated) {
		t.Errorf("rotated names do not sort in chain order: %v", rotated)
	}
	res := mustVerify(t, series, nil)
	if res.Records != n || res.Files != len(series) {
		t.Errorf("Verify = %+v, want %d records in %d files", res, n, len(series))
	}

	t.Run("a rotated file names its first seq", func(t *testing.T) {
		for _, f := range rotated {
			first, ok := parseRotatedName("audit.jsonl", filepath.Base(f))
			if !ok {
				t.Fatalf("%s: not a rotated name", f)
			}
			if line := readFileLines(t, f)[0]; !strings.HasPrefix(line, `{"seq":`+itoa(first)+`,`) {
				t.Errorf("%s starts with %.20s", f, line)
			}
		}
	})

	for _, tc := range []struct {
		name  string
		files []string
		want  string // file of the break
	}{
		{"a middle file dropped", append(slices.Delete(slices.Clone(rotated), 1, 2), cfg.Path), rotated[2]},
		{"two files swapped", append([]string{rotated[1], rotated[0]}, rotated[2:]...), rotated[0]},
		{"a file given twice", append([]string{rotated[0], rotated[0]}, rotated[1:]...), rotated[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verify(tc.files, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.File != tc.want || res.Line != 1 || !strings.Contains(res.Reason, "sequence") {
				t.Errorf("got OK=%v at %s line %d: %s; want a sequence break at %s line 1", res.OK, res.File, res.Line, res.Reason, tc.want)
			}
		})
	}
}

func itoa(n uint64) string { return string(appendUint(nil, n)) }

func appendUint(b []byte, n uint64) []byte {
	if n >= 10 {
		b = appendUint(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func TestRotationByAge(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.RotateAge = 30 * time.Millisecond
	l := openLog(t, cfg)
	appendN(t, l, 0, 5)
	eventually(t, "an age rotation", func() bool { return l.Stats().Rotations >= 1 })
	appendN(t, l, 5, 5)
	closeLog(t, l)
	series, err := SeriesFiles(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) < 2 {
		t.Fatalf("series %v: no rotation", series)
	}
	if res := mustVerify(t, series, nil); res.Records != 10 {
		t.Errorf("Records = %d, want 10", res.Records)
	}
}

func TestRestartAfterRotationContinuesFromRotatedFile(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.RotateAge = 20 * time.Millisecond
	l := openLog(t, cfg)
	appendN(t, l, 0, 3)
	eventually(t, "an age rotation", func() bool { return l.Stats().Rotations >= 1 })
	closeLog(t, l) // the current file is empty now

	cfg.RotateAge = 0
	l = openLog(t, cfg)
	if l.LastSeq() != 3 {
		t.Fatalf("LastSeq = %d after reopening with an empty current file, want 3", l.LastSeq())
	}
	appendN(t, l, 3, 3)
	closeLog(t, l)
	series, _ := SeriesFiles(cfg.Path)
	if res := mustVerify(t, series, nil); res.Records != 6 {
		t.Errorf("Records = %d, want 6", res.Records)
	}
}
