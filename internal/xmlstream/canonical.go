package xmlstream

import "strconv"

// AppendCanonical appends n to dst in canonical form, for a stanza the
// relay must rewrite instead of forwarding its raw bytes (one with CDATA,
// or one whose children the policy strips). The output is exactly the tree
// that was judged, written with the fewest constructs a receiver can read
// in only one way:
//
//   - every element unprefixed; an xmlns='…' declaration on each element
//     whose namespace differs from its parent's, and on the root when its
//     namespace differs from streamNS (the default namespace of the stream
//     the output is written onto, e.g. NSServer): a root in streamNS
//     inherits it and carries none. An empty declaration (xmlns="", in
//     single quotes) is written for an element in no namespace whose
//     parent (or the stream) has one;
//   - attributes in the order of n.Attrs, values in single quotes escaped
//     with AppendEscapedAttr; xml:lang and other attributes in the xml
//     namespace keep the predefined xml prefix; an attribute in any other
//     namespace gets a generated prefix (ns0, ns1, … in order of first use)
//     declared on that same element;
//   - character data escaped with AppendEscapedText (predefined entities,
//     &#xD; for a carriage return), in the order of Segments (see Node):
//     whitespace between children is kept; no CDATA, no comments, no
//     processing instructions;
//   - <x/> for an element with no character data and no children left.
//
// strip, if not nil, is asked about every child of every element written,
// in document order: path holds the element's ancestors from n down to the
// child's parent (the slice is reused: do not keep it), and a true result
// leaves the child and everything under it out. The character data around
// a stripped child is kept, joined. n itself is always written.
//
// The output can be larger than the input (a namespace declared once on an
// ancestor and used through a prefix is declared again on every element
// that uses it). maxSize (0 means DefaultMaxElementSize) bounds how much
// is appended: past it AppendCanonical stops and returns dst as it was
// with a *StreamError policy-violation carrying the stanza-too-big
// application condition. The caller should pass the element size limit of
// the stream it writes onto.
//
// n must be a tree whose names are NCNames and whose attributes are unique
// by expanded name, as every tree ParseNode returns is; given one from
// ParseNode, Reader.Next accepts the output and ParseNode(output) equals
// the tree minus the stripped children, and AppendCanonical of that equals
// the output (FuzzCanonical checks both). Nothing is validated here.
func AppendCanonical(dst []byte, n *Node, streamNS string, strip func(path []*Node, child *Node) bool, maxSize int) ([]byte, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxElementSize
	}
	w := canonWriter{strip: strip, limit: len(dst) + maxSize}
	out, err := w.element(dst, n, streamNS)
	if err != nil {
		return out[:len(dst)], err // nothing of a partial element
	}
	return out, nil
}

type canonWriter struct {
	strip func(path []*Node, child *Node) bool
	limit int      // len(dst) must not pass this
	path  []*Node  // ancestors of the element being written
	attNS []string // namespaces given prefixes on the current start tag
}

func (w *canonWriter) tooBig() error {
	return &StreamError{Condition: CondPolicyViolation, App: AppStanzaTooBig, Text: "canonical form exceeds the size limit"}
}

func (w *canonWriter) element(dst []byte, n *Node, parentNS string) ([]byte, error) {
	dst = w.startTag(dst, n, parentNS)
	if len(dst) > w.limit {
		return dst, w.tooBig()
	}
	// The start tag is closed with '>' before the first content written,
	// or with "/>" if there is none.
	dst, open, err := w.content(dst, n)
	if err != nil {
		return dst, err
	}
	if open {
		dst = append(dst, "</"...)
		dst = append(dst, n.Local...)
		dst = append(dst, '>')
	} else {
		dst = append(dst, "/>"...)
	}
	if len(dst) > w.limit {
		return dst, w.tooBig()
	}
	return dst, nil
}

// startTag appends n's start tag, left open: its name, its namespace when
// it is not parentNS, a prefix nsN declared for each namespace of its
// attributes (but xml:), and the attributes.
func (w *canonWriter) startTag(dst []byte, n *Node, parentNS string) []byte {
	dst = append(dst, '<')
	dst = append(dst, n.Local...)
	if n.Space != parentNS {
		dst = append(dst, " xmlns='"...)
		dst = AppendEscapedAttr(dst, n.Space)
		dst = append(dst, '\'')
	}
	w.attNS = w.attNS[:0]
	for _, a := range n.Attrs {
		if a.Space == "" || a.Space == NSXML || w.prefixOf(a.Space) >= 0 {
			continue
		}
		dst = append(dst, " xmlns:ns"...)
		dst = strconv.AppendInt(dst, int64(len(w.attNS)), 10)
		dst = append(dst, "='"...)
		dst = AppendEscapedAttr(dst, a.Space)
		dst = append(dst, '\'')
		w.attNS = append(w.attNS, a.Space)
	}
	for _, a := range n.Attrs {
		dst = append(dst, ' ')
		switch a.Space {
		case "":
		case NSXML:
			dst = append(dst, "xml:"...)
		default:
			dst = append(dst, "ns"...)
			dst = strconv.AppendInt(dst, int64(w.prefixOf(a.Space)), 10)
			dst = append(dst, ':')
		}
		dst = appendAttr(dst, a.Local, a.Value)
	}
	return dst
}

// content appends n's text and the children that are not stripped, in
// document order when n keeps its text segments, closing the start tag
// before the first of them; open says whether it did.
func (w *canonWriter) content(dst []byte, n *Node) (_ []byte, open bool, _ error) {
	ordered := len(n.Segments) == len(n.Children)+1
	if !ordered {
		dst, open = appendCanonicalText(dst, n.Text, open)
	}
	if w.strip != nil {
		w.path = append(w.path, n)
	}
	for i, c := range n.Children {
		if ordered {
			dst, open = appendCanonicalText(dst, n.Segments[i], open)
		}
		if len(dst) > w.limit {
			return dst, open, w.tooBig()
		}
		if w.strip != nil && w.strip(w.path, c) {
			continue
		}
		if !open {
			dst, open = append(dst, '>'), true
		}
		var err error
		if dst, err = w.element(dst, c, n.Space); err != nil {
			return dst, open, err
		}
	}
	if w.strip != nil {
		w.path = w.path[:len(w.path)-1]
	}
	if ordered {
		dst, open = appendCanonicalText(dst, n.Segments[len(n.Children)], open)
	}
	return dst, open, nil
}

// appendCanonicalText appends escaped character data, first closing the
// start tag if it is still open.
func appendCanonicalText(dst []byte, s string, open bool) ([]byte, bool) {
	if s == "" {
		return dst, open
	}
	if !open {
		dst = append(dst, '>')
	}
	return AppendEscapedText(dst, s), true
}

// prefixOf returns the number of the generated prefix of namespace ns on
// the current start tag, or -1.
func (w *canonWriter) prefixOf(ns string) int {
	for i, s := range w.attNS {
		if s == ns {
			return i
		}
	}
	return -1
}
