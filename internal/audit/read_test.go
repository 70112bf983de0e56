package audit

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFilterMatch(t *testing.T) {
	at := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	stanza := &Record{Time: at, Event: EventStanza, LocalDomain: "company.test", RemoteDomain: "partner.test",
		From: "Alice@company.test/phone", To: "bob@partner.test", Decision: "deny"}
	session := &Record{Time: at, Event: EventSessionOpen, LocalDomain: "company.test", RemoteDomain: "other.test", Decision: "allow"}
	for _, tc := range []struct {
		name   string
		filter Filter
		r      *Record
		want   bool
	}{
		{"empty filter", Filter{}, stanza, true},
		{"remote domain", Filter{Domain: "PARTNER.test"}, stanza, true},
		{"local domain", Filter{Domain: "company.test"}, session, true},
		{"other domain", Filter{Domain: "evil.test"}, stanza, false},
		{"bare JID any resource", Filter{JID: "alice@company.test"}, stanza, true},
		{"full JID", Filter{JID: "alice@company.test/phone"}, stanza, true},
		{"other resource", Filter{JID: "alice@company.test/laptop"}, stanza, false},
		{"to JID", Filter{JID: "bob@partner.test"}, stanza, true},
		{"JID on a session", Filter{JID: "bob@partner.test"}, session, false},
		{"since", Filter{Since: at}, stanza, true},
		{"since after", Filter{Since: at.Add(time.Nanosecond)}, stanza, false},
		{"until is exclusive", Filter{Until: at}, stanza, false},
		{"until after", Filter{Until: at.Add(time.Second)}, stanza, true},
		{"decision", Filter{Decision: "deny"}, stanza, true},
		{"other decision", Filter{Decision: "allow"}, stanza, false},
		{"event prefix", Filter{Event: "session"}, session, true},
		{"event exact", Filter{Event: "session.open"}, session, true},
		{"event prefix needs a dot", Filter{Event: "sess"}, session, false},
		{"all filters", Filter{Domain: "partner.test", JID: "alice@company.test", Decision: "deny", Event: "stanza", Since: at.Add(-time.Hour), Until: at.Add(time.Hour)}, stanza, true},
	} {
		if got := tc.filter.Match(tc.r); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-03-15T10:20:30Z", time.Date(2026, 3, 15, 10, 20, 30, 0, time.UTC), true},
		{"2026-03-15T10:20:30.5+01:00", time.Date(2026, 3, 15, 9, 20, 30, 5e8, time.UTC), true},
		{"2026-03-15", time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), true},
		{"2026-03-15T10:20", time.Date(2026, 3, 15, 10, 20, 0, 0, time.UTC), true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"yesterday", time.Time{}, false},
		{"-1h", time.Time{}, false},
	} {
		got, err := ParseTime(tc.in, now)
		if (err == nil) != tc.ok || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("ParseTime(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestReadRecordsAndLastRecords(t *testing.T) {
	cfg, _ := testConfig(t)
	l := openLog(t, cfg)
	appendN(t, l, 0, 30)
	closeLog(t, l)

	var seqs []uint64
	err := ReadRecords([]string{cfg.Path}, func(r *Record, line []byte) error {
		if !bytes.HasPrefix(line, []byte(`{"seq":`)) || bytes.HasSuffix(line, []byte("\n")) {
			t.Errorf("line %q", line)
		}
		seqs = append(seqs, r.Seq)
		return nil
	})
	if err != nil || len(seqs) != 30 || seqs[29] != 30 {
		t.Fatalf("ReadRecords: %v, %v", seqs, err)
	}

	for _, n := range []int{0, 1, 5, 30, 100} {
		var got []uint64
		end, err := LastRecords(cfg.Path, n, func(r *Record, _ []byte) error { got = append(got, r.Seq); return nil })
		if err != nil {
			t.Fatal(err)
		}
		want := min(n, 30)
		if len(got) != want || (want > 0 && got[want-1] != 30) || (want > 0 && got[0] != uint64(31-want)) {
			t.Errorf("LastRecords(%d) = %v", n, got)
		}
		if size := int64(len(strings.Join(readFileLines(t, cfg.Path), ""))); end != size {
			t.Errorf("LastRecords end = %d, want %d", end, size)
		}
	}

	// A torn last line is skipped by readers (Verify reports it).
	writeFile(t, cfg.Path, strings.Join(readFileLines(t, cfg.Path), "")+`{"seq":31,"ti`)
	seqs = nil
	if err := ReadRecords([]string{cfg.Path}, func(r *Record, _ []byte) error { seqs = append(seqs, r.Seq); return nil }); err != nil || len(seqs) != 30 {
		t.Errorf("with a torn line: %d records, %v", len(seqs), err)
	}
	writeFile(t, cfg.Path, "not json\n")
	if err := ReadRecords([]string{cfg.Path}, func(*Record, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a bad line: %v", err)
	}
}

// following is a Follow of the log after its record 3, in the background,
// collecting the seqs it passes on.
type following struct {
	mu     sync.Mutex
	got    []uint64
	done   chan error
	cancel context.CancelFunc
}

func startFollow(t *testing.T, path string, end int64) *following {
	ctx, cancel := context.WithCancel(testContext(t))
	t.Cleanup(cancel)
	fw := &following{done: make(chan error, 1), cancel: cancel}
	go func() {
		fw.done <- Follow(ctx, path, end, 3, 5*time.Millisecond, func(r *Record, _ []byte) error {
			fw.mu.Lock()
			fw.got = append(fw.got, r.Seq)
			fw.mu.Unlock()
			return nil
		})
	}()
	return fw
}

// wait waits (bounded) until n records were passed on, then stops
// following; Follow must have ended without an error.
func (fw *following) wait(t *testing.T, n int, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		fw.mu.Lock()
		have := len(fw.got)
		fw.mu.Unlock()
		if have >= n {
			break
		}
		if time.Now().After(deadline) {
			select {
			case err := <-fw.done:
				t.Logf("Follow returned %v", err)
			default:
			}
			fw.mu.Lock()
			defer fw.mu.Unlock()
			t.Fatalf("followed %d of %d records: %v", have, n, fw.got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fw.cancel()
	if err := <-fw.done; err != nil {
		t.Fatal(err)
	}
}

// contiguousFrom checks that the seqs passed on are first, first+1, ...
func (fw *following) contiguousFrom(t *testing.T, first uint64) {
	t.Helper()
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for i, s := range fw.got {
		if s != first+uint64(i) {
			t.Fatalf("followed seqs not contiguous from %d: position %d is %d (%v)", first, i, s, fw.got)
		}
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.RotateSize = 4 << 10
	l := openLog(t, cfg)
	appendN(t, l, 0, 3)
	if err := l.WaitDurable(testContext(t), 3); err != nil {
		t.Fatal(err)
	}
	end, err := LastRecords(cfg.Path, 0, func(*Record, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}

	fw := startFollow(t, cfg.Path, end)
	const more = 300 // many rotations, several between two polls
	for i := 0; i < more; i += 5 {
		seqs := appendN(t, l, 3+i, 5)
		if i < more/2 { // first small batches, then a burst; the log ends with an empty current file
			if err := l.WaitDurable(testContext(t), seqs[4]); err != nil {
				t.Fatal(err)
			}
		}
	}
	closeLog(t, l)
	fw.wait(t, more, 5*time.Second)
	if l.Stats().Rotations < 3 {
		t.Errorf("only %d rotations", l.Stats().Rotations)
	}
	fw.contiguousFrom(t, 4)
}

func TestTableWriter(t *testing.T) {
	var b bytes.Buffer
	tw := NewTableWriter(&b)
	at := time.Date(2026, 3, 15, 10, 20, 30, 123456789, time.UTC)
	tw.Write(&Record{Seq: 7, Time: at, Event: EventStanza, Direction: "outbound", From: "a@company.test/r", To: "b@partner.test",
		Kind: "message", Type: "chat", Decision: "deny", Reason: "not on\nthe allowlist"}, nil)
	tw.Write(&Record{Seq: 8, Time: at, Event: EventSessionOpen, Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test", Decision: "allow"}, nil)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME (UTC)") {
		t.Fatalf("table:\n%s", b.String())
	}
	for _, want := range []string{"2026-03-15 10:20:30.123", "outbound", "a@company.test/r", "message/chat", "deny", "not on the allowlist"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	if !strings.Contains(lines[2], "company.test") || strings.Index(lines[2], "company.test") > strings.Index(lines[2], "partner.test") {
		t.Errorf("outbound session row should read company.test -> partner.test: %q", lines[2])
	}
}

// TestFollowStartsAfterARotation: the file rotates between LastRecords
// and Follow's open (offset belongs to the rotated file); with the seq
// the caller read, Follow still passes on every record after it, once
// and in order.
func TestFollowStartsAfterARotation(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.RotateSize = 4 << 10
	l := openLog(t, cfg)
	appendN(t, l, 0, 3)
	if err := l.WaitDurable(testContext(t), 3); err != nil {
		t.Fatal(err)
	}
	end, err := LastRecords(cfg.Path, 1, func(*Record, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// Rotations before Follow opens the file.
	const more = 100
	for i := 0; i < more; i += 10 {
		seqs := appendN(t, l, 3+i, 10)
		if err := l.WaitDurable(testContext(t), seqs[9]); err != nil {
			t.Fatal(err)
		}
	}
	if l.Stats().Rotations == 0 {
		t.Fatal("no rotation: the test shows nothing")
	}
	fw := startFollow(t, cfg.Path, end)
	fw.wait(t, more, testTimeout)
	fw.contiguousFrom(t, 4)
	closeLog(t, l)
}
