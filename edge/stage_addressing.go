package edge

import (
	"context"
	"errors"
	"strings"

	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
)

// addressingStage prepares from and to (RFC 7622) and checks them against
// the stream: both present (else improper-addressing), the to domain
// reachable through the stream (else host-unknown), the from domain
// authenticated on it for the to domain (else not-authorized or
// invalid-from). A stanza whose from or to cannot be prepared is bounced
// with jid-malformed and goes no further.
func addressingStage(m *metrics.Metrics, r *refuser) stage[*inStanza] {
	return func(next stanzaHandler) stanzaHandler {
		return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
			el := st.el
			if el.From == "" || el.To == "" {
				return improperAddressing()
			}
			st.prepareAddresses()
			p, err := pairOf(st)
			if err != nil {
				return err
			}
			st.pair = p
			st.stream.countStanza()
			m.Bytes(st.leg.String(), metrics.BytesReceived, len(el.Raw))
			if st.badFrom != nil || st.badTo != nil {
				bounceMalformed(st, r)
				return nil
			}
			return next.handle(ctx, st)
		})
	}
}

func improperAddressing() error {
	return &stream.Error{Condition: stream.ImproperAddressing, Text: "a stanza between servers needs both 'from' and 'to'"}
}

// pairOf checks that the stanza's from domain is authenticated on its
// stream for its to domain, and returns the pair; otherwise the stream
// error RFC 6120 names.
func pairOf(st *inStanza) (pairSnapshot, error) {
	fromDom, toDom := st.fromDomain, st.toDomain
	p, ok, anyAuthed := st.stream.pairFor(fromDom, toDom)
	if ok && fromDom != "" && toDom != "" {
		return p, nil
	}
	if _, okRecv := st.stream.sides(fromDom, toDom); !okRecv {
		return p, &stream.Error{Condition: stream.HostUnknown, Text: toDom + " is not reachable through this stream"}
	}
	if !anyAuthed {
		return p, &stream.Error{Condition: stream.NotAuthorized, Text: "no domain has been authenticated on this stream"}
	}
	return p, &stream.Error{Condition: stream.InvalidFrom, Text: fromDom + " has not been authenticated on this stream for " + toDom}
}

// prepareAddresses reads and prepares from and to. A JID that cannot be
// prepared leaves its domain from a loose split (so that the stream checks
// can still name it), and badFrom / badTo set.
func (st *inStanza) prepareAddresses() {
	st.from, st.fromStr, st.fromDomain, st.badFrom = prepareAddress(st.el.From)
	st.to, st.toStr, st.toDomain, st.badTo = prepareAddress(st.el.To)
}

// prepareAddress prepares one address as sent: the JID, its string and
// its domain, or the error and the domain of a loose split.
func prepareAddress(sent string) (j jid.JID, s, domain string, err error) {
	if j, err = jid.Prepare(sent); err != nil {
		return j, "", looseDomain(sent), err
	}
	return j, jidString(j, sent), j.Domain, nil
}

// jidString is j.String(), without building it when sent (the address as
// it came) is already that string: the common case on the stanza path.
func jidString(j jid.JID, sent string) string {
	n := len(j.Domain)
	if j.Local != "" {
		n += len(j.Local) + 1
	}
	if j.Resource != "" {
		n += len(j.Resource) + 1
	}
	if len(sent) == n {
		rest, ok := sent, true
		if j.Local != "" {
			ok = len(rest) > len(j.Local) && rest[:len(j.Local)] == j.Local && rest[len(j.Local)] == '@'
			if ok {
				rest = rest[len(j.Local)+1:]
			}
		}
		if ok && len(rest) >= len(j.Domain) && rest[:len(j.Domain)] == j.Domain {
			rest = rest[len(j.Domain):]
			if j.Resource == "" && rest == "" || len(rest) > 0 && rest[0] == '/' && rest[1:] == j.Resource {
				return sent
			}
		}
	}
	return j.String()
}

// looseDomain is the canonical domainpart of a JID that could not be
// prepared as a whole, or "" when the domain itself is not valid.
func looseDomain(s string) string {
	d, err := jid.PrepareDomain(jidDomain(s))
	if err != nil {
		return ""
	}
	return d
}

// canonicalDomain prepares a domain from a stream header, a dialback
// element or a configuration; "" when it is not a valid domain.
func canonicalDomain(s string) string {
	if s == "" {
		return ""
	}
	d, err := jid.PrepareDomain(s)
	if err != nil {
		return ""
	}
	return d
}

// jidDomain returns the lowercased domainpart of a JID string (RFC 7622:
// what follows the first '@' before the first '/', or everything before
// '/'). A JID with a second '@' there yields a domain with an '@', which
// matches no domain.
func jidDomain(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.IndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	j = strings.TrimSuffix(j, ".")
	for i := 0; i < len(j); i++ {
		if c := j[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(j)
		}
	}
	return j
}

// malformedText says which address of a stanza could not be prepared.
func malformedText(st *inStanza) string {
	var je *jid.Error
	err, which := st.badTo, "to"
	if err == nil {
		err, which = st.badFrom, "from"
	}
	if errors.As(err, &je) {
		return "the '" + which + "' address is not a valid JID: " + je.Part + ": " + je.Reason
	}
	return "the '" + which + "' address is not a valid JID"
}

// bounceMalformed bounces a stanza whose from or to cannot be prepared
// with jid-malformed, addressed so that the receiving server can read it:
// from the recipient's domain when the to is malformed, to the sender's
// domain when the from is; the address that could be prepared is used in
// its canonical form. It is never forwarded.
func bounceMalformed(st *inStanza, r *refuser) {
	from, to := st.fromStr, st.toStr
	if st.badFrom != nil {
		from = st.fromDomain
	}
	if st.badTo != nil {
		to = st.toDomain
	}
	text := malformedText(st)
	st.log.Info("stanza with a malformed address refused", "kind", st.el.Local, "from", st.el.From, "to", st.el.To, "reason", text)
	r.refuse(st, from, to, stanza.JIDMalformed, text)
}
