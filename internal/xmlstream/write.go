package xmlstream

import "unicode/utf8"

// AppendForward appends e.Raw to dst, inserting xmlns:P='URI' declarations
// into the root start tag for every prefix in e.HeaderPrefixes, so that the
// output is self-contained on any stream whose default namespace is the
// same as the incoming one. header is the incoming stream's
// Header.Namespaces. With no HeaderPrefixes it is a plain append.
func (e *Element) AppendForward(dst []byte, header map[string]string) []byte {
	if len(e.HeaderPrefixes) == 0 {
		return append(dst, e.Raw...)
	}
	i := rootNameEnd(e.Raw)
	dst = append(dst, e.Raw[:i]...)
	dst = e.appendHeaderDecls(dst, header)
	return append(dst, e.Raw[i:]...)
}

// AppendForwardAddressed is AppendForward with the root's addresses
// replaced: the output's root has its unprefixed from attribute set to
// from and its to attribute set to to (the RFC 7622 canonical forms the
// gateway judged), so that Reader.Next reads exactly From == from and
// To == to from it. Everything else is copied from Raw byte for byte.
//
//   - A from or to attribute present in Raw is rewritten in place, from
//     its name to its closing quote, as name='value': the value escaped
//     with AppendEscapedAttr and always in single quotes.
//   - One absent from Raw is inserted right after the root's name (and
//     the header prefix declarations) when the new value is not empty.
//   - An empty new value removes the attribute (Next reports "" for an
//     absent attribute too); the whitespace before it stays.
//
// To keep an address unchanged pass e.From or e.To. Characters XML cannot
// carry become U+FFFD (see AppendEscapedAttr). Raw itself is not changed.
// Like Raw, this is only for elements without CDATA: see HasCDATA.
func (e *Element) AppendForwardAddressed(dst []byte, header map[string]string, from, to string) []byte {
	if len(e.Raw) == 0 { // not an element from Next
		return dst
	}
	i := rootNameEnd(e.Raw)
	dst = append(dst, e.Raw[:i]...)
	dst = e.appendHeaderDecls(dst, header)
	if e.fromLoc.name == 0 && from != "" {
		dst = appendAttr(dst, " from", from)
	}
	if e.toLoc.name == 0 && to != "" {
		dst = appendAttr(dst, " to", to)
	}
	// Rewrite the present ones in the order they appear.
	first, second := e.fromLoc, e.toLoc
	firstVal, secondVal := from, to
	firstName, secondName := "from", "to"
	if second.name != 0 && (first.name == 0 || second.name < first.name) {
		first, second = second, first
		firstVal, secondVal = secondVal, firstVal
		firstName, secondName = secondName, firstName
	}
	for _, ed := range [2]struct {
		loc         attrLoc
		name, value string
	}{{first, firstName, firstVal}, {second, secondName, secondVal}} {
		if ed.loc.name == 0 {
			continue
		}
		dst = append(dst, e.Raw[i:ed.loc.name]...)
		if ed.value != "" {
			dst = appendAttr(dst, ed.name, ed.value)
		}
		i = ed.loc.end + 1 // past the closing quote
	}
	return append(dst, e.Raw[i:]...)
}

// appendAttr appends name='escaped value'.
func appendAttr(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, "='"...)
	dst = AppendEscapedAttr(dst, value)
	return append(dst, '\'')
}

// rootNameEnd returns the offset just past the root element's name in raw.
func rootNameEnd(raw []byte) int {
	i := 1
	for i < len(raw) {
		c := raw[i]
		if isXMLSpace[c] || c == '/' || c == '>' {
			break
		}
		i++
	}
	return i
}

// appendHeaderDecls appends an xmlns:P='URI' declaration for every prefix
// in e.HeaderPrefixes.
func (e *Element) appendHeaderDecls(dst []byte, header map[string]string) []byte {
	for _, p := range e.HeaderPrefixes {
		uri, ok := header[p]
		if !ok || p == "" {
			continue
		}
		dst = append(dst, " xmlns:"...)
		dst = append(dst, p...)
		dst = append(dst, "='"...)
		dst = AppendEscapedAttr(dst, uri)
		dst = append(dst, '\'')
	}
	return dst
}

// AppendEscapedText appends s escaped as XML character data: & < > become
// the predefined entities, a carriage return becomes &#xD; (so that it
// survives line-end normalisation), and characters XML cannot carry
// (invalid UTF-8, control characters) become U+FFFD.
func AppendEscapedText(dst []byte, s string) []byte {
	return appendEscaped(dst, s, false)
}

// AppendEscapedAttr appends s escaped for an attribute value in either
// quote style: & < > ' " become the predefined entities, tab, newline and
// carriage return become character references (so that they survive
// attribute-value normalisation), and characters XML cannot carry become
// U+FFFD.
func AppendEscapedAttr(dst []byte, s string) []byte {
	return appendEscaped(dst, s, true)
}

// Bytes that AppendEscapedText and AppendEscapedAttr copy as they are.
var escPlainText, escPlainAttr = escapePlainTables()

func escapePlainTables() (text, attr [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		switch c {
		case '&', '<', '>':
		case '\'', '"':
			text[c] = true
		default:
			text[c], attr[c] = true, true
		}
	}
	text['\n'], text['\t'] = true, true
	return text, attr
}

func appendEscaped(dst []byte, s string, attr bool) []byte {
	plain := &escPlainText
	if attr {
		plain = &escPlainAttr
	}
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		var esc string
		size := 1
		switch {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '\'' && attr:
			esc = "&apos;"
		case c == '"' && attr:
			esc = "&quot;"
		case c == '\r':
			esc = "&#xD;"
		case c == '\n' && attr:
			esc = "&#xA;"
		case c == '\t' && attr:
			esc = "&#x9;"
		case c == '\n' || c == '\t':
		case c < 0x20:
			esc = "\uFFFD"
		case c >= utf8.RuneSelf:
			var ru rune
			ru, size = utf8.DecodeRuneInString(s[i:])
			if ru == utf8.RuneError && size == 1 || !isChar(ru) {
				esc = "\uFFFD"
			}
		}
		if esc != "" {
			dst = append(dst, s[last:i]...)
			dst = append(dst, esc...)
			last = i + size
		}
		i += size
	}
	return append(dst, s[last:]...)
}
