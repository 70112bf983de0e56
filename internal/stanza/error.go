package stanza

import "github.com/xmppedge/xmppedge/internal/xmlstream"

// Condition is a defined stanza error condition (RFC 6120 §8.3.3).
type Condition string

// The defined conditions.
const (
	BadRequest            Condition = "bad-request"
	Conflict              Condition = "conflict"
	FeatureNotImplemented Condition = "feature-not-implemented"
	Forbidden             Condition = "forbidden"
	Gone                  Condition = "gone"
	InternalServerError   Condition = "internal-server-error"
	ItemNotFound          Condition = "item-not-found"
	JIDMalformed          Condition = "jid-malformed"
	NotAcceptable         Condition = "not-acceptable"
	NotAllowed            Condition = "not-allowed"
	NotAuthorized         Condition = "not-authorized"
	PolicyViolation       Condition = "policy-violation"
	RecipientUnavailable  Condition = "recipient-unavailable"
	Redirect              Condition = "redirect"
	RegistrationRequired  Condition = "registration-required"
	RemoteServerNotFound  Condition = "remote-server-not-found"
	RemoteServerTimeout   Condition = "remote-server-timeout"
	ResourceConstraint    Condition = "resource-constraint"
	ServiceUnavailable    Condition = "service-unavailable"
	SubscriptionRequired  Condition = "subscription-required"
	UndefinedCondition    Condition = "undefined-condition"
	UnexpectedRequest     Condition = "unexpected-request"
)

// RemoteConnectionFailed is the dialback error condition of XEP-0220 §2.4
// (not an RFC 6120 stanza condition) for an authoritative server that
// cannot be reached.
const RemoteConnectionFailed Condition = "remote-connection-failed"

// Defined reports whether s names one of RFC 6120 §8.3.3's conditions.
// Anything else must never be written into XML as it is.
func Defined(s string) bool {
	switch Condition(s) {
	case BadRequest, Conflict, FeatureNotImplemented, Forbidden, Gone,
		InternalServerError, ItemNotFound, JIDMalformed, NotAcceptable,
		NotAllowed, NotAuthorized, PolicyViolation, RecipientUnavailable,
		Redirect, RegistrationRequired, RemoteServerNotFound,
		RemoteServerTimeout, ResourceConstraint, ServiceUnavailable,
		SubscriptionRequired, UndefinedCondition, UnexpectedRequest:
		return true
	}
	return false
}

// ErrorType is the type attribute of an <error/> (RFC 6120 §8.3.2).
type ErrorType string

// The error types.
const (
	Auth     ErrorType = "auth"
	Cancel   ErrorType = "cancel"
	Continue ErrorType = "continue"
	Modify   ErrorType = "modify"
	Wait     ErrorType = "wait"
)

// Type is the error type xmppedge sends with c: wait where trying again
// later may work, modify where the sender must change the stanza, cancel
// otherwise.
func (c Condition) Type() ErrorType {
	switch c {
	case RemoteServerTimeout, ResourceConstraint:
		return Wait
	case PolicyViolation, JIDMalformed: // RFC 6120 §8.3.3.8
		return Modify
	}
	return Cancel
}

// Answerable reports whether a stanza of kind (message, presence, iq) and
// type typ may be answered with an error: errors never are, nor iq
// results, nor presences whose sender waits for no answer.
func Answerable(kind, typ string) bool {
	switch {
	case typ == "error":
		return false
	case kind == "iq":
		return typ == "get" || typ == "set"
	case kind == "presence":
		return typ == "" || typ == "subscribe" || typ == "probe"
	}
	return true
}

// AppendError appends the error stanza <kind from to type='error' id>
// with cond (of its default type) and an optional text to b. from and to
// are the error's: the original's to and from.
func AppendError(b []byte, kind, from, to, id string, cond Condition, text string) []byte {
	b = append(b, '<')
	b = append(b, kind...)
	b = append(b, " from='"...)
	b = xmlstream.AppendEscapedAttr(b, from)
	b = append(b, "' to='"...)
	b = xmlstream.AppendEscapedAttr(b, to)
	b = append(b, "' type='error'"...)
	if id != "" {
		b = append(b, " id='"...)
		b = xmlstream.AppendEscapedAttr(b, id)
		b = append(b, '\'')
	}
	b = append(b, '>')
	b = AppendErrorChild(b, cond.Type(), cond, text)
	b = append(b, "</"...)
	b = append(b, kind...)
	return append(b, '>')
}

// AppendErrorChild appends <error type><cond/><text/></error> to b.
func AppendErrorChild(b []byte, typ ErrorType, cond Condition, text string) []byte {
	b = append(b, "<error type='"...)
	b = append(b, typ...)
	b = append(b, "'><"...)
	b = append(b, cond...)
	b = append(b, " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"...)
	if text != "" {
		b = append(b, "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"...)
		b = xmlstream.AppendEscapedText(b, text)
		b = append(b, "</text>"...)
	}
	return append(b, "</error>"...)
}
