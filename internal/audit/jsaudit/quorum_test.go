package jsaudit

import (
	"errors"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// TestQuorumLossFailsClosed: with a 3-replica stream on three servers,
// shutting two down leaves no quorum: WaitDurable and then Append fail
// (wrapping audit.ErrUnavailable) and Healthy reports it. Restarting one
// server brings the quorum back; the sink becomes healthy by itself, the
// records queued during the loss are stored once, a log.resumed record
// says so, and the chain has no gap and no duplicate.
func TestQuorumLossFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-server cluster: not in -short")
	}
	srv := startServers(t, "127.0.0.92", "127.0.0.93", "127.0.0.94")
	js := connect(t, srv[0])
	logs := &logBuffer{}
	cfg := testConfig(js, "edge-a", logs)
	cfg.Replicas = 3
	cfg.PublishTimeout = time.Second
	s := openSink(t, cfg)
	appendDurable(t, s, 0, 20)

	srv[1].stop()
	srv[2].stop()
	ctx := testContext(t)
	// Records appended now cannot be acknowledged.
	var pending []uint64
	for i := 20; ; i++ {
		seq, err := s.Append(stanzaRecord(i))
		if err != nil {
			if !errors.Is(err, audit.ErrUnavailable) {
				t.Fatalf("Append without quorum: %v, want ErrUnavailable", err)
			}
			break
		}
		pending = append(pending, seq)
		if err := s.WaitDurable(ctx, seq); err == nil {
			// Acknowledged before the loss reached the stream leader:
			// possible right after the shutdown; keep going.
			pending = pending[:len(pending)-1]
			continue
		} else if !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("WaitDurable without quorum: %v, want ErrUnavailable", err)
		}
	}
	if err := s.Healthy(); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Healthy without quorum: %v", err)
	}
	if len(pending) == 0 {
		t.Fatal("no record waited for the quorum")
	}

	srv[1].start()
	eventually(t, "the sink to be healthy again", func() bool { return s.Healthy() == nil })
	for _, seq := range pending {
		if err := s.WaitDurable(ctx, seq); err != nil {
			t.Fatalf("record %d after the quorum came back: %v", seq, err)
		}
	}
	appendDurable(t, s, 1000, 10)
	last := s.LastSeq()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	res := exportVerify(t, js, nil)["edge-a"]
	if res.Records != last || res.LastSeq != last || res.FirstSeq != 1 {
		t.Fatalf("verify: %+v, want records 1..%d", res, last)
	}
	var resumed int
	err := ReadChain(testContext(t), js, DefaultStream, "edge-a", func(r *audit.Record, _ []byte) error {
		if r.Event == audit.EventLogResumed {
			resumed++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sink log:\n%s", logs)
	if resumed != 1 {
		t.Fatalf("%d log.resumed records, want 1\n%s", resumed, logs)
	}
}
