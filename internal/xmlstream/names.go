package xmlstream

import "unicode"

// Byte classes for the hand-written scanner. Each table answers one
// question for an ASCII byte; bytes >= 0x80 are always "not plain" and take
// the UTF-8 path.
const (
	nameNone  = 0
	nameStart = 1 // A-Z a-z _
	nameChar  = 2 // 0-9 - .
)

var (
	nameClass  [256]uint8 // ASCII name characters (':' is handled apart)
	textPlain  [256]uint8 // character data bytes that need no further look (1)
	attrPlain  [256]uint8 // attribute value bytes that need no further look (1)
	cdataPlain [256]uint8 // CDATA section bytes that need no further look (1)
	isXMLSpace [256]bool  // S ::= (#x20 | #x9 | #xD | #xA)+

	// For ParseContent, over bytes the scanner accepted already.
	tagNameEnd  [256]bool // what ends an element name (or makes it prefixed): S > / :
	attrNameEnd [256]bool // what ends an attribute name: S =
)

func init() {
	for c := 'A'; c <= 'Z'; c++ {
		nameClass[c] = nameStart
		nameClass[c+'a'-'A'] = nameStart
	}
	nameClass['_'] = nameStart
	for c := '0'; c <= '9'; c++ {
		nameClass[c] = nameChar
	}
	nameClass['-'] = nameChar
	nameClass['.'] = nameChar

	for c := 0x20; c < 0x80; c++ {
		switch c {
		case '<', '&', ']', '>':
		default:
			textPlain[c] = 1
		}
		switch c {
		case '<', '&', '\'', '"':
		default:
			attrPlain[c] = 1
		}
		switch c {
		case ']', '>':
		default:
			cdataPlain[c] = 1
		}
	}
	for _, c := range []byte{' ', '\t', '\r', '\n'} {
		isXMLSpace[c] = true
		cdataPlain[c] = 1
		tagNameEnd[c] = true
		attrNameEnd[c] = true
	}
	tagNameEnd['>'], tagNameEnd['/'], tagNameEnd[':'] = true, true, true
	attrNameEnd['='] = true
}

// isChar reports whether r is an XML 1.0 Char.
func isChar(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r == 0x9 || r == 0xA || r == 0xD:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// isNameStartRune reports whether a non-ASCII rune may start a name (or the
// local part of a QName): it must be an XML 1.0 5th edition NameStartChar
// and also be accepted by encoding/xml's Appendix B tables.
func isNameStartRune(r rune) bool {
	return isNameStartChar5(r) && unicode.Is(appendixBFirst, r)
}

// isNameRune reports whether a non-ASCII rune may appear inside a name.
func isNameRune(r rune) bool {
	return isNameChar5(r) && (unicode.Is(appendixBFirst, r) || unicode.Is(appendixBSecond, r))
}

func isNameStartChar5(r rune) bool {
	switch {
	case r >= 0xC0 && r <= 0xD6, r >= 0xD8 && r <= 0xF6, r >= 0xF8 && r <= 0x2FF,
		r >= 0x370 && r <= 0x37D, r >= 0x37F && r <= 0x1FFF, r >= 0x200C && r <= 0x200D,
		r >= 0x2070 && r <= 0x218F, r >= 0x2C00 && r <= 0x2FEF, r >= 0x3001 && r <= 0xD7FF,
		r >= 0xF900 && r <= 0xFDCF, r >= 0xFDF0 && r <= 0xFFFD, r >= 0x10000 && r <= 0xEFFFF:
		return true
	}
	return false
}

func isNameChar5(r rune) bool {
	switch {
	case isNameStartChar5(r), r == 0xB7, r >= 0x300 && r <= 0x36F, r >= 0x203F && r <= 0x2040:
		return true
	}
	return false
}

// Interned strings for common names, so that Element.Local, Element.Space
// and Element.Type do not allocate for ordinary traffic.

func knownLocal(b []byte) (string, bool) {
	switch string(b) {
	case "message":
		return "message", true
	case "presence":
		return "presence", true
	case "iq":
		return "iq", true
	case "result":
		return "result", true
	case "verify":
		return "verify", true
	case "features":
		return "features", true
	case "starttls":
		return "starttls", true
	case "proceed":
		return "proceed", true
	case "failure":
		return "failure", true
	case "auth":
		return "auth", true
	case "success":
		return "success", true
	case "challenge":
		return "challenge", true
	case "response":
		return "response", true
	case "abort":
		return "abort", true
	case "error":
		return "error", true
	case "stream":
		return "stream", true
	case "r":
		return "r", true
	case "a":
		return "a", true
	case "enable":
		return "enable", true
	case "enabled":
		return "enabled", true
	}
	return "", false
}

func knownNamespace(b []byte) (string, bool) {
	switch string(b) {
	case NSServer:
		return NSServer, true
	case NSClient:
		return NSClient, true
	case NSStream:
		return NSStream, true
	case NSDialback:
		return NSDialback, true
	case NSTLS:
		return NSTLS, true
	case NSSASL:
		return NSSASL, true
	case NSStanzas:
		return NSStanzas, true
	case NSStreams:
		return NSStreams, true
	case NSDialbackFeature:
		return NSDialbackFeature, true
	case NSXML:
		return NSXML, true
	case NSErrors:
		return NSErrors, true
	case "urn:xmpp:sm:3":
		return "urn:xmpp:sm:3", true
	// The namespaces of the children stanzas usually carry (content
	// policy, payload facts).
	case "http://jabber.org/protocol/chatstates":
		return "http://jabber.org/protocol/chatstates", true
	case "urn:xmpp:receipts":
		return "urn:xmpp:receipts", true
	case "urn:xmpp:chat-markers:0":
		return "urn:xmpp:chat-markers:0", true
	case "urn:xmpp:sid:0":
		return "urn:xmpp:sid:0", true
	case "urn:xmpp:hints":
		return "urn:xmpp:hints", true
	case "urn:xmpp:eme:0":
		return "urn:xmpp:eme:0", true
	case "urn:xmpp:delay":
		return "urn:xmpp:delay", true
	case "jabber:x:oob":
		return "jabber:x:oob", true
	case "http://jabber.org/protocol/caps":
		return "http://jabber.org/protocol/caps", true
	case "http://jabber.org/protocol/xhtml-im":
		return "http://jabber.org/protocol/xhtml-im", true
	case "eu.siacs.conversations.axolotl":
		return "eu.siacs.conversations.axolotl", true
	case "urn:xmpp:omemo:2":
		return "urn:xmpp:omemo:2", true
	}
	return "", false
}

func knownType(b []byte) (string, bool) {
	switch string(b) {
	case "chat":
		return "chat", true
	case "groupchat":
		return "groupchat", true
	case "normal":
		return "normal", true
	case "headline":
		return "headline", true
	case "error":
		return "error", true
	case "get":
		return "get", true
	case "set":
		return "set", true
	case "result":
		return "result", true
	case "unavailable":
		return "unavailable", true
	case "subscribe":
		return "subscribe", true
	case "subscribed":
		return "subscribed", true
	case "unsubscribe":
		return "unsubscribe", true
	case "unsubscribed":
		return "unsubscribed", true
	case "probe":
		return "probe", true
	case "valid":
		return "valid", true
	case "invalid":
		return "invalid", true
	}
	return "", false
}
