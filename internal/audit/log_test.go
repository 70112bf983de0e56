package audit

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendVerifyRoundTrip(t *testing.T) {
	const writers, perWriter = 8, 500
	for _, tc := range []struct {
		name       string
		durability string
		wait       bool
	}{
		{"sync, waiting for every record", DurabilitySync, true},
		{"sync, not waiting", DurabilitySync, false},
		{"async", DurabilityAsync, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			cfg.Durability = tc.durability
			l := openLog(t, cfg)
			ctx := testContext(t)
			var mu sync.Mutex
			var seqs []uint64
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						seq, err := l.Append(stanzaRecord(w*perWriter + i))
						if err != nil {
							t.Errorf("Append: %v", err)
							return
						}
						if tc.wait {
							if err := l.WaitDurable(ctx, seq); err != nil {
								t.Errorf("WaitDurable(%d): %v", seq, err)
								return
							}
						}
						mu.Lock()
						seqs = append(seqs, seq)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if got := l.LastSeq(); got != writers*perWriter {
				t.Errorf("LastSeq = %d, want %d", got, writers*perWriter)
			}
			closeLog(t, l)
			slices.Sort(seqs)
			for i, s := range seqs {
				if s != uint64(i+1) {
					t.Fatalf("seqs are not unique and contiguous: position %d holds %d", i, s)
				}
			}
			res := mustVerify(t, []string{cfg.Path}, nil)
			if res.Records != writers*perWriter || res.FirstSeq != 1 || res.FirstPrev != "" || res.LastSeq != writers*perWriter {
				t.Errorf("Verify = %+v", res)
			}
			if st := l.Stats(); tc.wait && tc.durability == DurabilitySync && st.Syncs >= st.Records/2 {
				t.Errorf("group commit did not group: %d fsyncs for %d records", st.Syncs, st.Records)
			}
		})
	}
}

func TestAppendFillsRecordAndLineDecodes(t *testing.T) {
	cfg, _ := testConfig(t)
	l := openLog(t, cfg)
	first := stanzaRecord(1)
	second := stanzaRecord(2)
	second.Stanza = "<message to='bob@partner.test'><body>\"quoted\" \\ back\nslash\t\x01 ünïcödé \u2028</body></message>"
	appendRec := func(r *Record) {
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	appendRec(first)
	appendRec(second)
	closeLog(t, l)
	if first.Seq != 1 || first.Prev != "" || len(first.Hash) != 64 || first.Node != "edge-1" || first.Time.IsZero() {
		t.Errorf("first record not filled: %+v", first)
	}
	if second.Seq != 2 || second.Prev != first.Hash {
		t.Errorf("second record: seq %d prev %q, want 2 and %q", second.Seq, second.Prev, first.Hash)
	}
	lines := readFileLines(t, cfg.Path)
	var got Record
	if err := json.Unmarshal([]byte(lines[1]), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(second.Time) {
		t.Errorf("time %v, want %v", got.Time, second.Time)
	}
	got.Time = second.Time
	if got != *second {
		t.Errorf("decoded record\n%+v\nwant\n%+v", got, *second)
	}
}

func TestRestartContinuesChain(t *testing.T) {
	cfg, _ := testConfig(t)
	for run := range 3 {
		l := openLog(t, cfg)
		if got, want := l.LastSeq(), uint64(run*10); got != want {
			t.Fatalf("run %d: LastSeq after Open = %d, want %d", run, got, want)
		}
		appendN(t, l, run*10, 10)
		closeLog(t, l)
	}
	res := mustVerify(t, []string{cfg.Path}, nil)
	if res.Records != 30 {
		t.Errorf("Records = %d, want 30", res.Records)
	}
}

func TestSecondWriterIsRefused(t *testing.T) {
	cfg, _ := testConfig(t)
	openLog(t, cfg)
	if l, err := Open(cfg); err == nil {
		l.Close()
		t.Fatal("a second Open of the same file succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say the file is in use", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no path", func(c *Config) { c.Path = "" }, "no path"},
		{"bad durability", func(c *Config) { c.Durability = "fast" }, "durability"},
		{"commit interval too long", func(c *Config) { c.CommitInterval = 5 * time.Millisecond }, "commit interval"},
		{"short hmac key", func(c *Config) { c.HMACKey = []byte("short") }, "HMAC key"},
		{"negative rotation", func(c *Config) { c.RotateSize = -1 }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			tc.edit(&cfg)
			l, err := Open(cfg)
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestHMACChain(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	cfg, _ := testConfig(t)
	cfg.HMACKey = key
	l := openLog(t, cfg)
	appendN(t, l, 0, 20)
	closeLog(t, l)

	for _, tc := range []struct {
		name   string
		key    []byte
		wantOK bool
	}{
		{"with the key", key, true},
		{"without a key", nil, false},
		{"with another key", []byte("another key, 32 bytes long.....!"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verify([]string{cfg.Path}, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tc.wantOK {
				t.Fatalf("OK = %v, want %v (%+v)", res.OK, tc.wantOK, res)
			}
			if !tc.wantOK && (res.Line != 1 || !strings.Contains(res.Reason, "hash mismatch")) {
				t.Errorf("break at line %d: %s; want line 1, hash mismatch", res.Line, res.Reason)
			}
		})
	}

	t.Run("reopening with another key is refused", func(t *testing.T) {
		other := cfg
		other.HMACKey = nil
		if l, err := Open(other); err == nil {
			l.Close()
			t.Fatal("Open without the key succeeded on a keyed log")
		} else if !strings.Contains(err.Error(), "HMAC") {
			t.Errorf("error %q does not point at the key", err)
		}
	})
}

// blockingSyncFile lets a test hold fsync and count it.
type blockingSyncFile struct {
	*os.File
	release chan struct{}
	mu      sync.Mutex
	syncs   int
	synced  int64 // bytes written before the last completed fsync
	written int64
}

func (f *blockingSyncFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.mu.Lock()
	f.written += int64(n)
	f.mu.Unlock()
	return n, err
}

func (f *blockingSyncFile) Sync() error {
	<-f.release
	err := f.File.Sync()
	f.mu.Lock()
	f.syncs++
	f.synced = f.written
	f.mu.Unlock()
	return err
}

func TestSyncWaitDurableWaitsForFsync(t *testing.T) {
	cfg, _ := testConfig(t)
	release := make(chan struct{})
	var file *blockingSyncFile
	cfg.hooks = &testHooks{openFile: func(path string) (auditFile, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, err
		}
		file = &blockingSyncFile{File: f, release: release}
		return file, nil
	}}
	l := openLog(t, cfg)
	ctx := testContext(t)
	seq, err := l.Append(stanzaRecord(1))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.WaitDurable(ctx, seq) }()
	select {
	case err := <-done:
		t.Fatalf("WaitDurable returned (%v) while fsync was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release) // every fsync from now on passes
	if err := <-done; err != nil {
		t.Fatalf("WaitDurable: %v", err)
	}
	file.mu.Lock()
	syncs, synced := file.syncs, file.synced
	file.mu.Unlock()
	line := readFileLines(t, cfg.Path)[0]
	if syncs != 1 || synced < int64(len(line)) {
		t.Errorf("after WaitDurable: %d fsyncs covering %d bytes; want 1 covering the %d-byte record", syncs, synced, len(line))
	}

	// Many concurrent waiters share fsyncs (group commit).
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			seq, err := l.Append(stanzaRecord(i))
			if err == nil {
				err = l.WaitDurable(ctx, seq)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	file.mu.Lock()
	syncs = file.syncs
	file.mu.Unlock()
	if syncs > 100 {
		t.Errorf("%d fsyncs for 200 concurrent records: no group commit", syncs)
	}
}

func TestWaitDurableHonoursContextAndBounds(t *testing.T) {
	cfg, _ := testConfig(t)
	l := openLog(t, cfg)
	if err := l.WaitDurable(testContext(t), 5); err == nil {
		t.Error("WaitDurable for a seq never appended returned nil")
	}
	closeLog(t, l)
	if _, err := l.Append(stanzaRecord(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if err := l.Healthy(); !errors.Is(err, ErrClosed) {
		t.Errorf("Healthy after Close: %v", err)
	}
}

func TestAsyncIsFsyncedWithinBound(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Durability = DurabilityAsync
	cfg.AsyncBound = 40 * time.Millisecond
	l := openLog(t, cfg)
	seq, err := l.Append(stanzaRecord(1))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.WaitDurable(testContext(t), seq); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Millisecond {
		t.Error("async WaitDurable waited")
	}
	eventually(t, "the background fsync", func() bool { return l.durable.Load() >= seq })
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("fsynced after %s; bound 40ms", took)
	}
}

// TestGiveRecyclesAfterEncoding: records given (Recycler) from several
// goroutines are each written with their own content, although the log
// reuses them for later records; a record refused after Close is taken
// back too; NewRecord's records are zeroed.
func TestGiveRecyclesAfterEncoding(t *testing.T) {
	cfg, _ := testConfig(t)
	l := openLog(t, cfg)
	const writers, each = 4, 300
	ids := make([]map[uint64]string, writers) // seq → the id given with it
	var wg sync.WaitGroup
	for w := range writers {
		ids[w] = map[uint64]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := l.NewRecord()
				if *r != (Record{}) {
					t.Errorf("NewRecord returned a used record: %+v", r)
					return
				}
				*r = *stanzaRecord(w*each + i)
				id := r.ID
				seq, err := l.Give(r)
				if err != nil {
					t.Error(err)
					return
				}
				ids[w][seq] = id
			}
		}()
	}
	wg.Wait()
	closeLog(t, l)
	r := l.NewRecord()
	r.ID = "after-close"
	if _, err := l.Give(r); !errors.Is(err, ErrClosed) {
		t.Errorf("Give after Close: %v, want ErrClosed", err)
	}

	mustVerify(t, []string{cfg.Path}, nil)
	lines := readFileLines(t, cfg.Path)
	got := map[uint64]string{}
	for _, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		got[rec.Seq] = rec.ID
	}
	if len(got) != writers*each {
		t.Fatalf("%d records written, want %d", len(got), writers*each)
	}
	for w := range writers {
		for seq, id := range ids[w] {
			if got[seq] != id {
				t.Errorf("seq %d written with id %q, given with %q", seq, got[seq], id)
			}
		}
	}
}
