package xmlstream

import (
	"bytes"
	"io"
	"sort"
	"unicode/utf8"
)

// Attr is an attribute of a Node. Namespace declarations are not
// attributes here; Space is "" for unprefixed attributes.
type Attr struct{ Space, Local, Value string }

// Node is a tiny DOM for the rare non-stanza elements (stream features,
// STARTTLS, SASL, dialback). It is not on the hot path.
type Node struct {
	Space, Local string
	Attrs        []Attr
	Children     []*Node
	// Text is the character data directly inside this node, concatenated
	// and unescaped, with line ends normalised to "\n" as XML requires.
	Text string
}

// Attr returns the value of the unprefixed attribute local, or "".
func (n *Node) Attr(local string) string {
	for _, a := range n.Attrs {
		if a.Space == "" && a.Local == local {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child with the given namespace and local name, or
// nil.
func (n *Node) Child(space, local string) *Node {
	for _, c := range n.Children {
		if c.Space == space && c.Local == local {
			return c
		}
	}
	return nil
}

// ParseNode parses exactly one element (no leading or trailing bytes),
// typically an Element.Raw, with the same strict rules as Reader.Next.
// Prefixes resolve against the element's own declarations, then header
// (the stream header's Namespaces: e.g. "db" -> jabber:server:dialback,
// "stream" -> NSStream, "" -> jabber:server). Attribute values are
// normalised as XML requires (literal tab, newline and carriage return
// become spaces).
func ParseNode(raw []byte, header map[string]string) (*Node, error) {
	if len(raw) == 0 || raw[0] != '<' {
		return nil, notWellFormed("not an element")
	}
	r := &Reader{
		src: eofReader{},
		lim: Limits{MaxElementSize: len(raw) + 1}.withDefaults(),
		buf: bytes.Clone(raw),
		end: len(raw),
	}
	prefixes := make([]string, 0, len(header))
	for p := range header {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, p := range prefixes {
		r.hdrNS = append(r.hdrNS, nsBinding{prefix: p, uri: header[p]})
	}
	b := &nodeBuilder{}
	r.build = b
	if _, err := r.element(false); err != nil {
		return nil, err
	}
	if r.pos != len(raw) {
		return nil, notWellFormed("data after the element")
	}
	return b.root, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// nodeBuilder receives the scanner's events inside ParseNode.
type nodeBuilder struct {
	root  *Node
	stack []openNode
	buf   []byte
}

type openNode struct {
	node *Node
	text []byte // character data so far, decoded
}

func (b *nodeBuilder) start(r *Reader, name []byte, colon int, ref nsRef) {
	n := &Node{Space: r.uriString(ref), Local: string(localPart(name, colon))}
	for i := range r.attrs {
		a := &r.attrs[i]
		if a.flags&flagDecl != 0 {
			continue
		}
		nb := r.bytesAt(a.name.rel, a.name.n)
		var at Attr
		if a.name.colon >= 0 {
			at.Space = r.uriString(r.resolve(nb[:a.name.colon]))
		}
		at.Local = string(localPart(nb, a.name.colon))
		b.buf = appendDecoded(b.buf[:0], r.bytesAt(a.valRel, a.valLen), decodeAttr)
		at.Value = string(b.buf)
		n.Attrs = append(n.Attrs, at)
	}
	if len(b.stack) == 0 {
		b.root = n
	} else {
		p := b.stack[len(b.stack)-1].node
		p.Children = append(p.Children, n)
	}
	b.stack = append(b.stack, openNode{node: n})
}

func (b *nodeBuilder) text(r *Reader, rel, n int) {
	if len(b.stack) == 0 || n == 0 {
		return
	}
	top := &b.stack[len(b.stack)-1]
	top.text = appendDecoded(top.text, r.bytesAt(rel, n), decodeText)
}

func (b *nodeBuilder) end() {
	if len(b.stack) > 0 {
		top := &b.stack[len(b.stack)-1]
		top.node.Text = string(top.text)
		b.stack = b.stack[:len(b.stack)-1]
	}
}

type decodeMode uint8

const (
	decodePlain decodeMode = iota // references only
	decodeText                    // references, and \r\n or \r -> \n
	decodeAttr                    // references, and \r\n, \r, \n, \t -> ' '
)

// appendDecoded appends src with its references replaced. src must have
// been validated by the scanner.
func appendDecoded(dst, src []byte, mode decodeMode) []byte {
	// Most text has nothing to replace: copy it whole.
	special := "&"
	switch mode {
	case decodeText:
		special = "&\r"
	case decodeAttr:
		special = "&\r\n\t"
	}
	if bytes.IndexAny(src, special) < 0 {
		return append(dst, src...)
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '&':
			j := bytes.IndexByte(src[i:], ';')
			if j < 0 { // cannot happen on validated input
				return append(dst, src[i:]...)
			}
			ref := src[i+1 : i+j]
			i += j
			switch string(ref) {
			case "lt":
				dst = append(dst, '<')
			case "gt":
				dst = append(dst, '>')
			case "amp":
				dst = append(dst, '&')
			case "quot":
				dst = append(dst, '"')
			case "apos":
				dst = append(dst, '\'')
			default:
				dst = utf8.AppendRune(dst, parseCharRef(ref))
			}
		case c == '\r' && mode != decodePlain:
			if i+1 < len(src) && src[i+1] == '\n' {
				i++
			}
			if mode == decodeText {
				dst = append(dst, '\n')
			} else {
				dst = append(dst, ' ')
			}
		case (c == '\n' || c == '\t') && mode == decodeAttr:
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// parseCharRef parses "#NN" or "#xHH" (validated).
func parseCharRef(ref []byte) rune {
	if len(ref) < 2 || ref[0] != '#' {
		return utf8.RuneError
	}
	ref = ref[1:]
	base := rune(10)
	if ref[0] == 'x' {
		base = 16
		ref = ref[1:]
	}
	var v rune
	for _, c := range ref {
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		}
		v = v*base + d
		if v > utf8.MaxRune {
			return utf8.RuneError
		}
	}
	return v
}
