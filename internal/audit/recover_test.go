package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTornTailIsReportedCutAndChained(t *testing.T) {
	for _, tc := range []struct {
		name string
		torn func(nextLine string) string
	}{
		{"half a line", func(next string) string { return next[:len(next)/2] }},
		{"all but the newline", func(next string) string { return strings.TrimSuffix(next, "\n") }},
		{"one byte", func(next string) string { return next[:1] }},
		{"zeros (unwritten blocks after a crash)", func(string) string { return strings.Repeat("\x00", 4096) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, logs := testConfig(t)
			l := openLog(t, cfg)
			appendN(t, l, 0, 5)
			closeLog(t, l)

			// The line the crash interrupted: record 6, as the log would have written it.
			next := readFileLines(t, cfg.Path)[4] // any well-formed line will do as a model
			torn := tc.torn(next)
			intact, _ := os.ReadFile(cfg.Path)
			writeFile(t, cfg.Path, string(intact)+torn)

			l = openLog(t, cfg)
			if l.LastSeq() != 6 { // 5 records + log.recovered
				t.Errorf("LastSeq = %d, want 6", l.LastSeq())
			}
			appendN(t, l, 5, 2)
			closeLog(t, l)

			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "torn") {
				t.Errorf("no slog error about the torn line:\n%s", logs)
			}
			lines := readFileLines(t, cfg.Path)
			var rec Record
			if err := json.Unmarshal([]byte(lines[5]), &rec); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(torn))
			if rec.Event != EventLogRecovered || rec.Seq != 6 || rec.DroppedOffset != int64(len(intact)) ||
				rec.DroppedBytes != int64(len(torn)) || rec.DroppedSHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("recovery record %+v\nwant offset %d, %d bytes, sha256 %x", rec, len(intact), len(torn), sum)
			}
			saved, err := filepath.Glob(cfg.Path + "-torn-*")
			if err != nil || len(saved) != 1 {
				t.Fatalf("saved torn files: %v %v", saved, err)
			}
			if data, _ := os.ReadFile(saved[0]); string(data) != torn {
				t.Errorf("saved torn bytes differ")
			}
			res := mustVerify(t, []string{cfg.Path}, nil)
			if res.Records != 8 || res.Recoveries != 1 {
				t.Errorf("Verify = %+v, want 8 records, 1 recovery", res)
			}
		})
	}
}

func TestTornOnlyLineContinuesFromRotatedFile(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.RotateAge = 20 * time.Millisecond
	l := openLog(t, cfg)
	appendN(t, l, 0, 3)
	eventually(t, "an age rotation", func() bool { return l.Stats().Rotations >= 1 })
	closeLog(t, l)
	writeFile(t, cfg.Path, `{"seq":4,"time":"2026-`) // crash during the first write of the new file

	cfg.RotateAge = 0
	l = openLog(t, cfg)
	appendN(t, l, 3, 2)
	closeLog(t, l)
	series, _ := SeriesFiles(cfg.Path)
	res := mustVerify(t, series, nil)
	if res.Records != 6 || res.Recoveries != 1 {
		t.Errorf("Verify = %+v, want 3 + recovery + 2 records", res)
	}
}

func TestOpenRefusesADamagedLastRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(last string) string
	}{
		{"edited", func(last string) string { return strings.Replace(last, "allow", "deny!", 1) }},
		{"not a record", func(string) string { return "some other file\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			l := openLog(t, cfg)
			appendN(t, l, 0, 3)
			closeLog(t, l)
			lines := readFileLines(t, cfg.Path)
			lines[2] = tc.damage(lines[2])
			writeFile(t, cfg.Path, strings.Join(lines, ""))
			l2, err := Open(cfg)
			if err == nil {
				l2.Close()
				t.Fatal("Open continued after a damaged last record")
			}
			if !strings.Contains(err.Error(), "audit verify") || !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q does not say where and what to do", err)
			}
		})
	}
}
