package edge

import (
	"context"
	"errors"
	"net"

	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
)

// dialStage is how far an attempt to set up an outgoing stream got: the
// step that failed. Later stages rank higher (see dialError.beats).
type dialStage int

const (
	stageResolve     dialStage = iota + 1 // SRV, A/AAAA lookups
	stageConnect                          // TCP connect
	stageTLS                              // TLS handshake; STARTTLS refused, or TLS required and not offered
	stageStream                           // stream header and features, a stream error from the peer
	stageCertificate                      // the peer's certificate does not satisfy the policy
	stageAuth                             // SASL EXTERNAL / dialback refused or unanswered
)

// dialError is a failure to set up an outgoing stream: one attempt (one
// address of one SRV target), or the whole dial, which then carries the
// fields of the attempt that got furthest and every attempt's error.
type dialError struct {
	stage     dialStage
	connected bool   // the TCP connection was established: a server is there
	opened    bool   // the peer's stream header was received
	timeout   bool   // the attempt ran out of time (connect_timeout or a read deadline)
	peerError string // the condition of a stream error the peer sent, if any
	// refused: the server refused our certificate in a way another
	// connection, for dialback, can avoid (Dialer.attempt).
	refused *certRefusal
	err     error
	// best is the error of the attempt that got furthest (the whole
	// dial's summary; the attempt's own err otherwise).
	best error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// reason is the best attempt's error, for a bounce text.
func (e *dialError) reason() error {
	if e.best != nil {
		return e.best
	}
	return e.err
}

// condition is the stanza error condition for the stanzas that were
// waiting (RFC 6120 §8.3.3): a server that answered on TCP and then did
// not complete the stream in time, or failed it, is remote-server-timeout
// (Prosody uses it once a stream had opened); one that could not be
// resolved or reached at all is remote-server-not-found; a certificate
// the policy refuses is policy-violation.
func (e *dialError) condition() stanza.Condition {
	switch {
	case e.stage == stageCertificate:
		return stanza.PolicyViolation
	case e.connected || e.opened:
		return stanza.RemoteServerTimeout
	}
	return stanza.RemoteServerNotFound
}

// beats reports whether attempt e got further than o.
func (e *dialError) beats(o *dialError) bool {
	if e.stage != o.stage {
		return e.stage > o.stage
	}
	return e.opened && !o.opened || e.connected && !o.connected
}

// dialFailureKind classifies a failure to set up an outgoing stream (or
// to have a dialback key verified) as one of the metrics.Fail* labels,
// from the typed errors of the dialer; metrics.Other for anything else.
// A timeout wins over the stage it happened in, except in DNS.
func dialFailureKind(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		switch {
		case de.stage == stageCertificate:
			return metrics.FailPolicy
		case de.stage == stageResolve:
			return metrics.FailDNS
		case de.timeout:
			return metrics.FailTimeout
		case de.peerError != "":
			return metrics.FailStreamError
		}
		switch de.stage {
		case stageConnect:
			return metrics.FailConnect
		case stageTLS:
			return metrics.FailTLS
		case stageStream:
			return metrics.FailStreamError
		case stageAuth:
			return metrics.FailAuth
		}
		return metrics.Other
	}
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.kind
	}
	return metrics.Other
}

// sessionFailureKind is the metric label of a failed outgoing session:
// a policy refusal, else dialFailureKind.
func sessionFailureKind(cond stanza.Condition, err error) string {
	if cond == stanza.PolicyViolation {
		return metrics.FailPolicy
	}
	return dialFailureKind(err)
}

// verifyError is a failure to have a dialback key verified by the
// authoritative server (XEP-0220 step 3), with the dialback error
// condition the receiving side answers the initiating server with.
type verifyError struct {
	condition stanza.Condition // XEP-0220 §2.4: remote-connection-failed, remote-server-not-found, remote-server-timeout
	kind      string           // metrics.Fail* label
	err       error
}

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// dialbackCondition returns the XEP-0220 dialback error condition (§2.4)
// with which to answer an initiating server whose key could not be
// verified because of err (from verifyKey):
//
//   - remote-connection-failed: the authoritative server could not be
//     reached — no DNS answer, no TCP connection, a failed TLS handshake;
//   - remote-server-not-found: it answered with a host-unknown (or
//     host-gone) stream error, or with a db:verify of type 'error' (the
//     condition XEP-0220 prescribes for an error in step 3);
//   - remote-server-timeout: it was reached but did not verify the key —
//     it did not complete the stream or answer in time, or closed the
//     stream without an answer.
func dialbackCondition(err error) stanza.Condition {
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.condition
	}
	var de *dialError
	if errors.As(err, &de) {
		return dialbackDialCondition(de)
	}
	return stanza.RemoteConnectionFailed
}

// dialbackDialCondition is dialbackCondition for a failure to set up the
// stream to the authoritative server.
func dialbackDialCondition(de *dialError) stanza.Condition {
	switch {
	case de.peerError == string(stream.HostUnknown) || de.peerError == string(stream.HostGone):
		return stanza.RemoteServerNotFound
	case de.connected && (de.timeout || de.stage > stageTLS):
		return stanza.RemoteServerTimeout
	}
	return stanza.RemoteConnectionFailed
}

// attemptError builds the dialError of a failed step. It is a timeout when
// the I/O timed out or ctx's deadline passed (a cancelled ctx, at
// shutdown, is not).
func attemptError(ctx context.Context, stage dialStage, connected, opened bool, err error) *dialError {
	de := &dialError{stage: stage, connected: connected, opened: opened, err: err}
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		de.timeout = true
	case errors.As(err, &ne) && ne.Timeout() && !errors.Is(ctx.Err(), context.Canceled):
		de.timeout = true
	}
	var pe *stream.PeerError
	if errors.As(err, &pe) {
		de.peerError = pe.Condition
	}
	return de
}

// negotiationError is the dialError of a failure of the s2s initiating
// side (a *s2s.NegotiationError): its stage, on a connected socket.
func negotiationError(ctx context.Context, err error) *dialError {
	stage, opened := stageStream, false
	var ne *s2s.NegotiationError
	if errors.As(err, &ne) {
		opened = ne.Opened
		switch ne.Stage {
		case s2s.StageTLS:
			stage = stageTLS
		case s2s.StageAuth:
			stage = stageAuth
		}
	}
	return attemptError(ctx, stage, true, opened, err)
}
