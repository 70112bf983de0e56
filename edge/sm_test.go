package edge

import (
	"fmt"
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

// TestStreamManagementBurst: acknowledgements keep up with a burst, as
// Prosody asks for them — an <r/> whenever the previous one is answered —
// and the last one counts every stanza once all are relayed.
func TestStreamManagementBurst(t *testing.T) {
	h := newHostileEnv(t)
	p, _ := h.tlsPeer(t, &h.trusted, "partner.test")
	saslAuth(t, p)
	p.open("partner.test", "company.test")
	p.send("<enable xmlns='urn:xmpp:sm:3'/>")
	if got := p.next(); !strings.HasPrefix(got, "<enabled") {
		t.Fatalf("answer to <enable/>: %s", got)
	}
	const n = 600
	acks := make(chan string, n)
	go func() {
		for {
			el, err := p.r.Next()
			if err != nil {
				close(acks)
				return
			}
			acks <- string(el.Raw)
		}
	}()
	waiting := false
	last := ""
	for i := 1; i <= n; i++ {
		p.send(hostileAddressed("message", "bob@partner.test/r", "alice@company.test", fmt.Sprintf("b%d", i), "<body>burst</body>"))
		select {
		case a := <-acks:
			last, waiting = a, false
		default:
		}
		if !waiting {
			p.send("<r xmlns='urn:xmpp:sm:3'/>")
			waiting = true
		}
	}
	for got := 0; got < n; got++ {
		h.expectRelayed(t, fmt.Sprintf("b%d", got+1))
	}
	p.send("<r xmlns='urn:xmpp:sm:3'/>")
	want := fmt.Sprintf("<a xmlns='urn:xmpp:sm:3' h='%d'/>", n)
	for last != want {
		a, ok := <-acks
		if !ok {
			t.Fatalf("the stream ended; last answer %s, want %s", last, want)
		}
		last = a
	}
	h.finish(t, p)
}
