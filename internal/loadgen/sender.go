package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Authentication methods of the sending streams.
const (
	AuthDialback = "dialback"
	AuthExternal = "external"
)

// initHost is the s2s.Initiator of the sending streams.
type initHost struct {
	tls      *tls.Config // nil: no STARTTLS
	external bool        // SASL EXTERNAL with tls.Certificates
	secret   string
	timeout  time.Duration
}

func (h *initHost) UseTLS() (bool, bool) { return h.tls != nil, h.external }
func (h *initHost) ClientTLS(_, to string) *tls.Config {
	c := h.tls.Clone()
	c.ServerName = to
	return c
}
func (h *initHost) TLSDone(context.Context, *s2s.Stream, error) {}
func (h *initHost) HaveClientCert(string) bool                  { return h.external }

// SASLRefused: with -auth external, a refusal ends the stream rather
// than falling back to dialback (the run would measure something else).
func (h *initHost) SASLRefused(string) bool        { return false }
func (h *initHost) DialbackSecret() string         { return h.secret }
func (h *initHost) DialbackTimeout() time.Duration { return h.timeout }
func (h *initHost) DialbackResult(string)          {}

// sendStream is one authenticated stream from a fake domain to the
// target domain.
type sendStream struct {
	idx  int
	from string
	to   string
	conn *stream.Conn
	st   *s2s.Stream
	auth string // how it authenticated
	done chan struct{}
	err  atomic.Pointer[error] // how the peer ended it, if it did
}

// dialTarget connects to the target: addr when given, else the SRV
// targets of domain (XEP-0368 direct TLS ones with a TLS handshake, ALPN
// xmpp-server) in order.
func dialTarget(ctx context.Context, addr, domain string, res *resolve.Resolver, tlsConf *tls.Config) (net.Conn, error) {
	var d net.Dialer
	if addr != "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	targets, err := res.LookupS2S(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", domain, err)
	}
	var errs []error
	for _, t := range targets {
		addrs, err := res.LookupHost(ctx, t.Host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ip := range addrs {
			c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, t.Port).String())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !t.DirectTLS {
				return c, nil
			}
			if tlsConf == nil {
				c.Close()
				errs = append(errs, fmt.Errorf("%s:%d is a direct TLS target and TLS is off", t.Host, t.Port))
				continue
			}
			conf := tlsConf.Clone()
			conf.ServerName, conf.NextProtos = domain, []string{"xmpp-server"}
			tc := tls.Client(c, conf)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				errs = append(errs, fmt.Errorf("TLS with %s:%d: %w", t.Host, t.Port, err))
				continue
			}
			return tc, nil
		}
	}
	return nil, fmt.Errorf("connect to %s: %w", domain, errors.Join(errs...))
}

// openStream connects, negotiates and authenticates one sending stream.
func openStream(ctx context.Context, conn net.Conn, host *initHost, idx int, from, to string) (*sendStream, error) {
	sc := stream.NewConn(conn, stream.Options{WriteBuffer: stream.OutgoingWriteBuffer})
	st, err := s2s.Open(ctx, sc, host, from, to)
	if err != nil {
		sc.Abort()
		return nil, fmt.Errorf("stream %d (%s → %s): %w", idx, from, to, err)
	}
	if err := st.Authenticate(ctx); err != nil {
		sc.Abort()
		return nil, fmt.Errorf("stream %d (%s → %s): %w", idx, from, to, err)
	}
	sc.NetConn().SetDeadline(time.Time{})
	return &sendStream{idx: idx, from: from, to: to, conn: sc, st: st, auth: st.Auth(), done: make(chan struct{})}, nil
}

// read reads what the target sends on the stream until it ends: stanzas
// (none are expected) go to onStanza.
func (s *sendStream) read(onStanza func(el *xmlstream.Element)) {
	defer close(s.done)
	for {
		el, err := s.conn.Next(0)
		if err != nil {
			if !errors.Is(err, xmlstream.ErrStreamEnd) && !s.conn.Closed() {
				s.err.Store(&err)
			}
			return
		}
		switch {
		case stream.IsError(&el):
			pe := stream.ParsePeerError(el.Raw, s.conn.Peer().Namespaces)
			var e error = fmt.Errorf("stream %d: the target ended it: %w", s.idx, pe)
			s.err.Store(&e)
			return
		case el.Local == "message" || el.Local == "presence" || el.Local == "iq":
			onStanza(&el)
		}
	}
}

// failure is how the target ended the stream, or nil.
func (s *sendStream) failure() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// close ends the stream and waits (within a bound) for the target to
// close its side.
func (s *sendStream) close() {
	s.conn.Close()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
	s.conn.Abort()
}

// plan is what one stream sends: sequence numbers first, first+step, …
// below count (0: no bound) until end, at rate stanzas/s (0: as fast as
// the target takes them), in writes of at most batch stanzas.
type plan struct {
	first, step, count uint64
	end                time.Time
	rate               float64
	batch              int
	size               int
	mix                Mix
	run                string
	recipients         []string
	senders            uint64 // distinct sending users (0: one, "load")
}

// sender is the from of stanza seq on stream idx of domain: load@domain,
// or with senders, load<seq mod senders>@domain, each with the stream's
// resource.
func (p *plan) sender(b []byte, domain string, idx int, seq uint64) []byte {
	b = append(b, "load"...)
	if p.senders > 0 {
		b = strconv.AppendUint(b, seq%p.senders, 10)
	}
	b = append(b, '@')
	b = append(b, domain...)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(idx), 10)
}

// sendResult is what one stream sent.
type sendResult struct {
	sent   [3]uint64 // by kind
	first  time.Duration
	last   time.Duration
	err    error
	failed bool
}

// send runs p on the stream; sent is added to as stanzas are flushed.
func (s *sendStream) send(ctx context.Context, p plan, rec *recorder, sent *atomic.Uint64) sendResult {
	var res sendResult
	var from []byte
	bufs := make([][]byte, p.batch)
	start := time.Now()
	seq := p.first
	var k uint64 // stanzas sent on this stream
	for {
		if ctx.Err() != nil || (p.count > 0 && seq >= p.count) || !time.Now().Before(p.end) {
			return res
		}
		n := p.batch
		if p.rate > 0 {
			due := uint64(time.Since(start).Seconds()*p.rate) + 1
			if due <= k {
				wait := time.Until(start.Add(time.Duration(float64(k) / p.rate * float64(time.Second))))
				t := time.NewTimer(min(wait, time.Until(p.end)))
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			n = int(min(due-k, uint64(p.batch)))
		}
		if p.count > 0 {
			n = int(min(uint64(n), (p.count-seq+p.step-1)/p.step))
		}
		var kinds [3]uint64
		for i := 0; i < n; i++ {
			kind := p.mix.Kind(seq)
			st := Stamp{Run: p.run, Seq: seq, Sent: rec.now()}
			var id [48]byte
			from = p.sender(from[:0], s.from, s.idx, seq)
			b := AppendStanza(bufs[i][:0], kind, string(from), p.recipients[seq%uint64(len(p.recipients))], string(AppendID(id[:0], st)), p.size)
			bufs[i] = b
			if k == 0 && i == 0 {
				res.first = st.Sent
			}
			kinds[kind]++
			seq += p.step
		}
		if err := s.conn.SendWait(30*time.Second, bufs[:n]...); err != nil {
			res.err = fmt.Errorf("stream %d: send: %w", s.idx, err)
			if f := s.failure(); f != nil {
				res.err = f
			}
			res.failed = true
			return res
		}
		res.last = rec.now()
		for i, c := range kinds {
			res.sent[i] += c
		}
		k += uint64(n)
		sent.Add(uint64(n))
	}
}
