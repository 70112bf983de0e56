package limit

import (
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is an injected clock: tests move it by hand.
type clock struct{ t time.Time }

func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRatesAllow(t *testing.T) {
	type step struct {
		after     time.Duration // clock advance before the call
		key       string
		perSecond float64
		burst     int
		want      bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"burst then refill", []step{
			{0, "a", 1, 3, true}, {0, "a", 1, 3, true}, {0, "a", 1, 3, true},
			{0, "a", 1, 3, false},
			{999 * time.Millisecond, "a", 1, 3, false},
			{time.Millisecond, "a", 1, 3, true},
			{0, "a", 1, 3, false},
			{time.Hour, "a", 1, 3, true}, {0, "a", 1, 3, true}, {0, "a", 1, 3, true}, {0, "a", 1, 3, false},
		}},
		{"keys are independent", []step{
			{0, "a", 1, 1, true}, {0, "a", 1, 1, false},
			{0, "b", 1, 1, true}, {0, "b", 1, 1, false},
		}},
		{"fractional rate: one every two seconds", []step{
			{0, "a", 0.5, 1, true},
			{time.Second, "a", 0.5, 1, false},
			{time.Second, "a", 0.5, 1, true},
		}},
		{"reload lowers the burst: tokens capped", []step{
			{0, "a", 1, 10, true}, // 9 left
			{0, "a", 1, 2, true},  // capped to 2, 1 left
			{0, "a", 1, 2, true},
			{0, "a", 1, 2, false},
		}},
		{"reload raises the rate", []step{
			{0, "a", 1, 1, true},
			{100 * time.Millisecond, "a", 1, 1, false},
			{0, "a", 100, 1, false}, // the new rate counts from now
			{10 * time.Millisecond, "a", 100, 1, true},
		}},
		{"clock going back mints nothing", []step{
			{0, "a", 1, 1, true},
			{-time.Minute, "a", 1, 1, false},
			{0, "a", 1, 1, false},
		}},
		{"infinite rate", []step{
			{0, "a", math.Inf(1), 0, true}, {0, "a", math.Inf(1), 0, true},
		}},
		{"zero, negative, NaN rate and zero burst fail closed", []step{
			{0, "a", 0, 5, false}, {0, "a", -1, 5, false}, {0, "a", math.NaN(), 5, false},
			{0, "a", 5, 0, false}, {0, "a", 5, -1, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			r := NewRates(10)
			for i, s := range tt.steps {
				c.advance(s.after)
				if got := r.Allow(s.key, s.perSecond, s.burst, c.now()); got != s.want {
					t.Fatalf("step %d (%+v): Allow = %v, want %v", i, s, got, s.want)
				}
			}
		})
	}
}

// TestRatesEvictsFullBucketsFirst: a drained key keeps its state while
// other keys come and go, as long as full buckets can be dropped instead.
func TestRatesEvictsFullBucketsFirst(t *testing.T) {
	c := newClock()
	r := NewRates(2)
	if !r.Allow("noisy", 1, 1, c.now()) {
		t.Fatal("first event refused")
	}
	for i := range 100 {
		// Each newcomer has burst 2 and uses 1 token, so it is not full;
		// advancing 1 s refills it before the next one arrives.
		c.advance(time.Second)
		r.Allow("noisy", 1, 1, c.now()) // keep noisy drained and recent
		if !r.Allow("k"+strconv.Itoa(i), 1, 2, c.now()) {
			t.Fatalf("newcomer %d refused", i)
		}
		if r.Allow("noisy", 1, 1, c.now()) {
			t.Fatalf("round %d: noisy lost its state (bucket reset)", i)
		}
	}
	if s := r.Stats(); s.Keys > 2 || s.Dropped != 0 {
		t.Fatalf("stats %+v: want at most 2 keys and no lossy drop", s)
	}
}

// TestRatesLossyEviction: when every bucket is busy the least recently
// used is dropped anyway, and counted.
func TestRatesLossyEviction(t *testing.T) {
	c := newClock()
	r := NewRates(2)
	r.Allow("a", 1, 1, c.now())
	r.Allow("b", 1, 1, c.now())
	if !r.Allow("c", 1, 1, c.now()) { // drops a (drained, least recent)
		t.Fatal("new key refused with a full table of busy keys")
	}
	if s := r.Stats(); s.Keys != 2 || s.Dropped != 1 {
		t.Fatalf("stats %+v, want 2 keys and 1 lossy drop", s)
	}
	if !r.Allow("a", 1, 1, c.now()) {
		t.Fatal("a, dropped, should start again with a full bucket")
	}
	if r.Allow("c", 1, 1, c.now()) {
		t.Fatal("c kept its state: must be drained")
	}
}

// TestRatesIdleTableShrinks: every call drops the least recently used
// entry once it has refilled.
func TestRatesIdleTableShrinks(t *testing.T) {
	c := newClock()
	r := NewRates(100)
	for i := range 50 {
		r.Allow("k"+strconv.Itoa(i), 10, 1, c.now())
	}
	c.advance(idleAfter - time.Second)
	r.Allow("live", 1000, 1000, c.now())
	if s := r.Stats(); s.Keys != 51 {
		t.Fatalf("%d keys, want all 51: none has been idle for %v", s.Keys, idleAfter)
	}
	c.advance(time.Second)
	for range 60 {
		r.Allow("live", 1000, 1000, c.now())
	}
	if s := r.Stats(); s.Keys != 1 {
		t.Fatalf("%d keys left, want only the live one", s.Keys)
	}
}

// TestRatesMemoryBounded floods the registry with a million distinct keys
// at one instant (no bucket ever refills) and checks the table and the
// heap stay bounded.
func TestRatesMemoryBounded(t *testing.T) {
	const maxKeys = 1000
	c := newClock()
	r := NewRates(maxKeys)
	for i := range maxKeys {
		r.Allow("warm-"+strconv.Itoa(i), 1, 1, c.now())
	}
	before := heapInUse()
	key := []byte("partner-0000000.example")
	for i := range floodKeys {
		key = strconv.AppendInt(key[:len("partner-")], int64(i), 10)
		if !r.Allow(string(key), 1, 1, c.now()) {
			t.Fatalf("key %d refused: a new key starts with a full bucket", i)
		}
		if i%100_000 == 0 && r.Stats().Keys > maxKeys {
			t.Fatalf("after %d keys: %d buckets, bound %d", i, r.Stats().Keys, maxKeys)
		}
	}
	if s := r.Stats(); s.Keys > maxKeys {
		t.Fatalf("%d buckets, bound %d", s.Keys, maxKeys)
	}
	// A thousand entries are a few hundred KiB; a million would be
	// hundreds of MiB.
	if grown := heapInUse() - before; grown > 8<<20 {
		t.Fatalf("heap grew by %d bytes over a million distinct keys", grown)
	}
	runtime.KeepAlive(r)
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestRatesConcurrent: many goroutines share keys; at one instant exactly
// burst events per key pass, however the calls interleave.
func TestRatesConcurrent(t *testing.T) {
	const (
		goroutines = 16
		calls      = 2000
		keys       = 8
		burst      = 100
	)
	now := newClock().now()
	r := NewRates(keys)
	var passed [keys]atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				k := (g + i) % keys
				if r.Allow("key"+strconv.Itoa(k), 1, burst, now) {
					passed[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if got := passed[k].Load(); got != burst {
			t.Errorf("key %d: %d events passed, want exactly %d", k, got, burst)
		}
	}
	if s := r.Stats(); s.Keys != keys || s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRatesConcurrentChurn runs more keys than the table holds from many
// goroutines (for the race detector) and checks the bound.
func TestRatesConcurrentChurn(t *testing.T) {
	c := newClock()
	r := NewRates(20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				now := c.now().Add(time.Duration(i) * time.Millisecond)
				r.Allow("k"+strconv.Itoa((g*7+i)%200), 50, 5, now)
				if r.Stats().Keys > 20 {
					t.Error("bound exceeded")
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRatesEvictionWindow: with the table full, a full bucket is dropped
// even when it is not the least recently used.
func TestRatesEvictionWindow(t *testing.T) {
	c := newClock()
	r := NewRates(2)
	r.Allow("slow", 0.001, 1, c.now()) // drained for 1000 s, least recent
	r.Allow("fast", 1, 2, c.now())     // full again after 1 s
	c.advance(time.Second)
	if !r.Allow("new", 1, 1, c.now()) {
		t.Fatal("new key refused")
	}
	if s := r.Stats(); s.Keys != 2 || s.Dropped != 0 {
		t.Fatalf("stats %+v: want fast dropped (it was full), nothing lost", s)
	}
	if r.Allow("slow", 0.001, 1, c.now()) {
		t.Fatal("slow lost its state: the busy bucket was dropped instead of the full one")
	}
}
