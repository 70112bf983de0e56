package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// routeKey names one outgoing stream: the leg it goes to and the domain
// pair it was authenticated for.
type routeKey struct {
	leg      Leg
	from, to string
}

// Router owns the outgoing streams: one per (leg, from-domain, to-domain),
// set up on first use and reused.
type Router struct {
	routerDeps
	sessions *registry[routeKey, *outSession]
	buffers  *forwardBuffers // what stanzas are forwarded from, back once flushed
}

// routerDeps are what the router and its outgoing streams use of the node.
type routerDeps struct {
	ctx         context.Context // ends when the gateway stops
	bg          *sync.WaitGroup // counts the outgoing sessions' goroutines
	log         *slog.Logger
	m           *metrics.Metrics // nil-safe
	rec         recorder         // audit records; rec.sink.WaitDurable before writing
	limits      func() *Limits
	sessionPath sessionHandler // outbound decisions and re-checks
	dialer      streamDialer
	newID       func(prefix string) string
	// bidi finds an incoming stream that carries key's stanzas too
	// (XEP-0288); nil, or returning nil: dial.
	bidi func(key routeKey) *bidiStream
	// reverse authorises (and audits) the reverse pair of an outgoing
	// stream we ask to use both ways, and returns the receiving side that
	// takes the stanzas the server sends on it; an error: do not ask.
	reverse func(os *outStream, id string) (*inSession, error)
	posture *postureWatch // the partners' postures (posture.go)
}

// bidiStream is an incoming stream its peer uses both ways (XEP-0288):
// an outgoing direction writes on it instead of dialing.
type bidiStream struct {
	os    *outStream      // its conn, with the pair's auth and the peer certificate
	owner string          // the incoming session's id
	gone  <-chan struct{} // closed when the incoming stream has ended
}

// streamDialer sets up outgoing streams: dial connects and negotiates up
// to authentication (running ready on the stream), authenticate
// authenticates the stream's domain pair.
type streamDialer interface {
	dial(ctx context.Context, leg Leg, from, to string, ready readyFunc) (*outStream, error)
	authenticate(ctx context.Context, os *outStream) error
	// bidiPossible reports whether the server may be asked to use the
	// stream both ways (XEP-0288); ask by setting os.bidi before
	// authenticate.
	bidiPossible(os *outStream) bool
}

func newRouter(deps routerDeps) *Router {
	return &Router{routerDeps: deps, sessions: newRegistry[routeKey, *outSession](), buffers: &forwardBuffers{}}
}

var (
	errSessionClosed = errors.New("outgoing stream closed")
	errQueueFull     = errors.New("queue full")
)

// maxQueueBytes bounds the bytes waiting in one outgoing queue (with
// limits.queue_size stanzas of up to limits.max_stanza_size each, the count
// alone would allow gigabytes).
const maxQueueBytes = 32 << 20

// queueWait bounds how long a reader waits for room in a full queue of an
// established stream (back-pressure) before the stanza is bounced.
const queueWait = 5 * time.Second

// route hands st to the outgoing stream for its domain pair on leg,
// creating the stream if needed. A stanza that cannot be queued is bounced.
func (r *Router) route(st *relayed, leg Leg) {
	key := routeKey{leg: leg, from: st.fromDomain, to: st.toDomain}
	for attempt := 0; attempt < 3; attempt++ {
		s, created := r.session(key, st)
		if s == nil {
			r.bounce(st, leg, stanza.ServiceUnavailable, "the gateway is shutting down")
			return
		}
		if created {
			return // st is the new stream's first stanza
		}
		switch err := s.enqueue(st); err {
		case nil:
			return
		case errSessionClosed:
			// It ended just now: the next attempt opens a new one. The
			// closing session may not have left the table yet: take it
			// out here, or the retries would all find it again.
			r.remove(s)
			continue
		case errQueueFull:
			r.bounce(st, leg, stanza.ResourceConstraint, "too many stanzas waiting for "+st.toDomain)
			return
		}
	}
	r.bounce(st, leg, stanza.RemoteServerTimeout, "the stream to "+st.toDomain+" keeps closing")
}

// bounce answers st, which was on its way to leg, with an error stanza to
// its sender (on the other leg). Errors are never answered.
//
// Every bounce is audited (decision "bounced", or "undeliverable" when the
// stanza is not answered).
func (r *Router) bounce(st *relayed, leg Leg, condition stanza.Condition, text string) {
	r.bounceRecorded(st, leg, condition, text, true, 0)
}

// bounceUnaudited bounces without writing a record: the audit log is what
// failed. The error stanza waits for no record: the one of the stanza it
// answers is the record that could not be stored.
func (r *Router) bounceUnaudited(st *relayed, leg Leg, condition stanza.Condition, text string) {
	r.bounceRecorded(st, leg, condition, text, false, 0)
}

// bounceAfter bounces a stanza whose refusal the caller has recorded as
// record seq: the error stanza goes out once that record is durable.
func (r *Router) bounceAfter(st *relayed, leg Leg, condition stanza.Condition, text string, seq uint64) {
	r.bounceRecorded(st, leg, condition, text, false, seq)
}

// bounceRecorded sends st's error stanza: with record, after writing the
// bounce's own record; else after the record after (0: none).
func (r *Router) bounceRecorded(st *relayed, leg Leg, condition stanza.Condition, text string, record bool, after uint64) {
	b := st.bounce(condition, text)
	decision := audit.DecisionBounced
	if b == nil {
		decision = audit.DecisionUndeliverable
		r.log.Info("undeliverable stanza dropped (errors and results are not answered)", "kind", st.kind, "type", st.typ, "from", st.from, "to", st.to, "condition", condition)
	} else {
		r.log.Info("stanza bounced", "kind", st.kind, "from", st.from, "to", st.to, "condition", condition, "text", text)
	}
	outcome := metrics.OutcomeBounced
	if b == nil {
		outcome = metrics.OutcomeUndeliverable
	}
	r.m.Stanza(string(direction(leg.other())), st.kind, outcome, string(condition))
	if record {
		rec := stanzaRecord(st, "", leg.other(), decision, string(condition)+": "+text, "", policy.AuditMeta, "")
		seq, err := r.rec.record(rec)
		if err != nil {
			r.log.Error("AUDIT LOG NOT WRITABLE: bounce not recorded", "from", st.from, "to", st.to, "err", err)
		} else if b != nil {
			b.auditSeq = seq
		}
	} else if b != nil {
		b.auditSeq = after
	}
	if b != nil {
		r.route(b, leg.other())
	} else {
		st.handled() // dropped, and recorded
	}
}

// session returns the live outgoing stream for key, or starts one with
// first already queued (created true: a stream that fails at once still
// bounces it, rather than closing before it was queued); nil once the
// router is shut down.
func (r *Router) session(key routeKey, first *relayed) (s *outSession, created bool) {
	s, created, ok := r.sessions.getOrCreate(key, func() *outSession {
		s := newOutSession(r, key)
		s.queue = append(s.queue, first)
		s.qbytes = len(first.raw)
		r.m.QueueDepth(key.leg.String(), 1)
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			s.run()
		}()
		return s
	})
	if !ok {
		return nil, false
	}
	return s, created
}

func (r *Router) remove(s *outSession) { r.sessions.remove(s.key, s) }

func (r *Router) infos() []SessionInfo {
	var out []SessionInfo
	for _, s := range r.sessions.snapshot(nil) {
		out = append(out, s.info())
	}
	return out
}

// closeByID cuts the outgoing stream with id; it reports whether it existed.
func (r *Router) closeByID(id string) bool {
	for _, s := range r.sessions.snapshot(func(_ routeKey, s *outSession) bool { return s.id == id }) {
		s.cut("closed by an administrator", "closed by an administrator")
		return true
	}
	return false
}

// recheck re-decides the outbound (outside leg) streams after a policy
// reload and closes those now refused; it returns how many it closed.
func (r *Router) recheck(cause string) int {
	closed := 0
	for _, s := range r.sessions.snapshot(nil) {
		s.mu.Lock()
		rev := s.rev
		s.mu.Unlock()
		if rev != nil && rev.recheck(cause) { // the reverse pair (XEP-0288): the stream is cut
			closed++
		}
	}
	for _, s := range r.sessions.snapshot(func(k routeKey, _ *outSession) bool { return k.leg == LegOutside }) {
		// The peer's certificate counts once the stream is established.
		c := &sessionCheck{facts: s.preConnectFacts()}
		s.mu.Lock()
		if os := s.os; os != nil {
			c.cert = certStateOf(os.verdict != nil && os.verdict.Valid)
		}
		s.mu.Unlock()
		r.sessionPath.handle(r.ctx, c) // without a record it cannot fail
		d := c.decision
		if d.Allow {
			continue
		}
		s.log.Warn("outgoing stream no longer allowed by the policy: closing", "reason", d.Reason, "policy_revision", d.Revision)
		s.cut(cause+" (revision "+d.Revision+"): "+d.Reason, d.Reason)
		closed++
	}
	return closed
}

// shutdown flushes every outgoing queue, closes the streams and waits for
// them (or ctx).
func (r *Router) shutdown(ctx context.Context) error {
	ss := r.sessions.close()
	for _, s := range ss {
		s.drain()
	}
	for _, s := range ss {
		select {
		case <-s.done:
		case <-ctx.Done():
			r.closeAll()
			return ctx.Err()
		}
	}
	return nil
}

// closeAll drops every outgoing connection at once.
func (r *Router) closeAll() {
	for _, s := range r.sessions.close() {
		s.abort()
	}
}

// outSession is an outgoing stream we initiated, with its queue.
type outSession struct {
	r       *Router
	key     routeKey
	id      string
	log     *slog.Logger
	started time.Time

	mu       sync.Mutex
	queue    []*relayed
	qbytes   int           // bytes of the stanzas in queue
	closed   bool          // no more stanzas accepted
	ready    bool          // authenticated; stanzas are being written
	draining bool          // shutdown: flush, then close
	cutWhy   string        // why we cut the stream ourselves (policy reload, administrator)
	space    chan struct{} // closed (and replaced) whenever the writer takes the queue
	os       *outStream
	over     string       // the incoming session whose stream it writes on (XEP-0288); "" its own
	rev      *inSession   // the receiving side of our stream, when the server uses it both ways (XEP-0288)
	lastRead atomic.Int64 // unix nanoseconds of the last stanza the server sent on it (keeps it from idling)

	notify  chan struct{} // wakes the writer (capacity 1)
	done    chan struct{} // closed when the session has ended
	stanzas atomic.Uint64
}

func newOutSession(r *Router, key routeKey) *outSession {
	id := r.newID("out-")
	return &outSession{
		r: r, key: key, id: id,
		log:     r.log.With("session", id, "leg", key.leg.String(), "role", "outgoing", "from_domain", key.from, "to_domain", key.to),
		started: time.Now(),
		space:   make(chan struct{}),
		notify:  make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

func (s *outSession) info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := SessionInfo{
		ID: s.id, Leg: s.key.leg.String(), Role: "outgoing",
		Local: []string{s.key.from}, Remote: []string{s.key.to},
		Stanzas: s.stanzas.Load(), Started: s.started,
	}
	if s.key.leg == LegInside {
		in.Local, in.Remote = in.Remote, in.Local
	}
	in.Over = s.over
	in.Bidi = s.rev != nil
	if s.os != nil {
		in.RemoteAddr = s.os.sc.RemoteAddr().String()
		in.TLSVersion = s.os.sc.TLSVersion()
		in.Auth = s.os.auth
		if s.os.verdict != nil {
			in.PeerCert = verdictString(*s.os.verdict)
		}
	}
	return in
}

func (s *outSession) enqueue(st *relayed) error {
	deadline := time.Now().Add(queueWait)
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return errSessionClosed
		}
		if len(s.queue) < s.r.limits().QueueSize && s.qbytes+len(st.raw) <= maxQueueBytes {
			break
		}
		if !s.ready {
			s.mu.Unlock()
			return errQueueFull
		}
		// Established but the peer reads slower than we receive: wait for
		// the writer (back-pressure on the sending stream), within a bound.
		wait := s.space
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wait:
			t.Stop()
		case <-t.C:
			return errQueueFull
		}
		s.mu.Lock()
	}
	s.queue = append(s.queue, st)
	s.qbytes += len(st.raw)
	s.mu.Unlock()
	s.r.m.QueueDepth(s.key.leg.String(), 1)
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// drain asks the session to write what it has queued and close.
func (s *outSession) drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// cut closes the stream at once with a policy-violation stream error; what
// waits in the queue is bounced by the writer when it sees the peer gone.
func (s *outSession) cut(why, text string) {
	s.mu.Lock()
	s.closed = true
	s.cutWhy = why
	os := s.os
	s.mu.Unlock()
	s.r.remove(s)
	if os != nil {
		os.sc.Fail(&stream.Error{Condition: stream.PolicyViolation, Text: text}, "", "")
	}
}

func (s *outSession) abort() {
	s.mu.Lock()
	s.closed = true
	os := s.os
	s.mu.Unlock()
	if os != nil {
		os.sc.Abort()
	}
}

// takeQueue closes the session to new stanzas and returns what waited.
func (s *outSession) closeAndTake() []*relayed {
	s.mu.Lock()
	s.closed = true
	q := s.queue
	s.queue, s.qbytes = nil, 0
	s.r.m.QueueDepth(s.key.leg.String(), -len(q))
	close(s.space)
	s.space = make(chan struct{})
	s.mu.Unlock()
	s.r.remove(s)
	return q
}

func (s *outSession) run() {
	defer close(s.done)
	g := s.r
	g.m.SessionAttempt(s.key.leg.String(), metrics.RoleOutgoing)
	// Outbound: the policy decides before we connect; the outside
	// connection's facts are checked against its require list after.
	var decision policy.SessionDecision
	if s.key.leg == LegOutside {
		d, ok := decideSession(g.ctx, g.sessionPath, s.preConnectFacts(), false)
		if !ok {
			s.failAll(stanza.PolicyViolation, d.Reason, fmt.Errorf("refused by policy: %s", d.Reason))
			return
		}
		decision = d
	}
	if g.bidi != nil {
		if b := g.bidi(s.key); b != nil && (!decision.RequiresCertificate() || b.os.verdict != nil && b.os.verdict.Valid) {
			s.runOver(b, decision)
			return
		}
	}
	// Connect, negotiate and authenticate within connect_timeout; a server
	// whose certificate the policy refuses, or that refuses us, is
	// skipped for the next one the SRV records name.
	ctx, cancel := context.WithTimeout(g.ctx, g.limits().ConnectTimeout)
	os, err := g.dialer.dial(ctx, s.key.leg, s.key.from, s.key.to, func(ctx context.Context, os *outStream) error {
		if decision.RequiresCertificate() && (os.verdict == nil || !os.verdict.Valid) {
			reason := "no TLS"
			if os.verdict != nil {
				reason = os.verdict.Reason
			}
			return &dialError{stage: stageCertificate, connected: true, opened: true,
				err: fmt.Errorf("the policy requires a valid certificate from %s: %s", s.key.to, reason)}
		}
		os.requireCert = decision.RequiresCertificate()
		s.askBidi(os)
		return g.dialer.authenticate(ctx, os)
	})
	cancel()
	if err != nil {
		s.dropReverse()
		cond, text := stanza.RemoteServerNotFound, "xmppedge could not reach "+s.key.to
		var de *dialError
		if errors.As(err, &de) {
			cond = de.condition()
			if cond == stanza.PolicyViolation {
				text = de.reason().Error()
			}
		}
		s.failAll(cond, text, err)
		return
	}
	if !s.postureAllowed(os, decision) {
		return
	}
	// A session record that cannot be written is logged loudly but does
	// not stop the stream: every stanza on it is recorded (or refused) on
	// its own, and the stream may be carrying bounces to our own users.
	auditSession(g.rec, g.log, sessionRecord(audit.EventSessionOpen, s.id, s.key.leg, s.facts(os), os.sc.RemoteAddr().String(), audit.DecisionAllow, os.fallback, decision.Revision))
	if s.key.leg == LegOutside {
		g.posture.observe(s.id, s.facts(os), os.sc.RemoteAddr().String(), isDANE(os.verdict))
	}
	if !os.bidi {
		s.dropReverse() // the server did not take the offer: nothing comes back
	}
	s.mu.Lock()
	s.os = os
	s.ready = true
	aborted := s.closed
	rev := s.rev
	s.mu.Unlock()
	g.m.SessionOpened(s.key.leg.String(), metrics.RoleOutgoing, os.auth)
	defer g.m.SessionClosed(s.key.leg.String(), metrics.RoleOutgoing, os.auth)
	if rev != nil {
		rev.peerNS = os.sc.Peer().Namespaces // the header after authentication
		rev.markOpened(rev.pairMethod(os.to, os.from))
		defer rev.closed("the outgoing stream it came on ended")
		defer rev.cancel()
	}
	if aborted {
		// Cut (policy reload, administrator) while it was being set up:
		// what waited is bounced, not lost.
		os.sc.Abort()
		s.mu.Lock()
		why := s.cutWhy
		s.mu.Unlock()
		s.failAll(stanza.PolicyViolation, why, errors.New("closed while connecting: "+why))
		return
	}
	s.log.Info("outgoing stream established", "auth", os.auth, "tls", os.sc.TLSVersion(), "remote_addr", os.sc.RemoteAddr().String(),
		"peer_cert", func() string {
			if os.verdict == nil {
				return "none"
			}
			return verdictString(*os.verdict)
		}())
	peerGone := make(chan error, 1)
	go s.readLoop(peerGone)
	s.writeLoop(peerGone)
}

// postureAllowed asks the policy again once an outgoing stream is
// authenticated, when its decision before connecting required it
// (require: ["posture"], a partner's require_posture): refused, the
// stream is closed, the refusal recorded as session.auth, and what
// waited bounced with the reason.
func (s *outSession) postureAllowed(os *outStream, before policy.SessionDecision) bool {
	if s.key.leg != LegOutside || !before.RequiresPosture() {
		return true
	}
	g := s.r
	facts := s.facts(os)
	d, ok := decideSession(g.ctx, g.sessionPath, facts, os.verdict != nil && os.verdict.Valid)
	if ok {
		return true
	}
	os.sc.Abort()
	s.dropReverse()
	auditSession(g.rec, g.log, sessionRecord(audit.EventSessionAuth, s.id, s.key.leg, facts, os.sc.RemoteAddr().String(), audit.DecisionDeny, d.Reason, d.Revision))
	g.m.SessionFailure(s.key.leg.String(), metrics.RoleOutgoing, metrics.FailPolicy)
	s.failAll(stanza.PolicyViolation, d.Reason, fmt.Errorf("refused by policy once authenticated: %s", d.Reason))
	return false
}

// runOver runs the session on an incoming stream its peer uses both ways
// (XEP-0288): no connection of its own; it ends when that stream does
// (what waits is then routed again), or idles without closing it.
func (s *outSession) runOver(b *bidiStream, decision policy.SessionDecision) {
	g := s.r
	os := b.os
	auditSession(g.rec, g.log, sessionRecord(audit.EventSessionOpen, s.id, s.key.leg, s.facts(os), os.sc.RemoteAddr().String(), audit.DecisionAllow, "over the incoming stream "+b.owner+" (XEP-0288)", decision.Revision))
	s.mu.Lock()
	s.os, s.over, s.ready = os, b.owner, true
	aborted := s.closed
	s.mu.Unlock()
	g.m.SessionOpened(s.key.leg.String(), metrics.RoleOutgoing, os.auth)
	defer g.m.SessionClosed(s.key.leg.String(), metrics.RoleOutgoing, os.auth)
	if aborted {
		s.mu.Lock()
		why := s.cutWhy
		s.mu.Unlock()
		s.failAll(stanza.PolicyViolation, why, errors.New("closed while starting: "+why))
		return
	}
	s.log.Info("outgoing direction over an incoming stream (XEP-0288)", "over", b.owner, "auth", os.auth, "remote_addr", os.sc.RemoteAddr().String())
	peerGone := make(chan error, 1)
	go func() {
		select {
		case <-b.gone:
			peerGone <- errors.New("the incoming stream it wrote on ended")
		case <-s.done:
		}
	}()
	s.writeLoop(peerGone)
}

// askBidi decides, before authentication, whether to ask the server to
// use the stream both ways (XEP-0288): where possible and the policy
// allows the reverse pair (its session.auth record is written then).
func (s *outSession) askBidi(os *outStream) {
	g := s.r
	if g.reverse == nil || !g.dialer.bidiPossible(os) {
		return
	}
	s.dropReverse() // an earlier SRV target's, if it failed
	rev, err := g.reverse(os, s.id)
	if err != nil {
		s.log.Info("not asking for a bidirectional stream", "reason", err)
		return
	}
	s.mu.Lock()
	s.rev = rev
	s.mu.Unlock()
	os.bidi = true
}

// dropReverse forgets a reverse side that will not be used (its stream
// was not established, or the server did not take the offer).
func (s *outSession) dropReverse() {
	s.mu.Lock()
	rev := s.rev
	s.rev = nil
	s.mu.Unlock()
	if rev != nil {
		rev.cancel()
	}
}

// failAll ends a session that could not be set up, bouncing what waited.
func (s *outSession) failAll(cond stanza.Condition, text string, err error) {
	s.r.m.SessionFailure(s.key.leg.String(), metrics.RoleOutgoing, sessionFailureKind(cond, err))
	q := s.closeAndTake()
	s.log.Warn("outgoing stream failed", "err", err, "bounced", len(q), "condition", cond)
	for _, st := range q {
		s.r.bounce(st, s.key.leg, cond, text)
	}
}

// preConnectFacts are what the policy knows of an outbound (outside leg)
// stream before connecting: the domains; tls and auth are empty.
func (s *outSession) preConnectFacts() *policy.SessionInput {
	return &policy.SessionInput{Direction: policy.Outbound, LocalDomain: s.key.from, RemoteDomain: s.key.to}
}

// facts describe an established outgoing stream for the audit log and
// the policy.
func (s *outSession) facts(os *outStream) *policy.SessionInput {
	in := &policy.SessionInput{Direction: policy.Outbound, LocalDomain: s.key.from, RemoteDomain: s.key.to, Auth: os.auth, RemoteIP: remoteIP(os.sc.NetConn())}
	if s.key.leg == LegInside {
		in.Direction = policy.Inbound
		in.LocalDomain, in.RemoteDomain = s.key.to, s.key.from
	}
	in.TLS = tlsInfo(os.sc.TLS(), os.verdict)
	return in
}

// readLoop watches the peer's side of an outgoing stream: it ends the
// session when the peer closes the stream or sends a stream error.
func (s *outSession) readLoop(peerGone chan<- error) {
	sc := s.os.sc
	for {
		el, err := sc.Next(0)
		if err != nil {
			peerGone <- err
			return
		}
		if el.Space == xmlstream.NSStream && el.Local == "error" {
			s.log.Warn("peer sent a stream error", "condition", stream.ParsePeerError(el.Raw, sc.Peer().Namespaces).Condition)
			continue // the close follows
		}
		if el.Space == xmlstream.NSServer && (el.Local == "message" || el.Local == "presence" || el.Local == "iq") {
			// Only a server we asked to use the stream both ways may send
			// stanzas on it; never one dropped unanswered.
			err := &stream.Error{Condition: stream.UnsupportedStanzaType, Text: "a stanza on a stream that is not bidirectional"}
			if s.rev != nil {
				s.lastRead.Store(time.Now().UnixNano())
				err = stream.ToError(s.rev.handleStanza(&el, s2s.Ticket{}))
			}
			if err != nil {
				s.log.Warn("stanza refused on the outgoing stream", "condition", err.Condition, "text", err.Text)
				sc.Fail(err, s.key.from, s.key.to)
				peerGone <- err
				return
			}
			continue
		}
		s.log.Debug("ignored element on outgoing stream", "element", el.Local, "ns", el.Space)
	}
}

func (s *outSession) writeLoop(peerGone <-chan error) {
	g := s.r
	sc := s.os.sc
	idle := time.NewTimer(g.limits().IdleTimeout)
	defer idle.Stop()
	var batch []*relayed
	for {
		s.mu.Lock()
		batch, s.queue = s.queue, batch[:0]
		s.qbytes = 0
		g.m.QueueDepth(s.key.leg.String(), -len(batch))
		draining := s.draining
		if len(batch) > 0 {
			close(s.space)
			s.space = make(chan struct{})
		}
		s.mu.Unlock()
		if len(batch) > 0 {
			if err := s.writeBatch(batch); err != nil {
				s.log.Warn("write to peer failed", "err", err)
				s.failWritten(batch, err)
				return
			}
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(g.limits().IdleTimeout)
			clear(batch)
			continue // the queue may have grown meanwhile
		}
		if draining {
			s.closeGracefully("shutdown", peerGone)
			return
		}
		select {
		case <-s.notify:
		case <-idle.C:
			if last := s.lastRead.Load(); last != 0 {
				if left := g.limits().IdleTimeout - time.Since(time.Unix(0, last)); left > 0 {
					idle.Reset(left) // the server still sends on it (XEP-0288)
					continue
				}
			}
			s.closeGracefully("idle", peerGone)
			return
		case err := <-peerGone:
			q := s.closeAndTake()
			if s.over == "" {
				sc.Close()
				sc.Abort()
			}
			s.log.Info("outgoing stream closed by peer", "err", err, "rerouted", len(q))
			s.recordClose("closed by the peer")
			for _, st := range q {
				s.reroute(st)
			}
			return
		}
	}
}

// writeBatch writes every stanza of batch and flushes once.
func (s *outSession) writeBatch(batch []*relayed) error {
	sc := s.os.sc
	// Nothing reaches the peer before its audit record is durable (in sync
	// mode; a no-op wait in async mode).
	var maxSeq uint64
	for _, st := range batch {
		maxSeq = max(maxSeq, st.auditSeq)
	}
	if maxSeq > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.r.rec.sink.WaitDurable(ctx, maxSeq)
		cancel()
		if err != nil {
			return &auditError{err}
		}
	}
	bufs := make([][]byte, len(batch))
	for i, st := range batch {
		bufs[i] = st.raw
	}
	if err := sc.SendWait(s.r.limits().ConnectTimeout*3, bufs...); err != nil {
		return err
	}
	s.stanzas.Add(uint64(len(batch)))
	m := s.r.m
	dir := string(direction(s.key.leg.other()))
	n := 0
	for _, st := range batch {
		m.Stanza(dir, st.kind, metrics.OutcomeRelayed, metrics.None)
		n += len(st.raw)
		st.handled()
		s.r.buffers.release(st) // flushed: nothing reads raw again
	}
	m.Bytes(s.key.leg.String(), metrics.BytesSent, n)
	return nil
}

// failWritten handles a write failure: what was in the failed batch and
// what still waits is bounced (the peer may or may not have received the
// batch; a bounce tells the sender so).
func (s *outSession) failWritten(batch []*relayed, err error) {
	if s.over != "" && errors.Is(err, stream.ErrClosed) {
		// The incoming stream it wrote on was closed (a shutdown, the
		// peer): nothing of the batch was written. Route it again.
		q := s.closeAndTake()
		s.recordClose("the incoming stream it wrote on closed")
		for _, st := range append(batch, q...) {
			s.reroute(st)
		}
		return
	}
	q := s.closeAndTake()
	var ae *auditError
	if errors.As(err, &ae) {
		// Fail closed: the records could not be made durable.
		s.log.Error("AUDIT LOG NOT WRITABLE: stanzas refused", "err", err, "bounced", len(batch)+len(q))
		s.os.sc.Close()
		s.os.sc.Abort()
		for _, st := range append(batch, q...) {
			s.r.bounceUnaudited(st, s.key.leg, stanza.InternalServerError, "the gateway cannot record this stanza; try again later")
		}
		return
	}
	s.os.sc.Abort()
	s.recordClose("write failed: " + err.Error())
	for _, st := range append(batch, q...) {
		s.r.bounce(st, s.key.leg, stanza.RemoteServerTimeout, "the stream to "+s.key.to+" failed")
	}
}

// auditError is a failure to make audit records durable.
type auditError struct{ err error }

func (e *auditError) Error() string { return "audit log: " + e.err.Error() }
func (e *auditError) Unwrap() error { return e.err }

// reroute gives a stanza that never reached the wire a second chance on a
// new stream; one that already had it is bounced.
func (s *outSession) reroute(st *relayed) {
	if st.rerouted {
		s.r.bounce(st, s.key.leg, stanza.RemoteServerTimeout, "the stream to "+s.key.to+" closed")
		return
	}
	st.rerouted = true
	s.r.route(st, s.key.leg)
}

func (s *outSession) closeGracefully(why string, peerGone <-chan error) {
	q := s.closeAndTake()
	sc := s.os.sc
	if len(q) > 0 {
		if err := s.writeBatch(q); err != nil {
			s.failWritten(q, err)
			return
		}
	}
	if s.over != "" {
		// The stream is the incoming session's: it goes on, one way.
		s.log.Info("outgoing direction over an incoming stream ended", "reason", why, "over", s.over, "stanzas", s.stanzas.Load())
		s.recordClose(why)
		return
	}
	sc.Close()
	// Give the peer a moment to answer with its own </stream:stream>.
	t := time.NewTimer(2 * time.Second)
	select {
	case <-peerGone:
	case <-t.C:
	}
	t.Stop()
	sc.Abort()
	s.log.Info("outgoing stream closed", "reason", why, "stanzas", s.stanzas.Load())
	s.recordClose(why)
}

// recordClose writes the session.close audit record of an established
// outgoing stream.
func (s *outSession) recordClose(reason string) {
	s.mu.Lock()
	if s.cutWhy != "" {
		reason = s.cutWhy
	}
	s.mu.Unlock()
	auditSession(s.r.rec, s.log, sessionRecord(audit.EventSessionClose, s.id, s.key.leg, s.facts(s.os), s.os.sc.RemoteAddr().String(), "", reason, ""))
}
