package stream

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Condition is a defined stream error condition (RFC 6120 §4.9.3), the
// name of an element in urn:ietf:params:xml:ns:xmpp-streams.
type Condition string

// The conditions xmppedge sends or reads.
const (
	BadFormat             Condition = "bad-format"
	Conflict              Condition = "conflict"
	ConnectionTimeout     Condition = "connection-timeout"
	HostGone              Condition = "host-gone"
	HostUnknown           Condition = "host-unknown"
	ImproperAddressing    Condition = "improper-addressing"
	InternalServerError   Condition = "internal-server-error"
	InvalidFrom           Condition = "invalid-from"
	InvalidNamespace      Condition = "invalid-namespace"
	InvalidXML            Condition = "invalid-xml"
	NotAuthorized         Condition = "not-authorized"
	NotWellFormed         Condition = "not-well-formed"
	PolicyViolation       Condition = "policy-violation"
	RemoteConnectionFail  Condition = "remote-connection-failed"
	ResourceConstraint    Condition = "resource-constraint"
	RestrictedXML         Condition = "restricted-xml"
	SystemShutdown        Condition = "system-shutdown"
	UndefinedCondition    Condition = "undefined-condition"
	UnsupportedEncoding   Condition = "unsupported-encoding"
	UnsupportedStanzaType Condition = "unsupported-stanza-type"
	UnsupportedVersion    Condition = "unsupported-version"
)

// Error is a stream error that we send (RFC 6120 §4.9).
type Error struct {
	Condition Condition
	App       string // application condition in urn:xmpp:errors, optional
	Text      string
}

func (e *Error) Error() string {
	if e.Text == "" {
		return "stream error " + string(e.Condition)
	}
	return fmt.Sprintf("stream error %s: %s", e.Condition, e.Text)
}

// Append appends the <stream:error/> element to b.
func (e *Error) Append(b []byte) []byte {
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

// Errorf returns an *Error with a formatted text.
func Errorf(cond Condition, format string, args ...any) *Error {
	return &Error{Condition: cond, Text: fmt.Sprintf(format, args...)}
}

// ToError converts err into the stream error to send: our own *Error, the
// scanner's *xmlstream.StreamError, a read timeout (connection-timeout).
// It returns nil when the connection just ended (EOF, reset, closed) or
// err is anything else.
func ToError(err error) *Error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	var xe *xmlstream.StreamError
	if errors.As(err, &xe) {
		return &Error{Condition: Condition(xe.Condition), App: xe.App, Text: xe.Text}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Condition: ConnectionTimeout}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return nil
}

// PeerError is a stream error the peer sent (or, with an empty Condition
// and a Text, a stream the peer ended without one of ours).
type PeerError struct {
	Domain    string // the peer's domain, when known
	Condition string // the defined condition the peer named; "unspecified" when none
	Text      string
}

func (e *PeerError) Error() string {
	s := "the peer sent the stream error " + e.Condition
	if e.Domain != "" {
		s = e.Domain + " sent the stream error " + e.Condition
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// ParsePeerError reads a <stream:error/> element (raw, with the peer
// header's namespaces): its defined condition and text. A condition that
// cannot be read is "unspecified".
func ParsePeerError(raw []byte, ns map[string]string) *PeerError {
	pe := &PeerError{Condition: "unspecified"}
	n, err := xmlstream.ParseNode(raw, ns)
	if err != nil {
		return pe
	}
	for _, ch := range n.Children {
		switch {
		case ch.Space == xmlstream.NSStreams && ch.Local == "text":
			pe.Text = ch.Text
		case pe.Condition == "unspecified":
			pe.Condition = ch.Local
		}
	}
	return pe
}

// IsError reports whether el is a <stream:error/>.
func IsError(el *xmlstream.Element) bool {
	return el.Space == xmlstream.NSStream && el.Local == "error"
}
