package xmlstream

// What a content policy reads of a stanza, collected by the Reader while it
// scans the element (Element.ContentInto), so that the stanza path does not
// parse the same bytes a second time (ParseContent) or build a tree
// (ParseNode) for it.
//
// While Next scans an element, the Reader notes each child of the root
// (depth 2): its resolved namespace (resolved then, since the declarations
// in scope are gone once the child ends) and where its name is; and, for a
// jabber:server body, subject or first thread, where each run of character
// data or CDATA directly inside it is. Nothing is decoded or copied until
// ContentInto asks: the notes are offsets into Element.Raw.

// contentField says which Content field a child's text goes to.
type contentField uint8

const (
	fieldNone contentField = iota
	fieldBody
	fieldSubject
	fieldThread
)

// collected is the Reader's notes on the element being scanned; gen ties
// an Element to the notes made for it.
type collected struct {
	gen    uint64
	kids   []collectedKid
	texts  []collectedText
	field  contentField // of the child being scanned
	thread bool         // a thread child was seen: only the first counts
	label  bool         // a XEP-0258 security label: the tree's case
}

// collectedKid is one child of the root: its namespace, and its local
// name at Raw[rel:rel+n].
type collectedKid struct {
	space  string
	rel, n int
	field  contentField
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
	c.field, c.thread, c.label = fieldNone, false, false
}

// collectKid notes the child of the root whose start tag was just read
// (the top of r.open), in the namespace ref.
func (r *Reader) collectKid(ref nsRef) {
	name := r.open[len(r.open)-1]
	space := r.uriString(ref)
	local := r.bytesAt(name.rel+name.colon+1, name.n-name.colon-1)
	field := fieldNone
	switch {
	case space == NSServer:
		switch string(local) {
		case "body":
			field = fieldBody
		case "subject":
			field = fieldSubject
		case "thread":
			if !r.col.thread {
				field, r.col.thread = fieldThread, true
			}
		}
	case space == SecurityLabelNS:
		r.col.label = true
	}
	r.col.field = field
	r.col.kids = append(r.col.kids, collectedKid{space: space, rel: name.rel + name.colon + 1, n: name.n - name.colon - 1, field: field})
}

// collectText notes a run of text (or CDATA content) at [rel, rel+n) of
// the current element, read at depth: only what is directly inside a
// child of the root whose text is content counts.
func (r *Reader) collectText(depth, rel, n int, cdata bool) {
	if depth != 2 || r.col.field == fieldNone || n == 0 {
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
	if col == nil || col.gen != el.colGen || col.label {
		return false
	}
	if len(col.kids) > 0 && c.Children == nil {
		c.Children = make([]Name, 0, max(len(col.kids), 4))
	}
	texts := col.texts
	var buf []byte
	for k := range col.kids {
		kid := &col.kids[k]
		local := el.Raw[kid.rel : kid.rel+kid.n]
		c.Children = append(c.Children, Name{Space: kid.space, Local: internName(local)})
		if kid.field == fieldNone {
			continue
		}
		// The kid's runs are the next ones in texts.
		n := 0
		for n < len(texts) && texts[n].kid == k {
			n++
		}
		var text string
		switch {
		case n == 1 && !texts[0].cdata:
			text = decodedString(el.Raw[texts[0].rel : texts[0].rel+texts[0].n])
		case n > 0:
			buf = buf[:0]
			for _, t := range texts[:n] {
				mode := decodeText
				if t.cdata {
					mode = decodeCDATA
				}
				buf = appendDecoded(buf, el.Raw[t.rel:t.rel+t.n], mode)
			}
			text = string(buf)
		}
		texts = texts[n:]
		switch kid.field {
		case fieldBody:
			c.Body = joinText(c.Body, text, false)
		case fieldSubject:
			c.Subject = joinText(c.Subject, text, false)
		case fieldThread:
			c.Thread = text
		}
	}
	return true
}
