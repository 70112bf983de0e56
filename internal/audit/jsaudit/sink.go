package jsaudit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/jsretry"
)

// Defaults of Config.
const (
	DefaultStream             = "XMPPEDGE_AUDIT"
	SubjectPrefix             = "xmppedge.audit."
	DefaultCheckpointInterval = 60 * time.Second
	DefaultPublishTimeout     = 5 * time.Second
	DefaultRetryInterval      = time.Second
	DefaultDuplicateWindow    = 2 * time.Minute
	DefaultCloseTimeout       = 10 * time.Second

	// maxBatchRecords is the server's limit on the messages of one atomic
	// batch (nats-server's default max_batch_size).
	maxBatchRecords = 1000
	// maxBatchBytes ends a batch early; a batch is kept in memory until
	// it is acknowledged.
	maxBatchBytes = 4 << 20
	// maxPendingBytes bounds what Append accepts while the stream is
	// slower than the records come (or unreachable): past it Append
	// refuses rather than let memory grow.
	maxPendingBytes = 64 << 20
	// headroom is what a message needs besides its record: the headers
	// (message id, batch id and sequence, expected sequence, commit) and
	// the head, prev and hash members not in the body.
	headroom = 1024
	// attemptTimeout bounds one JetStream call while Open waits for a
	// leader.
	attemptTimeout = 2 * time.Second
)

// JetStream headers of an atomic batch (nats-server 2.12+; nats.go has no
// client API for them yet).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// Config configures a Sink.
type Config struct {
	// JetStream is the client the sink publishes and reads with; the sink
	// does not close its connection.
	JetStream jetstream.JetStream
	// Node names this node: its subject is xmppedge.audit.<Node> and its
	// records carry it. Letters, digits, '-' and '_' only (a NATS subject
	// token that is also a file name).
	Node string
	// Stream is the stream's name; default XMPPEDGE_AUDIT.
	Stream string
	// Replicas is the number of copies (1 to 5; default 1). With 3, a
	// record is acknowledged once two servers stored it.
	Replicas int
	// Retention drops records older than this (the stream's max_age);
	// 0 keeps them until the operator archives them elsewhere.
	Retention time.Duration
	// Durability is "sync" (default) or "async" (audit.DurabilitySync,
	// audit.DurabilityAsync).
	Durability string
	// HMACKey, when set, makes chain hashes HMAC-SHA256 with this key.
	HMACKey []byte
	// CheckpointInterval is how often a checkpoint record is written;
	// default 60s; negative: never.
	CheckpointInterval time.Duration
	// PublishTimeout bounds the wait for a batch's acknowledgement;
	// default 5s. Past it the sink is failed (fail closed).
	PublishTimeout time.Duration
	// RetryInterval is how often a failed sink tries again; default 1s.
	RetryInterval time.Duration
	// DuplicateWindow is the stream's duplicate window: how long a
	// message id is remembered; default 2 minutes.
	DuplicateWindow time.Duration
	// CloseTimeout bounds how long Close keeps trying to store what is
	// queued; default 10s.
	CloseTimeout time.Duration
	// ObservePublish, when set, is told how long each batch took from
	// its publication to the stream's acknowledgement (a quorum holds
	// it), on its first attempt.
	ObservePublish func(time.Duration)
	// Logger receives the sink's reports; default: discarded.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.JetStream == nil {
		return errors.New("jsaudit: no JetStream client")
	}
	if err := checkNode(c.Node); err != nil {
		return err
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	switch {
	case c.Replicas == 0:
		c.Replicas = 1
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("jsaudit: %d replicas: give 1 to 5 (JetStream's limit)", c.Replicas)
	}
	if c.Retention < 0 {
		return errors.New("jsaudit: retention must not be negative (0 keeps records)")
	}
	switch c.Durability {
	case "":
		c.Durability = audit.DurabilitySync
	case audit.DurabilitySync, audit.DurabilityAsync:
	default:
		return fmt.Errorf("jsaudit: durability %q: use %q or %q", c.Durability, audit.DurabilitySync, audit.DurabilityAsync)
	}
	if len(c.HMACKey) > 0 && len(c.HMACKey) < audit.MinHMACKeyLen {
		return fmt.Errorf("jsaudit: the HMAC key is %d bytes: use at least %d", len(c.HMACKey), audit.MinHMACKeyLen)
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// checkNode accepts a node name that can be a subject token and a file
// name.
func checkNode(node string) error {
	if node == "" {
		return errors.New("jsaudit: no node name")
	}
	if len(node) > 64 {
		return fmt.Errorf("jsaudit: node name %.20q… is longer than 64 bytes", node)
	}
	for _, c := range []byte(node) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("jsaudit: node name %q: use letters, digits, '-' and '_' only (it is a NATS subject token and a file name)", node)
		}
	}
	return nil
}

// StreamConfig is the configuration the sink gives the stream.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               cfg.Stream,
		Description:        "xmppedge audit log: one hash chain per node on xmppedge.audit.<node>",
		Subjects:           []string{SubjectPrefix + ">"},
		Storage:            jetstream.FileStorage,
		Replicas:           cfg.Replicas,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		MaxAge:             cfg.Retention,
		Duplicates:         cfg.DuplicateWindow,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowAtomicPublish: true,
	}
}

// queued is one record between Append and its acknowledgement.
type queued struct {
	seq  uint64
	hash string
	line []byte // without the newline
}

// Sink is an audit.Sink over a JetStream stream. It is safe for
// concurrent use.
type Sink struct {
	cfg     Config
	log     *slog.Logger
	async   bool
	subject string
	nc      *nats.Conn
	stream  jetstream.Stream

	// mu guards the chain and the queue.
	mu         sync.Mutex
	chain      *audit.Chain
	queue      []queued
	queueBytes int
	closing    bool

	wake     chan struct{} // cap 1
	done     chan struct{} // closed when the publisher has stopped
	stopTick chan struct{} // closed by Close: stops the checkpoints
	tickDone chan struct{}

	durable atomic.Uint64 // last seq acknowledged by the stream
	failure atomic.Pointer[failureState]
	stopped atomic.Bool

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever durable or failure changes

	closeErr error

	// Owned by the publisher (and by Open before it starts).
	streamSeq   uint64 // stream sequence of the node's last stored record; 0: none
	storedSeq   uint64 // chain seq of that record
	storedHash  string // its hash
	failedSince time.Time
	failedAt    uint64 // durable seq when the failure began

	published, batches, failures atomic.Uint64

	bodyBufs sync.Pool // *[]byte scratch for sizing a record
}

type failureState struct{ err error }

var _ audit.Sink = (*Sink)(nil)

// Stats are counters of a Sink's work.
type Stats struct {
	Records  uint64 // records acknowledged by the stream
	Batches  uint64 // batches acknowledged
	Failures uint64 // batches that failed (and were retried)
}

// Open creates or updates the stream, resumes the node's chain from the
// last record on its subject and starts the publisher. ctx bounds the
// start (waiting for a JetStream leader included), not the sink's life.
func Open(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	chain, err := audit.NewChain(cfg.Node, cfg.HMACKey)
	if err != nil {
		return nil, fmt.Errorf("jsaudit: %w", err)
	}
	s := &Sink{
		cfg:      cfg,
		log:      cfg.Logger.With("stream", cfg.Stream, "node", cfg.Node),
		async:    cfg.Durability == audit.DurabilityAsync,
		subject:  SubjectPrefix + cfg.Node,
		nc:       cfg.JetStream.Conn(),
		chain:    chain,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		stopTick: make(chan struct{}),
		tickDone: make(chan struct{}),
		waitCh:   make(chan struct{}),
	}
	s.bodyBufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	err = retry(ctx, "creating the audit stream", func(actx context.Context) error {
		st, err := cfg.JetStream.CreateOrUpdateStream(actx, StreamConfig(cfg))
		s.stream = st
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jsaudit: creating or updating stream %s: %w", cfg.Stream, err)
	}
	var last *jetstream.RawStreamMsg
	err = retry(ctx, "reading the chain head", func(actx context.Context) error {
		m, err := s.stream.GetLastMsgForSubject(actx, s.subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		last = m
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jsaudit: reading the last record of %s: %w", s.subject, err)
	}
	if last != nil {
		if err := chain.Resume(last.Data); err != nil {
			return nil, fmt.Errorf("jsaudit: cannot continue the chain of %s from stream sequence %d: %w (is the HMAC key the one it was written with?)", s.subject, last.Sequence, err)
		}
		s.streamSeq = last.Sequence
		s.storedSeq, s.storedHash = chain.Head()
		s.log.Info("jsaudit: continuing the chain", "subject", s.subject, "seq", s.storedSeq, "stream_seq", s.streamSeq)
	} else {
		s.log.Info("jsaudit: starting a new chain", "subject", s.subject)
	}
	s.durable.Store(s.storedSeq)
	go s.run()
	if cfg.CheckpointInterval > 0 {
		go s.checkpoints()
	} else {
		close(s.tickDone)
	}
	return s, nil
}

// retry calls fn with a context of at most attemptTimeout until it
// succeeds or ctx ends: before a JetStream cluster has elected a leader,
// a call blocks until its deadline.
func retry(ctx context.Context, what string, fn func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !jsretry.Transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last attempt: %w)", what, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Append chains and encodes r and queues it for the publisher; it does
// not wait for the network (see WaitDurable). It fails at once, accepting
// nothing, while the sink cannot store records or after Close.
func (s *Sink) Append(r *audit.Record) (uint64, error) {
	if f := s.failure.Load(); f != nil {
		return 0, fmt.Errorf("jsaudit: record refused: %w: %w", audit.ErrUnavailable, f.err)
	}
	// A record larger than a NATS message can carry would fail its batch
	// for ever: refuse it alone, before it takes a place in the chain.
	r.Node = s.cfg.Node
	bp := s.bodyBufs.Get().(*[]byte)
	*bp = audit.AppendBody((*bp)[:0], r)
	size := len(*bp) + headroom
	s.bodyBufs.Put(bp)
	if max := s.nc.MaxPayload(); max > 0 && int64(size) > max {
		return 0, fmt.Errorf("jsaudit: record refused: %w: about %d bytes, more than the %d bytes a NATS message may carry (max_payload)", audit.ErrUnavailable, size, max)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return 0, fmt.Errorf("jsaudit: record refused: %w", audit.ErrClosed)
	}
	if s.queueBytes >= maxPendingBytes {
		s.mu.Unlock()
		return 0, fmt.Errorf("jsaudit: record refused: %w: %d MiB wait for the stream (is it too slow?)", audit.ErrUnavailable, maxPendingBytes>>20)
	}
	line := s.chain.Next(nil, r, time.Now())
	line = line[:len(line)-1]
	s.queue = append(s.queue, queued{seq: r.Seq, hash: r.Hash, line: line})
	s.queueBytes += len(line)
	first := len(s.queue) == 1
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return r.Seq, nil
}

// WaitDurable waits until record seq is stored. In sync mode that is once
// the stream acknowledged its batch; an error means the sink is failed
// (see Healthy), closed, or ctx ended. In async mode it returns at once:
// nil, or the failure.
func (s *Sink) WaitDurable(ctx context.Context, seq uint64) error {
	if s.durable.Load() >= seq {
		return nil
	}
	if s.async {
		return s.Healthy()
	}
	if last := s.LastSeq(); seq > last {
		return fmt.Errorf("jsaudit: waiting for record %d, but the last record appended is %d", seq, last)
	}
	for {
		s.waitMu.Lock()
		ch := s.waitCh
		s.waitMu.Unlock()
		if s.durable.Load() >= seq {
			return nil
		}
		if f := s.failure.Load(); f != nil {
			return fmt.Errorf("jsaudit: record %d not stored: %w: %w", seq, audit.ErrUnavailable, f.err)
		}
		if s.stopped.Load() {
			return fmt.Errorf("jsaudit: record %d not stored: %w", seq, audit.ErrClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("jsaudit: waiting for record %d to be stored: %w", seq, ctx.Err())
		}
	}
}

// Healthy is nil while the stream acknowledges records, else why not
// (wrapping audit.ErrUnavailable), or audit.ErrClosed after Close.
func (s *Sink) Healthy() error {
	if f := s.failure.Load(); f != nil {
		return fmt.Errorf("jsaudit: %w: %w", audit.ErrUnavailable, f.err)
	}
	if s.stopped.Load() {
		return fmt.Errorf("jsaudit: %w", audit.ErrClosed)
	}
	return nil
}

// LastSeq is the seq of the last record appended.
func (s *Sink) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq, _ := s.chain.Head()
	return seq
}

// DurableSeq is the seq of the last record the stream acknowledged.
func (s *Sink) DurableSeq() uint64 { return s.durable.Load() }

// Subject is the node's subject in the stream.
func (s *Sink) Subject() string { return s.subject }

// Stats returns the sink's counters.
func (s *Sink) Stats() Stats {
	return Stats{Records: s.published.Load(), Batches: s.batches.Load(), Failures: s.failures.Load()}
}

// Close stops the checkpoints, stores what is queued (trying for at most
// Config.CloseTimeout) and stops the publisher; it does not close the
// NATS connection. Appends after Close fail. If records could not be
// stored Close says how many. Close is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	already := s.closing
	s.closing = true
	s.mu.Unlock()
	if !already {
		close(s.stopTick)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	<-s.tickDone
	<-s.done
	return s.closeErr
}

func (s *Sink) broadcast() {
	s.waitMu.Lock()
	close(s.waitCh)
	s.waitCh = make(chan struct{})
	s.waitMu.Unlock()
}

// run is the publisher: it takes the queue as a batch, publishes it and
// waits for its acknowledgement, retrying a failed batch until it is
// stored (or Close gives up).
func (s *Sink) run() {
	defer close(s.done)
	var closeDeadline time.Time
	for {
		s.mu.Lock()
		n := 0
		size := 0
		for n < len(s.queue) && n < maxBatchRecords && (n == 0 || size+len(s.queue[n].line) <= maxBatchBytes) {
			size += len(s.queue[n].line)
			n++
		}
		batch := s.queue[:n:n]
		closing := s.closing
		s.mu.Unlock()
		if n == 0 {
			if closing {
				s.stopped.Store(true)
				s.broadcast()
				return
			}
			<-s.wake
			continue
		}
		if closing && closeDeadline.IsZero() {
			closeDeadline = time.Now().Add(s.cfg.CloseTimeout)
		}
		if !s.store(batch, closeDeadline) {
			s.mu.Lock()
			lost := len(s.queue)
			s.queue = nil
			s.queueBytes = 0
			s.mu.Unlock()
			s.closeErr = fmt.Errorf("jsaudit: closed with %d records not stored in stream %s: %w", lost, s.cfg.Stream, s.failure.Load().err)
			s.log.Error("jsaudit: closing with records not stored", "records", lost, "error", s.failure.Load().err)
			s.stopped.Store(true)
			s.broadcast()
			return
		}
		s.mu.Lock()
		s.queue = s.queue[n:]
		s.queueBytes -= size
		if len(s.queue) == 0 {
			s.queue = nil // let the backing array go
		}
		s.mu.Unlock()
	}
}

// failoverGrace bounds how long a batch is retried before the sink fails
// closed: a stream whose leader was lost elects another within a few
// seconds (no responders, "temporarily unavailable" meanwhile), and one of
// three servers down must not stop the traffic.
const failoverGrace = 15 * time.Second

// ride retries batch (reconciling with the stream's chain head first, so
// that a batch stored before its acknowledgement was lost is not sent
// twice) for up to failoverGrace; it returns the last error, or nil once
// the stream holds the batch.
func (s *Sink) ride(batch []queued, err error) error {
	deadline := time.Now().Add(failoverGrace)
	for err != nil && time.Now().Before(deadline) {
		s.log.Debug("jsaudit: batch not acknowledged yet; retrying (leader election?)", "error", err)
		select {
		case <-time.After(250 * time.Millisecond):
		case <-s.stopTick:
			return err
		}
		var stored bool
		if stored, err = s.reconcile(batch); err == nil && !stored {
			err = s.publish(batch)
		}
	}
	return err
}

// store publishes batch until the stream holds it; it returns false only
// when closing and closeDeadline has passed.
func (s *Sink) store(batch []queued, closeDeadline time.Time) bool {
	start := time.Now()
	err := s.publish(batch)
	if err == nil && s.cfg.ObservePublish != nil {
		s.cfg.ObservePublish(time.Since(start))
	}
	if err != nil {
		err = s.ride(batch, err)
	}
	for err != nil {
		s.failures.Add(1)
		s.fail(err, batch)
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			if closeDeadline.IsZero() {
				closeDeadline = time.Now().Add(s.cfg.CloseTimeout)
			}
			if time.Now().After(closeDeadline) {
				return false
			}
		}
		select {
		case <-time.After(s.cfg.RetryInterval):
		case <-s.stopTick:
			// Closing: go on retrying until closeDeadline, promptly.
			time.Sleep(min(s.cfg.RetryInterval, 100*time.Millisecond))
		}
		var stored bool
		stored, err = s.reconcile(batch)
		if err == nil && !stored {
			err = s.publish(batch)
		}
	}
	s.stored(batch)
	return true
}

// publish sends batch as one atomic batch and waits for its
// acknowledgement; on success the stream holds it.
func (s *Sink) publish(batch []queued) error {
	var idb [16]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	for i, q := range batch {
		m := &nats.Msg{Subject: s.subject, Data: q.line, Header: nats.Header{}}
		m.Header[jetstream.MsgIDHeader] = []string{q.hash}
		m.Header[hdrBatchID] = []string{id}
		m.Header[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
		if i == 0 {
			m.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(s.streamSeq, 10)}
		}
		if i < len(batch)-1 {
			if err := s.nc.PublishMsg(m); err != nil {
				return fmt.Errorf("publishing record %d: %w", q.seq, err)
			}
			continue
		}
		m.Header[hdrBatchCommit] = []string{"1"}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
		resp, err := s.nc.RequestMsgWithContext(ctx, m)
		cancel()
		if err != nil {
			return fmt.Errorf("records %d to %d not acknowledged by stream %s: %w", batch[0].seq, q.seq, s.cfg.Stream, err)
		}
		var ack pubAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("records %d to %d: unreadable acknowledgement %.200q: %w", batch[0].seq, q.seq, resp.Data, err)
		}
		if ack.Error != nil {
			return fmt.Errorf("records %d to %d refused by stream %s: %s (code %d, error code %d)", batch[0].seq, q.seq, s.cfg.Stream, ack.Error.Description, ack.Error.Code, ack.Error.ErrCode)
		}
		if ack.Stream != s.cfg.Stream || ack.Seq == 0 {
			return fmt.Errorf("records %d to %d: acknowledgement from stream %q seq %d, want stream %s", batch[0].seq, q.seq, ack.Stream, ack.Seq, s.cfg.Stream)
		}
		s.streamSeq = ack.Seq
	}
	return nil
}

// pubAck is the stream's answer to a batch commit.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
	BatchID   string `json:"batch,omitempty"`
	Count     int    `json:"count,omitempty"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     uint16 `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// reconcile asks the stream leader for the node's last record after a
// failed batch: stored is true when the batch is there (its
// acknowledgement was lost); false when the stream's head is the record
// before the batch (publish it again, with the stream sequence updated).
// Anything else is an error: another writer wrote to the subject.
func (s *Sink) reconcile(batch []queued) (stored bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
	defer cancel()
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject)
	var headSeq uint64
	var headHash string
	var streamSeq uint64
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return false, fmt.Errorf("reading the chain head of %s: %w", s.subject, err)
	default:
		var r struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return false, fmt.Errorf("the last message on %s (stream sequence %d) is not a record: %w", s.subject, m.Sequence, err)
		}
		headSeq, headHash, streamSeq = r.Seq, r.Hash, m.Sequence
	}
	last := batch[len(batch)-1]
	switch {
	case headSeq == last.seq && headHash == last.hash:
		s.streamSeq = streamSeq
		return true, nil
	case headSeq == s.storedSeq && headHash == s.storedHash:
		s.streamSeq = streamSeq
		return false, nil
	}
	return false, fmt.Errorf("another writer on %s: the stream's chain head is seq %d hash %.16s…, this node's is seq %d (stored) / %d (appended): stop the other writer (two nodes with one name?)", s.subject, headSeq, headHash, s.storedSeq, last.seq)
}

// fail marks the sink failed (once per failure) and wakes the waiters.
func (s *Sink) fail(err error, batch []queued) {
	prev := s.failure.Swap(&failureState{err: err})
	if prev == nil {
		s.failedSince = time.Now()
		s.failedAt = s.storedSeq
		s.log.Error("jsaudit: the stream does not store records; refusing new ones until it does", "error", err, "records", fmt.Sprintf("%d-%d", batch[0].seq, batch[len(batch)-1].seq))
	} else if prev.err.Error() != err.Error() {
		s.log.Warn("jsaudit: still failing", "error", err)
	}
	s.broadcast()
}

// stored records that batch is in the stream; after a failure it makes
// the sink healthy again and appends a log.resumed record.
func (s *Sink) stored(batch []queued) {
	last := batch[len(batch)-1]
	s.storedSeq, s.storedHash = last.seq, last.hash
	s.published.Add(uint64(len(batch)))
	s.batches.Add(1)
	s.durable.Store(last.seq)
	wasFailed := s.failure.Swap(nil) != nil
	s.broadcast()
	if !wasFailed {
		return
	}
	d := time.Since(s.failedSince).Round(time.Millisecond)
	late := fmt.Sprintf("records %d to %d", s.failedAt+1, last.seq)
	s.log.Info("jsaudit: the stream stores records again", "failed_for", d, "stored_late", late)
	if _, err := s.Append(&audit.Record{
		Event:  audit.EventLogResumed,
		Reason: fmt.Sprintf("stream %s did not store records for %s; %s were stored late (their sync-mode waiters were told of the failure)", s.cfg.Stream, d, late),
	}); err != nil && !errors.Is(err, audit.ErrClosed) {
		s.log.Warn("jsaudit: writing the log.resumed record", "error", err)
	}
}

// checkpoints appends a checkpoint record every CheckpointInterval.
func (s *Sink) checkpoints() {
	defer close(s.tickDone)
	t := time.NewTicker(s.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopTick:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
		_, err := s.Checkpoint(ctx)
		cancel()
		if err != nil && s.Healthy() == nil {
			s.log.Warn("jsaudit: no checkpoint this time", "error", err)
		}
	}
}

// Checkpoint appends an audit.checkpoint record listing every node's
// chain head as the stream holds it now, and returns its seq.
func (s *Sink) Checkpoint(ctx context.Context) (uint64, error) {
	heads, err := Heads(ctx, s.cfg.JetStream, s.cfg.Stream)
	if err != nil {
		return 0, err
	}
	list := make([]string, 0, len(heads))
	for _, h := range heads {
		list = append(list, fmt.Sprintf("%s %d %s", h.Node, h.Seq, h.Hash))
	}
	return s.Append(&audit.Record{Event: audit.EventCheckpoint, Heads: audit.StringsOf(list...)})
}
