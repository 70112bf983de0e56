package policy

import "testing"

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
				got, hit := decideThroughCache(e, cache, tt.cacheable, []byte("key"), func() (string, bool) {
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
