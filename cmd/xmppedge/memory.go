package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Returning memory when the gateway goes quiet.
//
// Go keeps what the garbage collector frees for reuse and hands it back to
// the OS only slowly, and the heap's goal stays where the last burst put it
// until allocation resumes. A gateway that accepted 10,000 streams (each
// handshake's garbage) and then holds them idle keeps the resident memory
// of that burst: twice the live heap and more. Once the process has
// allocated next to nothing for quietFor, memoryReturner runs one full
// collection and returns every free page (debug.FreeOSMemory), so that
// idle sessions cost what they hold. It does so once per quiet spell:
// allocation must resume before it runs again, so a quiet gateway pays
// for one collection, not one every interval.

const (
	// quietFor is how long allocation must stay below quietRate before
	// the memory is returned.
	quietFor = 5 * time.Second
	// quietRate is the allocation rate, bytes per second, below which the
	// process counts as quiet (idle streams' keepalives, metrics scrapes).
	quietRate = 256 << 10
	// minFreeable is the least a full collection must be able to give
	// back (free pages and garbage, runtimeMemorySample) to be worth it.
	minFreeable = 8 << 20
)

// memoryReturner decides from samples of the runtime's counters when to
// return memory. It is driven by run (the live process) or by a test.
type memoryReturner struct {
	quietSince time.Time // zero: not quiet
	lastAllocs uint64
	lastAt     time.Time
	returned   bool // this quiet spell's memory was returned
}

// memorySample is what the returner reads of the runtime.
type memorySample struct {
	at       time.Time
	allocs   uint64 // bytes allocated since the process started
	freeable uint64 // bytes a collection and FreeOSMemory would give back: free pages, garbage
}

// observe takes a sample and reports whether to return memory now.
func (m *memoryReturner) observe(s memorySample) bool {
	defer func() { m.lastAllocs, m.lastAt = s.allocs, s.at }()
	if m.lastAt.IsZero() || !s.at.After(m.lastAt) {
		return false
	}
	rate := float64(s.allocs-m.lastAllocs) / s.at.Sub(m.lastAt).Seconds()
	if rate >= quietRate {
		m.quietSince, m.returned = time.Time{}, false
		return false
	}
	if m.quietSince.IsZero() {
		m.quietSince = m.lastAt
	}
	if m.returned || s.at.Sub(m.quietSince) < quietFor || s.freeable < minFreeable {
		return false
	}
	m.returned = true
	return true
}

// runtimeMemorySample reads the sample from runtime/metrics (no
// stop-the-world, unlike runtime.ReadMemStats). What a collection and
// FreeOSMemory can give back is the free pages not yet released plus the
// garbage: the heap's objects beyond what the last collection found live.
func runtimeMemorySample(ms []metrics.Sample) memorySample {
	metrics.Read(ms)
	s := memorySample{at: time.Now()}
	var objects, live uint64
	for _, m := range ms {
		if m.Value.Kind() != metrics.KindUint64 {
			continue
		}
		switch m.Name {
		case "/gc/heap/allocs:bytes":
			s.allocs = m.Value.Uint64()
		case "/memory/classes/heap/free:bytes":
			s.freeable += m.Value.Uint64()
		case "/memory/classes/heap/objects:bytes":
			objects = m.Value.Uint64()
		case "/gc/heap/live:bytes":
			live = m.Value.Uint64()
		}
	}
	if objects > live {
		s.freeable += objects - live
	}
	return s
}

// memoryMetrics are the runtime/metrics runtimeMemorySample reads.
func memoryMetrics() []metrics.Sample {
	return []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
}

// returnMemoryWhenQuiet samples the runtime every second until ctx ends,
// and returns memory to the OS once per quiet spell.
func returnMemoryWhenQuiet(ctx context.Context, log *slog.Logger) {
	ms := memoryMetrics()
	var m memoryReturner
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s := runtimeMemorySample(ms)
		if !m.observe(s) {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		after := runtimeMemorySample(ms)
		log.Debug("quiet: returned free memory to the OS", "freeable_before_mib", s.freeable>>20, "freeable_after_mib", after.freeable>>20, "took", time.Since(start).Round(time.Microsecond))
	}
}
