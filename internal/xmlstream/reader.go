package xmlstream

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
	"unsafe"

	"github.com/xmppedge/xmppedge/internal/bytescan"
)

const (
	initialBufSize  = 4 << 10  // read buffer of an idle stream
	shrinkAboveSize = 64 << 10 // a grown buffer is dropped back to initialBufSize between elements
	readSlack       = 4 << 10  // room to read into beyond MaxElementSize
	arenaChunkSize  = 2 << 10  // string arena chunk (see Reader.arenaString)
	maxEmptyReads   = 100      // consecutive (0, nil) reads before io.ErrNoProgress
	maxEntityName   = 32       // longest entity name we bother to read
	maxHeaderSize   = 16 << 10 // limit for the XML declaration and the stream header tag
	dupMapThreshold = 32       // attributes per tag above which duplicates are found with a map
	// Caps that keep the cost of one element linear in its size: prefix
	// resolution walks the declarations in scope, duplicate detection
	// looks at every attribute of a tag. Real XMPP traffic stays far
	// below both.
	maxDeclsInScope = 128
	maxAttrsPerTag  = 256
)

// attribute flags
const (
	flagAmp  = 1 << iota // value contains a reference
	flagWS               // value contains a literal tab, newline or carriage return
	flagDecl             // attribute is a namespace declaration
)

// qname locates a (possibly prefixed) name in the current element,
// relative to Reader.elemStart so it survives buffer compaction.
type qname struct {
	rel, n int // position and length
	colon  int // offset of ':' within the name, or -1
}

type attrSpan struct {
	name   qname
	valRel int
	valLen int
	flags  uint8
}

// nsDecl is a namespace declaration inside the current element.
type nsDecl struct {
	prefixRel, prefixLen int // prefixLen 0: default namespace
	valRel, valLen       int
	flags                uint8
	depth                int
	// uri is the decoded namespace name once uriString has made it: every
	// name in the namespace then shares one string, so the strings of a
	// ParseNode tree stay linear in the size of the element.
	uri string
}

// nsBinding is a namespace declaration on the stream header.
type nsBinding struct {
	prefix, uri string
}

// nsRef says where a prefix resolved to.
type nsRef struct {
	kind uint8
	idx  int
}

const (
	nsNone   uint8 = iota // undeclared (or no default namespace)
	nsDecl_               // Reader.decls[idx]
	nsHeader              // Reader.hdrNS[idx]
	nsXMLPre              // the predefined xml prefix
)

// Reader reads an XMPP stream: one stream header, then top-level elements.
// It owns its read buffer and never reads from its source more than that
// buffer holds, so Buffered reports exactly what was read but not yet
// consumed. A Reader is not safe for concurrent use.
type Reader struct {
	src io.Reader
	lim Limits

	// buf[start:end] holds bytes read but not consumed; pos is the scan
	// cursor. Between elements start == pos. Inside an element (or the
	// header), elemStart marks its first byte and every saved offset is
	// relative to it, so the buffer may be compacted while scanning.
	buf             []byte
	start, pos, end int
	wake            [16]byte // a released reader's first read (awaitReleased)
	elemStart       int
	inElem          bool
	sizeLimit       int   // size limit of what starts at elemStart
	rerr            error // sticky error from src
	fatal           error // sticky parse error
	emptyReads      int

	// stream state, forgotten by Restart and Reset
	headerDone bool
	ended      bool
	hdrQName   []byte
	hdrNS      []nsBinding

	// per-element scratch, reused
	attrs       []attrSpan
	decls       []nsDecl
	open        []qname
	hdrPrefixes []string
	scratch     []byte
	arena       []byte
	dupSet      map[string]struct{}
	col         collected // what Element.ContentInto reads (collect.go)

	build *nodeBuilder // non-nil only inside ParseNode
}

// NewReader returns a Reader of src with the given limits.
func NewReader(src io.Reader, lim Limits) *Reader {
	return &Reader{src: src, lim: lim.withDefaults()}
}

// Buffered returns the number of bytes read from the source but not yet
// consumed. After <starttls/> the caller must see 0 here before it starts
// TLS: anything else was sent before the handshake and must not be
// treated as part of the protected stream.
func (r *Reader) Buffered() int { return r.end - r.start }

// Reset switches to a new source (for example the tls.Conn after STARTTLS),
// drops any buffered bytes and forgets all stream state: the next call must
// be ReadHeader. The caller must have checked Buffered() == 0 first.
func (r *Reader) Reset(src io.Reader) {
	r.src = src
	r.start, r.pos, r.end, r.elemStart = 0, 0, 0, 0
	r.inElem = false
	r.rerr, r.fatal = nil, nil
	r.emptyReads = 0
	if len(r.buf) > shrinkAboveSize {
		r.buf = nil
	}
	r.forgetStream()
}

// Restart forgets the stream state (header, namespaces, end of stream) but
// keeps the source and any buffered bytes: the stream restart after SASL
// success, where the peer may already have sent its new header. The next
// call must be ReadHeader.
func (r *Reader) Restart() { r.forgetStream() }

func (r *Reader) forgetStream() {
	r.headerDone = false
	r.ended = false
	r.hdrQName = r.hdrQName[:0]
	r.hdrNS = nil
	r.resetScratch()
}

func (r *Reader) resetScratch() {
	r.attrs = r.attrs[:0]
	r.decls = r.decls[:0]
	r.open = r.open[:0]
	r.hdrPrefixes = r.hdrPrefixes[:0]
	r.col.reset()
}

func (r *Reader) fail(err error) error {
	if err != io.EOF {
		r.fatal = err
	}
	return err
}

// ----------------------------------------------------------------------------
// buffer management

// fill reads at least one more byte into buf[end:], making room first.
func (r *Reader) fill() error {
	for {
		if r.rerr != nil {
			return r.readErr()
		}
		if r.end == len(r.buf) {
			if err := r.makeRoom(); err != nil {
				return err
			}
		}
		if n := r.read(r.buf[r.end:]); n > 0 {
			r.end += n
			return nil
		}
	}
}

// read reads from the source into p once, keeping a read error (and
// io.ErrNoProgress after too many empty reads), and returns the count.
func (r *Reader) read(p []byte) int {
	n, err := r.src.Read(p)
	if n < 0 || n > len(p) {
		n, err = 0, errors.New("xmlstream: source returned an invalid count")
	}
	if err != nil {
		r.rerr = err
	}
	if n > 0 {
		r.emptyReads = 0
		return n
	}
	if err == nil {
		r.emptyReads++
		if r.emptyReads >= maxEmptyReads {
			r.rerr = io.ErrNoProgress
		}
	}
	return 0
}

// awaitReleased is the wait of a reader without a read buffer (Release):
// the first bytes go into a small array, and only then is a buffer made,
// so that the wait itself holds none.
func (r *Reader) awaitReleased() {
	for r.rerr == nil {
		if n := r.read(r.wake[:]); n > 0 {
			r.buf = make([]byte, initialBufSize)
			r.start, r.pos = 0, 0
			r.end = copy(r.buf, r.wake[:n])
			return
		}
	}
}

func (r *Reader) readErr() error {
	if r.rerr == io.EOF {
		if r.inElem {
			return fmt.Errorf("xmlstream: stream ended inside an element: %w", io.ErrUnexpectedEOF)
		}
		return io.EOF
	}
	return fmt.Errorf("xmlstream: read: %w", r.rerr)
}

// makeRoom is called when buf is full. It moves the unconsumed bytes to the
// front, or grows the buffer up to the element size limit.
func (r *Reader) makeRoom() error {
	if r.inElem && r.end-r.elemStart >= r.sizeLimit {
		return r.sizeError()
	}
	if r.start > 0 {
		d := r.start
		copy(r.buf, r.buf[d:r.end])
		r.start -= d
		r.pos -= d
		r.end -= d
		r.elemStart -= d
		return nil
	}
	limit := r.sizeLimit + readSlack
	size := 2 * len(r.buf)
	if size < initialBufSize {
		size = initialBufSize
	}
	if size > limit {
		size = limit
	}
	if size <= len(r.buf) {
		// Cannot happen: the element would already be too big.
		return r.sizeError()
	}
	nb := make([]byte, size)
	copy(nb, r.buf[:r.end])
	r.buf = nb
	return nil
}

// maybeShrink drops a buffer that grew for one big element once it is no
// longer needed, so idle streams stay small.
func (r *Reader) maybeShrink() {
	if r.start == r.end {
		r.start, r.pos, r.end = 0, 0, 0
	}
	if len(r.buf) > shrinkAboveSize && r.end-r.start <= initialBufSize/2 {
		nb := make([]byte, initialBufSize)
		n := copy(nb, r.buf[r.start:r.end])
		r.buf = nb
		r.start, r.pos, r.end = 0, 0, n
	}
}

// need makes sure buf[pos] is available.
func (r *Reader) need() error {
	if r.pos < r.end {
		return nil
	}
	return r.fill()
}

func (r *Reader) sizeError() *StreamError {
	if r.sizeLimit == maxHeaderSize && !r.headerDone && r.build == nil {
		return &StreamError{Condition: CondPolicyViolation, Text: "stream header too big"}
	}
	return tooBig()
}

func tooBig() *StreamError {
	return &StreamError{Condition: CondPolicyViolation, App: AppStanzaTooBig, Text: "element exceeds the size limit"}
}

// bytesAt returns the bytes of a span relative to elemStart. Valid until the
// next fill.
func (r *Reader) bytesAt(rel, n int) []byte {
	s := r.elemStart + rel
	return r.buf[s : s+n : s+n]
}

func (r *Reader) rel() int { return r.pos - r.elemStart }

// ----------------------------------------------------------------------------
// stream header

// ReadHeader reads the stream header: it skips leading whitespace and an
// optional XML declaration (the only processing instruction allowed), then
// reads the opening tag of the stream element. It forgets any previous
// stream state.
func (r *Reader) ReadHeader() (Header, error) {
	r.forgetStream()
	if r.fatal != nil {
		return Header{}, r.fatal
	}
	h, err := r.readHeader()
	if err != nil {
		return Header{}, r.fail(err)
	}
	return h, nil
}

func (r *Reader) readHeader() (Header, error) {
	var h Header
	sawDecl := false
	for {
		r.maybeShrink()
		if err := r.skipTopSpace(true); err != nil {
			return h, err
		}
		r.elemStart = r.pos
		r.inElem = true
		r.sizeLimit = maxHeaderSize
		r.pos++ // '<'
		if err := r.need(); err != nil {
			return h, err
		}
		switch r.buf[r.pos] {
		case '?':
			if sawDecl {
				return h, restricted("processing instruction")
			}
			r.pos++
			if err := r.xmlDecl(); err != nil {
				return h, err
			}
			sawDecl = true
			r.start = r.pos
			r.inElem = false
			continue
		case '!':
			return h, restricted("comment, DTD or CDATA section")
		case '/':
			return h, notWellFormed("end tag before the stream header")
		}
		break
	}
	empty, _, err := r.startTag(1, true)
	if err != nil {
		return h, err
	}
	if empty {
		return h, notWellFormed("empty stream element")
	}
	if r.pos-r.elemStart > r.sizeLimit {
		return h, &StreamError{Condition: CondPolicyViolation, Text: "stream header too big"}
	}
	name := r.open[0]
	nb := r.bytesAt(name.rel, name.n)
	r.hdrQName = append(r.hdrQName[:0], nb...)
	h.Local = string(localPart(nb, name.colon))
	h.Namespaces = make(map[string]string, len(r.decls))
	for i := range r.decls {
		d := &r.decls[i]
		p := string(r.bytesAt(d.prefixRel, d.prefixLen))
		u := string(r.decodeValue(d.valRel, d.valLen, d.flags))
		h.Namespaces[p] = u
		r.hdrNS = append(r.hdrNS, nsBinding{prefix: p, uri: u})
	}
	ref := r.resolve(prefixPart(nb, name.colon))
	if ref.kind == nsNone && name.colon >= 0 {
		return h, &StreamError{Condition: CondInvalidNamespace, Text: "stream header prefix not declared"}
	}
	h.Space = r.uriString(ref)
	for i := range r.attrs {
		a := &r.attrs[i]
		if a.flags&flagDecl != 0 {
			continue
		}
		nm := r.bytesAt(a.name.rel, a.name.n)
		var dst *string
		switch string(nm) {
		case "from":
			dst = &h.From
		case "to":
			dst = &h.To
		case "id":
			dst = &h.ID
		case "version":
			dst = &h.Version
		case "xml:lang":
			dst = &h.Lang
		default:
			continue
		}
		if a.flags&flagWS != 0 {
			return h, &StreamError{Condition: CondBadFormat, Text: "whitespace control character in a stream header attribute"}
		}
		*dst = string(r.decodeValue(a.valRel, a.valLen, a.flags))
	}
	r.decls = r.decls[:0]
	r.open = r.open[:0]
	r.start = r.pos
	r.inElem = false
	r.headerDone = true
	return h, nil
}

// xmlDecl parses the rest of an XML declaration after "<?".
func (r *Reader) xmlDecl() error {
	target, err := r.scanName()
	if err != nil {
		return err
	}
	if string(r.bytesAt(target.rel, target.n)) != "xml" {
		return restricted("processing instruction")
	}
	seen := 0 // 1 version, 2 encoding, 3 standalone
	for {
		sp, err := r.skipSpace()
		if err != nil {
			return err
		}
		if r.buf[r.pos] == '?' {
			r.pos++
			if err := r.need(); err != nil {
				return err
			}
			if r.buf[r.pos] != '>' || seen == 0 {
				return notWellFormed("malformed XML declaration")
			}
			r.pos++
			return nil
		}
		if !sp {
			return notWellFormed("malformed XML declaration")
		}
		nm, err := r.scanName()
		if err != nil {
			return err
		}
		if err := r.expectEq(); err != nil {
			return err
		}
		q := r.buf[r.pos]
		if q != '\'' && q != '"' {
			return notWellFormed("unquoted value in XML declaration")
		}
		r.pos++
		vrel := r.rel()
		for {
			if err := r.need(); err != nil {
				return err
			}
			c := r.buf[r.pos]
			if c == q {
				break
			}
			if c >= utf8.RuneSelf || c < 0x20 || c == '<' || c == '&' {
				return notWellFormed("malformed XML declaration")
			}
			r.pos++
			if r.rel()-vrel > 64 {
				return notWellFormed("malformed XML declaration")
			}
		}
		val := string(r.bytesAt(vrel, r.rel()-vrel))
		r.pos++
		switch name := string(r.bytesAt(nm.rel, nm.n)); {
		case name == "version" && seen == 0:
			if val != "1.0" {
				return notWellFormed("unsupported XML version")
			}
			seen = 1
		case name == "encoding" && seen == 1:
			if !equalFoldASCII(val, "UTF-8") {
				return &StreamError{Condition: CondUnsupportedEncoding, Text: "only UTF-8 is supported"}
			}
			seen = 2
		case name == "standalone" && (seen == 1 || seen == 2):
			if val != "yes" && val != "no" {
				return notWellFormed("malformed XML declaration")
			}
			seen = 3
		default:
			return notWellFormed("malformed XML declaration")
		}
	}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// skipTopSpace consumes whitespace between top-level items and stops at
// '<'. Anything else is an error.
func (r *Reader) skipTopSpace(beforeHeader bool) error {
	r.inElem = false
	for {
		if r.pos >= r.end {
			if err := r.fill(); err != nil {
				return err
			}
			continue
		}
		c := r.buf[r.pos]
		if isXMLSpace[c] {
			r.pos++
			r.start = r.pos
			continue
		}
		if c == '<' {
			return nil
		}
		if beforeHeader && (c == 0xEF || c == 0xFE || c == 0xFF || c == 0) {
			return &StreamError{Condition: CondUnsupportedEncoding, Text: "byte order mark or non-UTF-8 stream"}
		}
		if beforeHeader {
			return notWellFormed("text before the stream header")
		}
		return notWellFormed("text at the top level of the stream")
	}
}

// ----------------------------------------------------------------------------
// elements

// Await blocks until the source has given bytes not yet consumed, or
// failed, without scanning them. A read error is kept: the next Next
// returns it. It exists for the stack: a goroutine that waits in Await
// rather than deep in Next holds little of its stack while the stream is
// idle, so the runtime can shrink it (it halves a stack only when a
// quarter of it is in use).
func (r *Reader) Await() {
	if r.fatal != nil || r.ended || !r.headerDone || r.Buffered() != 0 {
		return
	}
	if r.buf == nil {
		r.awaitReleased()
		return
	}
	_ = r.fill()
}

// AwaitIdle is Await for a stream that may go quiet: the caller has set
// the source's read deadline to the moment the stream counts as idle. If
// that deadline passes with nothing read — a timeout error, which is not
// kept: the wait may go on (crypto/tls too survives a read timeout) —
// AwaitIdle releases the read buffer and the string arena (Release) and
// reports true; the caller then sets the real deadline and waits with
// Await. Otherwise it is Await, and reports false.
func (r *Reader) AwaitIdle() (idle bool) {
	if r.fatal != nil || r.ended || !r.headerDone || r.Buffered() != 0 {
		return false
	}
	if r.buf == nil {
		r.awaitReleased()
	} else {
		_ = r.fill()
	}
	if r.rerr == nil || !isTimeout(r.rerr) {
		return false
	}
	// The idle deadline, not the caller's: forget it (also when a source
	// returned bytes with it, as crypto/tls can).
	r.rerr, r.emptyReads = nil, 0
	if r.Buffered() != 0 {
		return false
	}
	r.Release()
	return true
}

// isTimeout reports whether err is a timeout (a deadline that passed).
// (Its own function: the target of errors.As escapes, and would be an
// allocation on every wait of AwaitIdle.)
func isTimeout(err error) bool {
	var timeout interface{ Timeout() bool }
	return errors.As(err, &timeout) && timeout.Timeout()
}

// HeldBytes is the capacity of the buffers the reader holds between
// elements (read buffer, string arena, scratch space, per-element tables;
// the duplicate set counted as one byte when it exists), for tests and
// memory accounting.
func (r *Reader) HeldBytes() int {
	n := cap(r.buf) + cap(r.arena) + cap(r.scratch) +
		cap(r.attrs)*int(unsafe.Sizeof(attrSpan{})) + cap(r.decls)*int(unsafe.Sizeof(nsDecl{})) + cap(r.open)*int(unsafe.Sizeof(qname{})) +
		cap(r.col.kids)*int(unsafe.Sizeof(collectedKid{})) + cap(r.col.texts)*int(unsafe.Sizeof(collectedText{}))
	if r.dupSet != nil {
		n++
	}
	return n
}

// Release drops the read buffer, the string arena and the scratch space
// (and the per-element tables: attributes, declarations, open names, the
// duplicate set) between elements when nothing is buffered, so that an
// idle stream holds none of them; the next read and element allocate them
// again. (What earlier elements returned — strings, Raw — keeps what it
// points into alive: nothing is reused.) Inside an element, or with bytes
// buffered, it does nothing.
func (r *Reader) Release() {
	if r.inElem || r.Buffered() != 0 {
		return
	}
	r.buf, r.arena, r.scratch = nil, nil, nil
	r.start, r.pos, r.end = 0, 0, 0
	r.col = collected{gen: r.col.gen + 1}
	if len(r.open) == 0 && len(r.decls) == 0 {
		r.attrs, r.decls, r.open, r.dupSet = nil, nil, nil, nil
	}
}

// Next returns the next top-level element. Whitespace between elements is
// skipped. It returns ErrStreamEnd at the stream's close tag, io.EOF if the
// source ends between elements, an error wrapping io.ErrUnexpectedEOF if it
// ends inside one, and a *StreamError for a violation. Errors other than
// io.EOF are sticky.
func (r *Reader) Next() (Element, error) {
	if r.fatal != nil {
		return Element{}, r.fatal
	}
	if !r.headerDone {
		return Element{}, errors.New("xmlstream: Next called before ReadHeader")
	}
	if r.ended {
		return Element{}, ErrStreamEnd
	}
	r.maybeShrink()
	if err := r.skipTopSpace(false); err != nil {
		return Element{}, r.fail(err)
	}
	el, err := r.element(true)
	if err != nil {
		if err == ErrStreamEnd {
			r.ended = true
			return Element{}, err
		}
		return Element{}, r.fail(err)
	}
	return el, nil
}

// element scans one element starting at buf[pos] == '<'. At the top level
// of a stream (top), an end tag is the stream's close tag.
func (r *Reader) element(top bool) (Element, error) {
	var el Element
	r.resetScratch()
	r.elemStart = r.pos
	r.inElem = true
	r.sizeLimit = r.lim.MaxElementSize
	depth := 0
	for {
		if err := r.need(); err != nil {
			return el, err
		}
		if r.buf[r.pos] != '<' {
			rel := r.rel()
			if err := r.text(); err != nil {
				return el, err
			}
			if r.build == nil {
				r.collectText(depth, rel, r.rel()-rel, false)
			}
			continue
		}
		r.pos++
		if err := r.need(); err != nil {
			return el, err
		}
		switch r.buf[r.pos] {
		case '/':
			r.pos++
			if depth == 0 {
				if top {
					return el, r.streamClose()
				}
				return el, notWellFormed("unexpected end tag")
			}
			if err := r.endTag(); err != nil {
				return el, err
			}
			r.popDecls(depth)
			depth--
		case '!':
			if depth == 0 {
				return el, restricted("comment, DTD or CDATA section outside an element")
			}
			rel := r.rel() + len("![CDATA[")
			if err := r.cdataSection(); err != nil {
				return el, err
			}
			el.HasCDATA = true
			if r.build == nil {
				r.collectText(depth, rel, r.rel()-len("]]>")-rel, true)
			}
		case '?':
			return el, restricted("processing instruction")
		default:
			depth++
			if depth > r.lim.MaxDepth {
				return el, &StreamError{Condition: CondPolicyViolation, Text: "element nesting too deep"}
			}
			empty, ref, err := r.startTag(depth, false)
			if err != nil {
				return el, err
			}
			switch {
			case depth == 1:
				if err := r.head(&el); err != nil {
					return el, err
				}
			case depth == 2 && r.build == nil:
				r.collectKid(ref)
			}
			if empty {
				r.open = r.open[:len(r.open)-1]
				r.popDecls(depth)
				if r.build != nil {
					r.build.end(r)
				}
				depth--
			}
		}
		if depth == 0 {
			break
		}
	}
	if r.pos-r.elemStart > r.lim.MaxElementSize {
		return el, tooBig()
	}
	el.Raw = r.buf[r.elemStart:r.pos:r.pos]
	if r.build == nil {
		el.col, el.colGen = &r.col, r.col.gen
	}
	if len(r.hdrPrefixes) > 0 {
		el.HeaderPrefixes = r.hdrPrefixes
	}
	r.start = r.pos
	r.inElem = false
	return el, nil
}

// streamClose checks a top-level end tag (after "</") against the header.
func (r *Reader) streamClose() error {
	nm, err := r.scanName()
	if err != nil {
		return err
	}
	if string(r.bytesAt(nm.rel, nm.n)) != string(r.hdrQName) {
		return notWellFormed("end tag does not match the stream element")
	}
	if _, err := r.skipSpace(); err != nil {
		return err
	}
	if r.buf[r.pos] != '>' {
		return notWellFormed("malformed end tag")
	}
	r.pos++
	r.start = r.pos
	r.inElem = false
	return ErrStreamEnd
}

// endTag scans an end tag after "</" and matches it with the open element.
func (r *Reader) endTag() error {
	nm, err := r.scanName()
	if err != nil {
		return err
	}
	top := r.open[len(r.open)-1]
	if string(r.bytesAt(nm.rel, nm.n)) != string(r.bytesAt(top.rel, top.n)) {
		return notWellFormed("end tag does not match start tag")
	}
	if _, err := r.skipSpace(); err != nil {
		return err
	}
	if r.buf[r.pos] != '>' {
		return notWellFormed("malformed end tag")
	}
	r.pos++
	r.open = r.open[:len(r.open)-1]
	if r.build != nil {
		r.build.end(r)
	}
	return nil
}

func (r *Reader) popDecls(depth int) {
	n := len(r.decls)
	for n > 0 && r.decls[n-1].depth >= depth {
		n--
	}
	r.decls = r.decls[:n]
}

// skipSpace skips S and makes sure buf[pos] is available afterwards. It
// reports whether any whitespace was skipped.
func (r *Reader) skipSpace() (bool, error) {
	skipped := false
	for {
		if err := r.need(); err != nil {
			return skipped, err
		}
		if !isXMLSpace[r.buf[r.pos]] {
			return skipped, nil
		}
		r.pos++
		skipped = true
	}
}

// expectEq consumes S? '=' S? and leaves buf[pos] available.
func (r *Reader) expectEq() error {
	if _, err := r.skipSpace(); err != nil {
		return err
	}
	if r.buf[r.pos] != '=' {
		return notWellFormed("attribute without value")
	}
	r.pos++
	_, err := r.skipSpace()
	return err
}

// scanName scans a QName: NCName (':' NCName)?.
func (r *Reader) scanName() (qname, error) {
	q := qname{rel: r.rel(), colon: -1}
	atStart := true // the next character must be a NameStartChar
	for {
		if r.pos >= r.end {
			if err := r.fill(); err != nil {
				return q, err
			}
			continue
		}
		c := r.buf[r.pos]
		if c < utf8.RuneSelf {
			switch k := nameClass[c]; {
			case k == nameStart || k == nameChar && !atStart:
				r.pos++
				atStart = false
				continue
			case c == ':':
				if atStart || q.colon >= 0 {
					return q, notWellFormed("invalid name")
				}
				q.colon = r.rel() - q.rel
				r.pos++
				atStart = true
				continue
			case k == nameChar:
				return q, notWellFormed("invalid name")
			}
			break
		}
		ru, size, err := r.peekRune()
		if err != nil {
			return q, err
		}
		if !(isNameStartRune(ru) || !atStart && isNameRune(ru)) {
			return q, notWellFormed("invalid name character")
		}
		r.pos += size
		atStart = false
	}
	if atStart {
		return q, notWellFormed("invalid name")
	}
	q.n = r.rel() - q.rel
	return q, nil
}

// peekRune decodes the (multi-byte) rune at pos without consuming it.
func (r *Reader) peekRune() (rune, int, error) {
	for !utf8.FullRune(r.buf[r.pos:r.end]) {
		if err := r.fill(); err != nil {
			return 0, 0, err
		}
	}
	ru, size := utf8.DecodeRune(r.buf[r.pos:r.end])
	if ru == utf8.RuneError && size <= 1 {
		return 0, 0, notWellFormed("invalid UTF-8")
	}
	return ru, size, nil
}

// charRune consumes one multi-byte character of text or attribute value.
func (r *Reader) charRune() error {
	ru, size, err := r.peekRune()
	if err != nil {
		return err
	}
	if !isChar(ru) {
		return notWellFormed("character not allowed in XML")
	}
	r.pos += size
	return nil
}

// text scans character data up to the next '<' (not consumed).
func (r *Reader) text() error {
	rel := r.rel()
	brackets := 0
	for {
		if r.pos >= r.end {
			if err := r.fill(); err != nil {
				return err
			}
			continue
		}
		i := bytescan.Run(r.buf, r.pos, r.end, &textPlain)
		if i > r.pos {
			r.pos = i
			brackets = 0
			continue
		}
		switch c := r.buf[r.pos]; {
		case c == '<':
			if r.build != nil {
				r.build.text(r, rel, r.rel()-rel)
			}
			return nil
		case c == ']':
			brackets++
			r.pos++
		case c == '>':
			if brackets >= 2 {
				return notWellFormed("]]> in character data")
			}
			brackets = 0
			r.pos++
		case c == '&':
			brackets = 0
			if err := r.reference(); err != nil {
				return err
			}
		case c == '\t' || c == '\n' || c == '\r':
			brackets = 0
			r.pos++
		case c < 0x20:
			return notWellFormed("control character in character data")
		default:
			brackets = 0
			if err := r.charRune(); err != nil {
				return err
			}
		}
	}
}

// cdataSection scans a CDATA section at buf[pos] == '!' (after '<'): the
// only "<!" construct allowed, and only inside an element. Its content
// must be XML Chars in valid UTF-8 and ends at the first "]]>".
func (r *Reader) cdataSection() error {
	const open = "![CDATA["
	for i := 0; i < len(open); i++ {
		if err := r.need(); err != nil {
			return err
		}
		if r.buf[r.pos] != open[i] {
			if i < 2 {
				return restricted("comment or DTD")
			}
			return notWellFormed("malformed CDATA section")
		}
		r.pos++
	}
	rel := r.rel()
	brackets := 0
	for {
		if r.pos >= r.end {
			if err := r.fill(); err != nil {
				return err
			}
			continue
		}
		i := bytescan.Run(r.buf, r.pos, r.end, &cdataPlain)
		if i > r.pos {
			r.pos = i
			brackets = 0
			continue
		}
		switch c := r.buf[r.pos]; {
		case c == ']':
			brackets++
			r.pos++
		case c == '>':
			r.pos++
			if brackets >= 2 {
				if r.build != nil {
					r.build.cdata(r, rel, r.rel()-len("]]>")-rel)
				}
				return nil
			}
			brackets = 0
		case c < 0x20:
			return notWellFormed("control character in a CDATA section")
		default:
			brackets = 0
			if err := r.charRune(); err != nil {
				return err
			}
		}
	}
}

// attrValue scans a quoted attribute value after its opening quote and
// consumes the closing quote.
func (r *Reader) attrValue(quote byte) (rel, n int, flags uint8, err error) {
	rel = r.rel()
	for {
		if r.pos >= r.end {
			if err := r.fill(); err != nil {
				return rel, 0, flags, err
			}
			continue
		}
		i := bytescan.Run(r.buf, r.pos, r.end, &attrPlain)
		r.pos = i
		if r.pos >= r.end {
			continue
		}
		switch c := r.buf[r.pos]; {
		case c == quote:
			n = r.rel() - rel
			r.pos++
			return rel, n, flags, nil
		case c == '\'' || c == '"':
			r.pos++
		case c == '<':
			return rel, 0, flags, notWellFormed("< in attribute value")
		case c == '&':
			flags |= flagAmp
			if err := r.reference(); err != nil {
				return rel, 0, flags, err
			}
		case c == '\t' || c == '\n' || c == '\r':
			flags |= flagWS
			r.pos++
		case c < 0x20:
			return rel, 0, flags, notWellFormed("control character in attribute value")
		default:
			if err := r.charRune(); err != nil {
				return rel, 0, flags, err
			}
		}
	}
}

// reference validates an entity or character reference at buf[pos] == '&'.
func (r *Reader) reference() error {
	r.pos++
	if err := r.need(); err != nil {
		return err
	}
	if r.buf[r.pos] == '#' {
		r.pos++
		if err := r.need(); err != nil {
			return err
		}
		base := rune(10)
		if r.buf[r.pos] == 'x' {
			base = 16
			r.pos++
		}
		var v rune
		digits := 0
		for {
			if err := r.need(); err != nil {
				return err
			}
			c := r.buf[r.pos]
			d := rune(-1)
			switch {
			case '0' <= c && c <= '9':
				d = rune(c - '0')
			case base == 16 && 'a' <= c && c <= 'f':
				d = rune(c-'a') + 10
			case base == 16 && 'A' <= c && c <= 'F':
				d = rune(c-'A') + 10
			}
			if d < 0 {
				break
			}
			v = v*base + d
			if v > utf8.MaxRune {
				return notWellFormed("character reference out of range")
			}
			digits++
			r.pos++
		}
		if digits == 0 || r.buf[r.pos] != ';' {
			return notWellFormed("malformed character reference")
		}
		r.pos++
		if !isChar(v) {
			return notWellFormed("character reference to a character not allowed in XML")
		}
		return nil
	}
	rel := r.rel()
	for {
		if err := r.need(); err != nil {
			return err
		}
		c := r.buf[r.pos]
		if c == ';' {
			break
		}
		if c >= utf8.RuneSelf || (nameClass[c] == nameNone && c != ':') {
			return notWellFormed("malformed entity reference")
		}
		r.pos++
		if r.rel()-rel > maxEntityName {
			return restricted("entity reference")
		}
	}
	name := r.bytesAt(rel, r.rel()-rel)
	r.pos++
	switch string(name) {
	case "lt", "gt", "amp", "quot", "apos":
		return nil
	case "":
		return notWellFormed("malformed entity reference")
	}
	return restricted("entity reference other than the predefined ones")
}

// startTag scans a start tag after '<'. It leaves the tag's attributes in
// r.attrs, pushes its name on r.open and its declarations on r.decls, and
// returns where its namespace resolved to.
func (r *Reader) startTag(depth int, header bool) (empty bool, ref nsRef, err error) {
	name, err := r.scanName()
	if err != nil {
		return false, nsRef{}, err
	}
	r.open = append(r.open, name)
	r.attrs = r.attrs[:0]
	for {
		sp, err := r.skipSpace()
		if err != nil {
			return false, nsRef{}, err
		}
		c := r.buf[r.pos]
		if c == '>' {
			r.pos++
			break
		}
		if c == '/' {
			r.pos++
			if err := r.need(); err != nil {
				return false, nsRef{}, err
			}
			if r.buf[r.pos] != '>' {
				return false, nsRef{}, notWellFormed("malformed empty-element tag")
			}
			r.pos++
			empty = true
			break
		}
		if !sp {
			return false, nsRef{}, notWellFormed("missing whitespace before attribute")
		}
		an, err := r.scanName()
		if err != nil {
			return false, nsRef{}, err
		}
		if err := r.expectEq(); err != nil {
			return false, nsRef{}, err
		}
		q := r.buf[r.pos]
		if q != '\'' && q != '"' {
			return false, nsRef{}, notWellFormed("unquoted attribute value")
		}
		r.pos++
		vrel, vlen, flags, err := r.attrValue(q)
		if err != nil {
			return false, nsRef{}, err
		}
		if len(r.attrs) == maxAttrsPerTag {
			return false, nsRef{}, &StreamError{Condition: CondPolicyViolation, Text: "too many attributes"}
		}
		r.attrs = append(r.attrs, attrSpan{name: an, valRel: vrel, valLen: vlen, flags: flags})
	}
	// From here on there is no fill: byte slices of the tag stay valid.
	if err := r.declare(depth); err != nil {
		return false, nsRef{}, err
	}
	if err := r.checkDuplicates(); err != nil {
		return false, nsRef{}, err
	}
	nb := r.bytesAt(name.rel, name.n)
	prefix := prefixPart(nb, name.colon)
	if string(prefix) == "xmlns" || string(localPart(nb, name.colon)) == "xmlns" {
		// encoding/xml leaves an element named xmlns in no namespace.
		return false, nsRef{}, notWellFormed("element named with xmlns")
	}
	ref = r.resolve(prefix)
	if !header {
		if ref.kind == nsNone && name.colon >= 0 {
			return false, nsRef{}, notWellFormed("undeclared namespace prefix")
		}
		r.noteHeaderUse(ref, name.colon >= 0)
	}
	for i := range r.attrs {
		a := &r.attrs[i]
		if a.flags&flagDecl != 0 || a.name.colon < 0 {
			continue
		}
		ar := r.resolve(r.bytesAt(a.name.rel, a.name.colon))
		if ar.kind == nsNone {
			return false, nsRef{}, notWellFormed("undeclared namespace prefix")
		}
		if !header {
			r.noteHeaderUse(ar, true)
		}
	}
	if r.build != nil {
		r.build.start(r, nb, name.colon, ref)
	}
	return empty, ref, nil
}

// declare records the namespace declarations of the current tag.
func (r *Reader) declare(depth int) error {
	for i := range r.attrs {
		a := &r.attrs[i]
		nb := r.bytesAt(a.name.rel, a.name.n)
		var prefixRel, prefixLen int
		switch {
		case a.name.colon < 0 && string(nb) == "xmlns":
		case a.name.colon == 5 && string(nb[:5]) == "xmlns":
			prefixRel = a.name.rel + 6
			prefixLen = a.name.n - 6
		default:
			continue
		}
		a.flags |= flagDecl
		if a.flags&flagWS != 0 {
			// Parsers disagree on normalising it, and no namespace name
			// (a URI) contains whitespace.
			return &StreamError{Condition: CondBadFormat, Text: "whitespace control character in a namespace name"}
		}
		p := nb[len(nb)-prefixLen:]
		isXMLNS := r.valueEquals(a, NSXMLNS)
		isXML := r.valueEquals(a, NSXML)
		switch {
		case string(p) == "xmlns":
			return notWellFormed("the xmlns prefix cannot be declared")
		case string(p) == "xml":
			if !isXML {
				return notWellFormed("the xml prefix cannot be rebound")
			}
			continue // predefined; nothing to record
		case isXML || isXMLNS:
			return notWellFormed("reserved namespace name bound to another prefix")
		case prefixLen > 0 && a.valLen == 0:
			return notWellFormed("namespace prefix undeclared with an empty value")
		}
		if len(r.decls) == maxDeclsInScope {
			return &StreamError{Condition: CondPolicyViolation, Text: "too many namespace declarations"}
		}
		r.decls = append(r.decls, nsDecl{
			prefixRel: prefixRel, prefixLen: prefixLen,
			valRel: a.valRel, valLen: a.valLen, flags: a.flags, depth: depth,
		})
	}
	return nil
}

// checkDuplicates rejects two attributes with the same qualified name or
// the same expanded name.
func (r *Reader) checkDuplicates() error {
	n := len(r.attrs)
	if n < 2 {
		return nil
	}
	if n > dupMapThreshold {
		return r.checkDuplicatesMap()
	}
	for i := 0; i < n; i++ {
		a := &r.attrs[i]
		an := r.bytesAt(a.name.rel, a.name.n)
		for j := i + 1; j < n; j++ {
			b := &r.attrs[j]
			bn := r.bytesAt(b.name.rel, b.name.n)
			if string(an) == string(bn) {
				return notWellFormed("duplicate attribute")
			}
			if a.name.colon < 0 || b.name.colon < 0 || a.flags&flagDecl != 0 || b.flags&flagDecl != 0 {
				continue
			}
			if string(an[a.name.colon+1:]) != string(bn[b.name.colon+1:]) {
				continue
			}
			ra := r.resolve(an[:a.name.colon])
			rb := r.resolve(bn[:b.name.colon])
			if ra.kind != nsNone && rb.kind != nsNone && r.uriString(ra) == r.uriString(rb) {
				return notWellFormed("duplicate attribute")
			}
		}
	}
	return nil
}

func (r *Reader) checkDuplicatesMap() error {
	if r.dupSet == nil {
		r.dupSet = make(map[string]struct{})
	}
	clear(r.dupSet)
	for pass := 0; pass < 2; pass++ {
		for i := range r.attrs {
			a := &r.attrs[i]
			an := r.bytesAt(a.name.rel, a.name.n)
			var key string
			if pass == 0 {
				key = "q" + string(an)
			} else {
				if a.name.colon < 0 || a.flags&flagDecl != 0 {
					continue
				}
				ra := r.resolve(an[:a.name.colon])
				if ra.kind == nsNone {
					continue
				}
				key = "e" + r.uriString(ra) + "\x00" + string(an[a.name.colon+1:])
			}
			if _, dup := r.dupSet[key]; dup {
				return notWellFormed("duplicate attribute")
			}
			r.dupSet[key] = struct{}{}
		}
	}
	return nil
}

// resolve finds the binding of prefix ("" = default namespace): the
// current element's and its ancestors' declarations, then the header's.
func (r *Reader) resolve(prefix []byte) nsRef {
	if string(prefix) == "xml" {
		return nsRef{kind: nsXMLPre}
	}
	for i := len(r.decls) - 1; i >= 0; i-- {
		d := &r.decls[i]
		if d.prefixLen == len(prefix) && string(r.bytesAt(d.prefixRel, d.prefixLen)) == string(prefix) {
			if d.valLen == 0 {
				return nsRef{kind: nsNone} // xmlns='' undeclares the default
			}
			return nsRef{kind: nsDecl_, idx: i}
		}
	}
	for i := range r.hdrNS {
		if r.hdrNS[i].prefix == string(prefix) {
			if r.hdrNS[i].uri == "" {
				return nsRef{kind: nsNone}
			}
			return nsRef{kind: nsHeader, idx: i}
		}
	}
	return nsRef{kind: nsNone}
}

// noteHeaderUse records a prefix the element takes from the stream header.
func (r *Reader) noteHeaderUse(ref nsRef, prefixed bool) {
	if ref.kind != nsHeader || !prefixed {
		return
	}
	p := r.hdrNS[ref.idx].prefix
	for _, have := range r.hdrPrefixes {
		if have == p {
			return
		}
	}
	r.hdrPrefixes = append(r.hdrPrefixes, p)
}

// uriString returns the namespace name a prefix resolved to.
func (r *Reader) uriString(ref nsRef) string {
	switch ref.kind {
	case nsXMLPre:
		return NSXML
	case nsHeader:
		return r.hdrNS[ref.idx].uri
	case nsDecl_:
		d := &r.decls[ref.idx]
		if d.uri != "" { // a declaration that resolves is never empty
			return d.uri
		}
		v := r.decodeValue(d.valRel, d.valLen, d.flags)
		if s, ok := knownNamespace(v); ok {
			d.uri = s
		} else {
			d.uri = r.arenaString(v)
		}
		return d.uri
	}
	return ""
}

// valueEquals compares an attribute's unescaped value with s.
func (r *Reader) valueEquals(a *attrSpan, s string) bool {
	if a.flags&flagAmp == 0 {
		return string(r.bytesAt(a.valRel, a.valLen)) == s
	}
	return string(r.decodeValue(a.valRel, a.valLen, a.flags)) == s
}

// decodeValue returns an attribute value with references replaced (no
// whitespace normalisation: callers that report values reject literal
// whitespace controls instead). The result may live in r.scratch.
func (r *Reader) decodeValue(rel, n int, flags uint8) []byte {
	raw := r.bytesAt(rel, n)
	if flags&flagAmp == 0 {
		return raw
	}
	r.scratch = appendDecoded(r.scratch[:0], raw, decodePlain)
	return r.scratch
}

// head fills in the element's name and head attributes from the root tag.
func (r *Reader) head(el *Element) error {
	name := r.open[0]
	nb := r.bytesAt(name.rel, name.n)
	local := localPart(nb, name.colon)
	if s, ok := knownLocal(local); ok {
		el.Local = s
	} else {
		el.Local = r.arenaString(local)
	}
	el.Space = r.uriString(r.resolve(prefixPart(nb, name.colon)))
	for i := range r.attrs {
		a := &r.attrs[i]
		if a.name.colon >= 0 || a.flags&flagDecl != 0 {
			continue
		}
		var dst *string
		switch string(r.bytesAt(a.name.rel, a.name.n)) {
		case "from":
			dst = &el.From
			el.fromLoc = attrLoc{name: a.name.rel, val: a.valRel, end: a.valRel + a.valLen}
		case "to":
			dst = &el.To
			el.toLoc = attrLoc{name: a.name.rel, val: a.valRel, end: a.valRel + a.valLen}
		case "type":
			dst = &el.Type
		case "id":
			dst = &el.ID
		default:
			continue
		}
		if a.flags&flagWS != 0 {
			return &StreamError{Condition: CondBadFormat, Text: "whitespace control character in a from, to, type or id attribute"}
		}
		v := r.decodeValue(a.valRel, a.valLen, a.flags)
		if s, ok := knownType(v); ok && dst == &el.Type {
			*dst = s
		} else {
			*dst = r.arenaString(v)
		}
	}
	return nil
}

// arenaString returns a string with the contents of b. Small strings are
// copied into a chunk that is only ever appended to, so the bytes behind a
// returned string never change: a chunk is shared by the strings of many
// elements and one allocation serves many of them. A retained string keeps
// its whole chunk (arenaChunkSize bytes) alive.
func (r *Reader) arenaString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > arenaChunkSize/8 {
		return string(b)
	}
	if cap(r.arena)-len(r.arena) < len(b) {
		r.arena = make([]byte, 0, arenaChunkSize)
	}
	off := len(r.arena)
	r.arena = append(r.arena, b...)
	return unsafe.String(&r.arena[off], len(b))
}

// nodeString is arenaString for ParseNode, whose arena is sized to the
// element: any string that fits goes there, whatever its length.
func (r *Reader) nodeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(r.arena)-len(r.arena) < len(b) {
		return string(b)
	}
	off := len(r.arena)
	r.arena = append(r.arena, b...)
	return unsafe.String(&r.arena[off], len(b))
}

func prefixPart(name []byte, colon int) []byte {
	if colon < 0 {
		return nil
	}
	return name[:colon]
}

func localPart(name []byte, colon int) []byte {
	return name[colon+1:]
}
