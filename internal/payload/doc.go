// Package payload owns what a stanza carries that content rules cannot
// read: end-to-end encryption, file transfers, and whether the body is
// only a fallback text. It turns a parsed stanza into [Facts] for the
// policy; it never changes the stanza.
//
// # Model
//
// [Classify] reads the stanza tree (xmlstream.ParseNode) and the body text
// the policy sees. It looks where receiving clients look:
//
//   - the stanza's own children;
//   - the stanza inside a XEP-0297 <forwarded/>, when <forwarded/> is a
//     child of the stanza or of a carbon (XEP-0280 <received/>, <sent/>)
//     or archive result (XEP-0313 <result/>) that is: a MUC or archive on
//     a remote domain relays other people's messages this way. Wrappers
//     are followed to a depth of 8.
//
// An element nested anywhere else (inside an unknown extension) is not a
// payload any client acts on and is not reported.
//
// Encryption, first match wins (the stanza's own level before forwarded
// stanzas; payload elements before XEP-0380 tags, those before OTR):
//
//	omemo     <encrypted xmlns='eu.siacs.conversations.axolotl'/>
//	omemo2    <encrypted xmlns='urn:xmpp:omemo:2'/>
//	openpgp   <openpgp xmlns='urn:xmpp:openpgp:0'/> (XEP-0373/0374),
//	          <x xmlns='jabber:x:encrypted'/> (XEP-0027)
//	(EME)     <encryption xmlns='urn:xmpp:eme:0' namespace='NS'/> (XEP-0380):
//	          the name above when NS is one of those namespaces (or
//	          urn:xmpp:otr:0 for otr), else "xep0380:NS"
//	otr       a body containing "?OTR": libotr looks for the tag anywhere in
//	          the message, not only at its start, so this does too
//
// File transfers (each method and host once, in order of appearance):
//
//	oob       XEP-0066 <x xmlns='jabber:x:oob'><url/></x> and the iq form
//	          <query xmlns='jabber:iq:oob'><url/></query>; also the URL
//	          sources of XEP-0447 stateless file sharing (<url-data
//	          target=…/> in urn:xmpp:sfs:0) and of XEP-0385 SIMS
//	          (<reference uri=…/> in urn:xmpp:sims:1), which are links to
//	          a file just the same
//	jingle    <jingle xmlns='urn:xmpp:jingle:1'/> or a XEP-0353
//	          <propose xmlns='urn:xmpp:jingle-message:0'/> holding an
//	          element of a file-transfer namespace
//	          (urn:xmpp:jingle:apps:file-transfer:3, :4 or :5)
//	ibb       XEP-0047 <open/>, <data/> or <close/> in
//	          http://jabber.org/protocol/ibb, or a Jingle IBB transport
//	          (urn:xmpp:jingle:transports:ibb:1)
//	socks5    XEP-0065 <query xmlns='http://jabber.org/protocol/bytestreams'/>,
//	          or a Jingle SOCKS5 transport (urn:xmpp:jingle:transports:s5b:1)
//
// A Jingle transport is reported wherever it appears in a <jingle/>
// element, with or without a description (transport-replace and
// transport-info carry none). A XEP-0096 stream-initiation file offer
// (<si xmlns='http://jabber.org/protocol/si'/>) reports the stream methods
// it offers or accepts (ibb, socks5), so it can be refused before the
// stream starts.
//
// The host of an oob link is the URL's host (net/url), prepared as a
// domain (internal/jid: UTS #46, lowercase, one final dot stripped) and
// written in A-label form, as the policy's upload_hosts are; an IPv4
// address is kept, an IPv6 one written [canonical]. A URL that does not
// parse, has no host, or whose host is not a valid domain name still
// counts as an oob transfer, with Host "": rules must not treat "" as an
// allowed host.
//
// BodyIsFallback is true when the stanza's own level carries encryption
// and a body is present, or a XEP-0428 <fallback xmlns='urn:xmpp:fallback:0'/>,
// or an oob URL equal to the whole body (both trimmed). It says only that
// the body is not the whole story; the sender chooses the body, so rules
// must never skip a content check because of it.
//
// # Hot path
//
// [Interesting] decides from the names of the stanza's children (what
// xmlstream.ParseContent yields) and the body whether Classify can find
// anything; when it returns false, Classify would return the zero Facts,
// so most messages never need a tree. FuzzInteresting checks this.
package payload
