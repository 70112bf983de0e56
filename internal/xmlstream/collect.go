package xmlstream

// What a content policy reads of a stanza, noted by the Reader while it
// scans the element (Element.ContentInto), so that the stanza path does not
// parse the same bytes a second time (ParseContent) or build a tree
// (ParseNode) for it.
//
// While Next scans an element, the Reader notes each child of the root
// (depth 2): where its local name is, and where the namespace it is in
// was declared (a declaration's value is in Raw too; the declarations in
// scope are gone once the child ends, so this is kept then); and, for a
// child named body, subject or thread, where each run of character data
// or CDATA directly inside it is. The scan does no more than that: the
// namespaces are resolved, the body, subject and first thread of
// jabber:server picked and their text decoded only when ContentInto asks,
// from offsets into Element.Raw. A gateway whose policy reads no content
// pays a small append per child.

// collected is the Reader's notes on the element being scanned; gen ties
// an Element to the notes made for it.
type collected struct {
	gen   uint64
	kids  []collectedKid
	texts []collectedText
	text  bool // the child being scanned is named body, subject or thread
}

// collectedKid is one child of the root: its local name at Raw[rel:rel+n]
// and its namespace.
type collectedKid struct {
	rel, n int
	ns     notedNS
	text   bool // named body, subject or thread: its text runs are noted
}

// notedNS is where a child's namespace comes from: a string the Reader
// has (the stream header's bindings, a declaration already resolved, the
// xml prefix's), or a declaration's value at Raw[valRel:valRel+valLen]
// (decoded with flags' references); neither: no namespace.
type notedNS struct {
	uri            string
	valRel, valLen int
	flags          uint8
	inRaw          bool
}

// collectedText is one run of character data (or a CDATA section's
// content) at Raw[rel:rel+n], directly inside the child kid.
type collectedText struct {
	kid    int
	rel, n int
	cdata  bool
}

// maxKeptNotes bounds the notes' arrays kept from one element to the
// next: a stanza with thousands of children (a peer's choice, up to the
// size limit) must not leave its stream holding their table.
const maxKeptNotes = 64

func (c *collected) reset() {
	c.gen++
	c.kids, c.texts = c.kids[:0], c.texts[:0]
	if cap(c.kids) > maxKeptNotes {
		c.kids = nil
	}
	if cap(c.texts) > maxKeptNotes {
		c.texts = nil
	}
	c.text = false
}

// collectKid notes the child of the root whose start tag was just read
// (the top of r.open), in the namespace ref.
func (r *Reader) collectKid(ref nsRef) {
	name := r.open[len(r.open)-1]
	k := collectedKid{rel: name.rel + name.colon + 1, n: name.n - name.colon - 1}
	switch ref.kind {
	case nsHeader:
		k.ns.uri = r.hdrNS[ref.idx].uri
	case nsXMLPre:
		k.ns.uri = NSXML
	case nsDecl_:
		d := &r.decls[ref.idx]
		if d.uri != "" {
			k.ns.uri = d.uri
		} else {
			k.ns = notedNS{valRel: d.valRel, valLen: d.valLen, flags: d.flags, inRaw: true}
		}
	}
	switch string(r.bytesAt(k.rel, k.n)) {
	case "body", "subject", "thread":
		k.text = true
	}
	r.col.text = k.text
	r.col.kids = append(r.col.kids, k)
}

// collectText notes a run of text (or CDATA content) at [rel, rel+n) of
// the current element, read at depth: only what is directly inside a
// child of the root that may be content counts.
func (r *Reader) collectText(depth, rel, n int, cdata bool) {
	if depth != 2 || !r.col.text || n == 0 {
		return
	}
	r.col.texts = append(r.col.texts, collectedText{kid: len(r.col.kids) - 1, rel: rel, n: n, cdata: cdata})
}

// ContentInto fills c (reusing its Children's array) with what a content
// policy reads of the element, from the notes the Reader made while
// scanning it: exactly what ParseContent, or ParseNode's tree, gives
// (FuzzCollectedContent checks it). It reports false, leaving c empty,
// when there are no notes for this element (an Element that Next did not
// return, or one read before the Reader's latest Next, Reset or Release)
// or when the element carries a XEP-0258 security label, which only the
// tree describes. Like Raw it must be called before the next Next.
func (el *Element) ContentInto(c *Content) bool {
	*c = Content{Children: c.Children[:0]}
	col := el.col
	if col == nil || col.gen != el.colGen {
		return false
	}
	if len(col.kids) > 0 && c.Children == nil {
		c.Children = make([]Name, 0, max(len(col.kids), 4))
	}
	texts := col.texts
	thread := false
	var buf []byte
	for k := range col.kids {
		kid := &col.kids[k]
		local := internName(el.Raw[kid.rel : kid.rel+kid.n])
		space := el.namespace(&kid.ns)
		if space == SecurityLabelNS {
			*c = Content{Children: c.Children[:0]}
			return false
		}
		c.Children = append(c.Children, Name{Space: space, Local: local})
		// The kid's runs are the next ones in texts.
		n := 0
		for n < len(texts) && texts[n].kid == k {
			n++
		}
		runs := texts[:n]
		texts = texts[n:]
		var field *string
		if space == NSServer {
			switch {
			case local == "body":
				field = &c.Body
			case local == "subject":
				field = &c.Subject
			case local == "thread" && !thread:
				field, thread = &c.Thread, true
			}
		}
		if field == nil {
			continue
		}
		var text string
		switch {
		case len(runs) == 1 && !runs[0].cdata:
			text = decodedString(el.Raw[runs[0].rel : runs[0].rel+runs[0].n])
		case len(runs) > 0:
			buf = buf[:0]
			for _, t := range runs {
				mode := decodeText
				if t.cdata {
					mode = decodeCDATA
				}
				buf = appendDecoded(buf, el.Raw[t.rel:t.rel+t.n], mode)
			}
			text = string(buf)
		}
		*field = joinText(*field, text, field == &c.Thread)
	}
	return true
}

// namespace resolves a noted namespace.
func (el *Element) namespace(ns *notedNS) string {
	if !ns.inRaw {
		return ns.uri
	}
	v := el.Raw[ns.valRel : ns.valRel+ns.valLen]
	if ns.flags&flagAmp != 0 {
		v = appendDecoded(nil, v, decodePlain)
	}
	if s, ok := knownNamespace(v); ok {
		return s
	}
	return string(v)
}
