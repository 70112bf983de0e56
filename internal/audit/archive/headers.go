package archive

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/xmppedge/xmppedge/internal/jid"
)

// The header writer. Header names are constants of this package; values
// come from stanzas and records and may hold anything (a hostile peer's
// id, a tampered log), so every value goes through text or mailbox, whose
// output is printable ASCII without CR or LF, and lines are folded only
// at spaces, which unfolding gives back.

const (
	foldAt     = 78  // fold a header line longer than this at a space
	plainLimit = 200 // longer values are written as encoded words
	wordBytes  = 45  // bytes of text per encoded word: 60 base64 characters, 72 with its frame
	maxAddress = 254 // a longer address is replaced by a digest
)

// headerBlock collects header lines, CRLF-terminated.
type headerBlock struct{ b strings.Builder }

// add writes "name: value", folded; value must come from text, mailbox
// or be this package's own printable ASCII.
func (h *headerBlock) add(name, value string) {
	line := name + ": "
	n := len(line)
	h.b.WriteString(line)
	for i, word := range strings.Split(value, " ") {
		if i > 0 {
			if n+1+len(word) > foldAt && n > len(name)+2 {
				h.b.WriteString("\r\n")
				n = 0
			}
			h.b.WriteByte(' ')
			n++
		}
		h.b.WriteString(word)
		n += len(word)
	}
	h.b.WriteString("\r\n")
}

// plain reports whether s can be a header value as it is: printable
// ASCII, short, no encoded-word opener, no white space at either end or
// twice in a row (which folding and unfolding would not keep).
func plain(s string) bool {
	if s == "" || len(s) > plainLimit || strings.Contains(s, "=?") || strings.Contains(s, "  ") ||
		s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// text is s as an unstructured header value (RFC 5322 §3.2.5): as it is
// when plain, else RFC 2047 encoded words (Q-encoded when the standard
// library would encode s anyway, else base64), which a reader decodes
// back to s. Invalid UTF-8 becomes U+FFFD.
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if plain(s) {
		return s
	}
	if q := mime.QEncoding.Encode("utf-8", s); q != s && !strings.Contains(q, "\r") && !strings.Contains(q, "\n") {
		return q
	}
	return encodedWords(s)
}

// encodedWords is s as base64 encoded words of at most wordBytes bytes
// each, cut between runes, separated by spaces (where add folds).
func encodedWords(s string) string {
	var words []string
	for len(s) > 0 {
		n := min(len(s), wordBytes)
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// mailbox is a JID as an RFC 5322 mailbox: a display name (see
// displayName), and the bare JID as the address (see address).
func mailbox(j string) string {
	j = strings.ToValidUTF8(j, "\uFFFD")
	a := &mail.Address{Address: address(j)}
	if plain(j) {
		a.Name = j
		return a.String() // a quoted string
	}
	if j == "" {
		return a.String()
	}
	return displayName(j) + " " + a.String()
}

// displayName is a JID that is not plain as one base64 encoded word:
// readers disagree on adjacent encoded words in a display name (Python's
// email package puts a space between them), so there is only one. A JID
// longer than one word holds is shown by its bare JID, else shortened,
// with "…"; the exact JID is in X-XMPP-From and X-XMPP-To.
func displayName(j string) string {
	if len(j) > wordBytes {
		if bare, _, _ := strings.Cut(j, "/"); len(bare)+len("/…") <= wordBytes {
			j = bare + "/…"
		} else {
			n := wordBytes - len("…")
			for n > 0 && !utf8.RuneStart(j[n]) {
				n--
			}
			j = j[:n] + "…"
		}
	}
	return encodedWords(j)
}

// address is the bare JID of j as an ASCII addr-spec: the domain in
// A-label form, bytes outside printable ASCII (and '%') of the localpart
// percent-encoded as in an XMPP URI (RFC 5122), "postmaster" for a JID
// without a localpart (a server); an address longer than maxAddress, or a
// domain that is not one, is replaced by a digest of the JID under the
// reserved domain invalid. The full JID is in the display name and in
// X-XMPP-From/To.
func address(j string) string {
	bare, _, _ := strings.Cut(j, "/")
	local, domain, ok := strings.Cut(bare, "@")
	if !ok {
		local, domain = "postmaster", bare
	}
	if local == "" {
		local = "postmaster"
	}
	domain = jid.DomainASCII(domain)
	a := percentEncode(local) + "@" + domain
	if !dotAtom(domain) || len(a) > maxAddress {
		sum := sha256.Sum256([]byte(j))
		return "jid-" + hex.EncodeToString(sum[:12]) + "@invalid"
	}
	return a
}

func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '%' {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// dotAtom reports whether a domain is letters, digits and hyphens in
// dot-separated labels (an IP literal is not: it is replaced).
func dotAtom(d string) bool {
	if d == "" {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// token is s reduced to letters, digits and hyphens (others become '-'),
// for Message-IDs and file names.
func token(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "node"
	}
	return b.String()
}
