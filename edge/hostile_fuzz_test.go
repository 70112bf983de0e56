package edge

// Fuzz targets of the hostile-peer suite (hostile_test.go).
//
// FuzzHostileStream: partner.test opens a stream to the outside listener
// and authenticates by dialback; the fuzzer's bytes are the rest of the
// stream. Checked: no panic; once the connection is closed the gateway
// holds no session, connection or verification and no goroutine is left
// behind; whatever reached the internal server is a well-formed stanza
// from a partner.test address to a company.test address, both in their
// RFC 7622 canonical form, and the stream to the internal server never
// broke on it; whatever went back to partner.test's server is a bounce
// from a company.test address to a partner.test one.
//
// FuzzHostileDialback: a fresh stream receives <db:result/> and
// <db:verify/> elements whose attributes and text come from the fuzzer.
// Checked: no panic, and no domain pair is authenticated (nor answered
// type='valid') unless partner.test's authoritative server answered
// valid for that domain and that stream's id.
//
// Both run on a deployment without require_tls (plain TCP, for speed: the
// parser and the stream logic are the same behind TLS), with a 4 KiB
// stanza limit so that the size attacks stay small.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// fuzzInternal stands for the internal server: it accepts the gateway's
// streams (every dialback key valid), records the stanzas, and records
// any stream from the gateway that it cannot read to its end.
type fuzzInternal struct {
	ln      net.Listener
	stanzas chan string
	mu      sync.Mutex
	broken  []string
	wg      sync.WaitGroup
}

func startFuzzInternal(tb testing.TB) *fuzzInternal {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	fi := &fuzzInternal{ln: ln, stanzas: make(chan string, 100000)}
	var conns sync.Map
	tb.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		fi.wg.Wait()
	})
	fi.wg.Add(1)
	go func() {
		defer fi.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			fi.wg.Add(1)
			go func() {
				defer fi.wg.Done()
				defer conns.Delete(c)
				defer c.Close()
				fi.serve(c)
			}()
		}
	}()
	return fi
}

func (fi *fuzzInternal) addr() string { return fi.ln.Addr().String() }

func (fi *fuzzInternal) fail(why string) {
	fi.mu.Lock()
	fi.broken = append(fi.broken, why)
	fi.mu.Unlock()
}

func (fi *fuzzInternal) brokenStreams() []string {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return append([]string(nil), fi.broken...)
}

func (fi *fuzzInternal) serve(c net.Conn) {
	r := xmlstream.NewReader(c, xmlstream.Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		if !ended(err) {
			fi.fail("header: " + err.Error())
		}
		return
	}
	fmt.Fprintf(c, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>", h.To, h.From, dialback.NewStreamID())
	for {
		el, err := r.Next()
		if err != nil {
			if !ended(err) {
				fi.fail(err.Error())
			}
			io.WriteString(c, "</stream:stream>")
			return
		}
		switch {
		case el.Space == xmlstream.NSDialback && el.Local == "result" && el.Type == "":
			fmt.Fprintf(c, "<db:result from='%s' to='%s' type='valid'/>", el.To, el.From)
		case el.Local == "message" || el.Local == "presence" || el.Local == "iq":
			fi.stanzas <- string(el.Raw)
		default:
			fi.fail(fmt.Sprintf("unexpected element %q", el.Raw))
		}
	}
}

// ended reports whether err is the end of a connection rather than a
// stream the reader could not read.
func ended(err error) bool {
	return err == xmlstream.ErrStreamEnd || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET)
}

// fuzzRig is one gateway for a fuzz target, with partner.test's
// authoritative server and a long-lived canary stream.
type fuzzRig struct {
	env       *testEnv
	internal  *fuzzInternal
	authority *fakeServer
	nonce     string // in the canaries' ids: the fuzzer cannot forge one

	vmu   sync.Mutex
	valid map[string]bool // "originating|stream id" the authority answered valid

	canary     *peer
	canaries   int
	goroutines int // after the first input: the baseline

	bmu       sync.Mutex
	misrouted []string // what partner.test's server received that is not a bounce to it
}

// fuzzKey is the key partner.test's authority finds valid in
// FuzzHostileDialback, for any stream (a seed uses it).
const fuzzKey = "fuzz-valid-key"

// newFuzzRig starts the gateway; with a canary stream when canary is set
// (opened here: it lives as long as f).
func newFuzzRig(f *testing.F, anyStreamKey, canary bool) *fuzzRig {
	r := &fuzzRig{valid: map[string]bool{}}
	r.internal = startFuzzInternal(f)
	r.env = newTestEnv(f, func(o *Options) {
		o.Inside.Server = r.internal.addr()
		o.Outside.RequireTLS = false
		o.Limits.MaxStanzaSize = 4096
		o.Limits.ConnectTimeout = 30 * time.Second
		o.Logger = slog.New(slog.DiscardHandler)
		// Outgoing streams close soon after their last stanza: a bounce
		// opens one to partner.test, and until it closes its goroutines
		// would count as left behind (noGoroutineLeft).
		o.Limits.IdleTimeout = 20 * time.Millisecond
		hostileLimits(o)
	})
	r.authority = startFakeServer(f, "partner.test")
	r.authority.setVerify(func(from, to, id, key string) bool {
		ok := from == "company.test" && (to == "partner.test" || to == "other.test") &&
			(dialback.Equal(key, partnerKey(id)) || (anyStreamKey && key == fuzzKey))
		if ok {
			r.vmu.Lock()
			r.valid[to+"|"+id] = true
			r.vmu.Unlock()
		}
		return ok
	})
	r.env.res.set("partner.test", r.authority.addr(), false)
	r.env.res.set("other.test", r.authority.addr(), false)
	// The stanzas partner.test's server receives are the gateway's
	// bounces (a malformed address, a stanza the policy refuses): read as
	// they come, so that they never hold the gateway's stream up, and
	// checked.
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case raw := <-r.authority.stanzas:
				r.checkBounce(raw)
			case <-stop:
				return
			}
		}
	}()
	f.Cleanup(func() {
		close(stop)
		<-stopped
	})
	b := make([]byte, 8)
	rand.Read(b)
	r.nonce = hex.EncodeToString(b)
	if canary {
		r.canary = r.partner(f)
		r.canary.conn.SetDeadline(time.Time{})
	}
	return r
}

// checkBounce records raw as misrouted unless it is an error stanza from
// an address of company.test to one of the remote domains, both valid
// JIDs: nothing but bounces goes back, and only to whom sent the stanza.
func (r *fuzzRig) checkBounce(raw string) {
	n, err := xmlstream.ParseNode([]byte(raw), serverNS)
	ok := err == nil && n.Attr("type") == "error"
	if ok {
		from, ferr := jid.Prepare(n.Attr("from"))
		to, terr := jid.Prepare(n.Attr("to"))
		ok = ferr == nil && terr == nil && from.Domain == "company.test" && (to.Domain == "partner.test" || to.Domain == "other.test")
	}
	if !ok {
		r.bmu.Lock()
		r.misrouted = append(r.misrouted, raw)
		r.bmu.Unlock()
	}
}

func (r *fuzzRig) answeredValid(originating, id string) bool {
	r.vmu.Lock()
	defer r.vmu.Unlock()
	return r.valid[originating+"|"+id]
}

// partner opens a plain stream from partner.test and authenticates it by
// dialback.
func (r *fuzzRig) partner(t testing.TB) *peer {
	t.Helper()
	p := dialPeer(t, r.env.outside)
	p.conn.SetDeadline(time.Now().Add(hostileWait))
	p.open("partner.test", "company.test")
	p.send("<db:result from='partner.test' to='company.test'>" + partnerKey(p.hdr.ID) + "</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")
	return p
}

// flush sends a canary on the canary stream and reads what the internal
// server received until the canary, passing everything before it to
// check. It fails if a stream to the internal server broke.
func (r *fuzzRig) flush(t *testing.T, check func(raw string)) {
	t.Helper()
	r.canaries++
	id := fmt.Sprintf("canary-%s-%d", r.nonce, r.canaries)
	if _, err := io.WriteString(r.canary.conn, "<message from='canary@partner.test/c' to='alice@company.test' id='"+id+"'/>"); err != nil {
		t.Fatalf("the canary stream broke: %v", err)
	}
	timeout := time.After(hostileWait)
	for done := false; !done; {
		select {
		case raw := <-r.internal.stanzas:
			if strings.Contains(raw, "id='"+id+"'") {
				done = true
			} else if !strings.Contains(raw, "id='canary-"+r.nonce+"-") {
				check(raw)
			}
		case <-timeout:
			t.Fatalf("the canary %s did not reach the internal server", id)
		}
	}
	if b := r.internal.brokenStreams(); len(b) > 0 {
		t.Fatalf("a stream from the gateway to the internal server broke: %q", b)
	}
	r.bmu.Lock()
	m := r.misrouted
	r.bmu.Unlock()
	if len(m) > 0 {
		t.Fatalf("partner.test's server received what is not a bounce to it: %q", m)
	}
}

// idle waits until the gateway holds no incoming session but the canary's,
// no connection but the canary's, and no dialback verification.
func (r *fuzzRig) idle(t *testing.T) {
	t.Helper()
	want := 0
	if r.canary != nil {
		want = 1
	}
	deadline := time.Now().Add(hostileWait)
	for {
		n := 0
		for _, s := range r.env.gw.Sessions() {
			if s.Role == "incoming" {
				n++
			}
		}
		conns, verifs := len(r.env.gw.conns), len(r.env.gw.verifications)
		if n == want && conns == want && verifs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a session was left behind: %d incoming sessions, %d connections, %d verifications (want %d, %d, 0)", n, conns, verifs, want, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// noGoroutineLeft waits until the process has no more goroutines than
// after the first input (the first call sets that baseline).
func (r *fuzzRig) noGoroutineLeft(t *testing.T) {
	t.Helper()
	if r.goroutines == 0 {
		r.goroutines = runtime.NumGoroutine()
		return
	}
	deadline := time.Now().Add(hostileWait)
	for runtime.NumGoroutine() > r.goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d after the first input:\n%s", runtime.NumGoroutine(), r.goroutines, buf)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkRelayed fails unless raw is a well-formed stanza from a
// partner.test address to a company.test address.
func checkRelayed(t *testing.T, raw string) {
	t.Helper()
	ns := map[string]string{"": xmlstream.NSServer, "stream": xmlstream.NSStream, "db": xmlstream.NSDialback}
	n, err := xmlstream.ParseNode([]byte(raw), ns)
	if err != nil {
		t.Fatalf("the internal server received what is not a well-formed stanza: %q: %v", raw, err)
	}
	if n.Space != xmlstream.NSServer || (n.Local != "message" && n.Local != "presence" && n.Local != "iq") {
		t.Fatalf("the internal server received a <%s xmlns='%s'>: %q", n.Local, n.Space, raw)
	}
	if d := fuzzDomain(n.Attr("from")); d != "partner.test" {
		t.Fatalf("the internal server received a stanza from %q (domain %q): %q", n.Attr("from"), d, raw)
	}
	if d := fuzzDomain(n.Attr("to")); d != "company.test" {
		t.Fatalf("the internal server received a stanza to %q (domain %q): %q", n.Attr("to"), d, raw)
	}
	// The addresses are in their RFC 7622 canonical form: the form the
	// policy judged, whatever spelling the peer sent.
	for _, a := range []string{"from", "to"} {
		v := n.Attr(a)
		if j, err := jid.Prepare(v); err != nil || j.String() != v {
			t.Fatalf("the internal server received a stanza whose %s %q is not canonical (%q, %v): %q", a, v, j.String(), err, raw)
		}
	}
}

// fuzzDomain is the domainpart of a JID as RFC 7622 §3.2 splits it (up to
// the first '/', after the first '@'), ASCII case folded, without a final
// dot. Written here rather than using the gateway's own jidDomain.
func fuzzDomain(j string) string {
	if i := strings.Index(j, "/"); i >= 0 {
		j = j[:i]
	}
	if i := strings.Index(j, "@"); i >= 0 {
		j = j[i+1:]
	}
	return strings.TrimSuffix(strings.ToLower(j), ".")
}

// hostileStreamSeeds are the attacks of hostile_test.go that fit after an
// authenticated stream's header, and a few harmless streams.
func hostileStreamSeeds(limit int) []string {
	var seeds []string
	for _, c := range hostileRestrictedXML {
		seeds = append(seeds, c.input)
	}
	for _, c := range hostileSpoofing {
		seeds = append(seeds, c.input)
	}
	for _, c := range hostilePeerErrors {
		seeds = append(seeds, c.input)
	}
	for _, el := range hostileRoleConfusion {
		seeds = append(seeds, el+hostileStanza("<body>after a role confusion</body>"))
	}
	for _, c := range hostileDialback {
		var b strings.Builder
		for _, s := range c.steps {
			b.WriteString(s.send)
		}
		seeds = append(seeds, b.String())
	}
	for _, c := range hostileSizeCases(limit) {
		if in := c.input(); len(in) <= 16*limit+64 {
			seeds = append(seeds, in)
		}
	}
	auth := func(mech, text string) string {
		return "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" + text + "</auth>"
	}
	seeds = append(seeds,
		// harmless: what a partner sends
		hostileStanza("<body>hi &amp; &lt;3</body><x xmlns='urn:example' xml:lang='en'/>")+"<presence from='bob@partner.test' to='alice@company.test'/><iq type='get' id='v' from='bob@partner.test/r' to='company.test'><query xmlns='jabber:iq:version'/></iq></stream:stream>",
		hostileStanza("<body>a</body>")+" \n\t "+hostileStanza("<body>b</body>"),
		"<message from='bob@partner.test' to='alice@company.test'><db:x/><stream:y/></message>",
		"<message from='bob@PARTNER.TEST.' to='alice@COMPANY.TEST'/>",
		// a truncated stanza, a stream restart, STARTTLS, SASL
		"<message from='bob@partner.test' to='alice@company.test'><body>aaaa",
		hostileHeader("evil.test", "company.test")+hostileMessage("mallory@evil.test", "alice@company.test", "restart"),
		"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
		"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"+hostileStanza("<body>pipelined</body>"),
		auth("EXTERNAL", "="),
		auth("EXTERNAL", "ZXZpbC50ZXN0"),
		// dialback for another pair, then a stanza from it
		"<db:result from='other.test' to='company.test'>k</db:result>"+hostileMessage("x@other.test", "alice@company.test", "other"),
		"<db:verify from='partner.test' to='company.test' id='x'>"+dialback.Key(testSecret, "partner.test", "company.test", "x")+"</db:verify>",
		// the encoding
		"\xef\xbb\xbf"+hostileStanza("<body>bom</body>"),
		hostileStanza("<body>\xef\xbb\xbfzero-width no-break space</body>"),
		hostileStanza("<body>\xed\xa0\x80</body>"),
		// CDATA (accepted or not: either way nothing else may pass)
		hostileStanza("<body><![CDATA[</body></message><message from='mallory@evil.test' to='alice@company.test'>]]></body>"),
	)
	for _, c := range hostileCDATAForwarded {
		seeds = append(seeds, hostileStanza("<body>"+c.body+"</body>"))
	}
	for _, c := range hostileCDATADenied {
		seeds = append(seeds, hostileStanza("<body>"+c.body+"</body>"))
	}
	for _, c := range hostileCDATAErrors {
		seeds = append(seeds, c.input)
	}
	// Addresses in other spellings (forwarded canonical) and malformed
	// ones (bounced).
	for _, c := range hostileJIDForms {
		seeds = append(seeds, hostileAddressed("message", c.from, c.to, "jid", "<body>hi</body>"))
	}
	for _, c := range hostileMalformedJIDs {
		seeds = append(seeds, hostileAddressed(c.kind, c.from, c.to, "jid", ""))
	}
	return seeds
}

func FuzzHostileStream(f *testing.F) {
	r := newFuzzRig(f, false, true)
	for _, s := range hostileStreamSeeds(r.env.gw.limits().MaxStanzaSize) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := r.partner(t)
		// Read everything the gateway sends, so that it never waits on us.
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, p.conn)
		}()
		p.conn.Write(data) // the gateway may close before it has read all
		p.conn.(*net.TCPConn).CloseWrite()
		<-drained // the gateway closed its side (or the deadline passed)
		p.conn.Close()
		r.idle(t)
		r.flush(t, func(raw string) { checkRelayed(t, raw) })
		r.noGoroutineLeft(t)
	})
}

// hostileDialbackElement builds a <db:result/> or <db:verify/> from fuzzer
// values; attrs says which attributes are present (bits: from, to, id,
// type), the values are escaped (the parser has its own fuzz target).
func hostileDialbackElement(verify bool, attrs uint8, from, to, id, typ, text string) string {
	name := "result"
	if verify {
		name = "verify"
	}
	b := []byte("<db:" + name)
	for i, a := range []struct{ name, value string }{{"from", from}, {"to", to}, {"id", id}, {"type", typ}} {
		if attrs&(1<<i) != 0 {
			b = append(b, ' ')
			b = append(b, a.name...)
			b = append(b, "='"...)
			b = xmlstream.AppendEscapedAttr(b, a.value)
			b = append(b, '\'')
		}
	}
	b = append(b, '>')
	b = xmlstream.AppendEscapedText(b, text)
	return string(append(b, "</db:"+name+">"...))
}

func FuzzHostileDialback(f *testing.F) {
	r := newFuzzRig(f, true, false)
	// Seeds: the requests of every dialback attack of hostile_test.go, and
	// the key the authority accepts.
	f.Add(false, uint8(0b0011), "partner.test", "company.test", "", "", fuzzKey, uint8(0))
	f.Add(false, uint8(0b0011), "other.test", "company.test", "", "", fuzzKey, uint8(1))
	f.Add(false, uint8(0b0011), "PARTNER.TEST", "company.test", "", "", fuzzKey, uint8(2))
	f.Add(false, uint8(0b0011), "partner.test", "company.test", "", "", "wrong", uint8(0))
	f.Add(false, uint8(0b1011), "evil.test", "company.test", "", "valid", "", uint8(0))
	f.Add(false, uint8(0b1011), "partner.test", "company.test", "", "valid", "", uint8(0))
	f.Add(false, uint8(0b1011), "evil.test", "company.test", "", "error", "", uint8(0))
	f.Add(true, uint8(0b1111), "evil.test", "company.test", "x", "valid", "", uint8(0))
	f.Add(true, uint8(0b0111), "company.test", "partner.test", "x", "", fuzzKey, uint8(0))
	f.Add(false, uint8(0b0011), "company.test", "company.test", "", "", "k", uint8(0))
	f.Add(false, uint8(0b0011), "company.test.", "company.test", "", "", "k", uint8(0))
	f.Add(false, uint8(0b0011), "partner.test", "elsewhere.test", "", "", fuzzKey, uint8(0))
	f.Add(false, uint8(0b0010), "", "company.test", "", "", "k", uint8(0))
	f.Add(false, uint8(0b0011), "partner.test", "company.test", "", "", " ", uint8(0))
	f.Add(false, uint8(0b0111), "partner.test", "company.test", "S1", "", fuzzKey, uint8(3))
	f.Add(false, uint8(0b0011), "a0.test", "company.test", "", "", "k", uint8(20))
	f.Fuzz(func(t *testing.T, verify bool, attrs uint8, from, to, id, typ, text string, repeat uint8) {
		p := dialPeer(t, r.env.outside)
		p.conn.SetDeadline(time.Now().Add(hostileWait))
		p.open("partner.test", "company.test")
		streamID := p.hdr.ID
		el := hostileDialbackElement(verify, attrs, from, to, id, typ, text)
		hostileWrite(p, strings.Repeat(el, int(repeat%24)+1))

		// Sync: our own db:verify is answered in order, after every
		// element before it was handled; then every verification is
		// waited for, and a second sync collects their answers.
		var got []string
		syncUp := func(n int) bool {
			sid := fmt.Sprintf("sync-%s-%d", r.nonce, n)
			if _, err := io.WriteString(p.conn, "<db:verify from='partner.test' to='company.test' id='"+sid+"'>x</db:verify>"); err != nil {
				return false
			}
			for {
				el, err := p.r.Next()
				if err != nil {
					return false
				}
				if el.Local == "verify" && el.ID == sid {
					return true
				}
				got = append(got, string(el.Raw))
			}
		}
		if syncUp(1) {
			deadline := time.Now().Add(hostileWait)
			for len(r.env.gw.verifications) > 0 {
				if time.Now().After(deadline) {
					t.Fatal("a dialback verification never ended")
				}
				time.Sleep(time.Millisecond)
			}
			if syncUp(2) {
				// The stream is up: every pair on it was answered valid by
				// the authority, for this stream.
				for _, s := range r.env.gw.Sessions() {
					if s.Role != "incoming" {
						continue
					}
					for _, remote := range s.Remote {
						if !r.answeredValid(remote, streamID) {
							t.Fatalf("%s authenticated on stream %s without the authority answering valid (sessions %+v)", remote, streamID, r.env.gw.Sessions())
						}
					}
				}
			}
		}
		for _, raw := range got {
			n, err := xmlstream.ParseNode([]byte(raw), p.hdr.Namespaces)
			if err != nil {
				t.Fatalf("the gateway sent %q: %v", raw, err)
			}
			if n.Space == xmlstream.NSDialback && n.Local == "result" && n.Attr("type") == "valid" {
				if !r.answeredValid(n.Attr("to"), streamID) {
					t.Fatalf("the gateway answered %q without the authority answering valid", raw)
				}
			}
		}
		p.conn.Close()
		r.idle(t)
		r.noGoroutineLeft(t)
	})
}
