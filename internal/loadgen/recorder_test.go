package loadgen

import (
	"testing"
	"time"
)

func TestRecorder(t *testing.T) {
	base := time.Now().Add(-time.Second)
	r := newRecorder(base, "0000000a", "0000000b")
	id := func(run string, seq uint64) string {
		return string(AppendID(nil, Stamp{Run: run, Seq: seq, Sent: 500 * time.Millisecond}))
	}
	steps := []struct {
		id, typ string
	}{
		{id("0000000b", 0), "chat"},  // warm-up
		{id("0000000a", 0), "chat"},  // measured
		{id("0000000a", 1), ""},      // measured
		{id("0000000a", 1), ""},      // duplicate
		{id("0000000a", 2), "error"}, // bounced
		{id("0000000c", 3), "chat"},  // another run
		{"m1", "chat"},               // not a stamp
		{id("0000000a", 200), ""},    // grows the bitset
		{id("0000000a", maxSeq), ""}, // out of range
	}
	for _, s := range steps {
		r.stanza(s.id, s.typ)
	}
	got := r.counts()
	want := counts{received: 3, bounced: 1, dups: 1, unstamped: 3, warm: 1}
	got.last = 0
	if got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	lat := r.latencies()
	if len(lat) != 3 {
		t.Fatalf("%d latencies, want 3", len(lat))
	}
	for _, d := range lat {
		// Sent half a second after base, received a second or more after.
		if d < 500*time.Millisecond || d > time.Minute {
			t.Errorf("latency %v, want about 500 ms", d)
		}
	}
	if w := r.takeWindow(); len(w) != 3 {
		t.Errorf("window of %d, want 3", len(w))
	}
	if w := r.takeWindow(); len(w) != 0 {
		t.Errorf("second window of %d, want 0", len(w))
	}
}
