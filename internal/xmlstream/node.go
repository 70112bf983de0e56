package xmlstream

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Attr is an attribute of a Node. Namespace declarations are not
// attributes here; Space is "" for unprefixed attributes.
type Attr struct{ Space, Local, Value string }

// Node is a tiny DOM for the elements that need more than the head:
// stream features, STARTTLS, SASL, dialback, content policy, and the
// stanzas the relay rewrites (AppendCanonical). It is not on the hot path.
type Node struct {
	Space, Local string
	Attrs        []Attr
	Children     []*Node
	// Text is the character data directly inside this node, concatenated
	// and unescaped (CDATA sections included, as character data), with
	// line ends normalised to "\n" as XML requires.
	Text string
	// Segments keeps the order of mixed content: Segments[i] is the
	// character data just before Children[i], and Segments[len(Children)]
	// the character data after the last child, so
	// strings.Join(Segments, "") == Text. ParseNode sets it on every node
	// that has children (whitespace between children included) and leaves
	// it nil on nodes without children, whose only segment is Text. A
	// node whose Segments does not have len(Children)+1 entries (one built
	// by hand) is read as Text followed by Children.
	Segments []string
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

// SetAttr sets the unprefixed attribute local to value, appending it when
// the node has none (for example to put canonical from and to addresses
// on a stanza before AppendCanonical).
func (n *Node) SetAttr(local, value string) {
	for i := range n.Attrs {
		if a := &n.Attrs[i]; a.Space == "" && a.Local == local {
			a.Value = value
			return
		}
	}
	n.Attrs = append(n.Attrs, Attr{Local: local, Value: value})
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
// become spaces). CDATA sections are read as character data.
//
// The tree's strings share one buffer of about len(raw) bytes, and its
// nodes are allocated a few at a time: a node kept after the rest of the
// tree is dropped keeps those alive. The memory of a tree is linear in
// len(raw).
func ParseNode(raw []byte, header map[string]string) (*Node, error) {
	if len(raw) == 0 || raw[0] != '<' {
		return nil, notWellFormed("not an element")
	}
	// One allocation holds the Reader, the builder and their first
	// scratch space.
	p := &nodeParser{}
	r := &p.r
	*r = Reader{
		src: eofReader{},
		lim: Limits{MaxElementSize: len(raw) + 1}.withDefaults(),
		buf: bytes.Clone(raw),
		end: len(raw),
		// The tree's strings are copied into one arena sized to the
		// element: names, values and text are never longer decoded than
		// raw, and each namespace name is made once (nsDecl.uri).
		arena: make([]byte, 0, len(raw)),
		attrs: p.attrs[:0],
		open:  p.open[:0],
		decls: p.decls[:0],
		hdrNS: p.hdrNS[:0],
		build: &p.b,
	}
	for prefix, uri := range header {
		r.hdrNS = append(r.hdrNS, nsBinding{prefix: prefix, uri: uri})
	}
	slices.SortFunc(r.hdrNS, func(x, y nsBinding) int { return strings.Compare(x.prefix, y.prefix) })
	b := &p.b
	b.stack, b.kids, b.bounds = p.stack[:0], p.kids[:0], p.bounds[:0]
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

// nodeParser is what ParseNode allocates: the Reader, the builder, and
// room for the scratch slices of a typical element.
type nodeParser struct {
	r      Reader
	b      nodeBuilder
	attrs  [8]attrSpan
	open   [8]qname
	decls  [4]nsDecl
	hdrNS  [4]nsBinding
	stack  [8]openNode
	kids   [16]*Node
	bounds [16]int
}

// nodeBuilder receives the scanner's events inside ParseNode. The open
// nodes' text and children are kept on shared stacks, the innermost
// node's last, and given to the node, exactly sized, when it ends.
type nodeBuilder struct {
	root  *Node
	stack []openNode
	buf   []byte // scratch for attribute values
	chars []byte // decoded character data of the open nodes
	// kids are the children of the open nodes so far; bounds[i] is the
	// length of the parent's text when kids[i] started.
	kids   []*Node
	bounds []int
	slab   []Node // nodes are carved from here
}

type openNode struct {
	node     *Node
	textFrom int // this node's text starts at chars[textFrom]
	kidsFrom int // this node's children start at kids[kidsFrom]
}

const nodeSlabSize = 8

func (b *nodeBuilder) newNode() *Node {
	if len(b.slab) == 0 {
		b.slab = make([]Node, nodeSlabSize)
	}
	n := &b.slab[0]
	b.slab = b.slab[1:]
	return n
}

func (b *nodeBuilder) start(r *Reader, name []byte, colon int, ref nsRef) {
	n := b.newNode()
	n.Space = r.uriString(ref)
	local := localPart(name, colon)
	if s, ok := knownLocal(local); ok {
		n.Local = s
	} else {
		n.Local = r.nodeString(local)
	}
	attrs := 0
	for i := range r.attrs {
		if r.attrs[i].flags&flagDecl == 0 {
			attrs++
		}
	}
	if attrs > 0 {
		n.Attrs = make([]Attr, 0, attrs)
	}
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
		at.Local = r.nodeString(localPart(nb, a.name.colon))
		b.buf = appendDecoded(b.buf[:0], r.bytesAt(a.valRel, a.valLen), decodeAttr)
		at.Value = r.nodeString(b.buf)
		n.Attrs = append(n.Attrs, at)
	}
	if len(b.stack) == 0 {
		b.root = n
	} else {
		top := &b.stack[len(b.stack)-1]
		b.kids = append(b.kids, n)
		b.bounds = append(b.bounds, len(b.chars)-top.textFrom)
	}
	b.stack = append(b.stack, openNode{node: n, textFrom: len(b.chars), kidsFrom: len(b.kids)})
}

// text receives character data (references not yet replaced).
func (b *nodeBuilder) text(r *Reader, rel, n int) {
	if len(b.stack) > 0 {
		b.chars = appendDecoded(b.chars, r.bytesAt(rel, n), decodeText)
	}
}

// cdata receives the content of a CDATA section: character data taken
// literally, only line ends normalised.
func (b *nodeBuilder) cdata(r *Reader, rel, n int) {
	if len(b.stack) > 0 {
		b.chars = appendDecoded(b.chars, r.bytesAt(rel, n), decodeCDATA)
	}
}

func (b *nodeBuilder) end(r *Reader) {
	if len(b.stack) == 0 {
		return
	}
	top := &b.stack[len(b.stack)-1]
	n := top.node
	n.Text = r.nodeString(b.chars[top.textFrom:])
	if kids := b.kids[top.kidsFrom:]; len(kids) > 0 {
		n.Children = slices.Clone(kids)
		// The segments are substrings of Text.
		bounds := b.bounds[top.kidsFrom:]
		n.Segments = make([]string, len(bounds)+1)
		prev := 0
		for i, at := range bounds {
			n.Segments[i] = n.Text[prev:at]
			prev = at
		}
		n.Segments[len(bounds)] = n.Text[prev:]
	}
	b.chars = b.chars[:top.textFrom]
	b.kids = b.kids[:top.kidsFrom]
	b.bounds = b.bounds[:top.kidsFrom]
	b.stack = b.stack[:len(b.stack)-1]
}

type decodeMode uint8

const (
	decodePlain decodeMode = iota // references only
	decodeText                    // references, and \r\n or \r -> \n
	decodeAttr                    // references, and \r\n, \r, \n, \t -> ' '
	decodeCDATA                   // no references (CDATA content), \r\n or \r -> \n
)

// needsDecoding reports whether src holds what appendDecoded replaces in
// mode: a reference (not in CDATA), a carriage return (kept by
// decodePlain, but rare enough to take the slow path), and in an attribute
// value a tab or newline. One IndexByte (vectorised) per byte looked for:
// faster than bytes.IndexAny, which tests every byte against a set.
func needsDecoding(src []byte, mode decodeMode) bool {
	if bytes.IndexByte(src, '\r') >= 0 {
		return true
	}
	switch mode {
	case decodePlain, decodeText:
		return bytes.IndexByte(src, '&') >= 0
	case decodeAttr:
		return bytes.IndexByte(src, '&') >= 0 || bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\t') >= 0
	}
	return false
}

// appendDecoded appends src with its references replaced. src must have
// been validated by the scanner.
func appendDecoded(dst, src []byte, mode decodeMode) []byte {
	// Most text has nothing to replace: copy it whole.
	if !needsDecoding(src, mode) {
		return append(dst, src...)
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '&' && mode != decodeCDATA:
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
			if mode != decodeAttr {
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
