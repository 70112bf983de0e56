package edge

import (
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/s2s"
)

// bidiPartner opens an outside stream from partner.test over TLS,
// optionally asks for XEP-0288, and authenticates partner.test by
// dialback (the authority vouches for "partner-key").
func bidiPartner(t *testing.T, env *testEnv, ask bool) *peer {
	t.Helper()
	p := dialPeer(t, env.outside)
	if f := p.open("partner.test", "company.test"); f.Child(s2s.NSBidiFeature, "bidi") != nil {
		t.Fatal("bidi offered before TLS, which the outside leg requires")
	}
	f := p.startTLS("partner.test", "company.test")
	if f.Child(s2s.NSBidiFeature, "bidi") == nil {
		t.Fatalf("bidi not offered after TLS: %+v", f)
	}
	if ask {
		p.send("<bidi xmlns='urn:xmpp:bidi'/>")
	}
	p.send("<db:result from='partner.test' to='company.test'>partner-key</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	return p
}

func bidiEnv(t *testing.T, mods ...func(*Options)) (*testEnv, *fakeServer) {
	env := newTestEnv(t, mods...)
	authority := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	authority.setVerify(func(from, to, id, key string) bool {
		return from == "company.test" && to == "partner.test" && key == "partner-key"
	})
	env.res.set("partner.test", authority.addr(), true)
	return env, authority
}

// outsideOutgoing returns the outgoing outside sessions.
func outsideOutgoing(env *testEnv) []SessionInfo {
	var out []SessionInfo
	for _, s := range env.gw.Sessions() {
		if s.Leg == "outside" && s.Role == "outgoing" {
			out = append(out, s)
		}
	}
	return out
}

// TestBidiReceiving: a partner that asks for XEP-0288 on the stream it
// opened receives the company's stanzas on that same stream, and the
// gateway opens no connection of its own to it; when that stream ends,
// the next stanza goes over a connection the gateway opens.
func TestBidiReceiving(t *testing.T) {
	env, authority := bidiEnv(t)
	p := bidiPartner(t, env, true)
	p.send("<message from='bob@partner.test/x' to='alice@company.test' id='in1'><body>hi alice</body></message>")
	env.internal.expectStanza(t, "id='in1'")

	q := authedInside(t, env, "partner.test")
	q.send("<message from='alice@company.test/r' to='bob@partner.test' id='out1'><body>hi bob</body></message>")
	if got := p.next(); !strings.Contains(got, "id='out1'") || !strings.Contains(got, "hi bob") {
		t.Fatalf("the partner's stream carried %q, want out1", got)
	}
	var in string
	for _, s := range env.gw.Sessions() {
		if s.Leg == "outside" && s.Role == "incoming" {
			if !s.Bidi {
				t.Errorf("the incoming session is not marked bidi: %+v", s)
			}
			in = s.ID
		}
	}
	out := outsideOutgoing(env)
	if len(out) != 1 || out[0].Over != in || in == "" {
		t.Fatalf("outgoing outside sessions %+v, want one over %s", out, in)
	}
	if n := authority.connections(); n != 1 {
		t.Fatalf("the gateway connected %d time(s) to partner.test's server, want 1 (the dialback verification)", n)
	}
	env.aud.mu.Lock()
	found := false
	for _, r := range env.aud.records {
		found = found || r.Event == "session.open" && r.Session == out[0].ID && strings.Contains(r.Reason, "XEP-0288")
	}
	env.aud.mu.Unlock()
	if !found {
		t.Error("no session.open record says the direction runs over the incoming stream")
	}

	// The partner's stream ends: the next stanza gets a stream of its own.
	p.send("</stream:stream>")
	waitUntil(t, func() bool {
		for _, s := range outsideOutgoing(env) {
			if s.Over != "" {
				return false
			}
		}
		return true
	})
	q.send("<message from='alice@company.test/r' to='bob@partner.test' id='out2'><body>again</body></message>")
	authority.expectStanza(t, "id='out2'")
}

// TestBidiNotAsked: a partner that does not ask, or asks where it was not
// offered, gets the company's stanzas on a stream the gateway opens.
func TestBidiNotAsked(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, env *testEnv) *peer
	}{
		{"not asked", func(t *testing.T, env *testEnv) *peer { return bidiPartner(t, env, false) }},
		{"asked before TLS, where it is not offered", func(t *testing.T, env *testEnv) *peer {
			p := dialPeer(t, env.outside)
			p.open("partner.test", "company.test")
			p.send("<bidi xmlns='urn:xmpp:bidi'/>")
			p.startTLS("partner.test", "company.test")
			p.send("<db:result from='partner.test' to='company.test'>partner-key</db:result>")
			if got := p.next(); !strings.Contains(got, "type='valid'") {
				t.Fatalf("dialback: %q", got)
			}
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, authority := bidiEnv(t)
			tt.run(t, env)
			q := authedInside(t, env, "partner.test")
			q.send("<message from='alice@company.test/r' to='bob@partner.test' id='out1'><body>hi bob</body></message>")
			authority.expectStanza(t, "id='out1'")
			for _, s := range outsideOutgoing(env) {
				if s.Over != "" {
					t.Fatalf("a direction runs over an incoming stream: %+v", s)
				}
			}
		})
	}
}

// TestBidiOff: with outside.bidi off the feature is not offered, and a
// request is ignored.
func TestBidiOff(t *testing.T) {
	env, authority := bidiEnv(t, func(o *Options) { o.Outside.NoBidi = true })
	p := dialPeer(t, env.outside)
	p.open("partner.test", "company.test")
	if f := p.startTLS("partner.test", "company.test"); f.Child(s2s.NSBidiFeature, "bidi") != nil {
		t.Fatal("bidi offered with outside.bidi off")
	}
	p.send("<bidi xmlns='urn:xmpp:bidi'/><db:result from='partner.test' to='company.test'>partner-key</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	q := authedInside(t, env, "partner.test")
	q.send("<message from='alice@company.test/r' to='bob@partner.test' id='out1'/>")
	authority.expectStanza(t, "id='out1'")
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBidiInitiating: a partner server that offers XEP-0288 and whose
// certificate is valid is asked to use the gateway's outgoing stream both
// ways; what it sends back on it reaches the internal server, through the
// same stanza path as an incoming stream's (policy, audit), and no stream
// of its own is needed. Hostile: a stanza from a domain not authenticated
// on the stream ends it, and nothing of it reaches the internal server.
func TestBidiInitiating(t *testing.T) {
	env, authority := bidiEnv(t)
	authority.bidi = true
	q := authedInside(t, env, "partner.test")
	q.send("<message from='alice@company.test/r' to='bob@partner.test' id='out1'><body>hi bob</body></message>")
	authority.expectStanza(t, "id='out1'")
	if !authority.askedBidi() {
		t.Fatal("the gateway did not ask the partner's server for a bidirectional stream")
	}
	authority.sendBack(t, "<message from='bob@partner.test/x' to='alice@company.test' id='back1'><body>hi alice</body></message>", false)
	env.internal.expectStanza(t, "id='back1'", "hi alice")
	out := outsideOutgoing(env)
	if len(out) != 1 || !out[0].Bidi {
		t.Fatalf("outgoing outside sessions %+v, want one used both ways", out)
	}
	for _, s := range env.gw.Sessions() {
		if s.Leg == "outside" && s.Role == "incoming" && len(s.Remote) > 0 {
			t.Fatalf("an incoming outside stream authenticated a pair: %+v", s)
		}
	}
	// The reverse pair was authorised and recorded like an incoming one.
	env.aud.mu.Lock()
	authed := false
	for _, r := range env.aud.records {
		authed = authed || r.Event == "session.auth" && r.Session == out[0].ID && r.RemoteDomain == "partner.test"
	}
	env.aud.mu.Unlock()
	if !authed {
		t.Error("no session.auth record for the reverse pair")
	}

	authority.sendBack(t, "<message from='mallory@evil.test' to='alice@company.test' id='evil'><body>x</body></message>", false)
	waitUntil(t, func() bool { return len(outsideOutgoing(env)) == 0 })
	select {
	case got := <-env.internal.stanzas:
		t.Fatalf("the internal server received %q", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestBidiUnasked: stanzas a server sends on the gateway's outgoing
// stream without having been asked to use it both ways end the stream
// (unsupported-stanza-type); none reaches the internal server.
func TestBidiUnasked(t *testing.T) {
	env, authority := bidiEnv(t) // the authority does not offer bidi
	q := authedInside(t, env, "partner.test")
	q.send("<message from='alice@company.test/r' to='bob@partner.test' id='out1'/>")
	authority.expectStanza(t, "id='out1'")
	if authority.askedBidi() {
		t.Fatal("bidi asked of a server that did not offer it")
	}
	authority.sendBack(t, "<message from='bob@partner.test/x' to='alice@company.test' id='sneak'/>", true)
	waitUntil(t, func() bool { return len(outsideOutgoing(env)) == 0 })
	select {
	case got := <-env.internal.stanzas:
		t.Fatalf("the internal server received %q", got)
	case <-time.After(200 * time.Millisecond):
	}
}
