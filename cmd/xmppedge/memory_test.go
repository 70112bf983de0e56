package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestMemoryReturnerOncePerQuietSpell: memory is returned once allocation
// has stayed below quietRate for quietFor and enough is free; not again in
// the same quiet spell; again after allocation resumed and stopped.
func TestMemoryReturnerOncePerQuietSpell(t *testing.T) {
	const mib = 1 << 20
	type step struct {
		alloc    uint64 // bytes allocated during the second before the sample
		freeable uint64
		want     bool
	}
	busy, quiet := uint64(50*mib), uint64(10<<10)
	quietSteps := func(n int, freeable uint64, returnAt int) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{alloc: quiet, freeable: freeable, want: i == returnAt}
		}
		return s
	}
	join := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	secs := int(quietFor / time.Second)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"busy: never", []step{{busy, 100 * mib, false}, {busy, 100 * mib, false}, {busy, 100 * mib, false}}},
		{"quiet for quietFor: once", join([]step{{busy, 100 * mib, false}}, quietSteps(3*secs, 100*mib, secs-1))},
		{"quiet but little free: never", join([]step{{busy, mib, false}}, quietSteps(3*secs, mib, -1))},
		{"a burst re-arms it", join(
			[]step{{busy, 100 * mib, false}}, quietSteps(2*secs, 100*mib, secs-1),
			[]step{{busy, 100 * mib, false}}, quietSteps(2*secs, 100*mib, secs-1))},
		{"just under the quiet rate counts as quiet", join([]step{{busy, 100 * mib, false}},
			[]step{{quietRate - 1, 100 * mib, false}}, quietSteps(2*secs, 100*mib, secs-2))},
		{"at the quiet rate is busy", join([]step{{busy, 100 * mib, false}},
			[]step{{quietRate, 100 * mib, false}}, quietSteps(2*secs, 100*mib, secs-1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m memoryReturner
			at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			allocs := uint64(1 << 30)
			if m.observe(memorySample{at: at, allocs: allocs, freeable: 100 * mib}) {
				t.Fatal("returned at the first sample")
			}
			for i, s := range tc.steps {
				at = at.Add(time.Second)
				allocs += s.alloc
				if got := m.observe(memorySample{at: at, allocs: allocs, freeable: s.freeable}); got != s.want {
					t.Errorf("second %d (allocated %d B, %d MiB free): returned %v, want %v", i+1, s.alloc, s.freeable/mib, got, s.want)
				}
			}
		})
	}
}

// TestRuntimeMemorySample reads the live runtime: every metric it asks for
// exists (a name runtime/metrics does not know reads as KindBad, and the
// sample would stay zero), and garbage made since the last collection
// counts as freeable.
func TestRuntimeMemorySample(t *testing.T) {
	ms := memoryMetrics()
	s := runtimeMemorySample(ms)
	for _, m := range ms {
		if m.Value.Kind() == metrics.KindBad {
			t.Errorf("runtime/metrics has no %s", m.Name)
		}
	}
	if s.allocs == 0 {
		t.Error("no bytes allocated since the process started?")
	}
	// Garbage made with the collector off: the runtime counts it among
	// the heap's objects, beyond what the last collection found live.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var keep [][]byte
	for range 64 {
		keep = append(keep, make([]byte, 1<<20))
	}
	keep = nil
	after := runtimeMemorySample(ms)
	if after.allocs < s.allocs+64<<20 {
		t.Errorf("allocated %d bytes across 64 MiB of garbage", after.allocs-s.allocs)
	}
	if after.freeable < 32<<20 {
		t.Errorf("%d MiB freeable after dropping 64 MiB, want at least 32", after.freeable>>20)
	}
	_ = keep
}
