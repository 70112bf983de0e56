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
	i := 1
	for i < len(e.Raw) {
		c := e.Raw[i]
		if isXMLSpace[c] || c == '/' || c == '>' {
			break
		}
		i++
	}
	dst = append(dst, e.Raw[:i]...)
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
	return append(dst, e.Raw[i:]...)
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

func appendEscaped(dst []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
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
