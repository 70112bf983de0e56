package loadgen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Kind is the kind of a stanza the tool sends.
type Kind int

const (
	Message  Kind = iota // <message type='chat'> with a <body/>
	Presence             // directed <presence/> with a <status/>
	IQ                   // <iq type='get'> with a query in the tool's namespace
)

// String is the stanza's element name.
func (k Kind) String() string {
	switch k {
	case Message:
		return "message"
	case Presence:
		return "presence"
	case IQ:
		return "iq"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// NSLoad is the namespace of the iq payload.
const NSLoad = "urn:xmppedge:load:0"

// Mix is the share of each kind, as weights: message:presence:iq.
type Mix [3]int

// ParseMix reads "M:P:I" (weights, at least one positive) or a single kind
// name ("message", "presence", "iq").
func ParseMix(s string) (Mix, error) {
	switch s {
	case "message":
		return Mix{1, 0, 0}, nil
	case "presence":
		return Mix{0, 1, 0}, nil
	case "iq":
		return Mix{0, 0, 1}, nil
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Mix{}, fmt.Errorf("mix %q: want message:presence:iq weights, e.g. 8:1:1", s)
	}
	var m Mix
	total := 0
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1000 {
			return Mix{}, fmt.Errorf("mix %q: %q is not a weight from 0 to 1000", s, p)
		}
		m[i] = n
		total += n
	}
	if total == 0 {
		return Mix{}, fmt.Errorf("mix %q: every weight is 0", s)
	}
	return m, nil
}

// String is the mix as M:P:I.
func (m Mix) String() string { return fmt.Sprintf("%d:%d:%d", m[0], m[1], m[2]) }

// Kind is the kind of stanza number seq: the kinds interleave in
// proportion to their weights, in a cycle of the weights' sum.
func (m Mix) Kind(seq uint64) Kind {
	total := uint64(m[0] + m[1] + m[2])
	r := seq % total
	for k, w := range m {
		if r < uint64(w) {
			return Kind(k)
		}
		r -= uint64(w)
	}
	return Message
}

// filler is the padding text: words without digits (the shipped rules'
// card-number pattern) or keywords.
const filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "

// AppendStanza appends a stanza of kind k from from to to with id id,
// padded with text so that it is about size bytes long (never shorter
// than the markup itself).
func AppendStanza(b []byte, k Kind, from, to, id string, size int) []byte {
	start := len(b)
	var open, close string
	switch k {
	case Presence:
		b = append(b, "<presence"...)
		open, close = "><status>", "</status></presence>"
	case IQ:
		b = append(b, "<iq type='get'"...)
		open, close = "><query xmlns='"+NSLoad+"'>", "</query></iq>"
	default:
		b = append(b, "<message type='chat'"...)
		open, close = "><body>", "</body></message>"
	}
	b = appendAttr(b, "from", from)
	b = appendAttr(b, "to", to)
	b = appendAttr(b, "id", id)
	b = append(b, open...)
	pad := size - (len(b) - start) - len(close)
	for pad > 0 {
		n := min(pad, len(filler))
		b = append(b, filler[:n]...)
		pad -= n
	}
	return append(b, close...)
}

func appendAttr(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, "='"...)
	b = xmlstream.AppendEscapedAttr(b, value)
	return append(b, '\'')
}
