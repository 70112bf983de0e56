package limit

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// BenchmarkRatesAllow is the per-stanza cost: a known key among many.
func BenchmarkRatesAllow(b *testing.B) {
	r := NewRates(10_000)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "partner" + strconv.Itoa(i) + ".example"
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		r.Allow(keys[i%len(keys)], 1e6, 1000, now)
		i++
	}
}

// BenchmarkConnsAcquire is the per-connection cost: acquire and release.
func BenchmarkConnsAcquire(b *testing.B) {
	l := NewConns(10_000)
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		rel, err := l.Acquire(ip, 64, 1e6, now)
		if err != nil {
			b.Fatal(err)
		}
		rel()
	}
}
