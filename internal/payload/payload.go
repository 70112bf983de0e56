package payload

import (
	"net/url"
	"slices"
	"strings"

	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Facts is what the policy reads about a stanza's payload.
type Facts struct {
	// Encryption is one of the Encryption… constants, EncryptionXEP0380
	// followed by a namespace, or "" when the stanza is not end-to-end
	// encrypted.
	Encryption string
	// FileTransfer lists the ways the stanza moves a file, each once.
	FileTransfer []Transfer
	// BodyIsFallback is true when the body is (at least partly) a
	// fallback text; see the package documentation.
	BodyIsFallback bool
}

// Transfer is one way a stanza moves a file.
type Transfer struct {
	Method string // one of the Method… constants
	Host   string // oob: the URL's host in A-label form, "" if unknown; "" for the others
}

// Values of Facts.Encryption.
const (
	EncryptionOMEMO   = "omemo"
	EncryptionOMEMO2  = "omemo2"
	EncryptionOpenPGP = "openpgp"
	EncryptionOTR     = "otr"
	// EncryptionXEP0380 prefixes the namespace named by a XEP-0380 tag
	// that is none of the above.
	EncryptionXEP0380 = "xep0380:"
)

// Values of Transfer.Method.
const (
	MethodOOB    = "oob"
	MethodJingle = "jingle"
	MethodIBB    = "ibb"
	MethodSOCKS5 = "socks5"
)

// Namespaces read here.
const (
	nsOMEMO        = "eu.siacs.conversations.axolotl"
	nsOMEMO2       = "urn:xmpp:omemo:2"
	nsOpenPGP      = "urn:xmpp:openpgp:0"
	nsPGPLegacy    = "jabber:x:encrypted"
	nsOTR          = "urn:xmpp:otr:0" // as named by XEP-0380
	nsEME          = "urn:xmpp:eme:0"
	nsFallback     = "urn:xmpp:fallback:0"
	nsOOB          = "jabber:x:oob"
	nsIQOOB        = "jabber:iq:oob"
	nsJingle       = "urn:xmpp:jingle:1"
	nsJingleMsg    = "urn:xmpp:jingle-message:0"
	nsJingleFT3    = "urn:xmpp:jingle:apps:file-transfer:3"
	nsJingleFT4    = "urn:xmpp:jingle:apps:file-transfer:4"
	nsJingleFT5    = "urn:xmpp:jingle:apps:file-transfer:5"
	nsJingleIBB    = "urn:xmpp:jingle:transports:ibb:1"
	nsJingleS5B    = "urn:xmpp:jingle:transports:s5b:1"
	nsIBB          = "http://jabber.org/protocol/ibb"
	nsBytestreams  = "http://jabber.org/protocol/bytestreams"
	nsSI           = "http://jabber.org/protocol/si"
	nsSFS          = "urn:xmpp:sfs:0"
	nsSIMS         = "urn:xmpp:sims:1"
	nsURLData      = "http://jabber.org/protocol/url-data"
	nsReference    = "urn:xmpp:reference:0"
	nsForward      = "urn:xmpp:forward:0"
	nsCarbons      = "urn:xmpp:carbons:2"
	nsMAM0         = "urn:xmpp:mam:0"
	nsMAM1         = "urn:xmpp:mam:1"
	nsMAM2         = "urn:xmpp:mam:2"
	nsClient       = "jabber:client"
	maxWrapDepth   = 8
	otrTag         = "?OTR"
	linearDedupMax = 16 // transfers compared one by one; beyond, a set
)

// actedOn reports whether Classify acts on a direct child of a stanza in
// namespace ns. Interesting uses the same test.
func actedOn(ns string) bool {
	switch ns {
	case nsOMEMO, nsOMEMO2, nsOpenPGP, nsPGPLegacy, nsEME, nsFallback,
		nsOOB, nsIQOOB, nsSFS, nsSIMS,
		nsJingle, nsJingleMsg, nsIBB, nsBytestreams, nsSI,
		nsForward, nsCarbons, nsMAM0, nsMAM1, nsMAM2:
		return true
	}
	return false
}

// encryptionOf maps the namespaces XEP-0380 may name to our names.
var encryptionOf = map[string]string{
	nsOMEMO:     EncryptionOMEMO,
	nsOMEMO2:    EncryptionOMEMO2,
	nsOpenPGP:   EncryptionOpenPGP,
	nsPGPLegacy: EncryptionOpenPGP,
	nsOTR:       EncryptionOTR,
}

// Interesting reports whether Classify can find anything in a stanza whose
// direct children have these names and whose body is body. When it is
// false, Classify returns the zero Facts.
func Interesting(children []xmlstream.Name, body string) bool {
	for _, c := range children {
		if actedOn(c.Space) {
			return true
		}
	}
	return strings.Contains(body, otrTag)
}

// Classify returns the payload facts of the stanza n (as ParseNode gives
// it) whose body text, as the policy sees it, is body. A nil n gives only
// what the body says.
func Classify(n *xmlstream.Node, body string) Facts {
	c := classifier{}
	var own level
	if n != nil {
		own = c.level(n.Children, 0)
	}
	switch {
	case own.payload != "":
		c.facts.Encryption = own.payload
	case own.eme != "":
		c.facts.Encryption = own.eme
	case strings.Contains(body, otrTag):
		c.facts.Encryption = EncryptionOTR
	case c.nested != "":
		c.facts.Encryption = c.nested
	}
	ownEncryption := own.payload != "" || own.eme != "" || strings.Contains(body, otrTag)
	trimmed := strings.TrimSpace(body)
	c.facts.BodyIsFallback = own.fallback ||
		(body != "" && ownEncryption) ||
		(trimmed != "" && slices.Contains(own.urls, trimmed))
	return c.facts
}

// level is what one stanza's own children say.
type level struct {
	payload  string   // encryption named by a payload element
	eme      string   // encryption named by a XEP-0380 tag
	fallback bool     // a XEP-0428 fallback element
	urls     []string // trimmed oob URLs
}

type classifier struct {
	facts  Facts
	nested string // first encryption found in a forwarded stanza
	seen   map[Transfer]bool
}

// level reads the children of one stanza.
func (c *classifier) level(children []*xmlstream.Node, depth int) level {
	var l level
	setPayload := func(e string) {
		if l.payload == "" {
			l.payload = e
		}
	}
	for _, ch := range children {
		switch ch.Space {
		case nsOMEMO:
			if ch.Local == "encrypted" {
				setPayload(EncryptionOMEMO)
			}
		case nsOMEMO2:
			if ch.Local == "encrypted" {
				setPayload(EncryptionOMEMO2)
			}
		case nsOpenPGP:
			if ch.Local == "openpgp" {
				setPayload(EncryptionOpenPGP)
			}
		case nsPGPLegacy:
			if ch.Local == "x" {
				setPayload(EncryptionOpenPGP)
			}
		case nsEME:
			if ch.Local == "encryption" && l.eme == "" {
				ns := ch.Attr("namespace")
				if e, ok := encryptionOf[ns]; ok {
					l.eme = e
				} else {
					l.eme = EncryptionXEP0380 + ns
				}
			}
		case nsFallback:
			if ch.Local == "fallback" {
				l.fallback = true
			}
		case nsOOB, nsIQOOB:
			if (ch.Space == nsOOB && ch.Local == "x") || (ch.Space == nsIQOOB && ch.Local == "query") {
				for _, u := range ch.Children {
					if u.Space == ch.Space && u.Local == "url" {
						c.link(u.Text)
						l.urls = append(l.urls, strings.TrimSpace(u.Text))
					}
				}
			}
		case nsSFS, nsSIMS:
			c.sources(ch)
		case nsJingle:
			if ch.Local == "jingle" {
				c.jingle(ch)
			}
		case nsJingleMsg:
			if ch.Local == "propose" && hasFileTransfer(ch) {
				c.add(Transfer{Method: MethodJingle})
			}
		case nsIBB:
			if ch.Local == "open" || ch.Local == "data" || ch.Local == "close" {
				c.add(Transfer{Method: MethodIBB})
			}
		case nsBytestreams:
			if ch.Local == "query" {
				c.add(Transfer{Method: MethodSOCKS5})
			}
		case nsSI:
			if ch.Local == "si" {
				c.streamInitiation(ch)
			}
		case nsForward, nsCarbons, nsMAM0, nsMAM1, nsMAM2:
			c.wrapper(ch, depth+1)
		}
	}
	return l
}

// wrapper follows a carbon, an archive result or a <forwarded/> to the
// stanza it carries.
func (c *classifier) wrapper(w *xmlstream.Node, depth int) {
	if depth > maxWrapDepth {
		return
	}
	for _, ch := range w.Children {
		switch {
		case ch.Space == nsForward && ch.Local == "forwarded",
			ch.Space == nsCarbons && (ch.Local == "received" || ch.Local == "sent"),
			(ch.Space == nsMAM0 || ch.Space == nsMAM1 || ch.Space == nsMAM2) && ch.Local == "result":
			c.wrapper(ch, depth+1)
		case w.Space == nsForward && w.Local == "forwarded" && isStanza(ch):
			l := c.level(ch.Children, depth+1)
			enc := l.payload
			if enc == "" {
				enc = l.eme
			}
			if enc == "" && strings.Contains(bodyOf(ch), otrTag) {
				enc = EncryptionOTR
			}
			if c.nested == "" {
				c.nested = enc
			}
		}
	}
}

// isStanza reports whether n is a message, presence or iq in a stanza
// namespace (forwarded stanzas are usually in jabber:client).
func isStanza(n *xmlstream.Node) bool {
	if n.Space != nsClient && n.Space != xmlstream.NSServer {
		return false
	}
	return n.Local == "message" || n.Local == "presence" || n.Local == "iq"
}

// bodyOf joins the bodies of a forwarded stanza, as the policy joins a
// stanza's own.
func bodyOf(n *xmlstream.Node) string {
	var b string
	for _, ch := range n.Children {
		if ch.Space == n.Space && ch.Local == "body" {
			b = xmlstream.JoinText(b, ch.Text, false)
		}
	}
	return b
}

// jingle reads a Jingle element: a file-transfer description anywhere in
// it makes a Jingle file transfer; IBB and SOCKS5 transports count
// wherever they appear.
func (c *classifier) jingle(j *xmlstream.Node) {
	if hasFileTransfer(j) {
		c.add(Transfer{Method: MethodJingle})
	}
	walk(j, func(n *xmlstream.Node) {
		switch {
		case n.Space == nsJingleIBB && n.Local == "transport":
			c.add(Transfer{Method: MethodIBB})
		case n.Space == nsJingleS5B && n.Local == "transport":
			c.add(Transfer{Method: MethodSOCKS5})
		}
	})
}

func hasFileTransfer(n *xmlstream.Node) bool {
	found := false
	walk(n, func(d *xmlstream.Node) {
		switch d.Space {
		case nsJingleFT3, nsJingleFT4, nsJingleFT5:
			found = true
		}
	})
	return found
}

// streamInitiation reads a XEP-0096 offer or answer: the stream methods
// named in its form.
func (c *classifier) streamInitiation(si *xmlstream.Node) {
	walk(si, func(n *xmlstream.Node) {
		if n.Local != "value" {
			return
		}
		switch strings.TrimSpace(n.Text) {
		case nsIBB:
			c.add(Transfer{Method: MethodIBB})
		case nsBytestreams:
			c.add(Transfer{Method: MethodSOCKS5})
		}
	})
}

// sources reads the URL sources of a stateless file share or a SIMS
// media share.
func (c *classifier) sources(n *xmlstream.Node) {
	walk(n, func(d *xmlstream.Node) {
		switch {
		case d.Space == nsURLData && d.Local == "url-data":
			c.link(d.Attr("target"))
		case d.Space == nsReference && d.Local == "reference":
			c.link(d.Attr("uri"))
		}
	})
}

// link records an oob transfer to the URL's host.
func (c *classifier) link(raw string) {
	c.add(Transfer{Method: MethodOOB, Host: urlHost(raw)})
}

// urlHost returns the host of a URL in A-label form, or "" when there is
// none or it is not a valid domain name or IP address.
func urlHost(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return ""
	}
	h := u.Hostname()
	if h == "" {
		return ""
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	d, err := jid.PrepareDomain(h)
	if err != nil {
		return ""
	}
	return jid.DomainASCII(d)
}

// add appends t unless it is already listed.
func (c *classifier) add(t Transfer) {
	ft := c.facts.FileTransfer
	if c.seen != nil {
		if c.seen[t] {
			return
		}
		c.seen[t] = true
	} else {
		for _, have := range ft {
			if have == t {
				return
			}
		}
		if len(ft) == linearDedupMax {
			c.seen = make(map[Transfer]bool, 2*linearDedupMax)
			for _, have := range ft {
				c.seen[have] = true
			}
			c.seen[t] = true
		}
	}
	c.facts.FileTransfer = append(ft, t)
}

// walk calls f for n and every element below it, depth first.
func walk(n *xmlstream.Node, f func(*xmlstream.Node)) {
	f(n)
	for _, ch := range n.Children {
		walk(ch, f)
	}
}
