package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// listener is the tool's s2s server: the authoritative server of the fake
// domains (db:verify answered with the run's secret) and, in s2s receiving
// mode, the server of the receiving domain. Every stanza it reads goes to
// onStanza.
type listener struct {
	ln       net.Listener
	domains  map[string]bool // the domains it serves
	issuers  map[string]bool // the domains whose dialback keys it issued
	secret   string
	tls      *tls.Config // nil: no STARTTLS
	onStanza func(el *xmlstream.Element)
	log      *slog.Logger

	wg       sync.WaitGroup
	streams  atomic.Int64 // streams accepted
	verified atomic.Int64 // db:verify answered valid
	refused  atomic.Int64 // db:verify answered invalid

	mu    sync.Mutex
	conns map[*stream.Conn]struct{}
}

// listen opens the listener on addr; serve runs it.
func listen(addr string, l *listener) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l.ln = ln
	l.conns = make(map[*stream.Conn]struct{})
	return l, nil
}

// serve accepts until ctx ends or the listener is closed.
func (l *listener) serve(ctx context.Context) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.streams.Add(1)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.handle(ctx, c)
		}()
	}
}

// close stops accepting, ends every stream and waits for them.
func (l *listener) close() {
	l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
		c.Abort()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *listener) handle(ctx context.Context, c net.Conn) {
	sc := stream.NewConn(c, stream.Options{})
	l.mu.Lock()
	l.conns[sc] = struct{}{}
	l.mu.Unlock()
	h := &recvHost{l: l, pairs: make(map[s2s.Pair]bool)}
	err := s2s.Receive(ctx, sc, h)
	if se := stream.ToError(err); se != nil {
		l.log.Debug("incoming stream failed", "remote", c.RemoteAddr().String(), "error", err)
		sc.Fail(se, "", "")
	} else if err != nil && !errors.Is(err, xmlstream.ErrStreamEnd) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		l.log.Debug("incoming stream ended", "remote", c.RemoteAddr().String(), "error", err)
	}
	h.wg.Wait()
	sc.Close()
	sc.Abort()
	l.mu.Lock()
	delete(l.conns, sc)
	l.mu.Unlock()
}

// recvHost is the s2s.Receiver of one incoming stream.
type recvHost struct {
	l *listener

	mu    sync.Mutex
	pairs map[s2s.Pair]bool // authenticated on this stream
	wg    sync.WaitGroup
}

func (h *recvHost) Accept(s *s2s.Stream) error {
	if !h.l.domains[s.To()] {
		return &stream.Error{Condition: stream.HostUnknown, Text: "not a domain of this load generator"}
	}
	return nil
}
func (h *recvHost) RequireTLS() bool                    { return false }
func (h *recvHost) HeaderTimeout() time.Duration        { return s2s.HeaderTimeout }
func (h *recvHost) ReadTimeout() (time.Duration, error) { return 0, nil }
func (h *recvHost) Stanza(el *xmlstream.Element, t s2s.Ticket) error {
	h.l.onStanza(el)
	t.Done()
	return nil
}
func (h *recvHost) StreamManagement(*s2s.Stream) bool { return false }
func (h *recvHost) OfferBidi(*s2s.Stream) bool        { return false }
func (h *recvHost) BidiRequested(*s2s.Stream)         {}
func (h *recvHost) OfferTLS(string) bool              { return h.l.tls != nil }
func (h *recvHost) ServerTLS(string) *tls.Config      { return h.l.tls }
func (h *recvHost) TLSDone(error)                     {}

// CertificateValid: any client certificate is taken (the tool measures,
// it authenticates nobody).
func (h *recvHost) CertificateValid(s *s2s.Stream) bool {
	st := s.Conn.TLS()
	return st != nil && len(st.PeerCertificates) > 0
}
func (h *recvHost) MayOriginate(string, string) bool { return true }
func (h *recvHost) AuthenticateSASL(from, to string) error {
	h.record(s2s.Pair{From: from, To: to})
	return nil
}
func (h *recvHost) Sides(_, recv string) (bool, bool) { return true, h.l.domains[recv] }
func (h *recvHost) Authenticated(p s2s.Pair) (bool, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pairs[p], len(h.pairs) > 0
}
func (h *recvHost) AcquireVerification() bool { return true }
func (h *recvHost) ReleaseVerification()      {}
func (h *recvHost) AuthorizeDialback(p s2s.Pair, _ bool) (func(bool, bool, error), error) {
	return func(valid, _ bool, err error) {
		if valid && err == nil {
			h.record(p)
		}
	}, nil
}

// DialbackCertificate and DialbackDANE: no XEP-0344 short-cut, every key
// goes through VerifyKey (which takes it).
func (h *recvHost) DialbackCertificate(*s2s.Stream, s2s.Pair) bool           { return false }
func (h *recvHost) DialbackDANE(context.Context, *s2s.Stream, s2s.Pair) bool { return false }

// VerifyKey takes every key: see CertificateValid.
func (h *recvHost) VerifyKey(context.Context, s2s.Pair, string, string) (bool, error) {
	return true, nil
}
func (h *recvHost) DialbackCondition(error) stanza.Condition { return stanza.RemoteServerTimeout }
func (h *recvHost) Go(f func()) {
	h.wg.Add(1)
	go func() { defer h.wg.Done(); f() }()
}
func (h *recvHost) IssuesKeysFor(orig string) bool { return h.l.issuers[orig] }
func (h *recvHost) DialbackSecret() string         { return h.l.secret }
func (h *recvHost) DialbackAnswered(orig, recv, typ string) {
	if typ == "valid" {
		h.l.verified.Add(1)
	} else {
		h.l.refused.Add(1)
		h.l.log.Warn("refused a dialback key", "originating", orig, "receiving", recv)
	}
}

func (h *recvHost) record(p s2s.Pair) {
	h.mu.Lock()
	h.pairs[p] = true
	h.mu.Unlock()
}
