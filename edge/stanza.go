package edge

import (
	"strings"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// stanza is one message, presence or iq in flight between the legs. raw is
// owned by the stanza (a copy of the scanner's bytes, self-contained: any
// namespace prefix declared only on the incoming stream header is declared
// on the element).
type stanza struct {
	raw                  []byte
	kind                 string // message | presence | iq
	from, to, typ, id    string
	fromDomain, toDomain string
	rerouted             bool   // already moved once from a stream that closed under it
	auditSeq             uint64 // its audit record; written to the peer only once durable
}

// newStanza makes the stanza that goes on from el: from and to are the
// canonical addresses, raw the bytes to forward (nil: el's bytes as they
// are, with the header prefixes declared).
func newStanza(el *xmlstream.Element, headerNS map[string]string, from, to, fromDomain, toDomain string, raw []byte) *stanza {
	if raw == nil {
		raw = el.AppendForward(make([]byte, 0, len(el.Raw)), headerNS)
	}
	return &stanza{
		raw:        raw,
		kind:       el.Local,
		from:       from,
		to:         to,
		typ:        strings.Clone(el.Type),
		id:         strings.Clone(el.ID),
		fromDomain: fromDomain,
		toDomain:   toDomain,
	}
}

// stanzaErrorType is the RFC 6120 §8.3.2 error type of each condition we
// use.
var stanzaErrorType = map[string]string{
	"remote-server-not-found": "cancel",
	"remote-server-timeout":   "wait",
	"resource-constraint":     "wait",
	"service-unavailable":     "cancel",
	"internal-server-error":   "cancel",
	"policy-violation":        "modify",
	"jid-malformed":           "modify", // RFC 6120 §8.3.3.8
}

// definedStanzaCondition reports whether cond is one of RFC 6120 §8.3.3's
// stanza error conditions (a policy may name any of them; anything else is
// replaced by policy-violation, never written into XML as it is).
func definedStanzaCondition(cond string) bool {
	switch cond {
	case "bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
		"internal-server-error", "item-not-found", "jid-malformed", "not-acceptable",
		"not-allowed", "not-authorized", "policy-violation", "recipient-unavailable",
		"redirect", "registration-required", "remote-server-not-found",
		"remote-server-timeout", "resource-constraint", "service-unavailable",
		"subscription-required", "undefined-condition", "unexpected-request":
		return true
	}
	return false
}

// bounce returns the error stanza that answers st with condition, or nil
// when st must not be answered (it is an error itself: errors are never
// answered with errors; or a presence of a kind nobody waits an answer to).
func (st *stanza) bounce(condition, text string) *stanza {
	if st.typ == "error" {
		return nil
	}
	if st.kind == "iq" && st.typ != "get" && st.typ != "set" {
		return nil // results are not answered
	}
	if st.kind == "presence" && st.typ != "" && st.typ != "subscribe" && st.typ != "probe" {
		return nil // unavailable, subscribed, ... : the sender waits for nothing
	}
	errType := stanzaErrorType[condition]
	if errType == "" {
		errType = "cancel"
	}
	b := make([]byte, 0, 256)
	b = append(b, '<')
	b = append(b, st.kind...)
	b = append(b, " from='"...)
	b = xmlstream.AppendEscapedAttr(b, st.to)
	b = append(b, "' to='"...)
	b = xmlstream.AppendEscapedAttr(b, st.from)
	b = append(b, "' type='error'"...)
	if st.id != "" {
		b = append(b, " id='"...)
		b = xmlstream.AppendEscapedAttr(b, st.id)
		b = append(b, '\'')
	}
	b = append(b, "><error type='"...)
	b = append(b, errType...)
	b = append(b, "'><"...)
	b = append(b, condition...)
	b = append(b, " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"...)
	if text != "" {
		b = append(b, "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"...)
		b = xmlstream.AppendEscapedText(b, text)
		b = append(b, "</text>"...)
	}
	b = append(b, "</error></"...)
	b = append(b, st.kind...)
	b = append(b, '>')
	return &stanza{
		raw: b, kind: st.kind, from: st.to, to: st.from, typ: "error", id: st.id,
		fromDomain: st.toDomain, toDomain: st.fromDomain,
	}
}
