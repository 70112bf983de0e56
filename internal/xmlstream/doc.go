// Package xmlstream reads and writes the XML of XMPP server-to-server
// streams (RFC 6120). It is the stanza scanner on xmppedge's hot path.
//
// # Model
//
// A Reader reads one stream header (ReadHeader), then yields one top-level
// element at a time (Next) as its exact raw bytes plus a parsed head: the
// resolved name and namespace and the unescaped from, to, type and id
// attributes of the root. Whitespace between elements (keepalives) is
// skipped; the stream's close tag ends the stream with ErrStreamEnd.
// ParseNode turns one element's bytes into a small DOM for the rare
// elements that need more than the head (stream features, STARTTLS, SASL,
// dialback, a security label), keeping the order of mixed content. What a
// content policy reads (the children's names, the bodies, subjects and
// thread) the Reader notes while it scans the element, as offsets into
// Raw, and Element.ContentInto makes of them (collect.go), so the stanza
// path reads each stanza's bytes once; ParseContent is the same from
// bytes alone. The
// scanner is hand-written, without encoding/xml, and on the common path
// allocates nothing. The package also writes: escaped text and attribute
// values, forwarded elements (AppendForward, AppendForwardAddressed) and
// canonical re-serialisations (AppendCanonical).
//
// # What is validated
//
// Every byte of every element is checked, not just the head:
//
//   - well-formed XML 1.0: matching end tags, valid names (a non-ASCII
//     name character must be allowed by both the XML 1.0 5th edition
//     productions and the Appendix B tables encoding/xml uses), valid UTF-8
//     made only of XML Chars, quoted attribute values without '<', no
//     duplicate attributes (by qualified or by expanded name), whitespace
//     between attributes, no "]]>" in character data;
//   - well-formed Namespaces in XML: names are QNames, every prefix used
//     by an element or attribute is declared on it, on an ancestor or on
//     the stream header ("xml" is predefined); xmlns:p="" and (re)binding
//     the reserved xml and xmlns prefixes or namespaces are errors;
//   - RFC 6120 §11 restricted XML: comments, processing instructions
//     (except one XML declaration before each stream header), DTDs and
//     entity references other than the five predefined ones are answered
//     with restricted-xml. Numeric character references must name an XML
//     Char;
//   - CDATA sections, which RFC 6120 §11.1 allows, are accepted inside an
//     element only (before the stream header or between top-level
//     elements they are restricted-xml, like every other "<!"): exactly
//     "<![CDATA[" (anything else after "<![" is not-well-formed), content
//     of XML Chars in valid UTF-8, ended by the first "]]>", counted in
//     the element's size. Element.HasCDATA reports them; ParseNode reads
//     their content as character data, merged with the text around it as
//     any XML parser's character data is;
//   - the XML declaration must say version 1.0 and, if it names an
//     encoding, UTF-8 (else unsupported-encoding); a byte order mark is
//     rejected with unsupported-encoding;
//   - bounds: an element larger than Limits.MaxElementSize is a
//     policy-violation with the stanza-too-big application condition, and
//     nesting deeper than Limits.MaxDepth a policy-violation. The read
//     buffer grows only up to the size limit (plus a small read slack) and
//     shrinks back when a big element has passed;
//   - the head attributes (from, to, type, id, and the header's from, to,
//     id, version and xml:lang) must not contain a literal tab, newline or
//     carriage return (bad-format): XML parsers disagree on how they
//     normalise those (encoding/xml does not), so a value containing them
//     could mean one address to us and another to the receiver.
//
// Violations are reported as *StreamError carrying the RFC 6120 §4.9.3
// condition to send. The end of input inside an element is an error
// wrapping io.ErrUnexpectedEOF; between elements it is io.EOF.
//
// # Why raw bytes are forwarded, and why that is safe
//
// The relay forwards Element.Raw unchanged: re-serialising every stanza
// would cost far more than scanning it, and would itself be a second XML
// writer to get right. Forwarding raw bytes is only safe if the receiver
// cannot read them differently from how the policy judged them (parser
// differentials: Zoom CVE-2022-22784, encoding/xml round-trip
// CVE-2020-29509/10/11). The rules above make the accepted language a
// strict subset of what every conforming XML parser reads the same way:
// no construct is accepted whose meaning depends on a parser's choices
// (entities, DTDs, comments that could hide or split markup, duplicate
// attributes where parsers pick first or last, undeclared prefixes,
// attribute whitespace normalisation). FuzzNext checks this against
// encoding/xml: whatever the Reader accepts, encoding/xml parses to the
// same tree (names, namespaces, attributes, character data in order, CDATA
// included), and Raw is always an exact slice of the input.
//
// Three kinds of element are not forwarded raw; for them the relay writes
// what it judged instead, from the parsed tree or the head:
//
//   - an element with HasCDATA: CDATA is conforming, but it is where
//     markup hides as text (a "<message to='x'/>" inside a body) and where
//     lax or home-grown parsers have disagreed, so the relay forwards the
//     canonical re-serialisation of ParseNode's tree (AppendCanonical),
//     in which the same content is escaped character data;
//   - an element whose children the policy strips: AppendCanonical with a
//     strip function;
//   - an element whose from or to the gateway rewrote to its RFC 7622
//     canonical form: AppendForwardAddressed, which is Raw with only those
//     two attribute values replaced (for one that also has CDATA, set the
//     addresses on the tree with Node.SetAttr and use AppendCanonical).
//
// AppendCanonical writes only elements with unprefixed names and explicit
// default namespace declarations, prefixed attributes with prefixes it
// declares itself (xml: excepted), the predefined escapes, and no CDATA,
// comments or processing instructions; FuzzCanonical proves that the
// Reader accepts its output, that ParseNode reads the output back to the
// same tree (minus exactly the stripped children), that encoding/xml reads
// it the same way, and that it is idempotent.
//
// A forwarded element may use a prefix declared only on the incoming
// stream header (typically db: for dialback). Element.HeaderPrefixes lists
// those, and Element.AppendForward declares them on the root start tag so
// the output means the same on any stream whose default namespace is the
// same (jabber:server on both legs; the caller checks the header).
//
// # STARTTLS and the read buffer
//
// The Reader owns its buffer and reads from its source only into it, so it
// knows exactly what it has read and not consumed (Buffered). After the
// peer's <starttls/> the caller requires Buffered() == 0: bytes that came
// before the TLS handshake must never be parsed as part of the protected
// stream (the STARTTLS command-injection class, Postfix CVE-2011-0411).
// Then Reset switches to the tls.Conn and forgets all stream state. After
// SASL success the stream restarts on the same connection and the peer may
// already have sent its new header, so Restart keeps source and buffer and
// forgets only the stream state.
//
// # Allocation
//
// Next allocates nothing on the common path: Raw points into the read
// buffer (valid until the next call), common names, namespaces and type
// values are string constants, and other head strings are copied into a
// small append-only arena owned by the Reader, so one 2 KiB allocation
// serves the strings of many elements (a string kept by the caller keeps
// its arena chunk alive).
package xmlstream
