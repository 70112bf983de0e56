package edge

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// streamConn is one TCP connection carrying an XML stream in one role. It
// owns the read buffer (the scanner never reads past what it buffers, so the
// STARTTLS rule can be enforced) and a buffered writer guarded by a mutex, so
// that dialback answers produced by other goroutines can share the stream.
type streamConn struct {
	conn net.Conn
	r    *xmlstream.Reader

	wmu        sync.Mutex
	w          *bufio.Writer
	headerSent bool // our stream header is on the wire for the current stream
	closed     bool // our </stream:stream> is on the wire

	peer     xmlstream.Header // the peer's current stream header
	streamID string           // the id of the current stream (ours when receiving, the peer's when initiating)
	tls      *tls.ConnectionState
}

// Write buffer sizes: an outgoing stream carries the relayed stanzas, in
// batches; an incoming one only answers (dialback results, errors), and
// many of them sit idle: keep those small.
const (
	outgoingWriteBuffer = 32 << 10
	incomingWriteBuffer = 2 << 10
)

func newStreamConn(c net.Conn, lim xmlstream.Limits, writeBuffer int) *streamConn {
	return &streamConn{
		conn: c,
		r:    xmlstream.NewReader(c, lim),
		w:    bufio.NewWriterSize(c, writeBuffer),
	}
}

// writeRaw writes b and flushes.
func (s *streamConn) writeRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return errStreamClosed
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.w.Flush()
}

var errStreamClosed = errors.New("stream already closed")

// writeHeader writes our stream header (and an XML declaration).
func (s *streamConn) writeHeader(from, to, id string) error {
	b := appendHeader(nil, from, to, id)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	s.headerSent = true
	return s.w.Flush()
}

// closeStream writes </stream:stream> once.
func (s *streamConn) closeStream() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.w.WriteString("</stream:stream>"); err != nil {
		return err
	}
	return s.w.Flush()
}

// streamError sends a stream error (after our header, if none was sent
// yet), closes the stream and the connection. from/to are used only for a
// header that still has to be sent.
func (s *streamConn) streamError(e *StreamError, from, to string) {
	s.wmu.Lock()
	if !s.closed {
		s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if !s.headerSent {
			s.w.Write(appendHeader(nil, from, to, s.streamID))
			s.headerSent = true
		}
		s.w.Write(e.append(nil))
		s.w.WriteString("</stream:stream>")
		s.w.Flush()
		s.closed = true
	}
	s.wmu.Unlock()
	s.conn.Close()
}

// upgradeTLS replaces the connection by tc after a successful handshake.
// The caller has checked that nothing was buffered past <proceed/> or
// <starttls/>. conn and tls change under wmu: other goroutines read them
// through connection() and tlsVersion().
func (s *streamConn) upgradeTLS(tc *tls.Conn) {
	st := tc.ConnectionState()
	s.r.Reset(tc)
	s.wmu.Lock()
	s.tls = &st
	s.conn = tc
	s.w.Reset(tc)
	s.headerSent = false
	s.wmu.Unlock()
}

// connection returns the current connection (plain or TLS), for use from
// goroutines other than the stream's reader.
func (s *streamConn) connection() net.Conn {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.conn
}

// setStreamID sets the id of the current stream (read by streamError from
// other goroutines).
func (s *streamConn) setStreamID(id string) {
	s.wmu.Lock()
	s.streamID = id
	s.wmu.Unlock()
}

// restart prepares for a new stream on the same connection (after SASL).
func (s *streamConn) restart() {
	s.r.Restart()
	s.wmu.Lock()
	s.headerSent = false
	s.wmu.Unlock()
}

// next reads the next top-level element, with a read deadline.
func (s *streamConn) next(timeout time.Duration) (xmlstream.Element, error) {
	if timeout > 0 {
		s.conn.SetReadDeadline(time.Now().Add(timeout))
	} else {
		s.conn.SetReadDeadline(time.Time{})
	}
	return s.r.Next()
}

// readHeader reads the peer's stream header, with a read deadline, and
// checks the namespaces every s2s stream must use.
func (s *streamConn) readHeader(timeout time.Duration) (xmlstream.Header, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	h, err := s.r.ReadHeader()
	if err != nil {
		return h, err
	}
	if h.Local != "stream" || h.Space != xmlstream.NSStream {
		return h, &StreamError{Condition: "invalid-namespace", Text: "the stream element must be <stream xmlns='http://etherx.jabber.org/streams'>"}
	}
	if h.Namespaces[""] != xmlstream.NSServer {
		return h, &StreamError{Condition: "invalid-namespace", Text: "the content namespace of a server-to-server stream must be jabber:server"}
	}
	if db, ok := h.Namespaces["db"]; ok && db != xmlstream.NSDialback {
		return h, &StreamError{Condition: "invalid-namespace", Text: "the db prefix must be bound to jabber:server:dialback"}
	}
	s.peer = h
	return h, nil
}

func (s *streamConn) tlsVersion() string {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.tls == nil {
		return ""
	}
	return tls.VersionName(s.tls.Version)
}

// StreamError is an RFC 6120 §4.9 stream error that we send.
type StreamError struct {
	Condition string // defined condition in urn:ietf:params:xml:ns:xmpp-streams
	App       string // application condition in urn:xmpp:errors, optional
	Text      string
}

func (e *StreamError) Error() string {
	if e.Text == "" {
		return "stream error " + e.Condition
	}
	return fmt.Sprintf("stream error %s: %s", e.Condition, e.Text)
}

func (e *StreamError) append(b []byte) []byte {
	b = append(b, "<stream:error><"...)
	b = append(b, e.Condition...)
	b = append(b, " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"...)
	if e.Text != "" {
		b = append(b, "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"...)
		b = xmlstream.AppendEscapedText(b, e.Text)
		b = append(b, "</text>"...)
	}
	if e.App != "" {
		b = append(b, '<')
		b = append(b, e.App...)
		b = append(b, " xmlns='urn:xmpp:errors'/>"...)
	}
	return append(b, "</stream:error>"...)
}

// asStreamError converts scanner errors and our own into the stream error
// to send, or nil when the connection just ended (EOF, reset, timeout).
func asStreamError(err error) *StreamError {
	var se *StreamError
	if errors.As(err, &se) {
		return se
	}
	var xe *xmlstream.StreamError
	if errors.As(err, &xe) {
		return &StreamError{Condition: xe.Condition, App: xe.App, Text: xe.Text}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &StreamError{Condition: "connection-timeout"}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return nil
}

func appendHeader(b []byte, from, to, id string) []byte {
	b = append(b, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0'"...)
	if from != "" {
		b = append(b, " from='"...)
		b = xmlstream.AppendEscapedAttr(b, from)
		b = append(b, '\'')
	}
	if to != "" {
		b = append(b, " to='"...)
		b = xmlstream.AppendEscapedAttr(b, to)
		b = append(b, '\'')
	}
	if id != "" {
		b = append(b, " id='"...)
		b = xmlstream.AppendEscapedAttr(b, id)
		b = append(b, '\'')
	}
	return append(b, '>')
}
