package limit

import (
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rates is a bounded registry of token buckets, one per key (for instance
// a remote domain and a direction). It is safe for concurrent use.
type Rates struct {
	mu      sync.Mutex
	t       *table[string]
	dropped uint64 // entries dropped with a bucket that was not full
}

// NewRates returns a registry that keeps at most maxKeys buckets (at least
// one).
func NewRates(maxKeys int) *Rates {
	return &Rates{t: newTable[string](maxKeys)}
}

// Allow reports whether one more event for key may pass at now, taking a
// token from key's bucket if so. The bucket refills at perSecond tokens a
// second up to burst; both may differ from the previous call (a reload
// changes them), and the bucket's tokens carry over. A key seen for the
// first time, or again after its entry was dropped, starts with a full
// bucket. See the package documentation for rates that are not positive.
func (r *Rates) Allow(key string, perSecond float64, burst int, now time.Time) bool {
	limit, inf, ok := limitOf(perSecond)
	if inf {
		return true
	}
	if !ok || burst <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.t.m[key]
	if e == nil {
		if _, lossy := r.t.makeRoom(now); lossy {
			r.dropped++
		}
		// The key may be a slice of a large buffer: keep a copy.
		e = &entry[string]{key: strings.Clone(key), bucket: rate.NewLimiter(limit, burst)}
		r.t.m[e.key] = e
	} else {
		setBucket(e.bucket, now, limit, burst)
	}
	r.t.touch(e, now)
	r.t.dropOldestIfFull(e, now)
	return e.bucket.AllowN(now, 1)
}

// RatesStats is what a Rates registry reports for metrics.
type RatesStats struct {
	Keys int // buckets held now
	// Dropped counts entries that had to go while their bucket was not
	// full, because the table was full of busy keys: their keys started
	// again with a full bucket. A growing count means maxKeys is too
	// small for the traffic (or a flood of distinct keys).
	Dropped uint64
}

// Stats returns the registry's counters.
func (r *Rates) Stats() RatesStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RatesStats{Keys: len(r.t.m), Dropped: r.dropped}
}
