package audit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// rotatedLog writes one record per domain, each into its own rotated file
// (RotateSize 1 rotates after every batch), and returns the log, reopened
// without rotation, and the records written, oldest first. The current
// file is left empty.
func rotatedLog(t *testing.T, cfg Config, domains ...string) (*Log, []*Record) {
	t.Helper()
	cfg.RotateSize = 1
	l := openLog(t, cfg)
	ctx := testContext(t)
	var recs []*Record
	for i, d := range domains {
		r := stanzaRecord(i)
		r.RemoteDomain, r.To = d, "bob@"+d+"/phone"
		seq, err := l.Append(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WaitDurable(ctx, seq); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a rotation", func() bool { files, _ := RotatedFiles(cfg.Path); return len(files) == i+1 })
		recs = append(recs, r)
	}
	closeLog(t, l) // reopened without rotation: what comes next stays in the current file
	cfg.RotateSize = 0
	return openLog(t, cfg), recs
}

// verifySeries verifies the whole series and requires an anchored start.
func verifySeries(t *testing.T, path string, key []byte) VerifyResult {
	t.Helper()
	files, err := SeriesFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(files, key)
	if err != nil {
		t.Fatal(err)
	}
	res.RequireAnchoredStart()
	return res
}

func TestRetentionPlan(t *testing.T) {
	const a, b = "partner-a.test", "partner-b.test"
	later := 48 * time.Hour // runs happen this much after the records
	tests := []struct {
		name    string
		domains []string
		maxAge  time.Duration
		holds   func(recs []*Record) []LegalHold
		deleted int    // files deleted, oldest first
		keepWhy string // why the first kept rotated file stays
	}{
		{"all expired, no holds", []string{a, a, b, a}, 24 * time.Hour, nil, 4, "the current file"},
		{"a held domain stops the run", []string{a, a, b, a}, 24 * time.Hour,
			func([]*Record) []LegalHold { return []LegalHold{{Reference: "CASE-7", Domains: []string{b}}} }, 2, `held by legal hold "CASE-7"`},
		{"a bare JID holds every resource", []string{a, b}, 24 * time.Hour,
			func([]*Record) []LegalHold {
				return []LegalHold{{Reference: "HR-1", JIDs: []string{"bob@partner-a.test"}}}
			}, 0, `held by legal hold "HR-1"`},
		{"a full JID holds its resource only", []string{a, b}, 24 * time.Hour,
			func([]*Record) []LegalHold {
				return []LegalHold{{Reference: "HR-2", JIDs: []string{"bob@partner-a.test/laptop"}}}
			}, 2, "the current file"},
		{"a date range holds its records", []string{a, a, a}, 24 * time.Hour,
			func(recs []*Record) []LegalHold {
				return []LegalHold{{Reference: "AUDIT-2026", Since: recs[1].Time, Until: recs[1].Time.Add(time.Nanosecond)}}
			}, 1, `held by legal hold "AUDIT-2026"`},
		{"a domain outside the hold's dates is not held", []string{b, a}, 24 * time.Hour,
			func(recs []*Record) []LegalHold {
				return []LegalHold{{Reference: "OLD", Domains: []string{b}, Until: recs[0].Time.Add(-time.Hour)}}
			}, 2, "the current file"},
		{"not expired", []string{a, a}, 72 * time.Hour, nil, 0, "not expired"},
		{"retention 0 keeps everything", []string{a, a}, 0, nil, 0, "no retention"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			l, recs := rotatedLog(t, cfg, tc.domains...)
			before, _ := RotatedFiles(cfg.Path)
			r := Retention{MaxAge: tc.maxAge}
			if tc.holds != nil {
				r.Holds = tc.holds(recs)
			}
			plan, err := l.ApplyRetention(testContext(t), r, time.Now().Add(later))
			if err != nil {
				t.Fatalf("ApplyRetention: %v", err)
			}
			if got := len(plan.Deleted()); got != tc.deleted {
				t.Fatalf("deleted %d files, want %d: %+v", got, tc.deleted, plan.Files)
			}
			if why := plan.Files[tc.deleted].Why; !strings.Contains(why, tc.keepWhy) {
				t.Errorf("first kept file: %q, want %q", why, tc.keepWhy)
			}
			after, _ := RotatedFiles(cfg.Path)
			if !slices.Equal(after, before[tc.deleted:]) {
				t.Errorf("rotated files after: %v, want %v", after, before[tc.deleted:])
			}
			closeLog(t, l)
			res := verifySeries(t, cfg.Path, nil)
			if !res.OK {
				t.Fatalf("verify after retention: %s line %d: %s", res.File, res.Line, res.Reason)
			}
			if tc.deleted > 0 && (res.StartAnchor == nil || res.FirstSeq != uint64(tc.deleted)+1) {
				t.Errorf("want the start seq %d anchored: %+v", tc.deleted+1, res)
			}
			if tc.deleted == 0 && res.Anchors != 0 {
				t.Errorf("nothing deleted but %d anchor(s) written", res.Anchors)
			}
		})
	}
}

func TestRetentionAnchorRecord(t *testing.T) {
	cfg, _ := testConfig(t)
	l, recs := rotatedLog(t, cfg, "a.test", "a.test", "b.test")
	files, _ := RotatedFiles(cfg.Path)
	hold := LegalHold{Reference: "CASE-9", Domains: []string{"b.test"}}
	if _, err := l.ApplyRetention(testContext(t), Retention{MaxAge: time.Hour, Holds: []LegalHold{hold}}, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	var anchor *Record
	if err := ReadRecords([]string{cfg.Path}, func(r *Record, _ []byte) error {
		if r.Event == EventAnchor {
			anchor = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if anchor == nil {
		t.Fatal("no audit.anchor record in the current file")
	}
	if anchor.AnchorSeq != recs[2].Seq || anchor.AnchorPrev != recs[1].Hash {
		t.Errorf("anchor names seq %d prev %s, want seq %d prev %s (the last deleted record's hash)", anchor.AnchorSeq, anchor.AnchorPrev, recs[2].Seq, recs[1].Hash)
	}
	want := []string{filepath.Base(files[0]), filepath.Base(files[1])}
	if !slices.Equal(anchor.DeletedFiles.Values(), want) {
		t.Errorf("deleted_files %v, want %v", anchor.DeletedFiles.Values(), want)
	}
	for _, s := range []string{"retention 1h0m0s", "2 file(s) deleted", "CASE-9"} {
		if !strings.Contains(anchor.Reason, s) {
			t.Errorf("anchor reason %q lacks %q", anchor.Reason, s)
		}
	}
	res := verifySeries(t, cfg.Path, nil)
	if !res.OK || res.StartAnchor == nil || res.StartAnchor.Seq != anchor.Seq || res.FirstSeq != recs[2].Seq {
		t.Errorf("verify: want the start seq %d anchored by record %d: %+v", recs[2].Seq, anchor.Seq, res)
	}
}

// An attacker (or a careless operator) removing old files without a
// retention run must be caught by a verify of the series.
func TestVerifyCatchesFilesRemovedWithoutAnchor(t *testing.T) {
	tests := []struct {
		name   string
		retain int // files a retention run deletes first (with its anchor)
		remove int // files then removed by hand, oldest first
	}{
		{"the oldest file removed", 0, 1},
		{"two files removed", 0, 2},
		{"one more file removed after a retention run", 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			l, recs := rotatedLog(t, cfg, "a.test", "a.test", "a.test", "b.test", "a.test")
			if tc.retain > 0 {
				hold := LegalHold{Reference: "KEEP", Since: recs[tc.retain].Time}
				if _, err := l.ApplyRetention(testContext(t), Retention{MaxAge: time.Hour, Holds: []LegalHold{hold}}, time.Now().Add(2*time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			closeLog(t, l)
			if res := verifySeries(t, cfg.Path, nil); !res.OK {
				t.Fatalf("intact series fails: %s", res.Reason)
			}
			files, _ := RotatedFiles(cfg.Path)
			for _, f := range files[:tc.remove] {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
			res := verifySeries(t, cfg.Path, nil)
			if res.OK || !strings.Contains(res.Reason, "mid-chain") || res.Line != 1 {
				t.Errorf("want a break at the start: %+v", res)
			}
		})
	}
}

// A retention run cut short (a crash between deletions) leaves older files
// than the anchor names: the series still verifies.
func TestVerifyAcceptsRetentionCutShort(t *testing.T) {
	cfg, _ := testConfig(t)
	l, _ := rotatedLog(t, cfg, "a.test", "a.test", "a.test", "a.test")
	files, _ := RotatedFiles(cfg.Path)
	saved2, err := os.ReadFile(files[2])
	if err != nil {
		t.Fatal(err)
	}
	saved3, err := os.ReadFile(files[3])
	if err != nil {
		t.Fatal(err)
	}
	plan, err := l.ApplyRetention(testContext(t), Retention{MaxAge: time.Hour}, time.Now().Add(2*time.Hour))
	if err != nil || len(plan.Deleted()) != 4 {
		t.Fatalf("ApplyRetention: %v, %+v", err, plan.Files)
	}
	closeLog(t, l)
	// as if the run had stopped after deleting the two oldest files
	writeFile(t, files[2], string(saved2))
	writeFile(t, files[3], string(saved3))
	res := verifySeries(t, cfg.Path, nil)
	if !res.OK || res.FirstSeq != 3 || res.StartAnchor == nil {
		t.Errorf("want intact from seq 3, anchored: %+v", res)
	}
}

func TestRetentionWithHMACKey(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.HMACKey = []byte("0123456789abcdef0123456789abcdef")
	l, _ := rotatedLog(t, cfg, "a.test", "a.test", "b.test", "b.test")
	held := []LegalHold{{Reference: "B", Domains: []string{"b.test"}}}
	if _, err := l.ApplyRetention(testContext(t), Retention{MaxAge: time.Hour, Holds: held}, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	if res := verifySeries(t, cfg.Path, cfg.HMACKey); !res.OK || res.StartAnchor == nil {
		t.Fatalf("keyed series after retention: %+v", res)
	}
	if res := verifySeries(t, cfg.Path, []byte("another key of 32 bytes, wrong!!")); res.OK {
		t.Error("verifies with another key")
	}

	t.Run("an anchor forged without the key", func(t *testing.T) {
		files, _ := SeriesFiles(cfg.Path)
		last := readFileLines(t, cfg.Path)
		var head Record
		if err := ReadRecords([]string{cfg.Path}, func(r *Record, _ []byte) error { head = *r; return nil }); err != nil {
			t.Fatal(err)
		}
		// The attacker deletes a file the anchor did not and appends an
		// anchor naming the new start, hashed with a guessed key.
		f0, _ := RotatedFiles(cfg.Path)
		var start Record
		if err := ReadRecords(f0[1:2], func(r *Record, _ []byte) error { start = *r; return errStopScan }); err != nil && err != errStopScan {
			t.Fatal(err)
		}
		forged := &Record{Seq: head.Seq + 1, Time: time.Now(), Node: head.Node, Event: EventAnchor, AnchorSeq: start.Seq, AnchorPrev: start.Prev, Prev: head.Hash}
		line := encodeLine(nil, forged, newChainHasher([]byte("guessed key, not the real one!!")))
		writeFile(t, cfg.Path, strings.Join(last, "")+string(line))
		if err := os.Remove(f0[0]); err != nil {
			t.Fatal(err)
		}
		res := verifySeries(t, cfg.Path, cfg.HMACKey)
		if res.OK || !strings.Contains(res.Reason, "hash mismatch") {
			t.Errorf("forged anchor accepted: %+v (files %v)", res, files)
		}
	})
}

// Retention verifies what it deletes: a tampered file is evidence and is
// not deleted.
func TestRetentionRefusesABrokenChain(t *testing.T) {
	cfg, _ := testConfig(t)
	l, _ := rotatedLog(t, cfg, "a.test", "a.test", "a.test")
	files, _ := RotatedFiles(cfg.Path)
	line := readFileLines(t, files[0])[0]
	writeFile(t, files[0], strings.Replace(line, "partner allowlist", "partner allowlisT", 1))
	plan, err := l.ApplyRetention(testContext(t), Retention{MaxAge: time.Hour}, time.Now().Add(2*time.Hour))
	if err == nil || !strings.Contains(err.Error(), "do not verify") {
		t.Fatalf("ApplyRetention: %v, want a refusal", err)
	}
	if after, _ := RotatedFiles(cfg.Path); !slices.Equal(after, files) {
		t.Errorf("files deleted despite the refusal: %v (plan %+v)", after, plan.Files)
	}
	if l.LastSeq() != 3 {
		t.Errorf("an anchor was written: last seq %d", l.LastSeq())
	}
}

func TestRetentionRotatedHook(t *testing.T) {
	cfg, _ := testConfig(t)
	got := make(chan string, 10)
	cfg.Rotated = func(name string) { got <- name }
	rotatedLog(t, cfg, "a.test", "b.test")
	files, _ := RotatedFiles(cfg.Path)
	for _, want := range files {
		select {
		case name := <-got:
			if name != want {
				t.Errorf("Rotated(%s), want %s", name, want)
			}
		case <-time.After(testTimeout):
			t.Fatal("Rotated not called")
		}
	}
}

func TestLegalHoldMatch(t *testing.T) {
	at := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	rec := &Record{Time: at, LocalDomain: "company.test", RemoteDomain: "partner.test", From: "alice@company.test/pc", To: "Bob@partner.test/phone"}
	tests := []struct {
		name string
		hold LegalHold
		want bool
	}{
		{"remote domain", LegalHold{Domains: []string{"partner.test"}}, true},
		{"domain case-insensitive", LegalHold{Domains: []string{"PARTNER.test"}}, true},
		{"other domain", LegalHold{Domains: []string{"other.test"}}, false},
		{"bare JID, any resource", LegalHold{JIDs: []string{"bob@partner.test"}}, true},
		{"full JID, same resource", LegalHold{JIDs: []string{"alice@company.test/pc"}}, true},
		{"full JID, other resource", LegalHold{JIDs: []string{"alice@company.test/phone"}}, false},
		{"one of several", LegalHold{Domains: []string{"x.test"}, JIDs: []string{"y@z.test", "alice@company.test"}}, true},
		{"dates only, inside", LegalHold{Since: at.Add(-time.Hour), Until: at.Add(time.Hour)}, true},
		{"until is exclusive", LegalHold{Until: at}, false},
		{"since is inclusive", LegalHold{Since: at}, true},
		{"domain but before since", LegalHold{Domains: []string{"partner.test"}, Since: at.Add(time.Second)}, false},
		{"no criteria: everything", LegalHold{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.hold.Match(rec); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}
