package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Durability modes.
const (
	// DurabilitySync: WaitDurable returns only once the record is fsynced.
	DurabilitySync = "sync"
	// DurabilityAsync: records are fsynced in the background within
	// Config.AsyncBound; WaitDurable does not wait.
	DurabilityAsync = "async"
)

// Defaults and bounds of Config.
const (
	MaxCommitInterval = 2 * time.Millisecond
	DefaultAsyncBound = time.Second

	// maxBatchRecords and maxBatchBytes end a batch before its commit
	// interval is over.
	maxBatchRecords = 4096
	maxBatchBytes   = 4 << 20
	// maxPendingBytes bounds what Append accepts while the disk is slower
	// than the records come: past it Append refuses (fail closed) rather
	// than let memory grow.
	maxPendingBytes = 64 << 20
	// maxUnsyncedBytes (async) fsyncs early when this much is written but
	// not fsynced: it is kept in memory to be written again should the
	// fsync fail.
	maxUnsyncedBytes = 16 << 20
	// defaultRetryInterval is how often a failed log tries to write again.
	defaultRetryInterval = time.Second
)

// Config configures a Log. See the package comment for the file layout.
type Config struct {
	// Path is the current file, e.g. /var/lib/xmppedge/audit.jsonl. Its
	// folder is created if missing. Rotated files are
	// PATH.<UTC YYYYMMDDTHHMMSSZ>.<first seq, 20 digits> (RotatedName).
	Path string
	// Durability is "sync" (default) or "async".
	Durability string
	// CommitInterval is how long the first record of a batch, appended
	// to an idle writer, waits for others before the batch is written and
	// fsynced; at most 2ms. Default 0: written at once. Records appended
	// while a batch is written and fsynced form the next batch, so the
	// commits group under load by themselves, and a single message does
	// not wait for a timer.
	CommitInterval time.Duration
	// AsyncBound (async mode) is the longest time between Append and the
	// record being fsynced. Default 1s.
	AsyncBound time.Duration
	// RotateSize starts a new file once the current one has reached this
	// many bytes (at the next batch boundary); 0: never.
	RotateSize int64
	// RotateAge starts a new file once the current one's first record is
	// this old; 0: never.
	RotateAge time.Duration
	// HMACKey, when set, makes chain hashes HMAC-SHA256 with this key
	// (at least MinHMACKeyLen bytes); see LoadHMACKey.
	HMACKey []byte
	// Node names this node in every record; default: the host name.
	Node string
	// Logger receives the log's own reports; default: discarded.
	Logger *slog.Logger
	// Rotated, when set, is called by the writer after each rotation with
	// the rotated file's name (e.g. to run retention). It must not block
	// nor append to the log.
	Rotated func(rotated string)

	hooks *testHooks // tests only
}

// testHooks let tests inject a failing or counting file and a short retry
// interval.
type testHooks struct {
	openFile      func(path string) (auditFile, error)
	retryInterval time.Duration
	maxPending    int // replaces maxPendingBytes
}

// auditFile is what the writer needs of the current file; *os.File is one.
type auditFile interface {
	io.Writer
	Sync() error
	Close() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

func openAppend(path string) (auditFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Sink is the interface the relay writes audit records through. Log is
// the local-file implementation; a replicated backend (a distributed log)
// implements the same interface without touching the relay.
type Sink interface {
	// Append assigns the record its place in the chain and queues it; it
	// does not wait for storage. An error means the record was not
	// accepted: the caller must not relay what it describes.
	Append(r *Record) (seq uint64, err error)
	// WaitDurable returns once record seq is stored as durably as
	// configured, or an error if storing it failed.
	WaitDurable(ctx context.Context, seq uint64) error
	// Healthy is nil while records can be stored.
	Healthy() error
	// Close stores what is queued and releases the storage.
	Close() error
}

var _ Sink = (*Log)(nil)

// A Recycler is a Sink that can take records over, so that a busy relay
// does not allocate one per stanza: NewRecord returns a zeroed record,
// and Give is Append for such a record, which the sink reuses once it has
// encoded it. After Give the record is the sink's, whether Give failed or
// not: the caller must not read or change it.
type Recycler interface {
	NewRecord() *Record
	Give(r *Record) (seq uint64, err error)
}

var _ Recycler = (*Log)(nil)

// ErrUnavailable is wrapped by the errors of Append and WaitDurable when
// the log cannot store records; the relay should refuse (bounce with
// internal-server-error) rather than relay unaudited.
var ErrUnavailable = errors.New("audit log unavailable")

// ErrClosed is wrapped by the errors of a closed Log.
var ErrClosed = errors.New("audit log closed")

// Stats are counters of a Log's work.
type Stats struct {
	Records       uint64 // records appended
	Batches       uint64 // write() calls that succeeded
	Syncs         uint64 // fsyncs that succeeded
	WriteFailures uint64 // failed writes, fsyncs and reopens
	Rotations     uint64
}

// Log is a hash-chained, group-committed audit log in a series of JSON
// Lines files. It is safe for concurrent use.
type Log struct {
	cfg           Config
	log           *slog.Logger
	async         bool
	window        time.Duration
	retryInterval time.Duration
	maxPending    int // maxPendingBytes, but in tests
	openFile      func(path string) (auditFile, error)

	// retentionMu makes retention runs (ApplyRetention) one at a time.
	retentionMu sync.Mutex

	// mu guards the last seq given and the records appended but not yet
	// encoded. Append only gives a record its seq and queues it; the
	// writer encodes and chains the queue in seq order (takePending), so
	// the appending goroutine (the relay's reader) does not pay for the
	// encoding and the hash.
	mu           sync.Mutex
	seq          uint64   // the last seq given by Append
	pending      []queued // appended, not yet encoded, in seq order
	pendingBytes int      // their estimated encoded size (sizeHint)
	pendingFirst uint64
	pendingSince time.Time
	closing      bool

	wake chan struct{} // cap 1: there is work for the writer
	done chan struct{} // closed when the writer has stopped

	durable atomic.Uint64
	failure atomic.Pointer[failureState]
	stopped atomic.Bool

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever durable or failure changes

	records, batches, syncs, writeFailures, rotations atomic.Uint64

	recycled sync.Pool // *Record: NewRecord's, back from the writer

	// Owned by the writer goroutine (and by Open before it starts).
	chain         *Chain   // the head: last seq and hash encoded
	spare         []queued // the previous queue, kept for its capacity
	file          auditFile
	fileSize      int64     // bytes in the current file that are written
	syncedSize    int64     // bytes in the current file that are fsynced
	fileFirstSeq  uint64    // seq of the current file's first record; 0 if empty
	fileStart     time.Time // time of the current file's first record
	out           []byte    // records written or to write, not yet fsynced
	outWritten    int       // out[:outWritten] is in the file
	outFirst      uint64
	outLast       uint64
	outSince      time.Time // when the oldest record in out was appended
	failedSince   time.Time
	failedAtSeq   uint64 // durable seq when the failure began
	closeErr      error
	lastCommitEnd time.Time // when the last batch was written (and fsynced)
	// rotateBlockedUntil postpones rotation after a failed rename.
	rotateBlockedUntil time.Time
}

// queued is a record given its seq by Append, waiting for the writer to
// encode it with the time of its Append.
type queued struct {
	r       *Record
	at      time.Time
	recycle bool // given (Give): back to Log.recycled once encoded
}

type failureState struct {
	err error
}

// Open opens the log at cfg.Path, creating it if needed, and recovers the
// chain from the last complete record of the current file (or of the
// newest rotated file). A torn last line is reported (slog Error and a
// log.recovered record), saved to PATH-torn-<time> and cut off; it is
// never silently continued.
func Open(cfg Config) (*Log, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	l := &Log{
		cfg:           cfg,
		log:           cfg.Logger,
		async:         cfg.Durability == DurabilityAsync,
		window:        cfg.CommitInterval,
		retryInterval: defaultRetryInterval,
		maxPending:    maxPendingBytes,
		openFile:      openAppend,
		wake:          make(chan struct{}, 1),
		done:          make(chan struct{}),
		waitCh:        make(chan struct{}),
	}
	l.chain = newChain(cfg.Node, cfg.HMACKey)
	if h := cfg.hooks; h != nil {
		if h.openFile != nil {
			l.openFile = h.openFile
		}
		if h.retryInterval > 0 {
			l.retryInterval = h.retryInterval
		}
		if h.maxPending > 0 {
			l.maxPending = h.maxPending
		}
	}
	dir := filepath.Dir(cfg.Path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit: creating the folder of %s: %w", cfg.Path, err)
	}
	f, err := l.openFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("audit: opening %s: %w (check that the folder exists and xmppedge may write there)", cfg.Path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %s is in use by another process (%w): two writers would break the chain; stop the other xmppedge or give this one its own audit.path", cfg.Path, err)
	}
	l.file = f
	torn, err := l.recoverChain()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: syncing the folder %s: %w", dir, err)
	}
	l.seq = l.chain.seq
	l.durable.Store(l.chain.seq)
	go l.run()
	if torn != nil {
		l.log.Error("audit: the last line of the audit file was torn (crash while writing?); cut it off and continuing the chain",
			"file", cfg.Path, "offset", torn.offset, "bytes", torn.length, "sha256", torn.sum, "saved_as", torn.savedAs, "continues_after_seq", l.seq)
		rec := &Record{
			Event:         EventLogRecovered,
			Reason:        fmt.Sprintf("torn last line (crash while writing?): %d bytes at offset %d of %s cut off and saved to %s; the chain continues from seq %d", torn.length, torn.offset, filepath.Base(cfg.Path), filepath.Base(torn.savedAs), l.seq),
			DroppedOffset: torn.offset,
			DroppedBytes:  torn.length,
			DroppedSHA256: torn.sum,
		}
		seq, err := l.Append(rec)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err = l.WaitDurable(ctx, seq)
			cancel()
		}
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("audit: writing the log.recovered record: %w", err)
		}
	}
	return l, nil
}

func (c *Config) setDefaults() error {
	if c.Path == "" {
		return errors.New("audit: no path: name the audit file, like /var/lib/xmppedge/audit.jsonl")
	}
	switch c.Durability {
	case "":
		c.Durability = DurabilitySync
	case DurabilitySync, DurabilityAsync:
	default:
		return fmt.Errorf("audit: durability %q: use %q or %q", c.Durability, DurabilitySync, DurabilityAsync)
	}
	switch {
	case c.CommitInterval < 0 || c.CommitInterval > MaxCommitInterval:
		return fmt.Errorf("audit: commit interval %s: give a duration up to %s (a stanza waits for its batch that long)", c.CommitInterval, MaxCommitInterval)
	}
	switch {
	case c.AsyncBound == 0:
		c.AsyncBound = DefaultAsyncBound
	case c.AsyncBound < 10*time.Millisecond:
		return fmt.Errorf("audit: async bound %s is too short: give at least 10ms", c.AsyncBound)
	}
	if c.RotateSize < 0 || c.RotateAge < 0 {
		return errors.New("audit: rotate size and age must not be negative (0 turns rotation off)")
	}
	if len(c.HMACKey) > 0 && len(c.HMACKey) < MinHMACKeyLen {
		return fmt.Errorf("audit: the HMAC key is %d bytes: use at least %d", len(c.HMACKey), MinHMACKeyLen)
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("audit: no node name given and the host name is unknown (%w): set audit.node", err)
		}
		c.Node = h
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Append gives r the next seq and queues it for the writer, which fills
// r's Seq, Time (this call's), Node, Prev and Hash when it encodes the
// record, before the record is durable: r must not change after Append,
// and its fields may be read once WaitDurable has returned nil (sync
// mode) or after Close. Append does not wait for the disk (see
// WaitDurable). It fails at once, accepting nothing, while the log cannot
// write (fail closed) or after Close.
func (l *Log) Append(r *Record) (uint64, error) { return l.append(r, false) }

// NewRecord returns a zeroed record for Give (Recycler).
func (l *Log) NewRecord() *Record {
	if r, ok := l.recycled.Get().(*Record); ok {
		return r
	}
	return new(Record)
}

// Give is Append for a record from NewRecord, which the log reuses once
// its writer has encoded it (Recycler): the caller must not touch r after
// the call, whether it failed or not.
func (l *Log) Give(r *Record) (uint64, error) { return l.append(r, true) }

func (l *Log) append(r *Record, recycle bool) (uint64, error) {
	refuse := func(err error) (uint64, error) {
		if recycle {
			*r = Record{}
			l.recycled.Put(r)
		}
		return 0, err
	}
	if f := l.failure.Load(); f != nil {
		return refuse(fmt.Errorf("audit: record refused: %w: %w", ErrUnavailable, f.err))
	}
	now, size := time.Now(), r.sizeHint()

	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return refuse(fmt.Errorf("audit: record refused: %w", ErrClosed))
	}
	if l.pendingBytes >= l.maxPending {
		l.mu.Unlock()
		return refuse(fmt.Errorf("audit: record refused: %w: %s of records wait for the disk (is it too slow?)", ErrUnavailable, sizeText(l.maxPending)))
	}
	seq, wake := l.queueLocked(queued{r: r, at: now, recycle: recycle}, size)
	l.mu.Unlock()

	l.records.Add(1)
	if wake {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return seq, nil
}

// sizeText writes n bytes in MiB when it is a whole number of them, else
// in KiB.
func sizeText(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// queueLocked gives q's record the next seq and queues it. It reports whether the
// writer needs a wake-up (first record of a batch, or the batch is full).
func (l *Log) queueLocked(q queued, size int) (uint64, bool) {
	first := len(l.pending) == 0
	l.seq++
	if first {
		l.pendingFirst = l.seq
		l.pendingSince = q.at
	}
	l.pending = append(l.pending, q)
	l.pendingBytes += size
	return l.seq, first || len(l.pending) == maxBatchRecords || l.pendingBytes >= maxBatchBytes
}

// WaitDurable waits until record seq is durable. In sync mode that is
// once its batch is fsynced; an error means the batch could not be
// written (the log has failed: see Healthy) or ctx ended. In async mode it
// returns at once: nil, or the failure while the log cannot write.
func (l *Log) WaitDurable(ctx context.Context, seq uint64) error {
	if l.durable.Load() >= seq {
		return nil
	}
	if l.async {
		return l.Healthy()
	}
	if last := l.LastSeq(); seq > last {
		return fmt.Errorf("audit: waiting for record %d, but the last record appended is %d", seq, last)
	}
	for {
		l.waitMu.Lock()
		ch := l.waitCh
		l.waitMu.Unlock()
		if l.durable.Load() >= seq {
			return nil
		}
		if f := l.failure.Load(); f != nil {
			return fmt.Errorf("audit: record %d not on disk: %w: %w", seq, ErrUnavailable, f.err)
		}
		if l.stopped.Load() {
			return fmt.Errorf("audit: record %d not on disk: %w", seq, ErrClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("audit: waiting for record %d to reach the disk: %w", seq, ctx.Err())
		}
	}
}

// Healthy returns nil while writing works, else the last write error
// (disk full, permission), wrapping ErrUnavailable.
func (l *Log) Healthy() error {
	if f := l.failure.Load(); f != nil {
		return fmt.Errorf("audit: %w: %w", ErrUnavailable, f.err)
	}
	if l.stopped.Load() {
		return fmt.Errorf("audit: %w", ErrClosed)
	}
	return nil
}

// LastSeq is the seq of the last record appended (0 if none ever was).
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Records:       l.records.Load(),
		Batches:       l.batches.Load(),
		Syncs:         l.syncs.Load(),
		WriteFailures: l.writeFailures.Load(),
		Rotations:     l.rotations.Load(),
	}
}

// Close writes and fsyncs what is queued and closes the file. Appends
// after Close fail. If the queue could not be written, Close says how many
// records were lost. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	already := l.closing
	l.closing = true
	l.mu.Unlock()
	if !already {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	<-l.done
	return l.closeErr
}

// broadcast wakes every WaitDurable.
func (l *Log) broadcast() {
	l.waitMu.Lock()
	close(l.waitCh)
	l.waitCh = make(chan struct{})
	l.waitMu.Unlock()
}
