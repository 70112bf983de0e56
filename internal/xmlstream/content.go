package xmlstream

import "bytes"

// Name is an element's resolved namespace and local name.
type Name struct{ Space, Local string }

// Content is what a content policy reads of a stanza: the names of its
// child elements, in order; the character data of every body and every
// subject in the jabber:server namespace, joined by newlines (a stanza may
// carry several, e.g. one per xml:lang, and a receiver may show any of
// them: the policy must see them all); and the first thread.
type Content struct {
	Children              []Name
	Body, Subject, Thread string
}

// SecurityLabelNS is XEP-0258's namespace; a stanza carrying a label takes
// the ParseNode path (ParseContent reports !ok).
const SecurityLabelNS = "urn:xmpp:sec-label:0"

// ParseContent extracts Content from the raw bytes of a stanza that
// Reader.Next accepted, without building a tree and without the Reader's
// notes (Element.ContentInto, which the stanza path uses): the way for
// bytes read back later, as policy replay does. It resolves only default
// namespaces; when the stanza has a shape it does not handle (a namespace
// prefix, a security label, a CDATA section, anything unexpected) it
// returns ok false, and the caller uses ParseNode. (A CDATA section always
// starts with "<!", where ParseContent stops; the caller may skip it
// outright when Element.HasCDATA is set.) Where ok is true the result is
// exactly what ParseNode gives (FuzzParseContent checks it).
func ParseContent(raw []byte, header map[string]string) (c Content, ok bool) {
	ok = ParseContentInto(&c, raw, header)
	return c, ok
}

// ParseContentInto is ParseContent into c, whose Children's array it
// reuses (the stanza path parses every stanza's content into one Content).
func ParseContentInto(c *Content, raw []byte, header map[string]string) bool {
	*c = Content{Children: c.Children[:0]}
	p := contentParser{b: raw}
	rootNS, selfClosing, ok := p.startTag(header[""])
	if !ok {
		return false
	}
	if selfClosing {
		return p.i == len(p.b)
	}
	thread := false
	for {
		// Character data directly inside the stanza is not content.
		j := bytes.IndexByte(p.b[p.i:], '<')
		if j < 0 {
			return false
		}
		p.i += j
		if p.has("</") {
			return p.endTag()
		}
		if p.has("<!") || p.has("<?") {
			return false
		}
		ns, self, ok := p.startTagName(rootNS)
		if !ok {
			return false
		}
		name := Name{Space: ns, Local: p.name}
		if name.Space == SecurityLabelNS {
			return false
		}
		if c.Children == nil {
			c.Children = make([]Name, 0, 4) // one allocation for the usual few
		}
		c.Children = append(c.Children, name)
		var field *string
		if name.Space == NSServer {
			switch name.Local {
			case "body":
				field = &c.Body
			case "subject":
				field = &c.Subject
			case "thread":
				if !thread {
					field = &c.Thread
					thread = true
				}
			}
		}
		if self {
			continue
		}
		text, ok := p.childContent(field != nil)
		if !ok {
			return false
		}
		if field != nil {
			*field = joinText(*field, text, field == &c.Thread)
		}
	}
}

type contentParser struct {
	b    []byte
	i    int
	name string
}

func (p *contentParser) has(s string) bool { return bytes.HasPrefix(p.b[p.i:], []byte(s)) }

// JoinText adds the text of one more body (or subject) to what was
// collected: every one is kept, separated by a newline. With first, only
// the first text counts (thread).
func JoinText(have, text string, first bool) string { return joinText(have, text, first) }

func joinText(have, text string, first bool) string {
	switch {
	case first:
		return text
	case have == "":
		return text
	case text == "":
		return have
	}
	return have + "\n" + text
}

// startTag reads the stanza's own start tag.
func (p *contentParser) startTag(inherited string) (ns string, selfClosing, ok bool) {
	if !p.has("<") {
		return "", false, false
	}
	return p.startTagName(inherited)
}

// startTagName reads "<name attrs>" at p.i: the name must have no prefix;
// an xmlns attribute sets the default namespace, a prefixed declaration
// makes the stanza the slow path's.
func (p *contentParser) startTagName(inherited string) (ns string, selfClosing, ok bool) {
	p.i++ // '<'
	start := p.i
	for p.i < len(p.b) && !tagNameEnd[p.b[p.i]] {
		p.i++
	}
	if p.i < len(p.b) && p.b[p.i] == ':' {
		return "", false, false
	}
	if p.i == start {
		return "", false, false
	}
	p.name = internName(p.b[start:p.i])
	ns = inherited
	for {
		for p.i < len(p.b) && isXMLSpace[p.b[p.i]] {
			p.i++
		}
		switch {
		case p.i >= len(p.b):
			return "", false, false
		case p.b[p.i] == '>':
			p.i++
			return ns, false, true
		case p.has("/>"):
			p.i += 2
			return ns, true, true
		}
		// An attribute: name = quoted value.
		as := p.i
		for p.i < len(p.b) && !attrNameEnd[p.b[p.i]] {
			p.i++
		}
		attr := p.b[as:p.i]
		for p.i < len(p.b) && attrNameEnd[p.b[p.i]] {
			p.i++
		}
		if p.i >= len(p.b) || (p.b[p.i] != '\'' && p.b[p.i] != '"') {
			return "", false, false
		}
		q := p.b[p.i]
		end := bytes.IndexByte(p.b[p.i+1:], q)
		if end < 0 {
			return "", false, false
		}
		val := p.b[p.i+1 : p.i+1+end]
		p.i += end + 2
		switch {
		case string(attr) == "xmlns":
			ns = internNS(val)
		case len(attr) > 6 && string(attr[:6]) == "xmlns:":
			return "", false, false
		}
	}
}

// childContent reads a child element's content up to its end tag; with
// keep, it returns the character data directly inside it (nested elements
// skipped).
func (p *contentParser) childContent(keep bool) (string, bool) {
	var text []byte
	var run []byte // the only run of text so far, not copied yet
	runs := 0
	depth := 0
	for {
		j := bytes.IndexByte(p.b[p.i:], '<')
		if j < 0 {
			return "", false
		}
		if keep && depth == 0 && j > 0 {
			if runs++; runs == 1 {
				run = p.b[p.i : p.i+j]
			} else {
				if runs == 2 {
					text = appendDecoded(nil, run, decodeText)
				}
				text = appendDecoded(text, p.b[p.i:p.i+j], decodeText)
			}
		}
		p.i += j
		switch {
		case p.has("</"):
			if !p.endTag() {
				return "", false
			}
			if depth == 0 {
				if runs == 1 {
					return decodedString(run), true
				}
				return string(text), true
			}
			depth--
		case p.has("<!") || p.has("<?"):
			return "", false
		default:
			_, self, ok := p.skipTag()
			if !ok {
				return "", false
			}
			if !self {
				depth++
			}
		}
	}
}

// skipTag passes over a nested start tag (any name, prefixed or not).
func (p *contentParser) skipTag() (string, bool, bool) {
	p.i++
	for p.i < len(p.b) {
		switch c := p.b[p.i]; c {
		case '\'', '"':
			end := bytes.IndexByte(p.b[p.i+1:], c)
			if end < 0 {
				return "", false, false
			}
			p.i += end + 2
		case '>':
			self := p.b[p.i-1] == '/'
			p.i++
			return "", self, true
		default:
			p.i++
		}
	}
	return "", false, false
}

// endTag passes over "</name>".
func (p *contentParser) endTag() bool {
	end := bytes.IndexByte(p.b[p.i:], '>')
	if end < 0 {
		return false
	}
	p.i += end + 1
	return true
}

// decodedString is the character data b decoded, with one allocation.
func decodedString(b []byte) string {
	if !needsDecoding(b, decodeText) {
		return string(b)
	}
	return string(appendDecoded(nil, b, decodeText))
}

// internName returns b as a string, without an allocation for the child
// names stanzas usually carry.
func internName(b []byte) string {
	switch string(b) { // no allocation: the compiler compares in place
	case "message":
		return "message"
	case "presence":
		return "presence"
	case "iq":
		return "iq"
	case "body":
		return "body"
	case "subject":
		return "subject"
	case "thread":
		return "thread"
	case "active":
		return "active"
	case "composing":
		return "composing"
	case "paused":
		return "paused"
	case "inactive":
		return "inactive"
	case "gone":
		return "gone"
	case "request":
		return "request"
	case "received":
		return "received"
	case "markable":
		return "markable"
	case "origin-id":
		return "origin-id"
	case "stanza-id":
		return "stanza-id"
	case "x":
		return "x"
	case "store":
		return "store"
	case "encryption":
		return "encryption"
	case "encrypted":
		return "encrypted"
	case "html":
		return "html"
	case "delay":
		return "delay"
	case "c":
		return "c"
	case "priority":
		return "priority"
	case "show":
		return "show"
	case "status":
		return "status"
	}
	return string(b)
}

// internNS returns the namespace an xmlns attribute's raw value declares,
// without an allocation for the usual ones.
func internNS(val []byte) string {
	if s, ok := knownNamespace(val); ok {
		return s
	}
	return string(appendDecoded(nil, val, decodeAttr))
}
