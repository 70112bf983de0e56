package s2s

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// SASLExternal is SASL EXTERNAL with the peer's certificate (XEP-0178).
type SASLExternal struct{}

// SASLReceiver is the relay's side of SASL EXTERNAL in the receiving role.
type SASLReceiver interface {
	// CertificateValid reports whether the peer's certificate is valid
	// for the stream's from (EXTERNAL is offered only then).
	CertificateValid(s *Stream) bool
	// MayOriginate reports whether from may originate stanzas to to on
	// this stream's leg.
	MayOriginate(from, to string) bool
	// AuthenticateSASL authorises and records the pair (from → to); an
	// error (a *stream.Error) refuses it.
	AuthenticateSASL(from, to string) error
}

// SASLInitiator is the relay's side of SASL EXTERNAL in the initiating
// role.
type SASLInitiator interface {
	// HaveClientCert reports whether we present a certificate for from
	// (and so may try SASL EXTERNAL).
	HaveClientCert(from string) bool
	// SASLRefused learns that the peer, which offers dialback, answered
	// our SASL EXTERNAL with <failure/> (condition: the failure's
	// condition, e.g. not-authorized): it reports whether to fall back to
	// dialback on the stream. false ends the negotiation with a
	// *SASLError.
	SASLRefused(condition string) bool
}

// SASLError is the peer refusing our SASL EXTERNAL (its <failure/>) with
// no dialback to follow on the stream: the peer does not offer it, or the
// relay did not want it (SASLInitiator.SASLRefused).
type SASLError struct {
	Domain    string // who refused
	Condition string // of the <failure/>, e.g. not-authorized
	// NoDialback: the peer offers no dialback to fall back to.
	NoDialback bool
}

func (e *SASLError) Error() string {
	s := e.Domain + " refused our certificate for SASL EXTERNAL (" + e.Condition + ")"
	if e.NoDialback {
		s += " and offers no dialback"
	}
	return s
}

// SASLUnansweredError is the stream failing — ended, reset, a stream
// error — while the initiating side waits for the answer to its SASL
// EXTERNAL <auth/>: no <success/>, no <failure/>. ejabberd 23.01 does
// this when the certificate it verifies carries a domain XmppAddr (its
// verification crashes the stream), so a relay may count it as a refusal
// of its certificate and connect again for dialback.
type SASLUnansweredError struct {
	Domain string // the peer
	Err    error  // how the stream failed
}

func (e *SASLUnansweredError) Error() string { return "read SASL answer: " + e.Err.Error() }
func (e *SASLUnansweredError) Unwrap() error { return e.Err }

const (
	MethodSASLExternal = "sasl_external"
	MethodDialback     = "dialback"
)

func saslFailure(cond string) []byte {
	return []byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><" + cond + "/></failure>")
}

func (SASLExternal) Name() string        { return "sasl-external" }
func (SASLExternal) Authenticates() bool { return true }

func (SASLExternal) Offered(s *Stream) bool {
	s.mu.Lock()
	done := s.saslDone
	s.mu.Unlock()
	return s.Conn.TLS() != nil && !done && !s.tlsRequired && s.recv.CertificateValid(s)
}

func (SASLExternal) List(b []byte, _ *Stream) []byte {
	return append(b, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"...)
}

func (SASLExternal) Handles(el *xmlstream.Element) bool {
	return el.Space == xmlstream.NSSASL && el.Local == "auth"
}

// Handle runs SASL EXTERNAL: the peer's certificate was already found
// valid for the header's from.
func (f SASLExternal) Handle(_ context.Context, s *Stream, el *xmlstream.Element) (Step, error) {
	if !s.Offers(f.Name()) {
		return Skip, s.Conn.Send(saslFailure("invalid-mechanism"))
	}
	n, err := s.node(el)
	if err != nil {
		return Skip, err
	}
	if n.Attr("mechanism") != "EXTERNAL" {
		return Skip, s.Conn.SendWait(HeaderTimeout, saslFailure("invalid-mechanism"))
	}
	if authz := strings.TrimSpace(n.Text); authz != "" && authz != "=" {
		dec, err := base64.StdEncoding.DecodeString(authz)
		if err != nil {
			return Skip, s.Conn.SendWait(HeaderTimeout, saslFailure("incorrect-encoding"))
		}
		if !strings.EqualFold(string(dec), s.from) {
			return Skip, s.Conn.SendWait(HeaderTimeout, saslFailure("invalid-authzid"))
		}
	}
	// The certificate proves the peer is from; it must still be a domain
	// that may originate on this leg.
	if !s.recv.MayOriginate(s.from, s.to) {
		return Skip, s.Conn.SendWait(HeaderTimeout, saslFailure("not-authorized"))
	}
	if err := s.recv.AuthenticateSASL(s.from, s.to); err != nil {
		return Skip, err
	}
	if err := s.Conn.SendWait(HeaderTimeout, []byte("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")); err != nil {
		return Skip, err
	}
	s.mu.Lock()
	s.saslDone = true
	s.mu.Unlock()
	s.Conn.Restart()
	return Restart, nil
}

// Initiate tries SASL EXTERNAL when it is offered on an encrypted stream
// and we have a certificate. A <failure/> (XEP-0178 §3: the receiving
// server may go on with dialback or close the stream) leaves the way to
// dialback on the same stream when the peer offers it and the relay
// wants it (SASLRefused); else it is a *SASLError.
func (SASLExternal) Initiate(_ context.Context, s *Stream) (Step, error) {
	mechs := s.peerFeatures.Child(xmlstream.NSSASL, "mechanisms")
	if mechs == nil || s.Conn.TLS() == nil || !s.init.HaveClientCert(s.from) || !offersExternal(mechs) {
		return Skip, nil
	}
	auth := "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte(s.from)) + "</auth>"
	if err := s.Conn.SendWait(HeaderTimeout, []byte(auth)); err != nil {
		return Skip, err
	}
	el, err := s.readAnswer(HeaderTimeout)
	if err != nil {
		return Skip, &SASLUnansweredError{Domain: s.to, Err: err}
	}
	switch {
	case el.Space == xmlstream.NSSASL && el.Local == "failure":
		return Skip, s.saslRefused(el)
	case el.Space != xmlstream.NSSASL || el.Local != "success":
		return Skip, &stream.Error{Condition: stream.UnsupportedStanzaType, Text: "unexpected <" + el.Local + "> while waiting for the SASL EXTERNAL outcome"}
	}
	s.Conn.Restart()
	if err := s.Conn.WriteHeader(s.from, s.to, ""); err != nil {
		return Skip, err
	}
	h, err := s.Conn.ReadHeader(HeaderTimeout)
	if err != nil {
		return Skip, fmt.Errorf("read stream header after SASL: %w", err)
	}
	s.Conn.SetStreamID(h.ID)
	if h.Version != "" {
		el, err := s.Conn.Next(HeaderTimeout)
		if err != nil || el.Local != "features" {
			return Skip, fmt.Errorf("read stream features after SASL: %v", err)
		}
	}
	s.auth = MethodSASLExternal
	return Authenticated, nil
}

// saslRefused decides what follows the peer's <failure/>: nil (dialback
// on this stream) or a *SASLError.
func (s *Stream) saslRefused(el xmlstream.Element) error {
	cond := "unspecified"
	if n, err := s.node(&el); err == nil {
		for _, c := range n.Children {
			if c.Local != "text" {
				cond = c.Local
				break
			}
		}
	}
	if s.peerFeatures.Child(xmlstream.NSDialbackFeature, "dialback") == nil {
		return &SASLError{Domain: s.to, Condition: cond, NoDialback: true}
	}
	if !s.init.SASLRefused(cond) {
		return &SASLError{Domain: s.to, Condition: cond}
	}
	return nil
}

func offersExternal(mechs *xmlstream.Node) bool {
	for _, m := range mechs.Children {
		if m.Local == "mechanism" && strings.TrimSpace(m.Text) == "EXTERNAL" {
			return true
		}
	}
	return false
}
