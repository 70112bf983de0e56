package jsaudit

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// TestRoundTrip: records appended in sync mode come back from the stream
// as written, a checkpoint lists the heads, and the export verifies with
// the file verifier (with and without an HMAC key).
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"sha256", nil},
		{"hmac", []byte("0123456789abcdef0123456789")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServers(t, "127.0.0.91")
			js := connect(t, srv[0])
			cfgA := testConfig(js, "edge-a", nil)
			cfgA.HMACKey = tc.key
			var observed atomic.Int64
			cfgA.ObservePublish = func(d time.Duration) {
				if d > 0 {
					observed.Add(1)
				}
			}
			a := openSink(t, cfgA)
			cfgB := testConfig(js, "edge-b", nil)
			cfgB.HMACKey = tc.key
			b := openSink(t, cfgB)
			wantA := appendDurable(t, a, 0, 50)
			appendDurable(t, b, 100, 7)
			cp, err := a.Checkpoint(testContext(t))
			if err != nil {
				t.Fatalf("Checkpoint: %v", err)
			}
			if err := a.WaitDurable(testContext(t), cp); err != nil {
				t.Fatal(err)
			}
			if a.Healthy() != nil || b.Healthy() != nil {
				t.Fatalf("Healthy: %v, %v", a.Healthy(), b.Healthy())
			}
			if n, batches := observed.Load(), a.Stats().Batches; n == 0 || uint64(n) > batches {
				t.Fatalf("ObservePublish told %d time(s) for %d batches", n, batches)
			}

			var got []*audit.Record
			err = ReadChain(testContext(t), js, DefaultStream, "edge-a", func(r *audit.Record, line []byte) error {
				got = append(got, r)
				return nil
			})
			if err != nil {
				t.Fatalf("ReadChain: %v", err)
			}
			if len(got) != 51 {
				t.Fatalf("read %d records, want 51", len(got))
			}
			for i, w := range wantA {
				if *got[i] != *w {
					t.Fatalf("record %d: read %+v, appended %+v", i, *got[i], *w)
				}
			}
			cpr := got[50]
			if cpr.Event != audit.EventCheckpoint || cpr.Heads.Len() != 2 ||
				!strings.HasPrefix(cpr.Heads.Values()[0], "edge-a 50 "+wantA[49].Hash) ||
				!strings.HasPrefix(cpr.Heads.Values()[1], "edge-b 7 ") {
				t.Fatalf("checkpoint record: %+v", cpr)
			}

			res := exportVerify(t, js, tc.key)
			if res["edge-a"].Records != 51 || res["edge-b"].Records != 7 || res["edge-a"].FirstPrev != "" {
				t.Fatalf("verify results: %+v", res)
			}
			if tc.key != nil { // the export is keyed: no key, no verification
				files, err := Export(testContext(t), js, DefaultStream, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				if r, err := audit.Verify(files[:1], nil); err != nil || r.OK {
					t.Fatalf("keyed chain verified without its key: %+v %v", r, err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := a.Append(stanzaRecord(1)); !errors.Is(err, audit.ErrClosed) {
				t.Fatalf("Append after Close: %v", err)
			}
		})
	}
}

// TestRestartContinuesChain: a sink opened again on the same node goes on
// with its chain; with another HMAC key it refuses to start.
func TestRestartContinuesChain(t *testing.T) {
	srv := startServers(t, "127.0.0.91")
	js := connect(t, srv[0])
	key := []byte("0123456789abcdef0123456789")
	cfg := testConfig(js, "edge-a", nil)
	cfg.HMACKey = key
	s := openSink(t, cfg)
	appendDurable(t, s, 0, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openSink(t, cfg)
	if s2.LastSeq() != 5 || s2.DurableSeq() != 5 {
		t.Fatalf("restarted at seq %d (durable %d), want 5", s2.LastSeq(), s2.DurableSeq())
	}
	recs := appendDurable(t, s2, 5, 5)
	if recs[0].Seq != 6 || recs[0].Prev == "" {
		t.Fatalf("first record after restart: seq %d prev %q", recs[0].Seq, recs[0].Prev)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if res := exportVerify(t, js, key)["edge-a"]; res.Records != 10 || res.LastSeq != 10 {
		t.Fatalf("verify: %+v", res)
	}

	other := cfg
	other.HMACKey = []byte("another key, 26 bytes long")
	if s3, err := Open(testContext(t), other); err == nil {
		s3.Close()
		t.Fatal("Open continued a chain written with another HMAC key")
	}
}

// TestDuplicateStoredOnce: a record published again with its message id
// (a retry) is acknowledged as a duplicate and not stored a second time.
func TestDuplicateStoredOnce(t *testing.T) {
	srv := startServers(t, "127.0.0.91")
	js := connect(t, srv[0])
	s := openSink(t, testConfig(js, "edge-a", nil))
	recs := appendDurable(t, s, 0, 3)
	ctx := testContext(t)
	st, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(ctx, s.Subject())
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, s.Subject(), last.Data, jetstream.WithMsgID(recs[2].Hash))
	if err != nil {
		t.Fatalf("publishing the duplicate: %v", err)
	}
	if !ack.Duplicate || ack.Sequence != last.Sequence {
		t.Fatalf("ack of the duplicate: %+v (stored at %d)", ack, last.Sequence)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages, want 3", info.State.Msgs)
	}
	// Deletes and purges are denied.
	if c := info.Config; !c.DenyDelete || !c.DenyPurge || c.Storage != jetstream.FileStorage || c.Duplicates != DefaultDuplicateWindow {
		t.Fatalf("stream config: %+v", c)
	}
	if err := st.DeleteMsg(ctx, last.Sequence); err == nil {
		t.Fatal("a record was deleted")
	}
	if err := st.Purge(ctx); err == nil {
		t.Fatal("the stream was purged")
	}
	// The sink goes on as if nothing happened.
	appendDurable(t, s, 3, 2)
	if res := exportVerify(t, js, nil)["edge-a"]; res.Records != 5 {
		t.Fatalf("verify: %+v", res)
	}
}

// TestSecondWriterRefused: a writer with a stale expected subject
// sequence is refused by the stream; a second sink with the same node
// name makes the first one fail closed (it names the other writer), and
// neither breaks the chain.
func TestSecondWriterRefused(t *testing.T) {
	srv := startServers(t, "127.0.0.91")
	js := connect(t, srv[0])
	logs := &logBuffer{}
	cfgA := testConfig(js, "edge-a", logs)
	cfgA.CloseTimeout = 500 * time.Millisecond
	a := openSink(t, cfgA)
	appendDurable(t, a, 0, 3)
	ctx := testContext(t)

	_, err := js.Publish(ctx, a.Subject(), []byte(`{"seq":4}`), jetstream.WithExpectLastSequencePerSubject(1))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("stale writer: %v, want wrong last sequence", err)
	}

	b := openSink(t, testConfig(js, "edge-a", nil)) // continues at seq 3
	appendDurable(t, b, 10, 2)                      // seq 4, 5
	seq, err := a.Append(stanzaRecord(3))           // a's seq 4: stale
	if err != nil {
		t.Fatal(err)
	}
	err = a.WaitDurable(ctx, seq)
	if !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("WaitDurable of the stale writer: %v", err)
	}
	eventually(t, "the other writer named", func() bool {
		h := a.Healthy()
		return h != nil && strings.Contains(h.Error(), "another writer")
	})
	if _, err := a.Append(stanzaRecord(4)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append of a failed sink: %v", err)
	}
	if res := exportVerify(t, js, nil)["edge-a"]; res.Records != 5 {
		t.Fatalf("verify: %+v", res)
	}
	// Closing the failed sink gives up on its queue after CloseTimeout and
	// says what was lost.
	if err := a.Close(); err == nil || !strings.Contains(err.Error(), "1 records not stored") {
		t.Fatalf("Close of the stale writer: %v", err)
	}
	if !strings.Contains(logs.String(), "does not store records") {
		t.Fatalf("the failure was not logged:\n%s", logs)
	}
}

func TestConfigRefused(t *testing.T) {
	srv := startServers(t, "127.0.0.91")
	js := connect(t, srv[0])
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no client", func(c *Config) { c.JetStream = nil }},
		{"no node", func(c *Config) { c.Node = "" }},
		{"dotted node", func(c *Config) { c.Node = "edge.example.com" }},
		{"wildcard node", func(c *Config) { c.Node = "edge*" }},
		{"slash node", func(c *Config) { c.Node = "../x" }},
		{"replicas", func(c *Config) { c.Replicas = 7 }},
		{"durability", func(c *Config) { c.Durability = "sometimes" }},
		{"short key", func(c *Config) { c.HMACKey = []byte("short") }},
		{"negative retention", func(c *Config) { c.Retention = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(js, "edge-a", nil)
			tc.edit(&cfg)
			if s, err := Open(testContext(t), cfg); err == nil {
				s.Close()
				t.Fatal("Open accepted the configuration")
			}
		})
	}
}

// TestAsyncAndPeriodicCheckpoint: in async mode WaitDurable does not wait,
// the records are stored all the same, and the checkpoint timer appends
// audit.checkpoint records on the node's chain by itself.
func TestAsyncAndPeriodicCheckpoint(t *testing.T) {
	srv := startServers(t, "127.0.0.91")
	js := connect(t, srv[0])
	cfg := testConfig(js, "edge-a", nil)
	cfg.Durability = audit.DurabilityAsync
	cfg.CheckpointInterval = 50 * time.Millisecond
	s := openSink(t, cfg)
	ctx := testContext(t)
	for i := range 20 {
		seq, err := s.Append(stanzaRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitDurable(ctx, seq); err != nil {
			t.Fatalf("WaitDurable (async): %v", err)
		}
	}
	eventually(t, "a checkpoint after the records", func() bool {
		found := false
		err := ReadChain(ctx, js, DefaultStream, "edge-a", func(r *audit.Record, _ []byte) error {
			if r.Event == audit.EventCheckpoint && r.Seq > 20 && r.Heads.Len() == 1 {
				found = true
			}
			return nil
		})
		return err == nil && found
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if res := exportVerify(t, js, nil)["edge-a"]; res.Records != s.LastSeq() || res.Records < 21 {
		t.Fatalf("verify: %+v, last seq %d", res, s.LastSeq())
	}
}

// TestOversizeRecordRefusedAlone: a record larger than a NATS message can
// carry is refused by Append without failing the sink or taking a seq.
func TestOversizeRecordRefusedAlone(t *testing.T) {
	srv := startServers(t, "127.0.0.91")
	js := connect(t, srv[0])
	s := openSink(t, testConfig(js, "edge-a", nil))
	appendDurable(t, s, 0, 2)
	big := stanzaRecord(2)
	big.Stanza = strings.Repeat("x", int(js.Conn().MaxPayload()))
	if _, err := s.Append(big); !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("Append of an oversize record: %v", err)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy after an oversize record: %v", err)
	}
	if recs := appendDurable(t, s, 3, 1); recs[0].Seq != 3 {
		t.Fatalf("next record has seq %d, want 3", recs[0].Seq)
	}
}
