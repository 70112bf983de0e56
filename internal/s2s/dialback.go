package s2s

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Dialback is Server Dialback (XEP-0220) with dialback errors (XEP-0220
// §2.4, the feature of urn:xmpp:features:dialback).
type Dialback struct{}

// MaxPendingDialback bounds the dialback verifications one stream may have
// under way at once (each opens a connection to an authoritative server).
const MaxPendingDialback = 16

// DialbackReceiver is the relay's side of dialback in the receiving role
// (receiving server for db:result, authoritative server for db:verify).
type DialbackReceiver interface {
	// Sides reports whether orig may originate on this stream's leg,
	// and recv receive.
	Sides(orig, recv string) (okOrig, okRecv bool)
	// Authenticated reports whether p is authenticated on the stream,
	// and whether any pair is.
	Authenticated(p Pair) (done, any bool)
	// AcquireVerification takes one of the node's verification slots
	// (false: none free); ReleaseVerification gives it back.
	AcquireVerification() bool
	ReleaseVerification()
	// DialbackCertificate reports whether the peer's certificate settles
	// a db:result for p without asking the authoritative server (XEP-0344,
	// "dialback without dialback"): it is valid, now, for p.From — the
	// db:result's from, which is not the stream header's when several
	// domains are multiplexed on the stream. It is asked only on a
	// TLS-protected stream, for a pair neither authenticated nor under
	// verification; false leaves the key to db:verify.
	DialbackCertificate(s *Stream, p Pair) bool
	// AuthorizeDialback asks the policy about p before its key is
	// verified (an error, a *stream.Error, refuses it). verified is
	// called with the verification's outcome, and records p when valid;
	// its byCertificate says the peer's certificate settled p (XEP-0344),
	// not the authoritative server. byCertificate here: DialbackCertificate
	// settled p, there is no db:verify and verified(true, true, nil)
	// follows at once (the relay records that p was so decided).
	AuthorizeDialback(p Pair, byCertificate bool) (verified func(valid, byCertificate bool, err error), err error)
	// DialbackDANE reports whether DNSSEC-authenticated data settles a
	// db:result for p that DialbackCertificate did not (XEP-0344 with
	// DANE): the peer's certificate matches authenticated TLSA records
	// of p.From's servers. It may look them up, so it is asked only once
	// AuthorizeDialback allowed p, in the background (holding the
	// verification slot), on a TLS-protected stream, before VerifyKey;
	// true: no db:verify.
	DialbackDANE(ctx context.Context, s *Stream, p Pair) bool
	// VerifyKey asks the authoritative server of p.From whether it issued
	// key for (p.To, p.From, streamID).
	VerifyKey(ctx context.Context, p Pair, streamID, key string) (bool, error)
	// DialbackCondition is the dialback error condition for a failed
	// verification.
	DialbackCondition(err error) stanza.Condition
	// Go runs f in the background (the relay waits for it at shutdown).
	Go(f func())
	// IssuesKeysFor reports whether we answer db:verify for keys of the
	// originating domain orig.
	IssuesKeysFor(orig string) bool
	// DialbackSecret is the secret keys are computed with.
	DialbackSecret() string
	// DialbackAnswered learns a db:verify answer of ours.
	DialbackAnswered(orig, recv, typ string)
}

// DialbackInitiator is the relay's side of dialback in the initiating role.
type DialbackInitiator interface {
	DialbackSecret() string
	// DialbackTimeout bounds the wait for the receiving server's verdict.
	DialbackTimeout() time.Duration
	// DialbackResult learns the verdict: valid, invalid or error.
	DialbackResult(typ string)
}

// DialbackError is a dialback answer that is not valid: type invalid, or
// type error with its condition.
type DialbackError struct {
	Domain    string // who answered
	Type      string // invalid | error
	Condition string // of an error
}

func (e *DialbackError) Error() string {
	if e.Type == dialback.Invalid {
		return e.Domain + " refused our dialback key"
	}
	return e.Domain + " answered dialback with an error: " + e.Condition
}

func (Dialback) Name() string        { return "dialback" }
func (Dialback) Authenticates() bool { return true }

func (Dialback) Offered(s *Stream) bool { return !s.tlsRequired }

func (Dialback) List(b []byte, _ *Stream) []byte {
	return append(b, "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"...)
}

func (Dialback) Handles(el *xmlstream.Element) bool {
	return el.Space == xmlstream.NSDialback && (el.Local == "result" || el.Local == "verify")
}

// Handle answers db:result (receiving server) and db:verify
// (authoritative server). Requests carry no type: a typed element here is
// unsolicited (the 2012 dialback bypass).
func (d Dialback) Handle(ctx context.Context, s *Stream, el *xmlstream.Element) (Step, error) {
	if s.tlsRequired {
		return Skip, &stream.Error{Condition: stream.PolicyViolation, Text: "TLS is required: use STARTTLS first"}
	}
	if el.Local == "verify" {
		return Skip, d.answerVerify(s, el)
	}
	if el.Type != "" {
		return Skip, &stream.Error{Condition: stream.NotAuthorized, Text: "unsolicited dialback result"}
	}
	n, err := s.node(el)
	if err != nil {
		return Skip, err
	}
	p := Pair{From: Domain(el.From), To: Domain(el.To)}
	key := strings.TrimSpace(n.Text)
	okOrig, okRecv := s.recv.Sides(p.From, p.To)
	switch {
	case !okRecv:
		return Skip, s.Conn.Send(dialback.ErrorAnswer(dialback.Result, p.To, p.From, "", stanza.Cancel, stanza.ItemNotFound))
	case !okOrig:
		return Skip, s.Conn.Send(dialback.ErrorAnswer(dialback.Result, p.To, p.From, "", stanza.Auth, stanza.Forbidden))
	case key == "":
		return Skip, &stream.Error{Condition: stream.BadFormat, Text: "dialback result without a key"}
	}
	return Skip, d.startVerification(ctx, s, p, key)
}

// startVerification verifies key for p in the background, unless p is
// done, under way, settled by the peer's certificate (XEP-0344), or no
// slot is free.
func (d Dialback) startVerification(ctx context.Context, s *Stream, p Pair, key string) error {
	done, others := s.recv.Authenticated(p)
	s.mu.Lock()
	pending, n := s.pending[p], len(s.pending)
	s.mu.Unlock()
	switch {
	case done:
		return s.Conn.Send(dialback.Answer(dialback.Result, p.To, p.From, "", dialback.Valid))
	case pending:
		return nil
	case s.Conn.TLS() != nil && s.recv.DialbackCertificate(s, p):
		return d.answerByCertificate(s, p, others)
	case n >= MaxPendingDialback, !s.recv.AcquireVerification():
		return s.Conn.Send(dialback.ErrorAnswer(dialback.Result, p.To, p.From, "", stanza.Wait, stanza.ResourceConstraint))
	}
	// Ask the policy before verifying: a domain that may not federate is
	// refused without us connecting to its server.
	verified, err := s.recv.AuthorizeDialback(p, false)
	if err != nil {
		s.recv.ReleaseVerification()
		return d.refused(s, p, others, err)
	}
	s.mu.Lock()
	if s.pending == nil {
		s.pending = make(map[Pair]bool)
	}
	s.pending[p] = true
	s.mu.Unlock()
	streamID := s.Conn.StreamID()
	s.recv.Go(func() {
		defer s.recv.ReleaseVerification()
		d.verify(ctx, s, p, key, streamID, verified)
	})
	return nil
}

// answerByCertificate is XEP-0344's "dialback without dialback": the
// TLS-protected stream's certificate is valid for p.From, which proves
// what db:verify would, and as strongly as SASL EXTERNAL (XEP-0344 §3):
// once the policy allows p, it is answered valid at once,
// with no connection to the authoritative server. The certificate is
// judged when the db:result arrives, not only at the handshake (XEP-0344
// §3: a renegotiation could change it; Go's TLS server never
// renegotiates, and the check is made now anyway).
func (d Dialback) answerByCertificate(s *Stream, p Pair, others bool) error {
	verified, err := s.recv.AuthorizeDialback(p, true)
	if err != nil {
		return d.refused(s, p, others, err)
	}
	verified(true, true, nil)
	return s.Conn.Send(dialback.Answer(dialback.Result, p.To, p.From, "", dialback.Valid))
}

// refused answers a db:result for p that the relay refused with err: a
// dialback error when other pairs are authenticated on the stream (they
// go on), else the stream error err ends the stream.
func (Dialback) refused(s *Stream, p Pair, others bool, err error) error {
	if others {
		return s.Conn.Send(dialback.ErrorAnswer(dialback.Result, p.To, p.From, "", stanza.Auth, stanza.Forbidden))
	}
	return err
}

// verify asks the authoritative server — unless DNSSEC-authenticated data
// settles p (DialbackDANE) — and answers the initiating one.
func (Dialback) verify(ctx context.Context, s *Stream, p Pair, key, streamID string, verified func(bool, bool, error)) {
	var (
		valid, byCert bool
		err           error
	)
	if s.Conn.TLS() != nil && s.recv.DialbackDANE(ctx, s, p) {
		valid, byCert = true, true
	} else {
		valid, err = s.recv.VerifyKey(ctx, p, streamID, key)
	}
	_, others := s.recv.Authenticated(p)
	verified(valid, byCert, err)
	s.mu.Lock()
	delete(s.pending, p)
	if len(s.pending) == 0 {
		s.pending = nil // an idle stream keeps no table
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		cond := s.recv.DialbackCondition(err)
		s.Conn.Send(dialback.ErrorAnswer(dialback.Result, p.To, p.From, "", cond.Type(), cond))
	case valid:
		s.Conn.Send(dialback.Answer(dialback.Result, p.To, p.From, "", dialback.Valid))
	case !others:
		s.Conn.Send(dialback.Answer(dialback.Result, p.To, p.From, "", dialback.Invalid))
		s.Conn.Fail(&stream.Error{Condition: stream.NotAuthorized, Text: "dialback key invalid"}, p.To, p.From)
	default:
		s.Conn.Send(dialback.ErrorAnswer(dialback.Result, p.To, p.From, "", stanza.Auth, stanza.Forbidden))
	}
}

// answerVerify is the authoritative role: answer whether we issued the
// key.
func (Dialback) answerVerify(s *Stream, el *xmlstream.Element) error {
	if el.Type != "" {
		return &stream.Error{Condition: stream.NotAuthorized, Text: "unsolicited dialback verify response"}
	}
	n, err := s.node(el)
	if err != nil {
		return err
	}
	recv, orig := Domain(el.From), Domain(el.To)
	typ := dialback.Invalid
	if s.recv.IssuesKeysFor(orig) && el.ID != "" && recv != "" {
		want := dialback.Key(s.recv.DialbackSecret(), recv, orig, el.ID)
		if dialback.Equal(want, strings.TrimSpace(n.Text)) {
			typ = dialback.Valid
		}
	}
	s.recv.DialbackAnswered(orig, recv, typ)
	return s.Conn.Send(dialback.Answer(dialback.Verify, orig, recv, el.ID, typ))
}

// Initiate sends our key in db:result and waits for the verdict: dialback
// is tried whether or not it is announced (many servers accept it without
// announcing it).
func (Dialback) Initiate(_ context.Context, s *Stream) (Step, error) {
	key := dialback.Key(s.init.DialbackSecret(), s.to, s.from, s.Conn.StreamID())
	if err := s.Conn.SendWait(HeaderTimeout, dialback.Request(dialback.Result, s.from, s.to, "", key)); err != nil {
		return Skip, err
	}
	el, err := s.readAnswer(s.init.DialbackTimeout())
	if err != nil {
		return Skip, fmt.Errorf("wait for the dialback result from %s: %w", s.to, err)
	}
	if el.Space != xmlstream.NSDialback || el.Local != "result" {
		return Skip, &stream.Error{Condition: stream.UnsupportedStanzaType, Text: "unexpected <" + el.Local + "> while waiting for the dialback result"}
	}
	if !strings.EqualFold(el.From, s.to) || !strings.EqualFold(el.To, s.from) {
		// An answer for a pair we did not ask about is unsolicited.
		return Skip, &stream.Error{Condition: stream.InvalidFrom, Text: "dialback result for a domain pair that was not requested"}
	}
	switch el.Type {
	case dialback.Valid:
		s.init.DialbackResult(el.Type)
		s.auth = MethodDialback
		return Authenticated, nil
	case dialback.Invalid, "error":
		s.init.DialbackResult(el.Type)
		return Skip, &DialbackError{Domain: s.to, Type: el.Type, Condition: ErrorCondition(el.Raw, s.Conn.Peer().Namespaces)}
	}
	return Skip, &stream.Error{Condition: stream.BadFormat, Text: "dialback result without a valid type"}
}

// ErrorCondition returns the condition inside the error child of an
// answer (raw, with the header's namespaces).
func ErrorCondition(raw []byte, ns map[string]string) string {
	n, err := xmlstream.ParseNode(raw, ns)
	if err != nil {
		return "unparsable"
	}
	for _, c := range n.Children {
		if c.Local == "error" {
			for _, cc := range c.Children {
				return cc.Local
			}
		}
	}
	return "unspecified"
}

// VerifyError is an authoritative server's db:verify answer of type
// 'error'.
type VerifyError struct {
	Domain, Type, Condition string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s answered db:verify with type %q (%s)", e.Domain, e.Type, e.Condition)
}

// ErrVerifyMismatch is a db:verify answer that does not match the request.
var ErrVerifyMismatch = errors.New("db:verify answer does not match the request")

// VerifyKey asks, on s (an initiating stream to the authoritative server
// of originating, opened and not authenticated), whether originating
// issued key for (receiving, originating, streamID). An answer of type
// 'invalid' is (false, nil); a stream error of the peer is a
// *stream.PeerError, an answer of type error a *VerifyError.
func (s *Stream) VerifyKey(ctx context.Context, receiving, originating, streamID, key string, timeout time.Duration) (bool, error) {
	stop := context.AfterFunc(ctx, func() { s.Conn.NetConn().SetDeadline(time.Now()) })
	defer stop()
	if err := s.Conn.SendWait(HeaderTimeout, dialback.Request(dialback.Verify, receiving, originating, streamID, key)); err != nil {
		return false, fmt.Errorf("send db:verify to %s: %w", originating, err)
	}
	for {
		el, err := s.readAnswer(timeout)
		var pe *stream.PeerError
		switch {
		case errors.As(err, &pe):
			return false, pe
		case err != nil:
			return false, fmt.Errorf("wait for the db:verify answer from %s: %w", originating, err)
		case el.Space != xmlstream.NSDialback || el.Local != "verify":
			continue // e.g. a stray element; only our answer matters
		case el.ID != streamID || !strings.EqualFold(el.From, originating) || !strings.EqualFold(el.To, receiving):
			return false, fmt.Errorf("%s: %w", originating, ErrVerifyMismatch)
		}
		s.Conn.Close()
		switch el.Type {
		case dialback.Valid:
			return true, nil
		case dialback.Invalid:
			return false, nil
		}
		return false, &VerifyError{Domain: originating, Type: el.Type, Condition: ErrorCondition(el.Raw, s.Conn.Peer().Namespaces)}
	}
}
