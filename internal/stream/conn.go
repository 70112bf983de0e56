package stream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Write buffer sizes: an outgoing stream carries the relayed stanzas, in
// batches; an incoming one only answers (dialback results, errors), and
// many of them sit idle: keep those small.
const (
	OutgoingWriteBuffer = 32 << 10
	IncomingWriteBuffer = 2 << 10
)

// DefaultMaxBacklog bounds the bytes queued to a Conn's writer and not yet
// written.
const DefaultMaxBacklog = 1 << 20

// closeTimeout bounds the writes that end a stream.
const closeTimeout = 5 * time.Second

var (
	// ErrClosed is returned by writes after the stream was closed.
	ErrClosed = errors.New("stream already closed")
	// ErrBacklog is the error of a stream whose peer does not read what
	// is written to it: the queued bytes passed Options.MaxBacklog.
	ErrBacklog = errors.New("stream: the peer does not read (write backlog full)")
)

// Options configure a Conn.
type Options struct {
	Limits      xmlstream.Limits // the scanner's bounds
	WriteBuffer int              // default IncomingWriteBuffer
	MaxBacklog  int              // queued bytes; default DefaultMaxBacklog
}

// Conn is one connection carrying an XML stream in one role. It owns the
// net.Conn, the scanner (read from one goroutine at a time) and its
// writer: one goroutine at a time, running while something is queued;
// its methods other than ReadHeader, Await and Next may be called from
// any goroutine.
type Conn struct {
	r *xmlstream.Reader

	mu         sync.Mutex
	conn       net.Conn
	tls        *tls.ConnectionState
	headerSent bool // our header is queued for the current stream
	closed     bool // our </stream:stream> (or a stream error) is queued
	aborted    bool
	err        error // the writer's first error
	queue      []*writeReq
	backlog    int // bytes in queue
	maxBacklog int
	// writing: a writer goroutine runs. It is started for what is
	// queued and ends once the queue is empty, so that an idle stream
	// holds no goroutine (nor its stack) for writing. Only that goroutine
	// uses w and wconn (the connection it writes to, swapped by StartTLS).
	// A small write buffer (an incoming stream's: it only answers) is
	// dropped when the writer ends and made again when it starts; a large
	// one (an outgoing stream's, busy) is kept.
	writing  bool
	wsize    int // the write buffer's size
	w        *bufio.Writer
	wconn    net.Conn
	batch    []*writeReq // the writer's, reused
	peer     xmlstream.Header
	streamID string
	// idleAfter is IdleAfter (tests shorten it).
	idleAfter time.Duration
}

// writeReq is one unit of the writer's work.
type writeReq struct {
	bufs    [][]byte
	n       int
	timeout time.Duration // >0: the write deadline for these bytes
	done    chan error    // not nil: signalled once flushed
	pause   chan net.Conn // not nil: after the flush, wait for the connection to write to next
}

// NewConn starts a Conn on c. A *tls.Conn whose handshake is complete
// counts as encrypted.
func NewConn(c net.Conn, opt Options) *Conn {
	if opt.WriteBuffer <= 0 {
		opt.WriteBuffer = IncomingWriteBuffer
	}
	if opt.MaxBacklog <= 0 {
		opt.MaxBacklog = DefaultMaxBacklog
	}
	s := &Conn{
		r:          xmlstream.NewReader(c, opt.Limits),
		conn:       c,
		maxBacklog: opt.MaxBacklog,
		wsize:      opt.WriteBuffer,
		wconn:      c,
		idleAfter:  IdleAfter,
	}
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().HandshakeComplete {
		st := tc.ConnectionState()
		s.tls = &st
	}
	return s
}

// writer is the Conn's writer goroutine, started by enqueue when none
// runs: it writes what is queued, batch after batch, and ends when the
// queue is empty (or fails what is queued once the Conn is aborted).
func (s *Conn) writer() {
	for {
		s.mu.Lock()
		if s.aborted {
			s.mu.Unlock()
			s.failQueued()
			return
		}
		batch := s.queue
		s.queue, s.batch = s.batch[:0], nil
		werr := s.err
		if len(batch) == 0 {
			if s.wsize <= IncomingWriteBuffer {
				s.w = nil // flushed: nothing in it (under mu: the next writer may start at once)
			}
			s.batch, s.writing = batch, false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		if s.w == nil {
			s.w = bufio.NewWriterSize(s.wconn, s.wsize)
		}
		s.wconn = s.write(s.wconn, s.w, batch, werr)
		clear(batch)
		s.mu.Lock()
		s.batch = batch[:0]
		s.mu.Unlock()
	}
}

// write writes a batch, flushes once per batch (and before a pause), and
// signals the waiters. It returns the connection to write to next.
func (s *Conn) write(c net.Conn, w *bufio.Writer, batch []*writeReq, err error) net.Conn {
	var waiters []*writeReq
	flush := func() {
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			s.setErr(err) // before any waiter learns of it: its next Send must fail too
		}
		for _, q := range waiters {
			q.done <- err
		}
		waiters = waiters[:0]
	}
	n := 0
	for _, q := range batch {
		n += q.n
		if err == nil && q.timeout > 0 {
			c.SetWriteDeadline(time.Now().Add(q.timeout))
		}
		for _, b := range q.bufs {
			if err == nil {
				_, err = w.Write(b)
			}
		}
		if q.done != nil {
			waiters = append(waiters, q)
		}
		if q.pause != nil {
			flush()
			if nc := <-q.pause; nc != nil {
				c = nc
				w.Reset(nc)
			}
		}
	}
	flush()
	s.mu.Lock()
	s.backlog -= n
	s.mu.Unlock()
	return c
}

// setErr records the writer's first error.
func (s *Conn) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// failQueued answers the waiters still queued when the writer stops.
func (s *Conn) failQueued() {
	s.mu.Lock()
	q := s.queue
	s.queue, s.writing = nil, false
	s.mu.Unlock()
	for _, r := range q {
		if r.done != nil {
			r.done <- net.ErrClosed
		}
		if r.pause != nil {
			<-r.pause
		}
	}
}

// enqueue queues q; mu is held. It fails when the stream was closed, the
// writer failed or the backlog is full (which aborts the connection).
func (s *Conn) enqueue(q *writeReq) error {
	switch {
	case s.aborted:
		return net.ErrClosed
	case s.err != nil:
		return s.err
	}
	for _, b := range q.bufs {
		q.n += len(b)
	}
	if s.backlog+q.n > s.maxBacklog && q.done == nil && q.pause == nil {
		s.err = ErrBacklog
		s.abortLocked()
		return ErrBacklog
	}
	s.backlog += q.n
	s.queue = append(s.queue, q)
	if !s.writing {
		s.writing = true
		go s.writer()
	}
	return nil
}

// Send queues b (owned by the Conn from now on) and returns at once.
func (s *Conn) Send(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.enqueue(&writeReq{bufs: [][]byte{b}})
}

// SendWait queues bufs and waits until they are flushed, returning the
// write error. timeout, when positive, is the write deadline for them.
// bufs must not change until SendWait returns.
func (s *Conn) SendWait(timeout time.Duration, bufs ...[]byte) error {
	done := make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	err := s.enqueue(&writeReq{bufs: bufs, timeout: timeout, done: done})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return <-done
}

// WriteHeader writes our stream header (with an XML declaration) and waits
// for it to be flushed.
func (s *Conn) WriteHeader(from, to, id string) error {
	done := make(chan error, 1)
	s.mu.Lock()
	err := s.enqueue(&writeReq{bufs: [][]byte{AppendHeader(nil, from, to, id)}, done: done})
	if err == nil {
		s.headerSent = true
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return <-done
}

// Close ends our side of the stream: </stream:stream> once (write
// deadline 5 s), waiting for it to be flushed. The connection stays open
// (the peer may answer); Abort closes it.
func (s *Conn) Close() error {
	done := make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.enqueue(&writeReq{bufs: [][]byte{[]byte("</stream:stream>")}, timeout: closeTimeout, done: done})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return <-done
}

// Fail sends the stream error e (after our header, from and to, if none
// was sent on this stream), closes the stream and the connection.
func (s *Conn) Fail(e *Error, from, to string) {
	done := make(chan error, 1)
	s.mu.Lock()
	if s.closed || s.aborted {
		s.mu.Unlock()
		s.Abort()
		return
	}
	s.closed = true
	// A writer blocked on a peer that does not read gives up in time.
	s.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
	var b []byte
	if !s.headerSent {
		b = AppendHeader(b, from, to, s.streamID)
		s.headerSent = true
	}
	b = e.Append(b)
	b = append(b, "</stream:stream>"...)
	err := s.enqueue(&writeReq{bufs: [][]byte{b}, timeout: closeTimeout, done: done})
	s.mu.Unlock()
	if err == nil {
		<-done
	}
	s.Abort()
}

// Abort closes the connection and stops the writer; what is still queued
// is dropped.
func (s *Conn) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abortLocked()
}

func (s *Conn) abortLocked() {
	if s.aborted {
		return
	}
	s.aborted = true
	s.closed = true
	s.conn.Close()
}

// Closed reports whether our side of the stream is closed.
func (s *Conn) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ReadHeader reads the peer's stream header within timeout and checks its
// namespaces (CheckHeader).
func (s *Conn) ReadHeader(timeout time.Duration) (xmlstream.Header, error) {
	s.NetConn().SetReadDeadline(time.Now().Add(timeout))
	h, err := s.r.ReadHeader()
	if err != nil {
		return h, err
	}
	if err := CheckHeader(h); err != nil {
		return h, err
	}
	s.mu.Lock()
	s.peer = h
	s.mu.Unlock()
	return h, nil
}

// Next reads the next top-level element; timeout 0 means no deadline.
func (s *Conn) Next(timeout time.Duration) (xmlstream.Element, error) {
	c := s.NetConn()
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
	} else {
		c.SetReadDeadline(time.Time{})
	}
	return s.r.Next()
}

// IdleAfter is how long Await waits before the stream counts as idle: its
// scanner then drops its read buffer and string arena (about 6 KiB) until
// the peer sends again (xmlstream.Reader.AwaitIdle).
const IdleAfter = 2 * time.Second

// Await waits until the peer has sent something (or the connection
// failed, or timeout passed: 0 means no deadline) without reading an
// element: NextAwaited reads it, within the same deadline, or returns the
// error. A reader that waits here between elements holds little stack
// while the stream is idle (see xmlstream.Reader.Await), and once the
// stream has been quiet for IdleAfter, no read buffer either, and it
// waits on the socket itself, with a stack the runtime can shrink to half.
//
// It reports whether the stream went idle meanwhile (its read buffer was
// let go): the caller may then let go of its own per-element state too.
func (s *Conn) Await(timeout time.Duration) (wentIdle bool) {
	c := s.NetConn()
	start := time.Now()
	deadline := time.Time{}
	if timeout > 0 {
		deadline = start.Add(timeout)
	}
	if timeout <= 0 || timeout > s.idleAfter {
		c.SetReadDeadline(start.Add(s.idleAfter))
		if !s.r.AwaitIdle() {
			// Something came (or the connection failed): the element is
			// read within the whole timeout, counted from the start.
			c.SetReadDeadline(deadline)
			return false
		}
		// Idle: nothing is buffered above the socket (see awaitReadable),
		// so the wait goes on there, in few frames of stack.
		c.SetReadDeadline(deadline)
		awaitReadable(c)
		wentIdle = true
	}
	c.SetReadDeadline(deadline)
	s.r.Await()
	return wentIdle
}

// NextAwaited reads the next top-level element after Await, within the
// deadline Await set (one deadline for the wait and the element, as Next
// sets; not set again per element on the hot path).
func (s *Conn) NextAwaited() (xmlstream.Element, error) { return s.r.Next() }

// Restart prepares for a new stream on the same connection (after SASL or
// TLS): the scanner forgets the old stream, our next header is due.
func (s *Conn) Restart() {
	s.r.Restart()
	s.mu.Lock()
	s.headerSent = false
	s.mu.Unlock()
}

// StartTLS upgrades the connection after <starttls/> (server) or
// <proceed/> (client): it refuses when the scanner holds bytes past that
// element (policy-violation), flushes what is queued, runs the handshake
// within ctx while the writer waits, and swaps the connection under the
// writer and the scanner. The stream restarts.
func (s *Conn) StartTLS(ctx context.Context, cfg *tls.Config, client bool) error {
	if s.r.Buffered() != 0 {
		what := "<starttls/>"
		if client {
			what = "<proceed/>"
		}
		return &Error{Condition: PolicyViolation, Text: "data after " + what + " before the TLS handshake"}
	}
	done, resume := make(chan error, 1), make(chan net.Conn, 1)
	s.mu.Lock()
	err := s.enqueue(&writeReq{done: done, pause: resume})
	raw := s.conn
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := <-done; err != nil {
		resume <- nil
		return err
	}
	var tc *tls.Conn
	if client {
		tc = tls.Client(raw, cfg)
	} else {
		tc = tls.Server(raw, cfg)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		resume <- nil
		return err
	}
	st := tc.ConnectionState()
	s.r.Reset(tc)
	s.mu.Lock()
	s.conn, s.tls, s.headerSent = tc, &st, false
	s.mu.Unlock()
	resume <- tc
	return nil
}

// NetConn is the current connection (plain or TLS), for deadlines and
// addresses.
func (s *Conn) NetConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// RemoteAddr is the peer's address.
func (s *Conn) RemoteAddr() net.Addr { return s.NetConn().RemoteAddr() }

// TLS is the TLS state, nil before TLS.
func (s *Conn) TLS() *tls.ConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tls
}

// TLSVersion is the name of the TLS version, "" before TLS.
func (s *Conn) TLSVersion() string {
	if st := s.TLS(); st != nil {
		return tls.VersionName(st.Version)
	}
	return ""
}

// Buffered is how many bytes the scanner holds that it has not parsed.
func (s *Conn) Buffered() int { return s.r.Buffered() }

// Peer is the peer's current stream header.
func (s *Conn) Peer() xmlstream.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// StreamID is the id of the current stream (ours when receiving, the
// peer's when initiating).
func (s *Conn) StreamID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streamID
}

// SetStreamID sets the id of the current stream.
func (s *Conn) SetStreamID(id string) {
	s.mu.Lock()
	s.streamID = id
	s.mu.Unlock()
}
