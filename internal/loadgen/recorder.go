package loadgen

import (
	"sync"
	"time"
)

// maxSeq bounds the sequence numbers the recorder tracks (its bitset of
// seen stanzas grows to the largest one).
const maxSeq = 1 << 32

// recorder counts what arrives and keeps the latency of every measured
// stanza. Receivers call it from many goroutines.
type recorder struct {
	base    time.Time // the run's clock: stamps are offsets from it
	run     string    // the measured phase's run id
	warmRun string    // the warm-up's run id

	mu        sync.Mutex
	seen      []uint64 // bitset of the sequence numbers received
	lat       []time.Duration
	window    []time.Duration // latencies since the last progress line
	received  uint64
	bounced   uint64 // error stanzas carrying one of our stamps
	dups      uint64
	unstamped uint64 // stanzas without a stamp of this run (other traffic)
	warm      int
	last      time.Duration // when the last measured stanza arrived
	changed   chan struct{} // signalled (non-blocking) on every arrival
}

func newRecorder(base time.Time, run, warmRun string) *recorder {
	return &recorder{base: base, run: run, warmRun: warmRun, changed: make(chan struct{}, 1)}
}

// now is the current offset on the run's clock.
func (r *recorder) now() time.Duration { return time.Since(r.base) }

// stanza records one received stanza by its id and type.
func (r *recorder) stanza(id, typ string) {
	now := r.now()
	st, err := ParseStamp(id)
	r.mu.Lock()
	switch {
	case err != nil:
		r.unstamped++
	case st.Run == r.warmRun:
		if typ != "error" {
			r.warm++
		}
	case st.Run != r.run || st.Seq >= maxSeq:
		r.unstamped++
	case typ == "error":
		r.bounced++
	case r.mark(st.Seq):
		r.dups++
	default:
		r.received++
		d := max(now-st.Sent, 0)
		r.lat = append(r.lat, d)
		r.window = append(r.window, d)
		r.last = now
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// mark sets seq in the bitset and reports whether it was already set
// (with r.mu held).
func (r *recorder) mark(seq uint64) bool {
	i := int(seq / 64)
	if i >= len(r.seen) {
		r.seen = append(r.seen, make([]uint64, i+1-len(r.seen)+len(r.seen)/2)...)
	}
	bit := uint64(1) << (seq % 64)
	dup := r.seen[i]&bit != 0
	r.seen[i] |= bit
	return dup
}

// counts is a snapshot of the counters.
type counts struct {
	received, bounced, dups, unstamped uint64
	warm                               int
	last                               time.Duration
}

func (r *recorder) counts() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return counts{received: r.received, bounced: r.bounced, dups: r.dups, unstamped: r.unstamped, warm: r.warm, last: r.last}
}

// takeWindow returns the latencies since the last call.
func (r *recorder) takeWindow() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.window
	r.window = nil
	return w
}

// latencies returns every measured latency (the recorder's own slice:
// call it once arrivals are over).
func (r *recorder) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lat
}
