package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func benchLog(b *testing.B, durability string) *Log {
	b.Helper()
	l, err := Open(Config{
		Path:       filepath.Join(b.TempDir(), "audit.jsonl"),
		Durability: durability,
		Node:       "edge-1",
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkAppendSync: concurrent writers each Append a ~430-byte stanza
// record and WaitDurable for it, as the relay does in sync mode. Reports
// records/s, the p99 and p50 of the Append+WaitDurable time per record,
// and how many records shared one fsync. The writers are
// parallelism × GOMAXPROCS goroutines (each stands for a stanza in
// flight).
func BenchmarkAppendSync(b *testing.B) {
	for _, parallelism := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", parallelism*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			l := benchLog(b, DurabilitySync)
			ctx := testContext(b)
			var mu sync.Mutex
			var waits []time.Duration
			b.SetParallelism(parallelism)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				local := make([]time.Duration, 0, 1024)
				i := 0
				for pb.Next() {
					t0 := time.Now()
					seq, err := l.Append(stanzaRecord(i))
					if err == nil {
						err = l.WaitDurable(ctx, seq)
					}
					if err != nil {
						b.Error(err)
						return
					}
					local = append(local, time.Since(t0))
					i++
				}
				mu.Lock()
				waits = append(waits, local...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			st := l.Stats()
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			slices.Sort(waits)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			if len(waits) > 0 {
				b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "p50-µs")
			}
			if st.Syncs > 0 {
				b.ReportMetric(float64(st.Records)/float64(st.Syncs), "records/fsync")
			}
		})
	}
}

// BenchmarkAppendSyncOneAtATime: one writer, one record at a time —
// a single message through an idle gateway. Its Append+WaitDurable time
// is what sync durability adds to that message's latency (p50, p99).
func BenchmarkAppendSyncOneAtATime(b *testing.B) {
	l := benchLog(b, DurabilitySync)
	ctx := testContext(b)
	waits := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		seq, err := l.Append(stanzaRecord(i))
		if err == nil {
			err = l.WaitDurable(ctx, seq)
		}
		if err != nil {
			b.Fatal(err)
		}
		waits = append(waits, time.Since(t0))
	}
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkAppendAsync: concurrent Append without waiting (async mode),
// to the real disk. Appending outruns the disk (~1 µs × 430 bytes per
// record per core); when the 64 MiB backlog is full Append refuses, and
// the writers back off and retry, so records/s is the sustained rate and
// refusals/op how often the backlog was full.
func BenchmarkAppendAsync(b *testing.B) {
	l := benchLog(b, DurabilityAsync)
	var refusals atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := stanzaRecord(1)
		for pb.Next() {
			for {
				_, err := l.Append(r)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrUnavailable) || l.Healthy() != nil {
					b.Error(err)
					return
				}
				refusals.Add(1)
				time.Sleep(100 * time.Microsecond)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(refusals.Load())/float64(b.N), "refusals/op")
}

// discardFile is a current file that forgets what is written to it, to
// measure Append's own cost apart from the disk.
type discardFile struct{ *os.File }

func (discardFile) Write(p []byte) (int, error) { return len(p), nil }
func (discardFile) Sync() error                 { return nil }

// BenchmarkAppend: Append only (encode + chain hash + queue), the writer
// beside it writing to a file that discards: the CPU cost of one record,
// serial and from all cores.
func BenchmarkAppend(b *testing.B) {
	newLog := func(b *testing.B) *Log {
		l, err := Open(Config{
			Path:   filepath.Join(b.TempDir(), "audit.jsonl"),
			Node:   "edge-1",
			Logger: slog.New(slog.DiscardHandler),
			hooks: &testHooks{openFile: func(path string) (auditFile, error) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
				return discardFile{f}, err
			}},
		})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	b.Run("serial", func(b *testing.B) {
		l := newLog(b)
		r := stanzaRecord(1)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		l.Close()
	})
	b.Run("parallel", func(b *testing.B) {
		l := newLog(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := stanzaRecord(1)
			for pb.Next() {
				if _, err := l.Append(r); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		l.Close()
	})
}

// BenchmarkVerify: records verified per second.
func BenchmarkVerify(b *testing.B) {
	l := benchLog(b, DurabilityAsync)
	const n = 20000
	for i := range n {
		if _, err := l.Append(stanzaRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if res, err := Verify([]string{l.cfg.Path}, nil); err != nil || !res.OK {
			b.Fatal(res, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
