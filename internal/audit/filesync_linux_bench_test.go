package audit

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFileSync measures what a one-at-a-time sync audit record
// waits for on this machine's disk, without the log around it: a
// 500-byte write followed by fsync or fdatasync, appended (the file
// grows: the journal commits its size with each sync), appended into
// blocks preallocated past the end (fallocate KEEP_SIZE: the size still
// grows), or written inside a file already extended to its full size
// (the only case in which fdatasync has no metadata to commit; the log
// does not do this: its current file would end in zeros every reader
// must skip). The "every-10ms" cases sleep 10 ms before each write, as
// a quiet gateway relaying 100 messages a second does: what one message
// waits for when the disk has been idle. It reports p50/p99 µs;
// BENCHMARKS.md discusses them.
func BenchmarkFileSync(b *testing.B) {
	const recSize, span = 500, 64 << 20
	tests := []struct {
		name     string
		prealloc uint32 // fallocate mode, or ^0 for none
		inPlace  bool
		datasync bool
		gap      time.Duration
	}{
		{"append/fsync", ^uint32(0), false, false, 0},
		{"append/fdatasync", ^uint32(0), false, true, 0},
		{"append-preallocated/fdatasync", 1 /* FALLOC_FL_KEEP_SIZE */, false, true, 0},
		{"in-place/fdatasync", 0, true, true, 0},
		{"every-10ms/append/fsync", ^uint32(0), false, false, 10 * time.Millisecond},
		{"every-10ms/in-place/fdatasync", 0, true, true, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			flags := os.O_CREATE | os.O_RDWR
			if !tt.inPlace {
				flags |= os.O_APPEND
			}
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "sync.bin"), flags, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if tt.prealloc != ^uint32(0) {
				if err := syscall.Fallocate(int(f.Fd()), tt.prealloc, 0, span); err != nil {
					b.Skipf("fallocate: %v", err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			rec := make([]byte, recSize)
			rec[recSize-1] = '\n'
			durations := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if tt.gap > 0 {
					b.StopTimer()
					time.Sleep(tt.gap)
					b.StartTimer()
				}
				start := time.Now()
				if tt.inPlace {
					_, err = f.WriteAt(rec, int64(i%(span/recSize))*recSize)
				} else {
					_, err = f.Write(rec)
				}
				if err == nil && tt.datasync {
					err = syscall.Fdatasync(int(f.Fd()))
				} else if err == nil {
					err = f.Sync()
				}
				if err != nil {
					b.Fatal(err)
				}
				durations = append(durations, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(durations[len(durations)*99/100].Microseconds()), "p99-µs")
		})
	}
}
