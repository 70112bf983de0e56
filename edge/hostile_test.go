package edge

// Hostile peers (issue #9 item 8): attackers on raw loopback sockets
// against the outside listener, one test per attack class of DESIGN §3.
// Every attack asserts
//
//	(a) the exact stream error (or SASL failure, dialback error) that
//	    RFC 6120 / XEP-0220 / XEP-0178 names for it;
//	(b) that nothing reached the internal server: a canary stanza sent
//	    afterwards on a good stream is the first thing the fake internal
//	    server receives, no stanza but canaries was ever audited as
//	    relayed, and no stream towards the inside exists for any pair
//	    but the canary's (assertNothingRelayed);
//	(c) that the gateway's heap returns to its baseline once the attacking
//	    connections are gone and the gateway holds no connection and no
//	    dialback verification any more (assertMemory).
//
// Attackers authenticate where the class needs it: with a certificate
// from a CA of their own, which the gateway does not trust (no SASL
// EXTERNAL; dialback against the fake authoritative server of
// partner.test), or with one from the test CA the gateway trusts (SASL
// EXTERNAL).
//
// Classes already covered by gateway_test.go and not repeated here:
//   - bytes pipelined after <starttls/> (TestStartTLSInjection);
//   - the jabber:client content namespace and a wrong stream namespace
//     in the first header (TestStreamErrors), a first header whose 'to' is
//     not ours (TestStreamErrors; here only after STARTTLS and SASL);
//   - a comment at the top level and a DOCTYPE and an undefined entity
//     before authentication (TestStreamErrors; here inside stanzas of an
//     authenticated stream);
//   - invalid-from on a stream authenticated by dialback (TestRelayInbound;
//     here after SASL EXTERNAL and after the dialback fallback for an
//     untrusted certificate);
//   - the pre-authentication bound against a peer repeating db:verify
//     (TestPreAuthLimit; here against a slow header and a dribbled stanza);
//   - no SASL EXTERNAL for a certificate of an untrusted CA
//     (TestRequireCertificate, TestOutsideFeatures; here also the <auth/>
//     sent anyway);
//   - a key for another stream id in our own authoritative role
//     (TestDialbackVerifyAnswers; here the receiving role's replay).
//
// The classes of the stanza path (pipeline.go) have tests of their own:
// CDATA sections (TestHostileCDATA), addresses in other spellings than
// their RFC 7622 canonical form and malformed ones (TestHostileJIDForms),
// the per-domain stanza rate (TestHostileStanzaRate) and the per-source
// connection limits (TestHostileConnectionsPerIP). What they let through
// on purpose they read from the internal server themselves
// (expectRelayed); (b) then holds for everything else.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// partnerAuthoritySecret is the dialback secret of partner.test's
// authoritative server: only it can tell a key valid.
const partnerAuthoritySecret = "partner-authority-secret"

// partnerKey is the dialback key partner.test's servers send for a stream
// to company.test with the given id.
func partnerKey(id string) string {
	return dialback.Key(partnerAuthoritySecret, "company.test", "partner.test", id)
}

// hostileMemoryMargin is how far above its baseline the heap may be after
// an attack: generous, the point is to catch what an attack leaves behind
// (a buffer per attack, a goroutine per connection), not to measure.
const hostileMemoryMargin = 8 << 20

// hostileFloodMargin is how much the heap may grow while a flood of 9,500
// stanzas is refused once every stream it uses is up: about 200 bytes a
// stanza. What the test itself keeps of the stanzas it lets through
// meanwhile (other.test's) and the streams that come and go take a few
// hundred KiB.
const hostileFloodMargin = 2 << 20

// hostileWait bounds every wait for the gateway to reach a state (no
// connection left, a canary delivered). It is not a timing assertion: on
// a healthy machine the state is reached in milliseconds.
const hostileWait = 60 * time.Second

// hostileEnv is a gateway under attack: the test environment, partner.test's
// authoritative server, the attackers' certificates and the baseline.
type hostileEnv struct {
	*testEnv
	judge     *hostilePolicy // the policy the gateway asks (fakePolicy, watched)
	authority *fakeServer
	trusted   tls.Certificate // partner.test, from the CA the gateway trusts
	untrusted tls.Certificate // partner.test, from the attacker's own CA

	vmu   sync.Mutex
	asked []string // "from to id" of each db:verify partner.test's authority answered

	canaries int
	baseline uint64 // heap in use after setup and one canary

	// What a test let through on purpose (the stanza path's positive
	// cases), accepted by assertNothingRelayed: the ids of the stanzas
	// the test read from the internal server (expectRelayed), and the
	// "remote local" pairs of streams to the internal server it caused.
	let      map[string]bool
	letPairs map[string]bool
}

// hostilePolicy is the fake policy as the gateway sees it in the hostile
// suite: it keeps what each stanza decision was asked (by stanza id,
// canaries left out), and gives the remote domains in rates their stanza
// rate in the session decision (as a partners.yaml rate would).
type hostilePolicy struct {
	*fakePolicy
	mu    sync.Mutex
	asked map[string]hostileAsked
	rates map[string]*policy.Rate
}

// hostileAsked is what a stanza decision was asked about one stanza.
type hostileAsked struct {
	from, to policy.JID
	body     string
}

func (p *hostilePolicy) DecideSession(ctx context.Context, in *policy.SessionInput) policy.SessionDecision {
	d := p.fakePolicy.DecideSession(ctx, in)
	p.mu.Lock()
	if r := p.rates[in.RemoteDomain]; r != nil && d.Allow {
		d.Rate = r
	}
	p.mu.Unlock()
	return d
}

func (p *hostilePolicy) DecideStanza(ctx context.Context, in *policy.StanzaInput) policy.StanzaDecision {
	if !strings.HasPrefix(in.ID, "canary-") {
		clone := func(j policy.JID) policy.JID {
			return policy.JID{Full: strings.Clone(j.Full), Bare: strings.Clone(j.Bare), Domain: strings.Clone(j.Domain)}
		}
		p.mu.Lock()
		p.asked[strings.Clone(in.ID)] = hostileAsked{from: clone(in.From), to: clone(in.To), body: strings.Clone(in.Body)}
		p.mu.Unlock()
	}
	return p.fakePolicy.DecideStanza(ctx, in)
}

// askedAbout returns what the stanza decision was asked about the stanza
// id; ok is false if it never was.
func (p *hostilePolicy) askedAbout(id string) (a hostileAsked, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok = p.asked[id]
	return a, ok
}

// setRate gives domain's sessions the stanza rate r from now on (nil: the
// default of the limits).
func (p *hostilePolicy) setRate(domain string, r *policy.Rate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r == nil {
		delete(p.rates, domain)
	} else {
		p.rates[domain] = r
	}
}

// setDenyBody makes the fake policy refuse the stanzas whose body (or subject) contains
// word (through its lock: the gateway reads it concurrently).
func (p *hostilePolicy) setDenyBody(word string) {
	p.fakePolicy.mu.Lock()
	p.fakePolicy.denyBody = word
	p.fakePolicy.mu.Unlock()
}

func newHostileEnv(t *testing.T, mods ...func(*Options)) *hostileEnv {
	t.Helper()
	// A connect timeout far above anything a test needs: the verifications
	// a test holds open must not expire on a slow machine.
	judge := &hostilePolicy{asked: map[string]hostileAsked{}, rates: map[string]*policy.Rate{}}
	watch := func(o *Options) {
		judge.fakePolicy = o.Policy.(*fakePolicy)
		o.Policy = judge
	}
	mods = append([]func(*Options){func(o *Options) { o.Limits.ConnectTimeout = 30 * time.Second }, hostileLimits, watch}, mods...)
	h := &hostileEnv{testEnv: newTestEnv(t, mods...), judge: judge, let: map[string]bool{}, letPairs: map[string]bool{}}
	h.authority = startFakeServerTLS(t, "partner.test", h.tlsConfig(t, "partner.test"))
	h.authority.setVerify(func(from, to, id, key string) bool {
		h.vmu.Lock()
		h.asked = append(h.asked, from+" "+to+" "+id)
		h.vmu.Unlock()
		return from == "company.test" && to == "partner.test" && dialback.Equal(key, partnerKey(id))
	})
	h.res.set("partner.test", h.authority.addr(), true)
	h.trusted = hostileCert(t, h.ca, "partner.test")
	own, err := certstest.NewCA("the attacker's own CA")
	if err != nil {
		t.Fatal(err)
	}
	h.untrusted = hostileCert(t, own, "partner.test")
	// The first canary opens the stream to the internal server: it belongs
	// to the baseline.
	h.assertNothingRelayed(t)
	h.waitIdle(t)
	h.baseline = heapInuse()
	t.Logf("heap in use at baseline: %d KiB", h.baseline>>10)
	return h
}

// hostileLimits lifts the per-source connection limits and the stanza
// rates: every attacker and canary comes from 127.0.0.1 in quick
// succession, and those limits are attack classes of their own.
func hostileLimits(o *Options) {
	o.Limits.ConnectionsPerIP = 100000
	o.Limits.NewConnectionsPerIP = math.Inf(1)
	o.Limits.StanzaRate = math.Inf(1)
	o.Limits.StanzaBurst = 1 << 30
}

func hostileCert(t testing.TB, ca *certstest.CA, domains ...string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{DNSNames: domains})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC() // the second collects what the first one's finalizers freed
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// askedAuthority returns the db:verify requests partner.test's authority
// answered so far.
func (h *hostileEnv) askedAuthority() []string {
	h.vmu.Lock()
	defer h.vmu.Unlock()
	return slices.Clone(h.asked)
}

// incomingSessions counts the incoming streams the gateway lists (through
// its lock: once it says zero, every session goroutine has finished its
// work on the gateway).
func (h *hostileEnv) incomingSessions() int {
	n := 0
	for _, s := range h.gw.Sessions() {
		if s.Role == "incoming" {
			n++
		}
	}
	return n
}

// waitIdle waits until the gateway holds no incoming connection and no
// dialback verification: what an attacker made it hold is released.
func (h *hostileEnv) waitIdle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(hostileWait)
	for {
		n := h.incomingSessions()
		conns, verifs := len(h.gw.conns), len(h.gw.verifications)
		if n == 0 && conns == 0 && verifs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway still holds %d incoming sessions, %d connections, %d dialback verifications: %+v", n, conns, verifs, h.gw.Sessions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// assertMemory checks (c): once the gateway is idle again its heap is back
// near the baseline.
func (h *hostileEnv) assertMemory(t testing.TB) {
	t.Helper()
	h.waitIdle(t)
	now := heapInuse()
	t.Logf("heap in use: %d KiB (baseline %d KiB)", now>>10, h.baseline>>10)
	if now > h.baseline+hostileMemoryMargin {
		t.Errorf("heap in use %d KiB after the attack, baseline %d KiB: more than %d MiB left behind", now>>10, h.baseline>>10, hostileMemoryMargin>>20)
	}
}

// assertNothingRelayed checks (b). It waits until no attacking stream is
// left (so that whatever they handed to the router is queued), then sends
// a canary from partner.test on a fresh SASL EXTERNAL stream: the internal
// server must receive canaries only. Whatever an attacker had smuggled
// for the same domain pair would be queued on the same outgoing stream
// ahead of the canary; for any other pair the router would hold another
// stream to the inside; and every relayed stanza is audited before it is
// routed.
func (h *hostileEnv) assertNothingRelayed(t testing.TB) {
	t.Helper()
	h.waitIdle(t)
	p := h.saslPeer(t)
	var sent []string
	deadline := time.Now().Add(hostileWait)
	for delivered := false; !delivered; {
		// The fake internal server ends each connection after 20 s, and a
		// canary written just then is lost: then send another one.
		if time.Now().After(deadline) {
			t.Fatalf("no canary (%v) reached the internal server", sent)
		}
		h.canaries++
		id := fmt.Sprintf("canary-%d", h.canaries)
		sent = append(sent, id)
		p.send("<message from='canary@partner.test/c' to='alice@company.test' id='" + id + "'><body>canary</body></message>")
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case got := <-h.internal.stanzas:
				if !strings.Contains(got, "id='canary-") {
					t.Fatalf("the internal server received %q (before the canary %s)", got, id)
				}
				if strings.Contains(got, "id='"+id+"'") {
					delivered = true
					break wait
				}
				// An earlier canary, late: wait for this one.
			case <-timeout:
				break wait
			}
		}
	}
	hostileClose(t, p)
	h.aud.mu.Lock()
	for _, r := range h.aud.records {
		if r.Event == "stanza" && (r.Decision == "allow" || r.Decision == "would-deny") && !strings.HasPrefix(r.ID, "canary-") && !h.let[r.ID] {
			h.aud.mu.Unlock()
			t.Fatalf("a stanza other than a canary was let through: %+v", r)
		}
	}
	h.aud.mu.Unlock()
	for _, s := range h.gw.Sessions() {
		if s.Role == "outgoing" && s.Leg == "inside" && (!slices.Equal(s.Remote, []string{"partner.test"}) || !slices.Equal(s.Local, []string{"company.test"})) &&
			!(len(s.Remote) == 1 && len(s.Local) == 1 && h.letPairs[s.Remote[0]+" "+s.Local[0]]) {
			t.Fatalf("the gateway opened a stream to the internal server for %v → %v", s.Remote, s.Local)
		}
	}
	h.waitIdle(t)
}

// finish closes the attackers and asserts (b) and (c).
func (h *hostileEnv) finish(t testing.TB, peers ...*peer) {
	t.Helper()
	for _, p := range peers {
		if p != nil {
			p.conn.Close()
		}
	}
	h.assertNothingRelayed(t)
	h.assertMemory(t)
}

// ---------------------------------------------------------------------------
// attackers

// hostileHeader is a stream header with version 1.0 (to and from left out
// when empty).
func hostileHeader(from, to string) string {
	s := "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"
	if from != "" {
		s += " from='" + from + "'"
	}
	if to != "" {
		s += " to='" + to + "'"
	}
	return s + " version='1.0'>"
}

// hostileDial connects to the outside listener, with a deadline far above
// what any exchange needs.
func (h *hostileEnv) hostileDial(t testing.TB) *peer {
	t.Helper()
	p := dialPeer(t, h.outside)
	p.conn.SetDeadline(time.Now().Add(hostileWait))
	return p
}

// plainPeer opens a stream from partner.test, without TLS.
func (h *hostileEnv) plainPeer(t testing.TB) *peer {
	t.Helper()
	p := h.hostileDial(t)
	noCompression(t, p.open("partner.test", "company.test"))
	return p
}

// upgradeTLS sends <starttls/>, waits for <proceed/> and runs the
// handshake presenting cert (nil: none). The next thing the gateway sends
// is a stream header.
func upgradeTLS(t testing.TB, p *peer, cert *tls.Certificate) {
	t.Helper()
	p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if got := p.next(); !strings.Contains(got, "<proceed") {
		t.Fatalf("want <proceed/>, got %q", got)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "company.test"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(p.conn, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p.conn = tc
	p.r.Reset(tc)
	p.hdr = xmlstream.Header{}
}

// tlsPeer opens a stream from `from`, upgrades it with STARTTLS presenting
// cert, and reopens it; it returns the features offered after TLS.
func (h *hostileEnv) tlsPeer(t testing.TB, cert *tls.Certificate, from string) (*peer, *xmlstream.Node) {
	t.Helper()
	p := h.hostileDial(t)
	noCompression(t, p.open(from, "company.test"))
	upgradeTLS(t, p, cert)
	f := p.open(from, "company.test")
	noCompression(t, f)
	return p, f
}

// offersExternal reports whether features offer SASL EXTERNAL.
func offersExternal(f *xmlstream.Node) bool {
	m := f.Child(xmlstream.NSSASL, "mechanisms")
	if m == nil {
		return false
	}
	for _, c := range m.Children {
		if c.Local == "mechanism" && strings.TrimSpace(c.Text) == "EXTERNAL" {
			return true
		}
	}
	return false
}

// saslAuth runs SASL EXTERNAL on a stream offering it (authzid "=") and
// reads <success/>; the stream must be restarted next.
func saslAuth(t testing.TB, p *peer) {
	t.Helper()
	p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
	if got := p.next(); !strings.Contains(got, "<success") {
		t.Fatalf("SASL EXTERNAL: want <success/>, got %q", got)
	}
	p.hdr = xmlstream.Header{}
}

// saslPeer is partner.test authenticated by SASL EXTERNAL with the
// certificate from the trusted CA, on a restarted stream.
func (h *hostileEnv) saslPeer(t testing.TB) *peer {
	t.Helper()
	return h.saslPeerAs(t, &h.trusted, "partner.test")
}

// saslPeerAs is domain authenticated by SASL EXTERNAL with cert (from the
// trusted CA, for domain), on a restarted stream.
func (h *hostileEnv) saslPeerAs(t testing.TB, cert *tls.Certificate, domain string) *peer {
	t.Helper()
	p, f := h.tlsPeer(t, cert, domain)
	if !offersExternal(f) {
		t.Fatalf("SASL EXTERNAL not offered for a certificate from the trusted CA: %+v", f)
	}
	saslAuth(t, p)
	f = p.open(domain, "company.test")
	noCompression(t, f)
	if f.Child(xmlstream.NSSASL, "mechanisms") != nil {
		t.Fatal("SASL offered again after it succeeded")
	}
	return p
}

// untrustedPeer is partner.test over TLS with the certificate of its own
// CA: no SASL EXTERNAL, nothing authenticated yet.
func (h *hostileEnv) untrustedPeer(t testing.TB) *peer {
	t.Helper()
	p, f := h.tlsPeer(t, &h.untrusted, "partner.test")
	if f.Child(xmlstream.NSSASL, "mechanisms") != nil {
		t.Fatal("SASL offered for a certificate from a CA the gateway does not trust")
	}
	if f.Child(xmlstream.NSDialbackFeature, "dialback") == nil {
		t.Fatal("dialback not offered after TLS")
	}
	return p
}

// dialbackPeer is partner.test authenticated by dialback (the fallback for
// its untrusted certificate), verified with partner.test's authority.
func (h *hostileEnv) dialbackPeer(t testing.TB) *peer {
	t.Helper()
	p := h.untrustedPeer(t)
	p.send("<db:result from='partner.test' to='company.test'>" + partnerKey(p.hdr.ID) + "</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")
	return p
}

// noCompression fails if features offer stream compression (XEP-0138:
// the 2014 "xmppbomb").
func noCompression(t testing.TB, f *xmlstream.Node) {
	t.Helper()
	var walk func(n *xmlstream.Node)
	walk = func(n *xmlstream.Node) {
		if strings.Contains(strings.ToLower(n.Local), "compress") || strings.Contains(n.Space, "compress") {
			t.Fatalf("stream compression offered: <%s xmlns='%s'>", n.Local, n.Space)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(f)
}

// hostileWrite writes s and ignores errors: the gateway may close the
// connection before it has read everything.
func hostileWrite(p *peer, s string) {
	io.WriteString(p.conn, s)
}

// hostileWriteAsync writes s from another goroutine (for inputs larger
// than the socket buffers: the gateway stops reading at the limit).
func hostileWriteAsync(t testing.TB, p *peer, s string) {
	c := p.conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.WriteString(c, s)
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
}

// hostileClose ends a stream politely and waits for the gateway's close.
func hostileClose(t testing.TB, p *peer) {
	t.Helper()
	hostileWrite(p, "</stream:stream>")
	for {
		if _, err := p.r.Next(); err != nil {
			break
		}
	}
	p.conn.Close()
}

// expectStreamErrorApp reads up to a stream error and checks its defined
// condition and its application condition (app, in urn:xmpp:errors; ""
// for none); then that </stream:stream> follows and the connection is
// closed. It returns the elements that came before the error.
func expectStreamErrorApp(t testing.TB, p *peer, cond, app string) []string {
	t.Helper()
	if p.hdr.Namespaces == nil {
		h, err := p.r.ReadHeader()
		if err != nil {
			t.Fatalf("want stream error %s, got no stream header: %v", cond, err)
		}
		p.hdr = h
	}
	var seen []string
	for {
		el, err := p.r.Next()
		if err != nil {
			t.Fatalf("want stream error %s, got %q then %v", cond, seen, err)
		}
		if el.Space != xmlstream.NSStream || el.Local != "error" {
			seen = append(seen, string(el.Raw))
			continue
		}
		n, err := xmlstream.ParseNode(el.Raw, p.hdr.Namespaces)
		if err != nil {
			t.Fatal(err)
		}
		var conds, apps []string
		for _, c := range n.Children {
			switch {
			case c.Space == xmlstream.NSStreams && c.Local != "text":
				conds = append(conds, c.Local)
			case c.Space == xmlstream.NSErrors:
				apps = append(apps, c.Local)
			}
		}
		if !slices.Equal(conds, []string{cond}) {
			t.Fatalf("want stream error %s, got %q", cond, el.Raw)
		}
		var want []string
		if app != "" {
			want = []string{app}
		}
		if !slices.Equal(apps, want) {
			t.Fatalf("want application condition %q, got %q", app, el.Raw)
		}
		break
	}
	if _, err := p.r.Next(); err != xmlstream.ErrStreamEnd {
		t.Fatalf("stream error not followed by </stream:stream>: %v", err)
	}
	expectClosed(t, p)
	return seen
}

// expectClosed checks that the gateway closed the connection.
func expectClosed(t testing.TB, p *peer) {
	t.Helper()
	if _, err := p.conn.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed: %v", err)
	}
}

// expectDialbackAnswer reads one element: a <db:name/> from → to of type
// typ, and for type='error' the defined condition cond.
func expectDialbackAnswer(t testing.TB, p *peer, name, from, to, typ, cond string) {
	t.Helper()
	raw := p.next()
	n, err := xmlstream.ParseNode([]byte(raw), p.hdr.Namespaces)
	if err != nil {
		t.Fatal(err)
	}
	if n.Space != xmlstream.NSDialback || n.Local != name || n.Attr("from") != from || n.Attr("to") != to || n.Attr("type") != typ {
		t.Fatalf("want <db:%s from='%s' to='%s' type='%s'>, got %q", name, from, to, typ, raw)
	}
	if typ != "error" {
		return
	}
	e := n.Child(xmlstream.NSServer, "error")
	if e == nil {
		e = n.Child(xmlstream.NSDialback, "error")
	}
	if e == nil || e.Child(xmlstream.NSStanzas, cond) == nil {
		t.Fatalf("want dialback error %s, got %q", cond, raw)
	}
}

// expectSASLFailure reads a SASL <failure/> with condition cond.
func expectSASLFailure(t testing.TB, p *peer, cond string) {
	t.Helper()
	raw := p.next()
	n, err := xmlstream.ParseNode([]byte(raw), p.hdr.Namespaces)
	if err != nil {
		t.Fatal(err)
	}
	if n.Space != xmlstream.NSSASL || n.Local != "failure" || n.Child(xmlstream.NSSASL, cond) == nil {
		t.Fatalf("want SASL failure %s, got %q", cond, raw)
	}
}

// hostileMessage is a message between two addresses (an empty one leaves the
// attribute out).
func hostileMessage(from, to, body string) string {
	s := "<message"
	if from != "" {
		s += " from='" + from + "'"
	}
	if to != "" {
		s += " to='" + to + "'"
	}
	return s + " id='attack' type='chat'><body>" + body + "</body></message>"
}

// hostileAddressed is a stanza of kind (message of type chat, iq of type
// get, presence without a type) from from to to with id and content inner.
func hostileAddressed(kind, from, to, id, inner string) string {
	s := "<" + kind + " from='" + from + "' to='" + to + "' id='" + id + "'"
	switch kind {
	case "message":
		s += " type='chat'"
	case "iq":
		s += " type='get'"
	}
	return s + ">" + inner + "</" + kind + ">"
}

// serverNS are the namespaces of the streams between the gateway and the
// fake servers: what the stanzas they receive are parsed against.
var serverNS = map[string]string{"": xmlstream.NSServer, "stream": xmlstream.NSStream, "db": xmlstream.NSDialback}

// expectRelayed reads the next stanza the internal server receives: it
// must be the one with id, which the test lets through on purpose
// (assertNothingRelayed then accepts its audit record). It returns the
// stanza's bytes and tree.
func (h *hostileEnv) expectRelayed(t testing.TB, id string) (string, *xmlstream.Node) {
	t.Helper()
	var raw string
	select {
	case raw = <-h.internal.stanzas:
	case <-time.After(hostileWait):
		t.Fatalf("the stanza %s did not reach the internal server", id)
	}
	n, err := xmlstream.ParseNode([]byte(raw), serverNS)
	if err != nil {
		t.Fatalf("the internal server received %q: %v", raw, err)
	}
	if n.Attr("id") != id {
		t.Fatalf("the internal server received %q, want the stanza %s", raw, id)
	}
	h.let[id] = true
	return raw, n
}

// expectBounce reads the next stanza a remote server (ch) receives: it
// must be the error answering the stanza id, with the stanza error
// condition cond of type typ ("a|b": either), none of the original's content, from an
// address that is from and to one that is to (compared prepared: the same
// entity, in whatever valid spelling), both of which a server can read
// (valid JIDs). A stanza reaching the internal server meanwhile fails it
// at once.
func (h *hostileEnv) expectBounce(t testing.TB, ch chan string, id, cond, typ, from, to string) *xmlstream.Node {
	t.Helper()
	raw := h.nextBounce(t, ch, id)
	n, err := xmlstream.ParseNode([]byte(raw), serverNS)
	if err != nil {
		t.Fatalf("the sender's server received %q: %v", raw, err)
	}
	if n.Attr("type") != "error" || n.Attr("id") != id {
		t.Fatalf("want the error answering %s, got %q", id, raw)
	}
	e := n.Child(xmlstream.NSServer, "error")
	if e == nil || !slices.Contains(strings.Split(typ, "|"), e.Attr("type")) || e.Child(xmlstream.NSStanzas, cond) == nil {
		t.Fatalf("want a stanza error %s of type %s, got %q", cond, typ, raw)
	}
	for _, c := range n.Children {
		if c != e {
			t.Fatalf("the bounce carries the stanza's <%s/>: %q", c.Local, raw)
		}
	}
	sameEntity(t, "the bounce's from", n.Attr("from"), from)
	sameEntity(t, "the bounce's to", n.Attr("to"), to)
	return n
}

// nextBounce returns the next stanza the remote server ch receives, the
// bounce of id; a stanza reaching the internal server first fails it.
func (h *hostileEnv) nextBounce(t testing.TB, ch chan string, id string) string {
	t.Helper()
	select {
	case raw := <-ch:
		return raw
	case raw := <-h.internal.stanzas:
		t.Fatalf("waiting for the bounce of %s, the internal server received %q", id, raw)
	case <-time.After(hostileWait):
		t.Fatalf("no bounce of %s reached the sender's server", id)
	}
	return ""
}

// sameEntity fails unless got is a valid JID naming the same entity as
// want.
func sameEntity(t testing.TB, what, got, want string) {
	t.Helper()
	g, err := jid.Prepare(got)
	if err != nil {
		t.Fatalf("%s %q is not a valid JID: %v", what, got, err)
	}
	w, err := jid.Prepare(want)
	if err != nil {
		t.Fatalf("%s: want %q, not a valid JID: %v", what, want, err)
	}
	if g != w {
		t.Fatalf("%s is %q, want %q", what, got, want)
	}
}

// auditedAs returns the stanza records of the stanza id.
func (h *hostileEnv) auditedAs(id string) []string {
	h.aud.mu.Lock()
	defer h.aud.mu.Unlock()
	var out []string
	for _, r := range h.aud.records {
		if r.Event == "stanza" && r.ID == id {
			out = append(out, fmt.Sprintf("%s from=%s to=%s from_sent=%s to_sent=%s reason=%s", r.Decision, r.From, r.To, r.FromSent, r.ToSent, r.Reason))
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// attack classes

// hostileCase is an attack on a stream set up as auth says (see
// hostileEnv.attacker): input is sent, cond is the stream error expected.
type hostileCase struct {
	name, auth, input, cond string
}

// The ways an attacker sets up its stream before attacking.
const (
	authSASL      = "sasl"      // partner.test authenticated by SASL EXTERNAL
	authDialback  = "dialback"  // partner.test authenticated by dialback (untrusted certificate)
	authUntrusted = "untrusted" // TLS with an untrusted certificate, nothing authenticated
	authPlain     = "plain"     // no TLS, nothing authenticated
)

// attacker sets up a stream as auth says.
func (h *hostileEnv) attacker(t testing.TB, auth string) *peer {
	t.Helper()
	switch auth {
	case authSASL:
		return h.saslPeer(t)
	case authDialback:
		return h.dialbackPeer(t)
	case authUntrusted:
		return h.untrustedPeer(t)
	case authPlain:
		return h.plainPeer(t)
	}
	t.Fatalf("unknown attacker %q", auth)
	return nil
}

const hostileFrom, hostileTo = "bob@partner.test/x", "alice@company.test"

// hostileStanza is a message from partner.test to company.test with inner
// as its content.
func hostileStanza(inner string) string {
	return "<message from='" + hostileFrom + "' to='" + hostileTo + "' id='attack'>" + inner + "</message>"
}

// hostileRestrictedXML: restricted XML (RFC 6120 §11) and characters XML
// does not allow, inside stanzas of an authenticated stream.
var hostileRestrictedXML = []hostileCase{
	{"comment", authSASL, hostileStanza("<!-- x --><body>hi</body>"), "restricted-xml"},
	{"comment hiding markup", authDialback, hostileStanza("<body>a<!--</body><body>-->b</body>"), "restricted-xml"},
	{"processing instruction", authSASL, hostileStanza("<?php x?><body>hi</body>"), "restricted-xml"},
	{"XML declaration between stanzas", authDialback, "<?xml version='1.0'?>" + hostileStanza("<body>hi</body>"), "restricted-xml"},
	{"DOCTYPE in a stanza", authSASL, hostileStanza("<!DOCTYPE message><body>hi</body>"), "restricted-xml"},
	{"DOCTYPE with an internal subset between stanzas", authDialback, "<!DOCTYPE message [<!ENTITY x 'smuggled'>]>" + hostileStanza("<body>&x;</body>"), "restricted-xml"},
	{"internal entity declaration", authSASL, hostileStanza("<!ENTITY x 'smuggled'><body>&x;</body>"), "restricted-xml"},
	{"external entity declaration", authDialback, hostileStanza("<!ENTITY x SYSTEM 'file:///etc/passwd'><body>&x;</body>"), "restricted-xml"},
	{"undefined entity in text", authSASL, hostileStanza("<body>&xxe;</body>"), "restricted-xml"},
	{"undefined entity in an attribute", authDialback, "<message from='" + hostileFrom + "' to='alice&xxe;@company.test' id='attack'/>", "restricted-xml"},
	{"reference to NUL", authSASL, hostileStanza("<body>&#0;</body>"), "not-well-formed"},
	{"hex reference to NUL in an attribute", authDialback, "<message from='" + hostileFrom + "' to='" + hostileTo + "' id='&#x0;'/>", "not-well-formed"},
	{"reference to a surrogate", authSASL, hostileStanza("<body>&#xD800;</body>"), "not-well-formed"},
	{"reference to U+FFFE", authDialback, hostileStanza("<body>&#xFFFE;</body>"), "not-well-formed"},
	{"reference beyond Unicode", authSASL, hostileStanza("<body>&#x110000;</body>"), "not-well-formed"},
	{"literal control character", authDialback, hostileStanza("<body>a\x01b</body>"), "not-well-formed"},
	{"literal NUL", authSASL, hostileStanza("<body>a\x00b</body>"), "not-well-formed"},
	{"invalid UTF-8: lone continuation byte", authDialback, hostileStanza("<body>\x80</body>"), "not-well-formed"},
	{"invalid UTF-8: truncated sequence", authSASL, hostileStanza("<body>\xc3</body>"), "not-well-formed"},
	{"invalid UTF-8: overlong '/'", authDialback, hostileStanza("<body>\xc0\xaf</body>"), "not-well-formed"},
	{"invalid UTF-8: encoded surrogate", authSASL, hostileStanza("<body>\xed\xa0\x80</body>"), "not-well-formed"},
	{"invalid UTF-8: 0xFF", authDialback, hostileStanza("<body>\xff</body>"), "not-well-formed"},
	{"invalid UTF-8 in an attribute", authSASL, "<message from='" + hostileFrom + "' to='alice\xc0@company.test' id='attack'/>", "not-well-formed"},
	{"invalid UTF-8 in an element name", authDialback, hostileStanza("<b\xffdy>hi</b\xffdy>"), "not-well-formed"},
	{"BOM between stanzas (U+FEFF is text there)", authSASL, "\xef\xbb\xbf" + hostileStanza("<body>hi</body>"), "not-well-formed"},
	{"duplicate from attribute", authDialback, "<message from='" + hostileFrom + "' from='mallory@evil.test' to='" + hostileTo + "'/>", "not-well-formed"},
	{"mismatched end tag", authSASL, hostileStanza("<body>hi</bodx>"), "not-well-formed"},
	{"undeclared prefix", authDialback, "<x:message xmlns='jabber:server' from='" + hostileFrom + "' to='" + hostileTo + "'/>", "not-well-formed"},
	// CDATA sections are accepted: TestHostileCDATA.
}

// runStreamErrors runs each case on a stream of its own: the attacker
// authenticates, sends its input, and must get the stream error the case
// names, with nothing relayed and memory back to baseline (finish).
func (h *hostileEnv) runStreamErrors(t *testing.T, cases []hostileCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, tt.auth)
			hostileWrite(p, tt.input)
			expectStreamErrorApp(t, p, tt.cond, "")
			h.finish(t, p)
		})
	}
}

// Restricted XML and invalid characters inside stanzas of an
// authenticated stream: the stanza is not relayed, the stream is closed
// with the condition the RFC names.
func TestHostileRestrictedXML(t *testing.T) {
	h := newHostileEnv(t)
	h.runStreamErrors(t, hostileRestrictedXML)
}

// hostileCDATAForwarded: CDATA sections in a body (RFC 6120 §11.1 allows
// them). The stanza is judged on the decoded text and forwarded
// re-serialised canonically (no CDATA, the text escaped), so that the
// internal server reads exactly the text the policy judged, whatever its
// own parser makes of CDATA.
var hostileCDATAForwarded = []struct {
	name, body, text string // body: <body/>'s content as sent; text: its character data
}{
	{"plain", "<![CDATA[hi]]>", "hi"},
	{"markup-looking text", "<![CDATA[</body><body>x]]>", "</body><body>x"},
	{"a spoofed stanza inside", "<![CDATA[</body></message><message from='mallory@evil.test' to='ceo@company.test'><body>spoofed]]>", "</body></message><message from='mallory@evil.test' to='ceo@company.test'><body>spoofed"},
	{"a stream restart inside", "<![CDATA[</stream:stream><stream:stream xmlns='jabber:server'>]]>", "</stream:stream><stream:stream xmlns='jabber:server'>"},
	{"comment, PI and DOCTYPE inside", "<![CDATA[<!-- x --><?php x?><!DOCTYPE x [<!ENTITY e 'x'>]>]]>", "<!-- x --><?php x?><!DOCTYPE x [<!ENTITY e 'x'>]>"},
	{"references inside are text", "<![CDATA[&xxe; &amp; &#60; &#0;]]>", "&xxe; &amp; &#60; &#0;"},
	{"characters text must escape", "<![CDATA[a < b && c > d 'q' \"dq\"]]>", "a < b && c > d 'q' \"dq\""},
	{"mixed with text and references", "a&amp;<![CDATA[&amp;]]>&lt;b", "a&&amp;<b"},
	{"two sections", "<![CDATA[x]]><![CDATA[y]]>", "xy"},
	{"]]> split across two sections", "<![CDATA[x]]]]><![CDATA[>y]]>", "x]]>y"},
	{"a section ending in brackets, then '>'", "<![CDATA[x]]]]>>", "x]]>"},
	{"brackets, then a section starting with '>'", "]]<![CDATA[>]]>", "]]>"},
	{"empty section", "<![CDATA[]]>", ""},
	{"line ends normalised", "<![CDATA[a\r\nb\rc]]>", "a\nb\nc"},
	{"non-ASCII and a bidi override", "<![CDATA[\u65e5\u672c \u202e txt]]>", "\u65e5\u672c \u202e txt"},
}

// hostileCDATAErrors: CDATA where it is not allowed, malformed, or with
// characters XML does not allow: stream errors, nothing forwarded.
var hostileCDATAErrors = []hostileCase{
	{"between stanzas", authSASL, "<![CDATA[x]]>" + hostileStanza("<body>hi</body>"), "restricted-xml"},
	{"smuggling a stanza between stanzas", authDialback, "<![CDATA[" + hostileMessage("mallory@evil.test", "alice@company.test", "smuggled") + "]]>", "restricted-xml"},
	{"closed early: ]]> in the text after it", authSASL, hostileStanza("<body><![CDATA[a]]>b]]></body>"), "not-well-formed"},
	{"]]> in text", authDialback, hostileStanza("<body>a]]>b</body>"), "not-well-formed"},
	{"lower-case keyword", authSASL, hostileStanza("<body><![cdata[x]]></body>"), "not-well-formed"},
	{"space in the opener", authDialback, hostileStanza("<body><![ CDATA[x]]></body>"), "not-well-formed"},
	{"opener without its bracket", authSASL, hostileStanza("<body><![CDATA x]]></body>"), "not-well-formed"},
	{"NUL inside", authDialback, hostileStanza("<body><![CDATA[a\x00b]]></body>"), "not-well-formed"},
	{"control character inside", authSASL, hostileStanza("<body><![CDATA[a\x1bb]]></body>"), "not-well-formed"},
	{"U+FFFE inside", authDialback, hostileStanza("<body><![CDATA[\xef\xbf\xbe]]></body>"), "not-well-formed"},
	{"invalid UTF-8 inside", authSASL, hostileStanza("<body><![CDATA[\xff]]></body>"), "not-well-formed"},
	{"encoded surrogate inside", authDialback, hostileStanza("<body><![CDATA[\xed\xa0\x80]]></body>"), "not-well-formed"},
	{"overlong '<' inside", authSASL, hostileStanza("<body><![CDATA[\xc0\xbc]]></body>"), "not-well-formed"},
}

// hostileCDATADenied: the word the policy refuses, hidden in CDATA
// sections: the policy judges the decoded text.
var hostileCDATADenied = []struct{ name, body string }{
	{"in a section", "<![CDATA[this is CONFIDENTIAL]]>"},
	{"split between text and a section", "CONFI<![CDATA[DENTIAL]]>"},
	{"split between two sections", "<![CDATA[CONFI]]><![CDATA[DENTIAL]]>"},
	{"behind markup-looking text", "<![CDATA[</body><body>]]>CONFIDENTIAL"},
}

// CDATA sections inside stanzas: accepted, judged on the decoded text and
// forwarded canonically; a denied word inside one refused; CDATA outside
// a stanza or malformed a stream error.
func TestHostileCDATA(t *testing.T) {
	h := newHostileEnv(t)
	h.judge.setDenyBody("CONFIDENTIAL")
	auths := []string{authSASL, authDialback}
	for i, tt := range hostileCDATAForwarded {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, auths[i%2])
			id := fmt.Sprintf("cdata-%d", i)
			hostileWrite(p, hostileAddressed("message", hostileFrom, hostileTo, id, "<body>"+tt.body+"</body>"))
			raw, n := h.expectRelayed(t, id)
			if strings.Contains(raw, "<![CDATA[") || strings.Contains(raw, "]]>") {
				t.Fatalf("forwarded with CDATA (or a literal ]]>): %q", raw)
			}
			var bodies []*xmlstream.Node
			for _, c := range n.Children {
				if c.Local == "body" {
					bodies = append(bodies, c)
				}
			}
			if len(n.Children) != 1 || len(bodies) != 1 || len(bodies[0].Children) != 0 || bodies[0].Text != tt.text {
				t.Fatalf("the internal server received %q, want one <body/> with the text %q", raw, tt.text)
			}
			want := "<body/>"
			if tt.text != "" {
				want = "<body>" + string(xmlstream.AppendEscapedText(nil, tt.text)) + "</body>"
			}
			if !strings.Contains(raw, want) {
				t.Fatalf("the internal server received %q, want %q in it (the text escaped canonically)", raw, want)
			}
			if n.Attr("from") != hostileFrom || n.Attr("to") != hostileTo || n.Attr("type") != "chat" {
				t.Fatalf("the addresses or the type changed: %q", raw)
			}
			if a, ok := h.judge.askedAbout(id); !ok || a.body != tt.text {
				t.Fatalf("the policy judged the body %q (asked: %v), want %q", a.body, ok, tt.text)
			}
			h.finish(t, p)
		})
	}
	t.Run("in a child of another namespace", func(t *testing.T) {
		p := h.saslPeer(t)
		hostileWrite(p, hostileAddressed("message", hostileFrom, hostileTo, "cdata-x", "<x xmlns='urn:example'><![CDATA[<y/>]]></x>"))
		raw, n := h.expectRelayed(t, "cdata-x")
		x := n.Child("urn:example", "x")
		if x == nil || len(x.Children) != 0 || x.Text != "<y/>" || strings.Contains(raw, "CDATA") {
			t.Fatalf("the internal server received %q, want <x xmlns='urn:example'> with the text <y/>", raw)
		}
		h.finish(t, p)
	})
	for i, tt := range hostileCDATADenied {
		t.Run("denied word "+tt.name, func(t *testing.T) {
			p := h.attacker(t, auths[i%2])
			id := fmt.Sprintf("cdata-deny-%d", i)
			hostileWrite(p, hostileAddressed("message", hostileFrom, hostileTo, id, "<body>"+tt.body+"</body>"))
			h.expectRefused(t, id)
			if a, ok := h.judge.askedAbout(id); !ok || !strings.Contains(a.body, "CONFIDENTIAL") {
				t.Fatalf("the policy judged the body %q (asked: %v)", a.body, ok)
			}
			h.finish(t, p)
		})
	}
	h.runStreamErrors(t, hostileCDATAErrors)
	t.Run("never closed, swallowing the stream", func(t *testing.T) {
		// What follows the opener is text up to the stanza limit: the end
		// tags and stanzas in it are not read as such.
		p := h.saslPeer(t)
		rest := hostileMessage("mallory@evil.test", "alice@company.test", "swallowed") + "</body></message>"
		hostileWriteAsync(t, p, "<message from='"+hostileFrom+"' to='"+hostileTo+"' id='attack'><body><![CDATA["+
			strings.Repeat(rest, h.gw.limits().MaxStanzaSize/len(rest)+1))
		expectStreamErrorApp(t, p, "policy-violation", "stanza-too-big")
		h.finish(t, p)
	})
}

// hostileSpelledContent: the word the policy refuses, in a body or
// subject the receiver reads as one however it is spelled: the scanner's
// notes (xmlstream.Element.ContentInto) must give the policy what
// ParseNode gives, not only the plain spelling.
var hostileSpelledContent = []struct{ name, inner string }{
	{"a prefix bound to jabber:server on the body", "<j:body xmlns:j='jabber:server'>CONFIDENTIAL</j:body>"},
	{"the default namespace declared again on the body", "<body xmlns='jabber:server'>CONFIDENTIAL</body>"},
	{"a second body", "<body>fine</body><body xml:lang='de'>CONFIDENTIAL</body>"},
	{"a subject", "<subject>CONFIDENTIAL</subject><body>fine</body>"},
	{"a reference", "<body>CONFIDENTI&#x41;L</body>"},
	{"text around markup inside the body", "<body>CONFI<x xmlns='urn:x'/>DENTIAL</body>"},
	{"a prefixed body after a prefixed child", "<p:x xmlns:p='urn:x'/><s:body xmlns:s='jabber:server'>CONFIDENTIAL</s:body>"},
}

// expectRefused checks that the stanza id from hostileFrom to hostileTo
// was refused by the policy: bounced to its sender with policy-violation,
// on record as a deny and a bounce.
func (h *hostileEnv) expectRefused(t testing.TB, id string) {
	t.Helper()
	h.expectBounce(t, h.authority.stanzas, id, "policy-violation", "modify", hostileTo, hostileFrom)
	if recs := h.auditedAs(id); len(recs) != 2 || !strings.HasPrefix(recs[0], "deny ") || !strings.HasPrefix(recs[1], "bounced ") {
		t.Fatalf("audit records %q, want the deny and the bounce", recs)
	}
}

// Content in other spellings than the plain one: judged as the receiver
// reads it, and refused; nothing reaches the internal server.
func TestHostileSpelledContent(t *testing.T) {
	h := newHostileEnv(t)
	h.judge.setDenyBody("CONFIDENTIAL")
	auths := []string{authSASL, authDialback}
	for i, tt := range hostileSpelledContent {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, auths[i%2])
			id := fmt.Sprintf("spelled-%d", i)
			hostileWrite(p, hostileAddressed("message", hostileFrom, hostileTo, id, tt.inner))
			h.expectRefused(t, id)
			h.finish(t, p)
		})
	}
}

// The encoding (RFC 6120 §11.6): UTF-8 only, no byte order mark at the
// start of a stream — the first one, the one after STARTTLS, the one after
// SASL.
func TestHostileEncoding(t *testing.T) {
	h := newHostileEnv(t)
	hdr := hostileHeader("partner.test", "company.test")
	utf16le := func(s string, bom bool) string {
		var b []byte
		if bom {
			b = append(b, 0xFF, 0xFE)
		}
		for _, c := range []byte(s) {
			b = append(b, c, 0)
		}
		return string(b)
	}
	utf16be := func(s string) string {
		b := []byte{0xFE, 0xFF}
		for _, c := range []byte(s) {
			b = append(b, 0, c)
		}
		return string(b)
	}
	fresh := func(t testing.TB) *peer { return h.hostileDial(t) }
	afterTLS := func(t testing.TB) *peer {
		p := h.hostileDial(t)
		p.open("partner.test", "company.test")
		upgradeTLS(t, p, &h.untrusted)
		return p
	}
	afterSASL := func(t testing.TB) *peer {
		p, _ := h.tlsPeer(t, &h.trusted, "partner.test")
		saslAuth(t, p)
		return p
	}
	tests := []struct {
		name  string
		peer  func(testing.TB) *peer
		input string
		cond  string
	}{
		{"UTF-8 BOM", fresh, "\xef\xbb\xbf" + hdr, "unsupported-encoding"},
		{"UTF-16LE with BOM", fresh, utf16le("<?xml version='1.0' encoding='UTF-16'?>"+hdr, true), "unsupported-encoding"},
		{"UTF-16BE with BOM", fresh, utf16be("<?xml version='1.0' encoding='UTF-16'?>" + hdr), "unsupported-encoding"},
		{"declared UTF-16", fresh, "<?xml version='1.0' encoding='UTF-16'?>" + hdr, "unsupported-encoding"},
		{"declared ISO-8859-1", fresh, "<?xml version='1.0' encoding='ISO-8859-1'?>" + hdr, "unsupported-encoding"},
		{"UTF-8 BOM after STARTTLS", afterTLS, "\xef\xbb\xbf" + hdr, "unsupported-encoding"},
		{"UTF-16LE after STARTTLS", afterTLS, utf16le(hdr, true), "unsupported-encoding"},
		{"UTF-8 BOM after SASL", afterSASL, "\xef\xbb\xbf" + hdr, "unsupported-encoding"},
		{"declared UTF-16 after SASL", afterSASL, "<?xml version='1.0' encoding='UTF-16'?>" + hdr, "unsupported-encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.peer(t)
			hostileWrite(p, tt.input)
			expectStreamErrorApp(t, p, tt.cond, "")
			h.finish(t, p)
		})
	}
}

// hostileSizeCase is an attack on the size and depth bounds; input is made
// when sent (held by the test, it would count against the gateway's heap).
type hostileSizeCase struct {
	name, auth string
	input      func() string
	cond, app  string
}

// hostileSizeCases are the attacks on the bounds for a stanza size limit
// of limit bytes: policy-violation, with <stanza-too-big/> for the size
// (DESIGN §3), without it for the others.
func hostileSizeCases(limit int) []hostileSizeCase {
	const head = "<message from='bob@partner.test/x' to='alice@company.test' id='attack'>"
	padTo := func(n int) string {
		return head + "<body>" + strings.Repeat("a", n-len(head)-len("<body></body></message>")) + "</body></message>"
	}
	many := func(format string) string {
		var b strings.Builder
		for i := range 300 {
			fmt.Fprintf(&b, format, i, i)
		}
		return b.String()
	}
	return []hostileSizeCase{
		{"one byte over the limit", authSASL, func() string { return padTo(limit + 1) }, "policy-violation", "stanza-too-big"},
		{"16 times the limit", authDialback, func() string { return padTo(16 * limit) }, "policy-violation", "stanza-too-big"},
		{"attribute value over the limit", authSASL, func() string {
			return "<message from='bob@partner.test/x' to='alice@company.test' id='" + strings.Repeat("i", limit+1) + "'/>"
		}, "policy-violation", "stanza-too-big"},
		{"never-ending start tag", authDialback, func() string {
			return "<message from='bob@partner.test/x' to='alice@company.test'" + strings.Repeat(" ", 2*limit)
		}, "policy-violation", "stanza-too-big"},
		{"depth 33", authSASL, func() string { return head + strings.Repeat("<x>", 32) + strings.Repeat("</x>", 32) + "</message>" }, "policy-violation", ""},
		{"100000 open elements", authDialback, func() string { return head + strings.Repeat("<x>", 100000) }, "policy-violation", ""},
		{"300 attributes", authSASL, func() string {
			return "<message from='bob@partner.test/x' to='alice@company.test'" + many(" a%d='%d'") + "/>"
		}, "policy-violation", ""},
		{"300 namespace declarations", authDialback, func() string {
			return "<message from='bob@partner.test/x' to='alice@company.test'" + many(" xmlns:p%d='urn:x:%d'") + "/>"
		}, "policy-violation", ""},
	}
}

// Size and depth bounds on an authenticated stream: policy-violation, with
// <stanza-too-big/> for the size (DESIGN §3), without it for the others.
func TestHostileSizeAndDepth(t *testing.T) {
	h := newHostileEnv(t)
	tests := hostileSizeCases(h.gw.limits().MaxStanzaSize)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, tt.auth)
			hostileWriteAsync(t, p, tt.input())
			expectStreamErrorApp(t, p, tt.cond, tt.app)
			h.finish(t, p)
		})
	}
	t.Run("20 attackers at once", func(t *testing.T) {
		// What one attack leaves behind is below the margin; twenty of
		// them in parallel would not be.
		const n = 20
		var peers []*peer
		for range n {
			peers = append(peers, h.saslPeer(t))
		}
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hostileWrite(p, tests[0].input()) // one byte over the limit
			}()
		}
		for _, p := range peers {
			expectStreamErrorApp(t, p, "policy-violation", "stanza-too-big")
		}
		wg.Wait()
		h.finish(t, peers...)
	})
	t.Run("header over 16 KiB", func(t *testing.T) {
		p := h.hostileDial(t)
		hostileWriteAsync(t, p, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='company.test' version='1.0' x='"+strings.Repeat("x", 64<<10)+"'>")
		expectStreamErrorApp(t, p, "policy-violation", "")
		h.finish(t, p)
	})
}

// STARTTLS once TLS is up (RFC 6120 §5.4.2.2: <failure/> and close, no
// stream error), and elements only the receiving side sends.
func TestHostileStartTLS(t *testing.T) {
	h := newHostileEnv(t)
	const starttls = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
	t.Run("second starttls, not authenticated", func(t *testing.T) {
		p := h.untrustedPeer(t)
		hostileWrite(p, starttls)
		expectTLSFailureAndClose(t, p)
		h.finish(t, p)
	})
	t.Run("second starttls after SASL, a stanza pipelined", func(t *testing.T) {
		p := h.saslPeer(t)
		hostileWrite(p, starttls+hostileMessage("bob@partner.test", "alice@company.test", "after a second starttls"))
		expectTLSFailureAndClose(t, p)
		h.finish(t, p)
	})
	t.Run("second starttls after dialback", func(t *testing.T) {
		p := h.dialbackPeer(t)
		hostileWrite(p, starttls)
		expectTLSFailureAndClose(t, p)
		h.finish(t, p)
	})
	// Elements of the receiving side, sent by the initiator.
	for _, el := range hostileRoleConfusion {
		t.Run("peer sends "+el[:strings.IndexAny(el, " >")], func(t *testing.T) {
			p := h.saslPeer(t)
			hostileWrite(p, el+hostileMessage("bob@partner.test", "alice@company.test", "after a role confusion"))
			expectStreamErrorApp(t, p, "unsupported-stanza-type", "")
			h.finish(t, p)
		})
	}
}

// hostileRoleConfusion: elements only the receiving side sends (and
// compression, never offered).
var hostileRoleConfusion = []string{
	"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
	"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
	"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
	"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>",
	"<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>",
}

// expectTLSFailureAndClose reads the TLS <failure/>, then </stream:stream>
// (no stream error), then the close.
func expectTLSFailureAndClose(t testing.TB, p *peer) {
	t.Helper()
	el, err := p.r.Next()
	if err != nil || el.Space != xmlstream.NSTLS || el.Local != "failure" {
		t.Fatalf("want <failure xmlns='%s'/>, got %q, %v", xmlstream.NSTLS, el.Raw, err)
	}
	if el, err := p.r.Next(); err != xmlstream.ErrStreamEnd {
		t.Fatalf("want </stream:stream> after <failure/>, got %q, %v", el.Raw, err)
	}
	expectClosed(t, p)
}

// hostileStep sends send, then expects a dialback answer (name, from, to,
// type, condition), or nothing when name is "".
type hostileStep struct {
	send                      string
	name, from, to, typ, cond string
}

const hostileSpoofed = "<message from='mallory@evil.test' to='alice@company.test' id='attack'><body>spoofed</body></message>"

// hostileDialback: dialback in the receiving role (XEP-0220) — answers
// nobody asked for, originating domains that are ours, receiving domains
// that are not; cond is the final stream error.
var hostileDialback = []struct {
	name, auth string
	steps      []hostileStep
	cond       string
}{
	{"unsolicited valid result", authUntrusted, []hostileStep{
		{send: "<db:result from='evil.test' to='company.test' type='valid'/>" + hostileSpoofed},
	}, "not-authorized"},
	{"unsolicited valid result after SASL", authSASL, []hostileStep{
		{send: "<db:result from='evil.test' to='company.test' type='valid'/>" + hostileSpoofed},
	}, "not-authorized"},
	{"unsolicited error result", authUntrusted, []hostileStep{
		{send: "<db:result from='evil.test' to='company.test' type='error'/>" + hostileSpoofed},
	}, "not-authorized"},
	{"valid verify without a request", authUntrusted, []hostileStep{
		{send: "<db:verify from='evil.test' to='company.test' id='x' type='valid'/>" + hostileSpoofed},
	}, "not-authorized"},
	{"valid verify without a request after dialback", authDialback, []hostileStep{
		{send: "<db:verify from='evil.test' to='company.test' id='x' type='valid'/>" + hostileSpoofed},
	}, "not-authorized"},
	{"originating domain is ours", authUntrusted, []hostileStep{
		{send: "<db:result from='company.test' to='company.test'>k</db:result>", name: "result", from: "company.test", to: "company.test", typ: "error", cond: "forbidden"},
		{send: "<message from='ceo@company.test' to='alice@company.test' id='attack'/>"},
	}, "not-authorized"},
	{"originating domain is ours, in capitals", authUntrusted, []hostileStep{
		{send: "<db:result from='COMPANY.TEST' to='company.test'>k</db:result>", name: "result", from: "company.test", to: "company.test", typ: "error", cond: "forbidden"},
		{send: "<message from='ceo@company.test' to='alice@company.test' id='attack'/>"},
	}, "not-authorized"},
	{"originating domain is ours, after dialback", authDialback, []hostileStep{
		{send: "<db:result from='company.test' to='company.test'>k</db:result>", name: "result", from: "company.test", to: "company.test", typ: "error", cond: "forbidden"},
		{send: "<message from='ceo@company.test' to='alice@company.test' id='attack'/>"},
	}, "invalid-from"},
	{"originating domain is ours with a trailing dot", authUntrusted, []hostileStep{
		// RFC 7622 §3.2: the final dot is not part of the domain.
		{send: "<db:result from='company.test.' to='company.test'>k</db:result>", name: "result", from: "company.test", to: "company.test", typ: "error", cond: "forbidden"},
		{send: "<message from='ceo@company.test.' to='alice@company.test' id='attack'/>"},
	}, "not-authorized"},
	{"originating domain does not resolve", authUntrusted, []hostileStep{
		// XEP-0220 §2.4: the authoritative server cannot be reached.
		{send: "<db:result from='nowhere.test' to='company.test'>k</db:result>", name: "result", from: "company.test", to: "nowhere.test", typ: "error", cond: "remote-connection-failed"},
		{send: "<message from='x@nowhere.test' to='alice@company.test' id='attack'/>"},
	}, "not-authorized"},
	{"receiving domain is not ours", authUntrusted, []hostileStep{
		{send: "<db:result from='partner.test' to='elsewhere.test'>" + partnerKey("x") + "</db:result>", name: "result", from: "elsewhere.test", to: "partner.test", typ: "error", cond: "item-not-found"},
		{send: "<message from='bob@partner.test' to='carol@elsewhere.test' id='attack'/>"},
	}, "host-unknown"},
	{"no originating domain", authUntrusted, []hostileStep{
		{send: "<db:result to='company.test'>k</db:result>", name: "result", from: "company.test", to: "", typ: "error", cond: "forbidden"},
		{send: "<message from='bob@partner.test' to='alice@company.test' id='attack'/>"},
	}, "not-authorized"},
	{"empty key", authUntrusted, []hostileStep{
		{send: "<db:result from='partner.test' to='company.test'> </db:result>"},
	}, "bad-format"},
}

// Dialback in the receiving role: each attack ends in the stream error
// XEP-0220 and RFC 6120 name, and partner.test's authority is never asked.
func TestHostileDialback(t *testing.T) {
	h := newHostileEnv(t)
	for _, tt := range hostileDialback {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, tt.auth)
			before := len(h.askedAuthority())
			for _, s := range tt.steps {
				hostileWrite(p, s.send)
				if s.name != "" {
					expectDialbackAnswer(t, p, s.name, s.from, s.to, s.typ, s.cond)
				}
			}
			expectStreamErrorApp(t, p, tt.cond, "")
			if asked := h.askedAuthority(); len(asked) != before {
				t.Fatalf("partner.test's authority was asked: %q", asked[before:])
			}
			h.finish(t, p)
		})
	}
}

// A key seen on one stream (stream id S1) replayed on another: the gateway
// asks the authority about its own stream's id, and the key is invalid
// there (XEP-0220 §2.4: the key is bound to the stream id).
func TestHostileDialbackReplay(t *testing.T) {
	h := newHostileEnv(t)
	legit := h.dialbackPeer(t)
	stolen := partnerKey(legit.hdr.ID)
	hostileClose(t, legit)

	before := len(h.askedAuthority())
	p := h.untrustedPeer(t)
	if p.hdr.ID == legit.hdr.ID {
		t.Fatalf("two streams with the id %q", p.hdr.ID)
	}
	hostileWrite(p, "<db:result from='partner.test' to='company.test'>"+stolen+"</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "invalid", "")
	expectStreamErrorApp(t, p, "not-authorized", "")
	asked := h.askedAuthority()[before:]
	if !slices.Equal(asked, []string{"company.test partner.test " + p.hdr.ID}) {
		t.Fatalf("the authority was asked %q, want exactly the new stream's id %q", asked, p.hdr.ID)
	}
	h.finish(t, p)
}

// holdingAuthority is an authoritative server that holds every db:verify
// until released, then answers valid: verifications stay pending as long
// as the test wants.
type holdingAuthority struct {
	ln      net.Listener
	release chan struct{}
	mu      sync.Mutex
	held    int
}

func startHoldingAuthority(t *testing.T, tc *tls.Config) *holdingAuthority {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	a := &holdingAuthority{ln: ln, release: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-a.release:
		default:
			close(a.release)
		}
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * hostileWait))
				r := xmlstream.NewReader(c, xmlstream.Limits{})
				hd, err := r.ReadHeader()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>", hd.To, hd.From, dialback.NewStreamID())
				for {
					el, err := r.Next()
					if err != nil {
						return
					}
					if el.Local != "verify" {
						continue
					}
					a.mu.Lock()
					a.held++
					a.mu.Unlock()
					<-a.release
					fmt.Fprintf(c, "<db:verify from='%s' to='%s' id='%s' type='valid'/>", el.To, el.From, el.ID)
				}
			}()
		}
	}()
	return a
}

func (a *holdingAuthority) addr() string { return a.ln.Addr().String() }

func (a *holdingAuthority) heldCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

// Twenty dialback requests on one stream while none is answered: sixteen
// are verified (the per-stream bound), the others are refused at once
// with resource-constraint, and the stream keeps working.
func TestHostileDialbackPendingBound(t *testing.T) {
	h := newHostileEnv(t)
	auth := startHoldingAuthority(t, h.tlsConfig(t, "partner.test"))
	const n = 20
	domain := func(i int) string { return fmt.Sprintf("a%d.test", i) }
	for i := range n + 1 {
		h.res.set(domain(i), auth.addr(), true)
	}
	p := h.untrustedPeer(t)
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "<db:result from='%s' to='company.test'>k%d</db:result>", domain(i), i)
	}
	hostileWrite(p, b.String())
	for i := s2s.MaxPendingDialback; i < n; i++ {
		expectDialbackAnswer(t, p, "result", "company.test", domain(i), "error", "resource-constraint")
	}
	// The first sixteen are under way: all sixteen reach the authority.
	deadline := time.Now().Add(hostileWait)
	for auth.heldCount() < s2s.MaxPendingDialback {
		if time.Now().After(deadline) {
			t.Fatalf("%d verifications reached the authority, want %d", auth.heldCount(), s2s.MaxPendingDialback)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still at the bound: one more is refused too.
	hostileWrite(p, "<db:result from='"+domain(n)+"' to='company.test'>k</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", domain(n), "error", "resource-constraint")
	close(auth.release)
	valid := map[string]bool{}
	for range s2s.MaxPendingDialback {
		raw := p.next()
		n, err := xmlstream.ParseNode([]byte(raw), p.hdr.Namespaces)
		if err != nil || n.Local != "result" || n.Attr("type") != "valid" {
			t.Fatalf("want a valid dialback result, got %q (%v)", raw, err)
		}
		valid[n.Attr("to")] = true
	}
	for i := range s2s.MaxPendingDialback {
		if !valid[domain(i)] {
			t.Fatalf("%s was not verified (verified: %v)", domain(i), valid)
		}
	}
	// The bound is on verifications under way, not on the stream's life.
	hostileWrite(p, "<db:result from='"+domain(n)+"' to='company.test'>k</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", domain(n), "valid", "")
	hostileClose(t, p)
	h.finish(t, p)
}

// hostileSpoofing: addressing on an authenticated stream — stanzas must
// come from an authenticated domain and go to one of ours (RFC 6120
// §4.9.3, §8.1.1).
var hostileSpoofing = []hostileCase{
	{"from another domain", authSASL, hostileMessage("mallory@evil.test", "alice@company.test", "hi"), "invalid-from"},
	{"from another domain, with a second @", authSASL, hostileMessage("mallory@partner.test@evil.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a domain of ours", authSASL, hostileMessage("ceo@company.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a domain of ours, after dialback", authDialback, hostileMessage("ceo@company.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a subdomain", authSASL, hostileMessage("m@evil.partner.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a domain whose resource names the partner", authSASL, hostileMessage("evil.test/partner.test", "alice@company.test", "hi"), "invalid-from"},
	{"to a domain not ours", authSASL, hostileMessage("bob@partner.test", "carol@elsewhere.test", "hi"), "host-unknown"},
	{"to the sender's own domain", authSASL, hostileMessage("bob@partner.test", "carol@partner.test", "hi"), "host-unknown"},
	{"to a domain not ours, with a second @", authSASL, hostileMessage("bob@partner.test", "alice@company.test@evil.test", "hi"), "host-unknown"},
	{"no to", authSASL, hostileMessage("bob@partner.test", "", "hi"), "improper-addressing"},
	{"empty to", authSASL, "<message from='bob@partner.test' to='' id='attack'/>", "improper-addressing"},
	{"no from", authSASL, hostileMessage("", "alice@company.test", "hi"), "improper-addressing"},
	{"iq without to", authDialback, "<iq type='get' from='bob@partner.test' id='attack'><query xmlns='jabber:iq:version'/></iq>", "improper-addressing"},
	{"before any authentication, over TLS", authUntrusted, hostileMessage("bob@partner.test", "alice@company.test", "hi"), "not-authorized"},
	{"before any authentication, before TLS", authPlain, hostileMessage("bob@partner.test", "alice@company.test", "hi"), "not-authorized"},
	{"stanza in jabber:client", authSASL, "<message xmlns='jabber:client' from='bob@partner.test' to='alice@company.test' id='attack'/>", "unsupported-stanza-type"},
	{"stanza in a foreign namespace", authSASL, "<message xmlns='urn:evil' from='bob@partner.test' to='alice@company.test' id='attack'/>", "unsupported-stanza-type"},
	{"stanza in the dialback namespace", authSASL, "<db:message from='bob@partner.test' to='alice@company.test' id='attack'/>", "unsupported-stanza-type"},
	// Addresses are compared in their RFC 7622 canonical form: another
	// spelling of a domain of ours is ours, one of a foreign domain is
	// not the partner's, one that is not a valid domain is no domain.
	{"from a domain of ours, fullwidth", authSASL, hostileMessage("ceo@\uff43\uff4f\uff4d\uff50\uff41\uff4e\uff59.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a domain of ours, in capitals with a trailing dot", authDialback, hostileMessage("ceo@COMPANY.TEST.", "alice@company.test", "hi"), "invalid-from"},
	{"from another domain, fullwidth", authSASL, hostileMessage("mallory@\uff45\uff56\uff49\uff4c.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a malformed JID of another domain", authSASL, hostileMessage("a b@evil.test", "alice@company.test", "hi"), "invalid-from"},
	{"from a JID whose domain is not valid", authDialback, hostileMessage("bob@partner..test", "alice@company.test", "hi"), "invalid-from"},
	{"to a domain not ours, with a fullwidth dot", authSASL, hostileMessage("bob@partner.test", "carol@elsewhere\uff0etest", "hi"), "host-unknown"},
	{"to a malformed JID of a domain not ours", authSASL, hostileMessage("bob@partner.test", "@elsewhere.test", "hi"), "host-unknown"},
	{"to a JID whose domain is not valid", authDialback, hostileMessage("bob@partner.test", "alice@company..test", "hi"), "host-unknown"},
	{"to a fullwidth @ (no localpart, the domain not valid)", authSASL, hostileMessage("bob@partner.test", "alice\uff20company.test", "hi"), "host-unknown"},
}

// Addressing on an authenticated stream: a spoofed from, a to that is not
// ours, a missing address, a stanza before authentication.
func TestHostileSpoofing(t *testing.T) {
	h := newHostileEnv(t)
	h.runStreamErrors(t, hostileSpoofing)
	// Other spellings of the addresses, malformed addresses:
	// TestHostileJIDForms; the per-domain stanza rate:
	// TestHostileStanzaRate.
}

// hostileJIDForms: addresses spelt otherwise than in their RFC 7622
// canonical form, between the authenticated pair: forwarded with the
// canonical form, which is also the one the policy judged (a rule for
// mallory@company.test must catch ｍａｌｌｏｒｙ@company.test, and the
// internal server must deliver to the account the policy judged).
var hostileJIDForms = []struct {
	name, from, to   string
	wantFrom, wantTo string
	body             string // <body/>'s content; "" for "hi"
}{
	{"canonical already", "bob@partner.test/x", "alice@company.test", "bob@partner.test/x", "alice@company.test", ""},
	{"fullwidth localpart", "bob@partner.test/x", "\uff4d\uff41\uff4c\uff4c\uff4f\uff52\uff59@company.test", "bob@partner.test/x", "mallory@company.test", ""},
	{"capitals (the resource keeps its case)", "Bob@PARTNER.TEST/Phone", "ALICE@Company.Test", "bob@partner.test/Phone", "alice@company.test", ""},
	{"trailing dots", "bob@partner.test./x", "alice@company.test.", "bob@partner.test/x", "alice@company.test", ""},
	{"fullwidth domains and dots", "bob@\uff30\uff21\uff32\uff34\uff2e\uff25\uff32\uff0etest/x", "alice@\uff43\uff4f\uff4d\uff50\uff41\uff4e\uff59\uff0e\uff54\uff45\uff53\uff54", "bob@partner.test/x", "alice@company.test", ""},
	{"ideographic full stop", "bob@partner\u3002test/x", "alice@company\u3002test", "bob@partner.test/x", "alice@company.test", ""},
	{"compatibility letter in the domain (NFKC)", "bob@partner.test/x", "alice@\u2102ompany.test", "bob@partner.test/x", "alice@company.test", ""},
	{"decomposed localpart (NFC)", "bob@partner.test/x", "e\u0301lodie@company.test", "bob@partner.test/x", "\u00e9lodie@company.test", ""},
	{"non-ASCII space in the resource", "bob@partner.test/a\u00a0b", "alice@company.test", "bob@partner.test/a b", "alice@company.test", ""},
	{"domain JIDs", "PARTNER.TEST", "Company.Test.", "partner.test", "company.test", ""},
	{"with a CDATA body (re-serialised)", "BOB@partner.test/x", "\uff21lice@company.test", "bob@partner.test/x", "alice@company.test", "<![CDATA[<b>]]>"},
}

// hostileMalformedJIDs: addresses that cannot be prepared, between the
// authenticated pair: the stanza is bounced with jid-malformed, addressed
// so that a server can read it (from the recipient's domain when the to
// is malformed, to the sender's domain when the from is), and never
// forwarded.
var hostileMalformedJIDs = []struct {
	name, kind, from, to string
	bounceFrom, bounceTo string
}{
	{"empty localpart in to", "message", hostileFrom, "@company.test", "company.test", hostileFrom},
	{"1024-byte localpart in to", "message", hostileFrom, strings.Repeat("a", 1024) + "@company.test", "company.test", hostileFrom},
	{"space in the localpart of to", "message", hostileFrom, "a b@company.test", "company.test", hostileFrom},
	{"compatibility character in to (bob\u2163)", "message", hostileFrom, "bob\u2163@company.test", "company.test", hostileFrom},
	{"ligature in to", "iq", hostileFrom, "\ufb01nance@company.test", "company.test", hostileFrom},
	{"sharp s in to (changed by case folding)", "message", hostileFrom, "stra\u00dfe@company.test", "company.test", hostileFrom},
	{"empty resource in to", "presence", hostileFrom, "alice@company.test/", "company.test", hostileFrom},
	{"resource over 1023 bytes in from", "message", "bob@partner.test/" + strings.Repeat("r", 1024), hostileTo, hostileTo, "partner.test"},
	{"space in the localpart of from", "iq", "a b@partner.test/x", hostileTo, hostileTo, "partner.test"},
	{"compatibility character in from", "message", "bob\u2163@partner.test", hostileTo, hostileTo, "partner.test"},
	{"malformed to, from in capitals", "message", "BOB@Partner.Test/x", "@company.test", "company.test", "bob@partner.test/x"},
	{"both malformed", "message", "a b@partner.test", "@company.test", "company.test", "partner.test"},
}

// hostileJIDMalformedType is the error type of a jid-malformed bounce
// (RFC 6120 §8.3.3.8: modify).
const hostileJIDMalformedType = "modify"

// Addresses in other spellings arrive canonical at the internal server and
// are judged canonical; malformed ones are bounced with jid-malformed.
func TestHostileJIDForms(t *testing.T) {
	h := newHostileEnv(t)
	auths := []string{authSASL, authDialback}
	for i, tt := range hostileJIDForms {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, auths[i%2])
			id := fmt.Sprintf("jid-%d", i)
			body := tt.body
			if body == "" {
				body = "hi"
			}
			hostileWrite(p, hostileAddressed("message", tt.from, tt.to, id, "<body>"+body+"</body>"))
			raw, n := h.expectRelayed(t, id)
			if n.Attr("from") != tt.wantFrom || n.Attr("to") != tt.wantTo {
				t.Fatalf("the internal server received %q, want from='%s' to='%s'", raw, tt.wantFrom, tt.wantTo)
			}
			for _, sent := range []string{tt.from, tt.to} {
				if sent != tt.wantFrom && sent != tt.wantTo && strings.Contains(raw, sent) {
					t.Fatalf("the address as sent, %q, reached the internal server: %q", sent, raw)
				}
			}
			a, ok := h.judge.askedAbout(id)
			if !ok || a.from.Full != tt.wantFrom || a.to.Full != tt.wantTo || a.from.Domain != "partner.test" || a.to.Domain != "company.test" {
				t.Fatalf("the policy judged %+v (asked: %v), want from %s to %s", a, ok, tt.wantFrom, tt.wantTo)
			}
			if bare, _, _ := strings.Cut(tt.wantTo, "/"); a.to.Bare != bare {
				t.Fatalf("the policy judged the bare to %q, want %q", a.to.Bare, bare)
			}
			// The record has the canonical addresses, and the ones sent
			// where they differ.
			sentForm := func(sent, want string) string {
				if sent == want {
					return ""
				}
				return sent
			}
			want := fmt.Sprintf("allow from=%s to=%s from_sent=%s to_sent=%s reason=", tt.wantFrom, tt.wantTo, sentForm(tt.from, tt.wantFrom), sentForm(tt.to, tt.wantTo))
			if recs := h.auditedAs(id); len(recs) != 1 || recs[0] != want {
				t.Fatalf("audit records %q, want [%q]", recs, want)
			}
			h.finish(t, p)
		})
	}
	for i, tt := range hostileMalformedJIDs {
		t.Run("malformed: "+tt.name, func(t *testing.T) {
			p := h.attacker(t, auths[i%2])
			id := fmt.Sprintf("jid-bad-%d", i)
			hostileWrite(p, hostileAddressed(tt.kind, tt.from, tt.to, id, ""))
			b := h.expectBounce(t, h.authority.stanzas, id, "jid-malformed", hostileJIDMalformedType, tt.bounceFrom, tt.bounceTo)
			if b.Local != tt.kind {
				t.Fatalf("a <%s/> bounced as a <%s/>", tt.kind, b.Local)
			}
			if _, asked := h.judge.askedAbout(id); asked {
				t.Fatal("the policy was asked about a stanza with a malformed address")
			}
			recs := h.auditedAs(id)
			if len(recs) != 1 || !strings.HasPrefix(recs[0], "bounced ") || !strings.Contains(recs[0], "reason=jid-malformed") {
				t.Fatalf("audit records %q, want one bounce for jid-malformed", recs)
			}
			h.finish(t, p)
		})
	}
	t.Run("malformed: an error is not answered", func(t *testing.T) {
		// Errors are never answered with errors: the first bounce the
		// sender's server receives is the one of the stanza after it.
		p := h.saslPeer(t)
		hostileWrite(p, "<message from='"+hostileFrom+"' to='@company.test' id='jid-bad-error' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
		hostileWrite(p, hostileAddressed("message", hostileFrom, "@company.test", "jid-bad-after", ""))
		h.expectBounce(t, h.authority.stanzas, "jid-bad-after", "jid-malformed", hostileJIDMalformedType, "company.test", hostileFrom)
		h.finish(t, p)
	})
}

// hostileSink stands for a remote server the gateway connects to (bounces
// go there): it accepts every dialback key and passes the stanzas on; unlike
// fakeServer it keeps a connection as long as the test wants.
type hostileSink struct {
	ln      net.Listener
	stanzas chan string
}

func startHostileSink(t *testing.T, tc *tls.Config) *hostileSink {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	s := &hostileSink{ln: ln, stanzas: make(chan string, 1024)}
	done := make(chan struct{})
	var conns sync.Map
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conns.Delete(c)
				defer c.Close()
				c.SetDeadline(time.Now().Add(4 * hostileWait))
				r := xmlstream.NewReader(c, xmlstream.Limits{})
				hd, err := r.ReadHeader()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>", hd.To, hd.From, dialback.NewStreamID())
				for {
					el, err := r.Next()
					if err != nil {
						return
					}
					switch {
					case el.Space == xmlstream.NSDialback && el.Local == "result" && el.Type == "":
						fmt.Fprintf(c, "<db:result from='%s' to='%s' type='valid'/>", el.To, el.From)
					case el.Local == "message" || el.Local == "presence" || el.Local == "iq":
						select {
						case s.stanzas <- string(el.Raw):
						case <-done:
							return
						}
					}
				}
			}()
		}
	}()
	return s
}

func (s *hostileSink) addr() string { return s.ln.Addr().String() }

// limitRefusals reads xmppedge_limit_refusals_total{limit=limit} from m.
func limitRefusals(t testing.TB, m *metrics.Metrics, limit string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "xmppedge_limit_refusals_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// hostileQuiet logs warnings only: a flood must not fill the test's log
// (kept in memory until the test ends) and count against the heap.
func hostileQuiet(t testing.TB) func(*Options) {
	return func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// The stanza rate per remote domain (a token bucket, DESIGN §3): over it a
// stanza is bounced with resource-constraint (type wait), counted, and
// never judged or forwarded; every other remote domain has a bucket of its
// own and keeps flowing. A rate of 0.001/s with a burst of 3 lets exactly
// three through in any test's lifetime.
func TestHostileStanzaRate(t *testing.T) {
	send := func(p *peer, from, id string) {
		p.send(hostileAddressed("message", from, hostileTo, id, "<body>x</body>"))
	}
	t.Run("default rate of the limits", func(t *testing.T) {
		m := metrics.New("test")
		h := newHostileEnv(t, func(o *Options) { o.Metrics = m })
		other := hostileCert(t, h.ca, "other.test")
		otherServer := startFakeServerTLS(t, "other.test", h.tlsConfig(t, "other.test"))
		h.res.set("other.test", otherServer.addr(), true)
		// Lowered after the setup's canary: partner.test's bucket starts
		// full with the next stanza (an infinite rate keeps no bucket).
		h.gw.SetLimits(Limits{StanzaRate: 0.001, StanzaBurst: 3})
		p := h.saslPeer(t)
		o := h.saslPeerAs(t, &other, "other.test")
		for i := range 5 {
			send(p, hostileFrom, fmt.Sprintf("p-%d", i))
		}
		for i := range 3 {
			h.expectRelayed(t, fmt.Sprintf("p-%d", i))
		}
		for i := 3; i < 5; i++ {
			h.expectBounce(t, h.authority.stanzas, fmt.Sprintf("p-%d", i), "resource-constraint", "wait", hostileTo, hostileFrom)
		}
		// other.test has a bucket of its own, with the same default.
		h.letPairs["other.test company.test"] = true
		for i := range 4 {
			send(o, "carol@other.test/y", fmt.Sprintf("o-%d", i))
		}
		for i := range 3 {
			h.expectRelayed(t, fmt.Sprintf("o-%d", i))
		}
		h.expectBounce(t, otherServer.stanzas, "o-3", "resource-constraint", "wait", hostileTo, "carol@other.test/y")
		if got := limitRefusals(t, m, metrics.LimitStanzaRate); got != 3 {
			t.Fatalf("%v stanza rate refusals counted, want 3", got)
		}
		if _, asked := h.judge.askedAbout("p-3"); asked {
			t.Fatal("the policy was asked about a stanza over the rate")
		}
		h.gw.SetLimits(Limits{StanzaRate: math.Inf(1), StanzaBurst: 1 << 30})
		h.finish(t, p, o)
	})
	t.Run("partner's rate from its session decision, flooded", func(t *testing.T) {
		m := metrics.New("test")
		h := newHostileEnv(t, hostileQuiet(t), func(o *Options) {
			o.Metrics = m
			// Streams to the internal server close between batches: the
			// fake one ends each connection after 20 s, and a slow
			// machine's flood may last that long.
			o.Limits.IdleTimeout = 100 * time.Millisecond
		})
		other := hostileCert(t, h.ca, "other.test")
		// The bounces go to a server of partner.test that keeps its
		// stream as long as the flood lasts (SASL needs no authority).
		sink := startHostileSink(t, h.tlsConfig(t, "partner.test"))
		h.res.set("partner.test", sink.addr(), true)
		h.judge.setRate("partner.test", &policy.Rate{PerSecond: 0.001, Burst: 3})
		p := h.saslPeer(t)
		o := h.saslPeerAs(t, &other, "other.test") // the default: no limit here
		h.letPairs["other.test company.test"] = true
		for i := range 3 {
			send(p, hostileFrom, fmt.Sprintf("r-%d", i))
		}
		for i := range 3 {
			h.expectRelayed(t, fmt.Sprintf("r-%d", i))
		}
		// Every refusal is audited; the fake auditor keeps the records in
		// this process's heap, the gateway does not: counted, then let go.
		audited := 0
		dropBounced := func() {
			h.aud.mu.Lock()
			defer h.aud.mu.Unlock()
			var kept []audit.Record
			for _, r := range h.aud.records {
				if r.Event == "stanza" && r.Decision == "bounced" {
					if strings.HasPrefix(r.Reason, "resource-constraint") {
						audited++
					}
					continue
				}
				kept = append(kept, r)
			}
			h.aud.records = kept
		}
		// 10,000 more, in batches the sink's buffer holds; between
		// batches other.test's stanzas keep flowing.
		const flood, batch, others = 10000, 500, 5
		var b strings.Builder
		var before uint64
		for k := range flood / batch {
			b.Reset()
			for i := range batch {
				fmt.Fprintf(&b, "<message from='%s' to='%s' id='r-%d' type='chat'><body>x</body></message>", hostileFrom, hostileTo, 3+k*batch+i)
			}
			p.send(b.String())
			for i := range batch {
				id := fmt.Sprintf("r-%d", 3+k*batch+i)
				if i == 0 {
					h.expectBounce(t, sink.stanzas, id, "resource-constraint", "wait", hostileTo, hostileFrom)
					continue
				}
				raw := h.nextBounce(t, sink.stanzas, id)
				if !strings.Contains(raw, " id='"+id+"'") || !strings.Contains(raw, " type='error'") || !strings.Contains(raw, "<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>") {
					t.Fatalf("want the resource-constraint bounce of %s, got %q", id, raw)
				}
			}
			for i := range others {
				send(o, "carol@other.test/y", fmt.Sprintf("o-%d", k*others+i))
			}
			for i := range others {
				h.expectRelayed(t, fmt.Sprintf("o-%d", k*others+i))
			}
			if k == 0 {
				// Every stream of the flood is up: from here on the
				// heap must not grow with the stanzas.
				dropBounced()
				before = heapInuse()
			}
		}
		dropBounced()
		after := heapInuse()
		t.Logf("heap in use after the first batch %d KiB, after %d over-rate stanzas %d KiB", before>>10, flood, after>>10)
		if after > before+hostileFloodMargin {
			t.Errorf("the heap grew by %d KiB over %d over-rate stanzas: something is kept per stanza", (after-before)>>10, flood-batch)
		}
		if audited != flood {
			t.Fatalf("%d resource-constraint bounces audited, want %d", audited, flood)
		}
		if got := limitRefusals(t, m, metrics.LimitStanzaRate); got != flood {
			t.Fatalf("%v stanza rate refusals counted, want %d", got, flood)
		}
		for _, id := range []string{"r-3", fmt.Sprintf("r-%d", flood+2)} {
			if _, asked := h.judge.askedAbout(id); asked {
				t.Fatalf("the policy was asked about %s, over the rate", id)
			}
		}
		if st := h.gw.rates.Stats(); st.Keys != 1 {
			t.Fatalf("%d stanza buckets, want 1 (partner.test's)", st.Keys)
		}
		// The canary's session gets the default (no limit) again.
		h.judge.setRate("partner.test", nil)
		h.finish(t, p, o)
	})
}

// SASL EXTERNAL (RFC 6120 §6.4.5, XEP-0178): offered only for a
// certificate valid for the stream's from, with that domain as the only
// authzid; every failure leaves the stream unauthenticated.
func TestHostileSASL(t *testing.T) {
	h := newHostileEnv(t)
	auth := func(mech, text string) string {
		return "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" + text + "</auth>"
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	trustedAs := func(from string) func(testing.TB) *peer {
		return func(t testing.TB) *peer {
			p, f := h.tlsPeer(t, &h.trusted, from)
			if offersExternal(f) != (from == "partner.test") {
				t.Fatalf("EXTERNAL offered=%v for a partner.test certificate on a stream from %s", offersExternal(f), from)
			}
			return p
		}
	}
	noCert := func(t testing.TB) *peer { p, _ := h.tlsPeer(t, nil, "partner.test"); return p }
	plain := func(t testing.TB) *peer { return h.plainPeer(t) }
	tests := []struct {
		name    string
		peer    func(testing.TB) *peer
		input   string
		failure string
		from    string // of the stanza sent after the failure: refused with not-authorized
	}{
		{"authzid of another domain", trustedAs("partner.test"), auth("EXTERNAL", b64("evil.test")), "invalid-authzid", "evil.test"},
		{"authzid of a domain of ours", trustedAs("partner.test"), auth("EXTERNAL", b64("company.test")), "invalid-authzid", "company.test"},
		{"authzid of a user", trustedAs("partner.test"), auth("EXTERNAL", b64("bob@partner.test")), "invalid-authzid", "partner.test"},
		{"authzid not base64", trustedAs("partner.test"), auth("EXTERNAL", "!!evil!!"), "incorrect-encoding", "partner.test"},
		{"another mechanism", trustedAs("partner.test"), auth("PLAIN", b64("\x00partner.test\x00secret")), "invalid-mechanism", "partner.test"},
		{"EXTERNAL not offered: untrusted CA", h.untrustedPeer, auth("EXTERNAL", "="), "invalid-mechanism", "partner.test"},
		{"EXTERNAL not offered: certificate of another domain", trustedAs("evil.test"), auth("EXTERNAL", b64("evil.test")), "invalid-mechanism", "evil.test"},
		{"EXTERNAL not offered: no certificate", noCert, auth("EXTERNAL", "="), "invalid-mechanism", "partner.test"},
		{"EXTERNAL not offered: before TLS", plain, auth("EXTERNAL", "="), "invalid-mechanism", "partner.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.peer(t)
			hostileWrite(p, tt.input)
			expectSASLFailure(t, p, tt.failure)
			hostileWrite(p, hostileMessage("bob@"+tt.from, "alice@company.test", "after a SASL failure"))
			expectStreamErrorApp(t, p, "not-authorized", "")
			h.finish(t, p)
		})
	}
	t.Run("second auth after success", func(t *testing.T) {
		p := h.saslPeer(t)
		hostileWrite(p, auth("EXTERNAL", b64("evil.test")))
		expectSASLFailure(t, p, "invalid-mechanism")
		hostileWrite(p, hostileMessage("mallory@evil.test", "alice@company.test", "after a second auth"))
		expectStreamErrorApp(t, p, "invalid-from", "")
		h.finish(t, p)
	})
	// No compression anywhere: every features element the helpers read is
	// checked by noCompression; here also the one after dialback's TLS
	// without a certificate and the version-less and from-less headers.
	t.Run("no compression offered", func(t *testing.T) {
		p, f := h.tlsPeer(t, nil, "partner.test")
		noCompression(t, f)
		q := h.hostileDial(t)
		noCompression(t, q.open("", "company.test"))
		h.finish(t, p, q)
	})
}

// Stream headers (RFC 6120 §4.7, §4.9.3): to, namespaces, the root
// element, and the headers after STARTTLS and SASL.
func TestHostileHeader(t *testing.T) {
	h := newHostileEnv(t)
	fresh := func(t testing.TB) *peer { return h.hostileDial(t) }
	afterTLS := func(t testing.TB) *peer {
		p := h.hostileDial(t)
		p.open("partner.test", "company.test")
		upgradeTLS(t, p, &h.untrusted)
		return p
	}
	afterSASL := func(t testing.TB) *peer {
		p, _ := h.tlsPeer(t, &h.trusted, "partner.test")
		saslAuth(t, p)
		return p
	}
	const ns = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"
	tests := []struct {
		name  string
		peer  func(testing.TB) *peer
		input string
		cond  string
	}{
		{"no to", fresh, hostileHeader("partner.test", ""), "host-unknown"},
		{"no to, after STARTTLS", afterTLS, hostileHeader("partner.test", ""), "host-unknown"},
		{"to not ours, after STARTTLS", afterTLS, hostileHeader("partner.test", "elsewhere.test"), "host-unknown"},
		{"to not ours, after SASL", afterSASL, hostileHeader("partner.test", "elsewhere.test"), "host-unknown"},
		{"db prefix bound elsewhere", fresh, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='urn:evil' from='partner.test' to='company.test' version='1.0'>", "invalid-namespace"},
		{"db prefix bound elsewhere, after SASL", afterSASL, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='urn:evil' from='partner.test' to='company.test' version='1.0'>", "invalid-namespace"},
		{"root element not stream", fresh, "<stream:features " + ns + " to='company.test' version='1.0'>", "invalid-namespace"},
		{"stream prefix not declared", fresh, "<stream:stream xmlns='jabber:server' to='company.test' version='1.0'>", "invalid-namespace"},
		{"no content namespace", fresh, "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='company.test' version='1.0'>", "invalid-namespace"},
		{"empty stream element", fresh, "<stream:stream " + ns + " to='company.test' version='1.0'/>", "not-well-formed"},
		{"end tag first", fresh, "</stream:stream>", "not-well-formed"},
		{"comment before the header", fresh, "<!-- x -->" + hostileHeader("partner.test", "company.test"), "restricted-xml"},
		{"DOCTYPE before the header", fresh, "<!DOCTYPE stream:stream [<!ENTITY to 'company.test'>]>" + hostileHeader("partner.test", "company.test"), "restricted-xml"},
		{"CDATA before the header", fresh, "<![CDATA[x]]>" + hostileHeader("partner.test", "company.test"), "restricted-xml"},
		{"processing instruction before the header", fresh, "<?evil x?>" + hostileHeader("partner.test", "company.test"), "restricted-xml"},
		{"two XML declarations", fresh, "<?xml version='1.0'?><?xml version='1.0'?>" + hostileHeader("partner.test", "company.test"), "restricted-xml"},
		{"entity in the header", fresh, "<stream:stream " + ns + " from='partner.test' to='&company;' version='1.0'>", "restricted-xml"},
		{"text before the header", fresh, "GET / HTTP/1.1\r\n\r\n", "not-well-formed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.peer(t)
			hostileWrite(p, tt.input)
			expectStreamErrorApp(t, p, tt.cond, "")
			h.finish(t, p)
		})
	}
	t.Run("from changed after SASL", func(t *testing.T) {
		// The restarted stream claims another from: what SASL
		// authenticated stays partner.test.
		p := afterSASL(t)
		noCompression(t, p.open("evil.test", "company.test"))
		hostileWrite(p, hostileMessage("mallory@evil.test", "alice@company.test", "hi"))
		expectStreamErrorApp(t, p, "invalid-from", "")
		h.finish(t, p)
	})
}

// A version-less header (pre-RFC 3920 servers) gets no features; on a
// deployment that does not require TLS the stream stays usable for
// dialback, on one that does dialback is refused. A probing tool's header
// (no from, no xmlns:db) is offered STARTTLS in the literal form such
// tools look for (DESIGN §3).
func TestHostileVersionlessHeader(t *testing.T) {
	const versionless = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='partner.test' to='company.test'>"
	for _, requireTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("require_tls=%v", requireTLS), func(t *testing.T) {
			h := newHostileEnv(t, func(o *Options) { o.Outside.RequireTLS = requireTLS })
			p := h.hostileDial(t)
			p.send(versionless)
			hd, err := p.r.ReadHeader()
			if err != nil {
				t.Fatal(err)
			}
			p.hdr = hd
			p.send("<db:result from='partner.test' to='company.test'>" + partnerKey(hd.ID) + "</db:result>")
			if requireTLS {
				// The first element after the header is the error: no
				// features came before it.
				if seen := expectStreamErrorApp(t, p, "policy-violation", ""); len(seen) != 0 {
					t.Fatalf("a version-less header got %q", seen)
				}
			} else {
				// The first element after the header is the answer.
				expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")
				hostileWrite(p, hostileMessage("mallory@evil.test", "alice@company.test", "hi"))
				expectStreamErrorApp(t, p, "invalid-from", "")
			}
			h.finish(t, p)
		})
	}
	t.Run("probing tool", func(t *testing.T) {
		h := newHostileEnv(t)
		p := h.hostileDial(t)
		p.send("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' to='company.test' version='1.0'>")
		hd, err := p.r.ReadHeader()
		if err != nil {
			t.Fatal(err)
		}
		p.hdr = hd
		f := p.next()
		if !strings.Contains(f, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'") {
			t.Fatalf("features %q lack the literal <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'", f)
		}
		n, err := xmlstream.ParseNode([]byte(f), hd.Namespaces)
		if err != nil {
			t.Fatal(err)
		}
		noCompression(t, n)
		h.finish(t, p)
	})
}

// A stream error from the peer ends the stream: it is answered with
// </stream:stream> only, never with a stream error (RFC 6120 §4.9.1.1),
// and nothing after it is read.
func TestHostilePeerStreamError(t *testing.T) {
	h := newHostileEnv(t)
	for _, tt := range hostilePeerErrors {
		t.Run(tt.name, func(t *testing.T) {
			p := h.attacker(t, tt.auth)
			hostileWrite(p, tt.input)
			el, err := p.r.Next()
			if err != xmlstream.ErrStreamEnd {
				t.Fatalf("the peer's stream error was answered with %q (%v), want only </stream:stream>", el.Raw, err)
			}
			expectClosed(t, p)
			h.finish(t, p)
		})
	}
}

const hostilePeerError = "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"

// hostilePeerErrors: stream errors a peer sends (cond unused: the answer
// is </stream:stream> alone).
var hostilePeerErrors = []hostileCase{
	{"before TLS", authPlain, hostilePeerError, ""},
	{"after TLS", authUntrusted, hostilePeerError, ""},
	{"after SASL, a stanza pipelined", authSASL, hostilePeerError + hostileMessage("bob@partner.test", "alice@company.test", "after the stream error"), ""},
	{"after dialback, with text", authDialback, "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text></stream:error>", ""},
	{"empty", authSASL, "<stream:error/>", ""},
	{"another prefix", authSASL, "<e:error xmlns:e='http://etherx.jabber.org/streams'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></e:error>", ""},
	{"then the close tag", authSASL, hostilePeerError + "</stream:stream>", ""},
}

// A slow peer before authentication: the header sent one byte at a time
// and then silence, or a stanza dribbled and never finished, is cut by
// the pre-authentication bound with connection-timeout.
func TestHostileSlowPeer(t *testing.T) {
	h := newHostileEnv(t)
	header := "<?xml version='1.0'?>" + hostileHeader("partner.test", "company.test")
	tests := []struct {
		name     string
		header   string // sent one byte at a time
		dribbled string // then this, one byte at a time, after the features
	}{
		{"header byte by byte, then silence", header, ""},
		{"stanza byte by byte, never finished", hostileHeader("partner.test", "company.test"), "<message from='bob@partner.test' to='alice@company.test'><body>aaaaaaaaaaaaaaaaaaaa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Set while no session reads it (waitIdle went through the
			// gateway's lock after the last one ended); restored for the
			// canary's stream.
			h.waitIdle(t)
			h.gw.setPreAuthLimit(300 * time.Millisecond)
			p := h.hostileDial(t)
			for i := range len(tt.header) {
				hostileWrite(p, tt.header[i:i+1])
				time.Sleep(time.Millisecond) // separate segments, not a bound
			}
			hd, err := p.r.ReadHeader()
			if err != nil {
				t.Fatal(err)
			}
			p.hdr = hd
			dribbled := make(chan struct{})
			go func(c net.Conn, s string) {
				defer close(dribbled)
				for i := range len(s) {
					if _, err := io.WriteString(c, s[i:i+1]); err != nil {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}(p.conn, tt.dribbled)
			seen := expectStreamErrorApp(t, p, "connection-timeout", "")
			<-dribbled
			// The bound also covers the wait for the header: on a machine
			// slow enough for the dribbled header to outlast it, the
			// error comes before the features, and that is as right.
			if len(seen) > 1 || len(seen) == 1 && !strings.Contains(seen[0], "features") {
				t.Fatalf("want the features (or nothing), then the error; got %q", seen)
			}
			h.waitIdle(t)
			h.gw.setPreAuthLimit(2 * time.Minute)
			h.finish(t, p)
		})
	}
	// The per-source connection limits: TestHostileConnectionsPerIP.
}

// hostileTryConnect opens a connection to the outside listener from the
// loopback address src ("" for the system's choice) and sends a stream
// header. served reports whether the gateway answered with its header
// (the connection is then returned open); if it did not, the gateway must
// have closed the connection (end of file or reset) without sending a
// byte: err says what happened otherwise.
func (h *hostileEnv) hostileTryConnect(src string) (c net.Conn, served bool, err error) {
	d := net.Dialer{Timeout: hostileWait}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err = d.Dial("tcp", h.outside)
	if err != nil {
		return nil, false, err
	}
	c.SetDeadline(time.Now().Add(hostileWait))
	io.WriteString(c, hostileHeader("partner.test", "company.test")) // the gateway may have closed already
	var buf [256]byte
	n, rerr := c.Read(buf[:])
	if n == 0 {
		c.Close()
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, syscall.ECONNRESET) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("connection neither served nor closed: %v", rerr)
	}
	if _, err := xmlstream.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), c), xmlstream.Limits{}).ReadHeader(); err != nil {
		c.Close()
		return nil, false, fmt.Errorf("the gateway sent %q, not a stream header: %v", buf[:n], err)
	}
	return c, true, nil
}

// hostileConnectMany opens n connections from src, 16 at a time, and
// returns the served ones (open) and how many the gateway closed at once.
func (h *hostileEnv) hostileConnectMany(t *testing.T, src string, n int) (served []net.Conn, refused int) {
	t.Helper()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, ok, err := h.hostileTryConnect(src)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case ok:
					served = append(served, c)
				default:
					refused++
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range served {
			c.Close()
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d connections: %v (first)", len(errs), n, errs[0])
	}
	return served, refused
}

// The per-source connection limits of the outside listeners: a source
// over its concurrent cap, or opening connections faster than its rate,
// is closed at once without a stream header; what it holds is given back
// when its connections close.
func TestHostileConnectionsPerIP(t *testing.T) {
	t.Run("concurrent connections", func(t *testing.T) {
		const limit, n = 5, 1000
		m := metrics.New("test")
		h := newHostileEnv(t, func(o *Options) {
			o.Limits.ConnectionsPerIP = limit
			o.Metrics = m
		})
		served, refused := h.hostileConnectMany(t, "", n)
		if len(served) != limit || refused != n-limit {
			t.Fatalf("%d connections served and %d refused, want %d and %d", len(served), refused, limit, n-limit)
		}
		if got := h.incomingSessions(); got != limit {
			t.Fatalf("%d incoming sessions, want %d", got, limit)
		}
		if st := h.gw.perIP.Stats(); st.Open != limit || len(h.gw.conns) != limit {
			t.Fatalf("the gateway counts %d connections from the source and holds %d slots, want %d", st.Open, len(h.gw.conns), limit)
		}
		if got := limitRefusals(t, m, metrics.LimitConnectionsPerIP); got != n-limit {
			t.Fatalf("%v refusals counted, want %d", got, n-limit)
		}
		// Another source is not held back by this one.
		c, ok, err := h.hostileTryConnect("127.0.0.3")
		if err != nil && strings.Contains(err.Error(), "assign requested address") {
			t.Logf("127.0.0.3 cannot be bound here: the other source is not tried (%v)", err)
		} else if err != nil || !ok {
			t.Fatalf("a connection from another source was not served: %v", err)
		} else {
			c.Close()
		}
		// Closed, they are given back: as many are served again.
		for _, c := range served {
			c.Close()
		}
		h.waitIdle(t)
		if st := h.gw.perIP.Stats(); st.Open != 0 {
			t.Fatalf("%d connections still counted after all were closed", st.Open)
		}
		again, refused := h.hostileConnectMany(t, "", limit+1)
		if len(again) != limit || refused != 1 {
			t.Fatalf("after the release %d connections served and %d refused, want %d and 1", len(again), refused, limit)
		}
		var peers []*peer
		for _, c := range again {
			peers = append(peers, &peer{t: t, conn: c})
		}
		h.finish(t, peers...)
	})
	t.Run("new connections per second", func(t *testing.T) {
		// A rate of 2/s is a bucket of 2: a source that has opened none
		// gets 2 at once, then one every half second. Its own source
		// address (the setup's canary took a token from 127.0.0.1's).
		const rate, n = 2, 50
		m := metrics.New("test")
		h := newHostileEnv(t, func(o *Options) {
			o.Limits.NewConnectionsPerIP = rate
			o.Metrics = m
		})
		const src = "127.0.0.2"
		if c, err := net.ListenPacket("udp", src+":0"); err != nil {
			t.Skipf("%s cannot be bound here: %v", src, err)
		} else {
			c.Close()
		}
		start := time.Now()
		served, refused := h.hostileConnectMany(t, src, n)
		elapsed := time.Since(start)
		// At most the bucket and what refilled while the burst lasted
		// (on a fast machine that is nothing: exactly 2).
		most := rate + int(rate*elapsed.Seconds())
		if len(served) < rate || len(served) > most || refused != n-len(served) {
			t.Fatalf("%d of %d connections served (%d refused) in %v, want %d to %d", len(served), n, refused, elapsed, rate, most)
		}
		t.Logf("%d of %d served in %v", len(served), n, elapsed)
		if got := limitRefusals(t, m, metrics.LimitNewConnectionsPerIP); got != float64(refused) {
			t.Fatalf("%v refusals counted, want %d", got, refused)
		}
		var peers []*peer
		for _, c := range served {
			peers = append(peers, &peer{t: t, conn: c})
		}
		h.finish(t, peers...)
	})
}

// A peer that asks and never reads: it sends db:verify requests (the
// authoritative role answers each) without reading a byte. The answers
// pile up in the socket buffers, then in the stream's writer backlog
// (stream.DefaultMaxBacklog); past it the gateway drops the connection
// instead of buffering without bound, and the peer's writes fail.
func TestHostileNeverReads(t *testing.T) {
	h := newHostileEnv(t, func(o *Options) {
		o.Outside.RequireTLS = false
		// Info: a debug line per answer would fill the test's own log.
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	p := h.plainPeer(t)
	var chunk strings.Builder
	for i := range 500 {
		fmt.Fprintf(&chunk, "<db:verify from='partner.test' to='company.test' id='s%d'>%s</db:verify>", i, strings.Repeat("0", 64))
	}
	const limit = 256 << 20 // far more than any socket buffer plus the backlog
	sent := 0
	var err error
	for sent < limit {
		var n int
		if n, err = p.conn.Write([]byte(chunk.String())); err != nil {
			break
		}
		sent += n
	}
	if err == nil {
		t.Fatalf("the gateway kept reading %d bytes from a peer that never reads its answers", sent)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the gateway stopped reading but kept the connection open after %d bytes: %v", sent, err)
	}
	if sent < stream.DefaultMaxBacklog {
		t.Fatalf("the connection was dropped after %d bytes, before the answers could fill the backlog: %v", sent, err)
	}
	t.Logf("connection dropped after %d bytes sent: %v", sent, err)
	h.finish(t, p)
}

// TestHostileManySendersNarrowedCache: a partner sends from many made-up
// senders, some with made-up message types, alternately to an allowed
// user and to a blocked one, on one stream. The policy's cache narrows an
// inbound stanza's key to its recipient (no sender), in the background
// while the stanzas arrive: every stanza to the blocked user is still
// refused — bounced to the partner, never at the internal server — and
// every one to the allowed user delivered, in order.
func TestHostileManySendersNarrowedCache(t *testing.T) {
	eng := shippedRules(t, "partners:\n  - domain: partner.test\nblocked_users: [mallory@company.test]\n")
	env := newTestEnv(t, func(o *Options) { o.Policy = eng })
	authority := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", authority.addr(), true)
	cert := hostileCert(t, env.ca, "partner.test")
	p := dialPeer(t, env.outside)
	p.open("partner.test", "company.test")
	upgradeTLS(t, p, &cert)
	p.open("partner.test", "company.test")
	p.send("<db:result from='partner.test' to='company.test'>" + forgedKey + "</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")

	const n = 80
	for i := range n {
		to, typ := "alice@company.test", "chat"
		if i%2 == 1 {
			to = "mallory@company.test"
		}
		if i%3 == 0 {
			typ = fmt.Sprintf("made-up-%d", i)
		}
		p.send(fmt.Sprintf("<message from='sender%d@partner.test/r' to='%s' type='%s' id='m%d'><body>hi</body></message>", i, to, typ, i))
	}
	p.send("<message from='last@partner.test/r' to='alice@company.test' type='chat' id='last'><body>end</body></message>")
	for i := 0; i < n; i += 2 {
		env.internal.expectStanza(t, fmt.Sprintf("id='m%d'", i), "to='alice@company.test'")
	}
	env.internal.expectStanza(t, "id='last'") // every stanza before it was decided: none to mallory came
	for i := 1; i < n; i += 2 {
		authority.expectStanza(t, fmt.Sprintf("id='m%d'", i), "type='error'", "policy-violation", fmt.Sprintf("to='sender%d@partner.test/r'", i))
	}
	if s := eng.Stats(); s.KeyNarrowings == 0 || s.Failures != 0 {
		t.Fatalf("policy stats %+v: want a class narrowed, no failure", s)
	}
}

// TestHostileAlikeDomainsAuditedApart: one stream authenticated for three
// domains under one wildcard partner — alike partner entries, so one
// policy cache class once input.remote keys the domain's facts instead of
// the domain (policy/facet.go) —, one of which the data audits in full.
// Once the other two's presence is answered from the cache, the audited
// domain's presence must not be: each of its stanzas is recorded in full,
// the others' as metadata, and all are delivered.
func TestHostileAlikeDomainsAuditedApart(t *testing.T) {
	eng := shippedRules(t, "partners:\n  - domain: \"*.partner.test\"\naudit_full: [b.partner.test]\n")
	env := newTestEnv(t, func(o *Options) { o.Policy = eng })
	domains := []string{"a.partner.test", "b.partner.test", "c.partner.test"}
	cert := hostileCert(t, env.ca, domains...)
	p := dialPeer(t, env.outside)
	p.open("a.partner.test", "company.test")
	upgradeTLS(t, p, &cert)
	p.open("a.partner.test", "company.test")
	for _, d := range domains { // valid by the certificate (XEP-0344): no authority asked
		p.send("<db:result from='" + d + "' to='company.test'>" + forgedKey + "</db:result>")
		expectDialbackAnswer(t, p, "result", "company.test", d, "valid", "")
	}
	presence := func(d string, i int) {
		t.Helper()
		id := fmt.Sprintf("%s-%d", d, i)
		p.send(fmt.Sprintf("<presence from='u%d@%s/r' to='alice@company.test' id='%s'/>", i, d, id))
		env.internal.expectStanza(t, "id='"+id+"'")
	}
	// a and c until their class is narrowed and answered from the cache
	// (the narrowing runs in the background; 10 s at most).
	i := 0
	for end := time.Now().Add(10 * time.Second); eng.Stats().CacheHits == 0; i++ {
		if time.Now().After(end) {
			t.Fatalf("no decision answered from the cache after %d presences: %+v", i, eng.Stats())
		}
		presence("a.partner.test", i)
		presence("c.partner.test", i)
		time.Sleep(5 * time.Millisecond)
	}
	const rounds = 8
	for j := range rounds {
		presence("b.partner.test", j)
		presence("c.partner.test", i+j)
	}
	full := 0
	for _, r := range env.aud.find("stanza", "allow") {
		switch b := strings.Contains(r.From, "@b.partner.test/"); {
		case b && r.Stanza == "":
			t.Errorf("b.partner.test's stanza recorded as metadata only: %+v", r)
		case b:
			full++
		case r.Stanza != "":
			t.Errorf("%s's stanza recorded in full: %+v", r.From, r)
		}
	}
	if full != rounds {
		t.Fatalf("%d of b.partner.test's %d stanzas recorded in full", full, rounds)
	}
	if s := eng.Stats(); s.Failures != 0 {
		t.Fatalf("policy stats %+v", s)
	}
}
