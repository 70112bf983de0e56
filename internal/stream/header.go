package stream

import "github.com/xmppedge/xmppedge/internal/xmlstream"

// AppendHeader appends an XML declaration and an s2s stream header
// (jabber:server, with the dialback prefix, version 1.0) to b; from, to
// and id are left out when empty.
func AppendHeader(b []byte, from, to, id string) []byte {
	b = append(b, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0'"...)
	b = appendAttr(b, "from", from)
	b = appendAttr(b, "to", to)
	b = appendAttr(b, "id", id)
	return append(b, '>')
}

func appendAttr(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, "='"...)
	b = xmlstream.AppendEscapedAttr(b, value)
	return append(b, '\'')
}

// CheckHeader checks the namespaces every s2s stream header must use.
func CheckHeader(h xmlstream.Header) error {
	if h.Local != "stream" || h.Space != xmlstream.NSStream {
		return &Error{Condition: InvalidNamespace, Text: "the stream element must be <stream xmlns='http://etherx.jabber.org/streams'>"}
	}
	if h.Namespaces[""] != xmlstream.NSServer {
		return &Error{Condition: InvalidNamespace, Text: "the content namespace of a server-to-server stream must be jabber:server"}
	}
	if db, ok := h.Namespaces["db"]; ok && db != xmlstream.NSDialback {
		return &Error{Condition: InvalidNamespace, Text: "the db prefix must be bound to jabber:server:dialback"}
	}
	return nil
}
