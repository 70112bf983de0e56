package dialback

import (
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Element is the name of a dialback element in jabber:server:dialback.
type Element string

// The two dialback elements.
const (
	Result Element = "result" // <db:result/>: the key, from the initiating server to the receiving one
	Verify Element = "verify" // <db:verify/>: the key, from the receiving server to the authoritative one
)

// The types of an answer.
const (
	Valid   = "valid"
	Invalid = "invalid"
)

// head starts a <db:result/> or <db:verify/>: the element name and its
// from, to and (when set) id attributes, ending inside the start tag.
func head(el Element, from, to, id string) []byte {
	b := make([]byte, 0, 128)
	b = append(b, "<db:"...)
	b = append(b, el...)
	b = append(b, " from='"...)
	b = xmlstream.AppendEscapedAttr(b, from)
	b = append(b, "' to='"...)
	b = xmlstream.AppendEscapedAttr(b, to)
	if id != "" {
		b = append(b, "' id='"...)
		b = xmlstream.AppendEscapedAttr(b, id)
	}
	return append(b, '\'')
}

// Request builds a <db:result/> or <db:verify/> request (no type)
// carrying key.
func Request(el Element, from, to, id, key string) []byte {
	b := append(head(el, from, to, id), '>')
	b = xmlstream.AppendEscapedText(b, key)
	b = append(b, "</db:"...)
	b = append(b, el...)
	return append(b, '>')
}

// Answer builds an answer of type typ (Valid or Invalid).
func Answer(el Element, from, to, id, typ string) []byte {
	b := head(el, from, to, id)
	b = append(b, " type='"...)
	b = append(b, typ...)
	return append(b, "'/>"...)
}

// ErrorAnswer builds an answer of type 'error' with a stanza error of
// type typ and condition cond (XEP-0220 §2.4).
func ErrorAnswer(el Element, from, to, id string, typ stanza.ErrorType, cond stanza.Condition) []byte {
	b := head(el, from, to, id)
	b = append(b, " type='error'>"...)
	b = stanza.AppendErrorChild(b, typ, cond, "")
	b = append(b, "</db:"...)
	b = append(b, el...)
	return append(b, '>')
}
