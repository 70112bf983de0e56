package xmlstream

import (
	"errors"
	"strings"
)

// Namespaces used on XMPP server-to-server streams.
const (
	NSStream          = "http://etherx.jabber.org/streams"
	NSServer          = "jabber:server"
	NSClient          = "jabber:client"
	NSDialback        = "jabber:server:dialback"
	NSTLS             = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL            = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSStanzas         = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams         = "urn:ietf:params:xml:ns:xmpp-streams"
	NSDialbackFeature = "urn:xmpp:features:dialback"
	NSXML             = "http://www.w3.org/XML/1998/namespace"

	// NSXMLNS is the namespace name of the xmlns prefix itself; nothing may
	// be bound to it.
	NSXMLNS = "http://www.w3.org/2000/xmlns/"
	// NSErrors is the namespace of application-specific stream error
	// conditions such as <stanza-too-big/>.
	NSErrors = "urn:xmpp:errors"
)

// Default limits (see Limits).
const (
	DefaultMaxElementSize = 512 << 10 // Prosody's s2s stanza size limit
	DefaultMaxDepth       = 32
)

// Limits bound what one peer can make us hold. Zero values mean the defaults.
type Limits struct {
	MaxElementSize int // bytes of one top-level element; default 512 KiB (Prosody's s2s limit)
	MaxDepth       int // nesting depth inside one top-level element (the element itself is depth 1); default 32
}

func (l Limits) withDefaults() Limits {
	if l.MaxElementSize <= 0 {
		l.MaxElementSize = DefaultMaxElementSize
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Header is the parsed <stream:stream> opening tag.
type Header struct {
	From, To, ID, Version, Lang string // attribute values, unescaped (Lang = xml:lang)
	// Namespaces holds the declarations on the header: "" = default ns,
	// "stream", "db", ...
	Namespaces map[string]string
	// Space and Local are the resolved namespace and local name of the root
	// element. A valid stream has NSStream/"stream"; the caller checks that
	// and sends invalid-namespace.
	Space, Local string
}

// Element is one top-level child of the stream.
type Element struct {
	// Raw is the element's exact bytes, from '<' to the final '>'. It is
	// valid only until the next call to Next, Reset or Restart.
	Raw []byte
	// Space and Local are the resolved namespace and local name of the
	// element (prefix resolved against its own declarations, then the
	// stream header's).
	Space, Local string
	// From, To, Type and ID are the element's unprefixed attributes,
	// unescaped; "" when absent. Unlike Raw they stay valid.
	From, To, Type, ID string
	// HeaderPrefixes lists the prefixes the element (or a descendant)
	// uses that are declared only on the stream header. It is nil almost
	// always and, like Raw, valid only until the next call to Next. The
	// default namespace is never listed: it is inherited from the header,
	// and a relay must write onto a stream with the same default namespace.
	HeaderPrefixes []string
	// HasCDATA reports that the element contains at least one CDATA
	// section. Such an element is not forwarded as Raw: the relay writes
	// the canonical form of what was judged (ParseNode, AppendCanonical).
	HasCDATA bool

	// Where the root's unprefixed from and to attributes are in Raw (zero
	// when absent), for AppendForwardAddressed.
	fromLoc, toLoc attrLoc
	// The Reader's notes on the element's content (ContentInto), valid
	// while col.gen == colGen.
	col    *collected
	colGen uint64
}

// attrLoc locates one attribute of the root start tag in Element.Raw: name
// is the offset of its name, val..end its value between the quotes. An
// attribute never starts at offset 0 (that is the '<'), so the zero value
// means absent.
type attrLoc struct{ name, val, end int }

// ErrStreamEnd is returned by Next when the peer closes the stream with the
// close tag of the stream header element.
var ErrStreamEnd = errors.New("xmlstream: stream closed by peer")

// Stream error conditions (RFC 6120 §4.9.3) this package reports.
const (
	CondNotWellFormed       = "not-well-formed"
	CondRestrictedXML       = "restricted-xml"
	CondPolicyViolation     = "policy-violation"
	CondInvalidNamespace    = "invalid-namespace"
	CondBadFormat           = "bad-format"
	CondUnsupportedEncoding = "unsupported-encoding"
	CondInvalidXML          = "invalid-xml"

	// AppStanzaTooBig is the urn:xmpp:errors application condition sent
	// with policy-violation when an element exceeds MaxElementSize.
	AppStanzaTooBig = "stanza-too-big"
)

// StreamError is a violation that the caller answers with an RFC 6120
// §4.9.3 stream error.
type StreamError struct {
	Condition string // "not-well-formed", "restricted-xml", "policy-violation", "invalid-namespace", "bad-format", "unsupported-encoding", "invalid-xml"
	App       string // application condition element in urn:xmpp:errors, e.g. "stanza-too-big" (with policy-violation) or ""
	Text      string // human readable detail, never contains peer bytes
}

func (e *StreamError) Error() string {
	var b strings.Builder
	b.WriteString("xmlstream: ")
	b.WriteString(e.Condition)
	if e.App != "" {
		b.WriteString(" (")
		b.WriteString(e.App)
		b.WriteString(")")
	}
	if e.Text != "" {
		b.WriteString(": ")
		b.WriteString(e.Text)
	}
	return b.String()
}

func notWellFormed(text string) *StreamError {
	return &StreamError{Condition: CondNotWellFormed, Text: text}
}

func restricted(text string) *StreamError {
	return &StreamError{Condition: CondRestrictedXML, Text: text}
}
