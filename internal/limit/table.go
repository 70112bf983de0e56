package limit

import (
	"time"

	"golang.org/x/time/rate"
)

// entry is one key's state, linked into its table's use order while it
// may be dropped.
type entry[K comparable] struct {
	key    K
	bucket *rate.Limiter
	open   int       // open connections (Conns only)
	used   time.Time // last touched

	prev, next *entry[K] // use order; nil when not listed
}

// full reports whether e's bucket has refilled: dropping it loses nothing.
func (e *entry[K]) full(now time.Time) bool {
	return e.bucket.TokensAt(now) >= float64(e.bucket.Burst())
}

// table is a map of entries with a use order over the entries that may be
// dropped: most recently used first. It is not safe for concurrent use;
// its owner holds a lock.
type table[K comparable] struct {
	m    map[K]*entry[K]
	max  int
	ring entry[K] // sentinel: ring.next is the most recent, ring.prev the least
}

func newTable[K comparable](max int) *table[K] {
	if max < 1 {
		max = 1
	}
	t := &table[K]{m: make(map[K]*entry[K], min(max, 1024)), max: max}
	t.ring.next, t.ring.prev = &t.ring, &t.ring
	return t
}

// touch moves e to the front of the use order (listing it if it was not)
// and, with a non-zero now, records the use.
func (t *table[K]) touch(e *entry[K], now time.Time) {
	if !now.IsZero() {
		e.used = now
	}
	if e.next != nil {
		t.unlist(e)
	}
	e.prev, e.next = &t.ring, t.ring.next
	t.ring.next.prev = e
	t.ring.next = e
}

// unlist takes e out of the use order; it stays in the map.
func (t *table[K]) unlist(e *entry[K]) {
	if e.next == nil {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (t *table[K]) drop(e *entry[K]) {
	t.unlist(e)
	delete(t.m, e.key)
}

// oldest returns the least recently used listed entry, or nil.
func (t *table[K]) oldest() *entry[K] {
	if t.ring.prev == &t.ring {
		return nil
	}
	return t.ring.prev
}

// idleAfter is how long an entry must go unused before dropOldestIfFull
// takes it: dropping a full bucket loses nothing, but dropping one that is
// in use every few seconds would only allocate it again.
const idleAfter = time.Minute

// dropOldestIfFull drops the least recently used listed entry if it has
// been idle for idleAfter and its bucket is full, unless it is keep:
// called on every use, it shrinks a table whose keys went quiet.
func (t *table[K]) dropOldestIfFull(keep *entry[K], now time.Time) {
	if o := t.oldest(); o != nil && o != keep && now.Sub(o.used) >= idleAfter && o.full(now) {
		t.drop(o)
	}
}

// evictWindow is how many of the least recently used entries are checked
// for a full bucket before the least recently used one is dropped anyway.
const evictWindow = 8

// makeRoom drops one listed entry if the table is full, preferring a full
// bucket among the least recently used; it reports whether there is room
// for one more entry, and whether an entry whose bucket was not full had
// to go.
func (t *table[K]) makeRoom(now time.Time) (room, lossy bool) {
	if len(t.m) < t.max {
		return true, false
	}
	o := t.oldest()
	if o == nil {
		return false, false
	}
	for e, i := o, 0; e != &t.ring && i < evictWindow; e, i = e.prev, i+1 {
		if e.full(now) {
			t.drop(e)
			return true, false
		}
	}
	t.drop(o)
	return true, true
}

// setBucket brings e's bucket to the limit and burst asked for now.
func setBucket(b *rate.Limiter, now time.Time, limit rate.Limit, burst int) {
	if b.Limit() != limit {
		b.SetLimitAt(now, limit)
	}
	if b.Burst() != burst {
		b.SetBurstAt(now, burst)
	}
}

// limitOf converts a rate in events per second; ok is false for a rate
// that lets nothing through, inf true for one that lets everything.
func limitOf(perSecond float64) (l rate.Limit, inf, ok bool) {
	switch {
	case perSecond != perSecond || perSecond <= 0: // NaN or not positive
		return 0, false, false
	case perSecond >= float64(rate.Inf):
		return rate.Inf, true, true
	}
	return rate.Limit(perSecond), false, true
}
