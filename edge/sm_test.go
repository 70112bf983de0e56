package edge

import (
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/s2s"
)

// TestStreamManagementAcks: a partner that enables XEP-0198 on its stream
// gets, for its <r/>, an <a h=/> that counts every stanza it sent, once
// each is handled whatever became of it: relayed to the internal server,
// refused by the policy (bounced), refused for a malformed address
// (bounced), or an error refused (dropped, not answered). A path that
// forgot a stanza would leave the <r/> unanswered and fail the test; the
// sending server would hold the stanza for ever and bounce it when the
// stream ends.
//
// The peer is hostile too: a second <enable/> is refused, and nothing but
// the stanza let through reaches the internal server.
func TestStreamManagementAcks(t *testing.T) {
	h := newHostileEnv(t)
	h.judge.setDenyBody("forbidden")
	p, f := h.tlsPeer(t, &h.trusted, "partner.test")
	saslAuth(t, p)
	f = p.open("partner.test", "company.test")
	if f.Child(s2s.NSStreamManagement, "sm") == nil {
		t.Fatalf("stream management not offered after authentication: %+v", f)
	}
	p.send("<enable xmlns='urn:xmpp:sm:3'/>")
	if got := p.next(); !strings.HasPrefix(got, "<enabled") {
		t.Fatalf("answer to <enable/>: %s", got)
	}
	p.send(hostileAddressed("message", "bob@partner.test/r", "alice@company.test", "ok", "<body>hello</body>") + // relayed
		hostileAddressed("message", "bob@partner.test/r", "alice@company.test", "denied", "<body>forbidden words</body>") + // bounced by the policy
		"<message from='bob@partner.test/r' to='al ice@company.test' id='bad-to'><body>x</body></message>" + // bounced: jid-malformed
		"<message from='bob@partner.test/r' to='alice@company.test' id='err' type='error'><body>forbidden</body></message>" + // refused, not answered
		"<r xmlns='urn:xmpp:sm:3'/>")
	h.expectRelayed(t, "ok")
	h.expectBounce(t, h.authority.stanzas, "denied", "policy-violation", "modify|cancel|auth", "alice@company.test", "bob@partner.test/r")
	h.expectBounce(t, h.authority.stanzas, "bad-to", "jid-malformed", hostileJIDMalformedType, "company.test", "bob@partner.test/r")
	if got := p.next(); got != "<a xmlns='urn:xmpp:sm:3' h='4'/>" {
		t.Fatalf("answer to <r/> after 4 stanzas: %s", got)
	}
	p.send("<enable xmlns='urn:xmpp:sm:3'/>")
	if got := p.next(); !strings.Contains(got, "<failed") || !strings.Contains(got, "unexpected-request") {
		t.Fatalf("a second <enable/>: %s", got)
	}
	h.finish(t, p)
}
