package audit

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultyFile fails writes or fsyncs while its faults say so. A failing
// write first writes half of what it was given, as a full disk can.
type faultyFile struct {
	*os.File
	faults *faults
}

type faults struct {
	failWrite, failSync, failOpen atomic.Bool
	syncs                         atomic.Int64
}

var errDiskFull = syscall.ENOSPC

func (f *faultyFile) Write(p []byte) (int, error) {
	if f.faults.failWrite.Load() {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, errDiskFull
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	if f.faults.failSync.Load() {
		return syscall.EIO
	}
	f.faults.syncs.Add(1)
	return f.File.Sync()
}

func faultyHooks(fs *faults) *testHooks {
	return &testHooks{
		retryInterval: 10 * time.Millisecond,
		openFile: func(path string) (auditFile, error) {
			if fs.failOpen.Load() {
				return nil, syscall.EACCES
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
			if err != nil {
				return nil, err
			}
			return &faultyFile{File: f, faults: fs}, nil
		},
	}
}

func TestFailClosedAndRecover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*faults, bool)
		cause  error
	}{
		{"write fails (disk full, part written)", func(f *faults, on bool) { f.failWrite.Store(on) }, syscall.ENOSPC},
		{"fsync fails", func(f *faults, on bool) { f.failSync.Store(on) }, syscall.EIO},
		{"write and reopen fail (permission)", func(f *faults, on bool) { f.failWrite.Store(on); f.failOpen.Store(on) }, syscall.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &faults{}
			cfg, logs := testConfig(t)
			cfg.hooks = faultyHooks(fs)
			l := openLog(t, cfg)
			ctx := testContext(t)
			for _, seq := range appendN(t, l, 0, 5) {
				if err := l.WaitDurable(ctx, seq); err != nil {
					t.Fatal(err)
				}
			}

			tc.inject(fs, true)
			// Concurrent appenders whose batch fails all get the error.
			var wg sync.WaitGroup
			var failedSeqs atomic.Int64
			for i := range 4 {
				wg.Go(func() {
					seq, err := l.Append(stanzaRecord(100 + i))
					if err != nil {
						if !errors.Is(err, ErrUnavailable) {
							t.Errorf("Append: %v", err)
						}
						return
					}
					err = l.WaitDurable(ctx, seq)
					if err == nil {
						t.Errorf("WaitDurable(%d) = nil while the disk fails", seq)
					} else if !errors.Is(err, ErrUnavailable) || !errors.Is(err, tc.cause) {
						t.Errorf("WaitDurable error %v does not wrap ErrUnavailable and %v", err, tc.cause)
					}
					failedSeqs.Add(1)
				})
			}
			wg.Wait()
			if failedSeqs.Load() == 0 {
				t.Fatal("no record reached the failing writer")
			}
			if err := l.Healthy(); !errors.Is(err, tc.cause) {
				t.Errorf("Healthy = %v, want %v", err, tc.cause)
			}
			if _, err := l.Append(stanzaRecord(200)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Append while failed = %v, want ErrUnavailable", err)
			}
			time.Sleep(50 * time.Millisecond) // several failed retries
			if l.Healthy() == nil {
				t.Fatal("healthy again while the fault is still there")
			}

			tc.inject(fs, false)
			eventually(t, "recovery", func() bool { return l.Healthy() == nil })
			for _, seq := range appendN(t, l, 300, 5) {
				if err := l.WaitDurable(ctx, seq); err != nil {
					t.Fatal(err)
				}
			}
			closeLog(t, l)

			if !strings.Contains(logs.String(), "fail closed") || !strings.Contains(logs.String(), "written again") {
				t.Errorf("failure and recovery not logged:\n%s", logs)
			}
			if l.Stats().WriteFailures < 2 {
				t.Errorf("WriteFailures = %d, want the failure and failed retries", l.Stats().WriteFailures)
			}
			res := mustVerify(t, []string{cfg.Path}, nil)
			want := uint64(5 + failedSeqs.Load() + 1 + 5) // + log.resumed
			if res.Records != want {
				t.Errorf("Records = %d, want %d (no record lost or doubled)", res.Records, want)
			}
			var resumed bool
			for _, line := range readFileLines(t, cfg.Path) {
				var r Record
				if json.Unmarshal([]byte(line), &r) == nil && r.Event == EventLogResumed {
					resumed = strings.Contains(r.Reason, "written after the outage")
				}
			}
			if !resumed {
				t.Error("no log.resumed record describing the outage")
			}
		})
	}
}

func TestCloseWhileFailedReportsLostRecords(t *testing.T) {
	fs := &faults{}
	cfg, _ := testConfig(t)
	cfg.hooks = faultyHooks(fs)
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fs.failWrite.Store(true)
	// One record: the writer tries it at once, and once the write has
	// failed Append refuses the next ones (fail closed).
	appendN(t, l, 0, 1)
	eventually(t, "the failure", func() bool { return l.Healthy() != nil })
	if _, err := l.Append(stanzaRecord(1)); err == nil {
		t.Fatal("Append accepted a record while the log was failing")
	}
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "1 records could not be written") {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close hangs while the disk fails")
	}
}

// stalledFile's Sync waits until release is closed, saying on entered
// that it has begun: a disk that stops answering.
type stalledFile struct {
	*os.File
	entered chan struct{}
	release chan struct{}
}

func (f *stalledFile) Sync() error {
	select {
	case f.entered <- struct{}{}:
	default:
	}
	<-f.release
	return f.File.Sync()
}

// TestStalledDiskBoundsTheQueue: while the writer waits on a disk that
// does not answer, Append queues records (not yet encoded) until their
// estimated size reaches the bound, then refuses with ErrUnavailable
// rather than let memory grow; when the disk answers, every accepted
// record is written, in seq order, on an intact chain.
func TestStalledDiskBoundsTheQueue(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	cfg, _ := testConfig(t)
	const bound, size = 1 << 20, 64 << 10
	cfg.hooks = &testHooks{maxPending: bound, openFile: func(path string) (auditFile, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, err
		}
		return &stalledFile{File: f, entered: entered, release: release}, nil
	}}
	l := openLog(t, cfg)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	if _, err := l.Append(stanzaRecord(0)); err != nil {
		t.Fatal(err)
	}
	<-entered // the writer is in the first batch's fsync

	big := strings.Repeat("a", size)
	accepted, refused := 1, error(nil)
	for i := 1; i <= 2*bound/size && refused == nil; i++ {
		r := stanzaRecord(i)
		r.Stanza = big
		if _, err := l.Append(r); err != nil {
			refused = err
			break
		}
		accepted++
	}
	if refused == nil || !errors.Is(refused, ErrUnavailable) || !strings.Contains(refused.Error(), "wait for the disk") {
		t.Fatalf("after %d records of 64 KiB behind a stalled disk: %v, want a refusal wrapping ErrUnavailable", accepted, refused)
	}
	if want := 1 + bound/(size+recordOverhead) + 1; accepted > want {
		t.Errorf("%d records of 64 KiB accepted behind a stalled disk, want at most %d (a 1 MiB bound)", accepted, want)
	}

	close(release)
	ctx := testContext(t)
	if err := l.WaitDurable(ctx, uint64(accepted)); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	if res := mustVerify(t, []string{cfg.Path}, nil); res.Records != uint64(accepted) || res.LastSeq != uint64(accepted) {
		t.Errorf("verified %d records up to seq %d, want the %d accepted", res.Records, res.LastSeq, accepted)
	}
}
