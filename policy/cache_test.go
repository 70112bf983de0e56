package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestDecideThroughCache: a cacheable decision is answered from the cache
// once stored; a failed evaluation is not stored; an uncacheable one is
// always evaluated and never stored.
func TestDecideThroughCache(t *testing.T) {
	type call struct {
		value   string // what evaluate returns
		ok      bool   // whether evaluate succeeds
		want    string
		wantHit bool
	}
	tests := []struct {
		name      string
		cacheable bool
		calls     []call
		wantLen   int
	}{
		{"miss then hit", true, []call{
			{"a", true, "a", false},
			{"b", true, "a", true},
		}, 1},
		{"failure not cached", true, []call{
			{"fail", false, "fail", false},
			{"b", true, "b", false},
			{"c", true, "b", true},
		}, 1},
		{"not cacheable", false, []call{
			{"a", true, "a", false},
			{"b", true, "b", false},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Engine{}
			cache := newDecisionCache[string](16)
			var hits uint64
			for i, c := range tt.calls {
				evaluated := false
				got, hit := decideThroughCache(e, cache, tt.cacheable, true, []byte("key"), func() (string, bool) {
					evaluated = true
					return c.value, c.ok
				})
				if got != c.want || hit != c.wantHit {
					t.Fatalf("call %d: (%q, %v), want (%q, %v)", i, got, hit, c.want, c.wantHit)
				}
				if evaluated == hit {
					t.Errorf("call %d: evaluated = %v with hit = %v", i, evaluated, hit)
				}
				if hit {
					hits++
				}
			}
			if n := e.cacheHits.Load(); n != hits {
				t.Errorf("cacheHits = %d, want %d", n, hits)
			}
			if n := cache.len(); n != tt.wantLen {
				t.Errorf("cache holds %d, want %d", n, tt.wantLen)
			}
		})
	}
}

// TestDecisionCacheKeepsKeysInUse: a few keys in steady use interleaved
// with a stream of one-off keys many times the cache's size. The keys in
// use stay cached (a full generation moves on, it does not empty the
// cache), and the cache never holds more entries than its size.
func TestDecisionCacheKeepsKeysInUse(t *testing.T) {
	const size, hot, rounds = 1600, 100, 200
	cache := newDecisionCache[int](size)
	hotKey := func(i int) []byte { return []byte(fmt.Sprintf("user%d@company.test partner.test", i)) }
	for i := range hot {
		cache.put(hotKey(i), i)
	}
	misses, cold := 0, 0
	for range rounds {
		for i := range hot {
			if d, ok := cache.get(hotKey(i)); !ok || d != i {
				misses++
				cache.put(hotKey(i), i)
			}
			cache.put([]byte(fmt.Sprintf("one-off %d", cold)), -1)
			cold++
			if n := cache.len(); n > size {
				t.Fatalf("the cache holds %d entries, more than its size %d", n, size)
			}
		}
	}
	if misses != 0 {
		t.Errorf("%d of %d lookups of keys in use missed, with %d one-off keys (%d× the cache size) passing through",
			misses, hot*rounds, cold, cold/size)
	}
}

// BenchmarkDecisionCacheZipf: 1,000,000 distinct keys (10,000 users × 100
// partner contacts) looked up with a Zipf distribution (a few pairs
// talk a lot) through a cache of the default size: the hit rate.
func BenchmarkDecisionCacheZipf(b *testing.B) {
	const users, contacts = 10_000, 100
	keys := make([][]byte, users*contacts)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user%d@company.test contact%d@partner%d.test", i/contacts, i%contacts, i%97))
	}
	cache := newDecisionCache[bool](DefaultCacheSize)
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(len(keys)-1))
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		k := keys[z.Uint64()]
		if _, ok := cache.get(k); ok {
			hits++
			continue
		}
		cache.put(k, true)
	}
	b.ReportMetric(float64(hits)/float64(b.N), "hit-rate")
}
