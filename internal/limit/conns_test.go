package limit

import (
	"errors"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSource(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := Source(netip.MustParseAddr(tt.ip)).String(); got != tt.want {
				t.Fatalf("Source(%s) = %s, want %s", tt.ip, got, tt.want)
			}
		})
	}
}

func TestConnsAcquire(t *testing.T) {
	type step struct {
		after   time.Duration
		ip      string
		max     int
		rate    float64
		release int    // release the n-th earlier successful acquisition (1-based), 0: acquire
		want    string // "" for success, else the ConnError.Limit
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"concurrent limit, then release", []step{
			{ip: "192.0.2.1", max: 2, rate: 100},
			{ip: "192.0.2.1", max: 2, rate: 100},
			{ip: "192.0.2.1", max: 2, rate: 100, want: LimitConcurrent},
			{release: 1},
			{ip: "192.0.2.1", max: 2, rate: 100},
		}},
		{"release is idempotent", []step{
			{ip: "192.0.2.1", max: 2, rate: 100},
			{ip: "192.0.2.1", max: 2, rate: 100},
			{release: 1}, {release: 1}, {release: 1},
			{ip: "192.0.2.1", max: 2, rate: 100},
			{ip: "192.0.2.1", max: 2, rate: 100, want: LimitConcurrent},
		}},
		{"rate limit with a burst of ceil(rate)", []step{
			{ip: "192.0.2.1", max: 100, rate: 1.5},
			{ip: "192.0.2.1", max: 100, rate: 1.5},
			{ip: "192.0.2.1", max: 100, rate: 1.5, want: LimitRate},
			{after: time.Second, ip: "192.0.2.1", max: 100, rate: 1.5},
			{ip: "192.0.2.1", max: 100, rate: 1.5, want: LimitRate},
		}},
		{"slow rate: one every 2 s", []step{
			{ip: "192.0.2.1", max: 100, rate: 0.5},
			{after: time.Second, ip: "192.0.2.1", max: 100, rate: 0.5, want: LimitRate},
			{after: time.Second, ip: "192.0.2.1", max: 100, rate: 0.5},
		}},
		{"a refused connection takes no token", []step{
			{ip: "192.0.2.1", max: 1, rate: 1},
			{after: time.Second, ip: "192.0.2.1", max: 1, rate: 1, want: LimitConcurrent},
			{release: 1},
			{ip: "192.0.2.1", max: 1, rate: 1},
		}},
		{"IPv6 counted per /64", []step{
			{ip: "2001:db8::1", max: 1, rate: 100},
			{ip: "2001:db8::2", max: 1, rate: 100, want: LimitConcurrent},
			{ip: "2001:db8:0:1::1", max: 1, rate: 100},
		}},
		{"IPv4-mapped counts as IPv4", []step{
			{ip: "192.0.2.1", max: 1, rate: 100},
			{ip: "::ffff:192.0.2.1", max: 1, rate: 100, want: LimitConcurrent},
			{ip: "192.0.2.2", max: 1, rate: 100},
		}},
		{"reload changes the limits", []step{
			{ip: "192.0.2.1", max: 1, rate: 100},
			{ip: "192.0.2.1", max: 1, rate: 100, want: LimitConcurrent},
			{ip: "192.0.2.1", max: 2, rate: 100},
		}},
		{"infinite rate", []step{
			{ip: "192.0.2.1", max: 3, rate: math.Inf(1)},
			{ip: "192.0.2.1", max: 3, rate: math.Inf(1)},
			{ip: "192.0.2.1", max: 3, rate: math.Inf(1)},
			{ip: "192.0.2.1", max: 3, rate: math.Inf(1), want: LimitConcurrent},
		}},
		{"broken limits fail closed", []step{
			{ip: "192.0.2.1", max: 0, rate: 10, want: LimitConcurrent},
			{ip: "192.0.2.1", max: 10, rate: 0, want: LimitRate},
			{ip: "192.0.2.1", max: 10, rate: math.NaN(), want: LimitRate},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			l := NewConns(10)
			var releases []func()
			for i, s := range tt.steps {
				c.advance(s.after)
				if s.release > 0 {
					releases[s.release-1]()
					continue
				}
				rel, err := l.Acquire(netip.MustParseAddr(s.ip), s.max, s.rate, c.now())
				if s.want == "" {
					if err != nil || rel == nil {
						t.Fatalf("step %d (%+v): %v", i, s, err)
					}
					releases = append(releases, rel)
					continue
				}
				var ce *ConnError
				if !errors.As(err, &ce) || ce.Limit != s.want || rel != nil {
					t.Fatalf("step %d (%+v): got %v (release %v), want a %s ConnError", i, s, err, rel != nil, s.want)
				}
				if ce.Source != Source(netip.MustParseAddr(s.ip)) {
					t.Fatalf("step %d: error names %s", i, ce.Source)
				}
			}
			for _, rel := range releases {
				rel()
			}
			if s := l.Stats(); s.Open != 0 {
				t.Fatalf("%d connections still open after releasing all", s.Open)
			}
		})
	}
}

func TestConnsInvalidAddress(t *testing.T) {
	_, err := NewConns(1).Acquire(netip.Addr{}, 1, 1, newClock().now())
	var ce *ConnError
	if !errors.As(err, &ce) || ce.Limit != LimitAddress {
		t.Fatalf("got %v, want a ConnError for the address", err)
	}
}

// TestConnsSourcesFull: sources with open connections are never dropped;
// when all of them have some, a new source is refused until one closes.
func TestConnsSourcesFull(t *testing.T) {
	c := newClock()
	l := NewConns(2)
	relA, err := l.Acquire(netip.MustParseAddr("192.0.2.1"), 5, 5, c.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(netip.MustParseAddr("192.0.2.2"), 5, 5, c.now()); err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(netip.MustParseAddr("192.0.2.3"), 5, 5, c.now())
	var ce *ConnError
	if !errors.As(err, &ce) || ce.Limit != LimitSources {
		t.Fatalf("got %v, want a sources ConnError", err)
	}
	relA()
	if _, err := l.Acquire(netip.MustParseAddr("192.0.2.3"), 5, 5, c.now()); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if s := l.Stats(); s.Sources != 2 || s.Open != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestConnsMemoryBounded: a million distinct sources, each connecting and
// closing at one instant, keep at most maxIPs entries.
func TestConnsMemoryBounded(t *testing.T) {
	const maxIPs = 1000
	now := newClock().now()
	l := NewConns(maxIPs)
	before := heapInUse()
	for i := range floodKeys {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		rel, err := l.Acquire(ip, 1, 1, now)
		if err != nil {
			t.Fatalf("source %d: %v", i, err)
		}
		rel()
	}
	if s := l.Stats(); s.Sources > maxIPs || s.Open != 0 {
		t.Fatalf("stats %+v, bound %d", s, maxIPs)
	}
	if grown := heapInUse() - before; grown > 8<<20 {
		t.Fatalf("heap grew by %d bytes over a million sources", grown)
	}
}

// TestConnsConcurrent: many goroutines connect and close from a few
// sources; no source ever holds more than the limit, and at the end none
// is open.
func TestConnsConcurrent(t *testing.T) {
	const (
		goroutines = 16
		rounds     = 2000
		sources    = 4
		max        = 3
	)
	now := newClock().now()
	l := NewConns(sources)
	var open [sources]atomic.Int64
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				s := (g + i) % sources
				rel, err := l.Acquire(netip.AddrFrom4([4]byte{192, 0, 2, byte(s)}), max, math.Inf(1), now)
				if err != nil {
					var ce *ConnError
					if !errors.As(err, &ce) || ce.Limit != LimitConcurrent {
						t.Errorf("unexpected error %v", err)
						return
					}
					continue
				}
				admitted.Add(1)
				if n := open[s].Add(1); n > max {
					t.Errorf("source %d: %d connections open, limit %d", s, n, max)
				}
				open[s].Add(-1)
				rel()
				rel() // a second release must not free another slot
			}
		})
	}
	wg.Wait()
	if s := l.Stats(); s.Open != 0 || s.Sources > sources {
		t.Fatalf("stats %+v", s)
	}
	if admitted.Load() == 0 {
		t.Fatal("nothing admitted")
	}
}
