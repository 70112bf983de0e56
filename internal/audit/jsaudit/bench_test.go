package jsaudit

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// BenchmarkAppendSync: concurrent writers each Append a ~430-byte stanza
// record and WaitDurable for it, as the relay does in sync mode, through
// three backends in one run so the ratios can be read side by side:
// the file log (fsync group commit, as in internal/audit's benchmark),
// the JetStream sink on one server (R1) and on a three-server cluster on
// loopback (R3, acknowledged at quorum). Reports records/s, the p50 and
// p99 of Append+WaitDurable, and records per batch (JetStream).
func BenchmarkAppendSync(b *testing.B) {
	r1 := startServers(b, "127.0.0.95")
	js1 := connect(b, r1[0])
	r3 := startServers(b, "127.0.0.96", "127.0.0.97", "127.0.0.98")
	js3 := connect(b, r3[0])
	node := 0
	newJS := func(b *testing.B, js jetstream.JetStream, replicas int) audit.Sink {
		node++
		cfg := testConfig(js, fmt.Sprintf("bench-r%d-%d", replicas, node), nil)
		cfg.Replicas = replicas
		return openSink(b, cfg)
	}
	backends := []struct {
		name string
		open func(b *testing.B) audit.Sink
	}{
		{"file", func(b *testing.B) audit.Sink {
			l, err := audit.Open(audit.Config{
				Path:   filepath.Join(b.TempDir(), "audit.jsonl"),
				Node:   "edge-1",
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
		{"jetstream-R1", func(b *testing.B) audit.Sink { return newJS(b, js1, 1) }},
		{"jetstream-R3", func(b *testing.B) audit.Sink { return newJS(b, js3, 3) }},
	}
	for _, parallelism := range []int{1, 8, 64} {
		for _, be := range backends {
			b.Run(fmt.Sprintf("writers=%d/%s", parallelism*runtime.GOMAXPROCS(0), be.name), func(b *testing.B) {
				benchSink(b, be.open(b), parallelism)
			})
		}
	}
}

func benchSink(b *testing.B, s audit.Sink, parallelism int) {
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
			seq, err := s.Append(stanzaRecord(i))
			if err == nil {
				err = s.WaitDurable(ctx, seq)
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
	if js, ok := s.(*Sink); ok {
		if st := js.Stats(); st.Batches > 0 {
			b.ReportMetric(float64(st.Records)/float64(st.Batches), "records/batch")
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(waits)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	if len(waits) > 0 {
		b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "p50-µs")
	}
}
