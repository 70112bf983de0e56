package s2s

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// XEP-0344 "dialback without dialback": a db:result whose from the
// TLS-protected stream's certificate is valid for is answered without
// db:verify; every other one goes to the authoritative server.

// dwdTLS is b.test's server side (asking for a client certificate and
// leaving its judgement to the relay, as the gateway does) and the
// initiating side's certificates.
type dwdTLS struct {
	server    *tls.Config
	roots     *x509.CertPool // what the relay trusts
	a, c, ac  tls.Certificate
	untrusted tls.Certificate // a.test, from a CA the relay does not trust
}

func newDWDTLS(t *testing.T) *dwdTLS {
	t.Helper()
	ca, err := certstest.NewCA("dwd test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := certstest.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *certstest.CA, names ...string) tls.Certificate {
		c, k, err := ca.Issue(certstest.LeafOptions{DNSNames: names})
		if err != nil {
			t.Fatal(err)
		}
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	d := &dwdTLS{roots: x509.NewCertPool()}
	d.roots.AddCert(ca.Cert)
	d.server = &tls.Config{Certificates: []tls.Certificate{issue(ca, "b.test")}, ClientAuth: tls.RequestClientCert}
	d.a, d.c, d.ac = issue(ca, "a.test"), issue(ca, "c.test"), issue(ca, "a.test", "c.test")
	d.untrusted = issue(other, "a.test")
	return d
}

// validFor is the relay's XEP-0344 check: the peer's certificate chains
// to roots and names p.From.
func (d *dwdTLS) validFor(s *Stream, p Pair) bool {
	ts := s.Conn.TLS()
	if ts == nil || len(ts.PeerCertificates) == 0 {
		return false
	}
	_, err := ts.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: d.roots, DNSName: p.From, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// openDWD opens a stream from a.test to b.test, upgraded with STARTTLS
// presenting cert when useTLS (nil: no certificate); it returns the peer
// and the id of the stream the db:results are sent on.
func openDWD(t *testing.T, rh *recvHost, useTLS bool, cert *tls.Certificate) (*rawPeer, string, <-chan error) {
	t.Helper()
	c, done := pair(t, rh)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := &rawPeer{t: t, c: c, r: xmlstream.NewReader(c, xmlstream.Limits{})}
	p.send(rawHeader)
	h, err := p.r.ReadHeader()
	if err != nil {
		t.Fatal(err)
	}
	if el := p.next(); el.Local != "features" {
		t.Fatalf("got <%s/>, want features", el.Local)
	}
	if !useTLS {
		return p, h.ID, done
	}
	p.send(tlsStart)
	if el := p.next(); el.Local != "proceed" {
		t.Fatalf("got %s, want <proceed/>", el.Raw)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "b.test"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p.c, p.r = tc, xmlstream.NewReader(tc, xmlstream.Limits{})
	p.send(rawHeader)
	if h, err = p.r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if el := p.next(); el.Local != "features" {
		t.Fatalf("got <%s/>, want features", el.Local)
	}
	return p, h.ID, done
}

func TestDialbackWithoutDialback(t *testing.T) {
	d := newDWDTLS(t)
	for _, tt := range []struct {
		name   string
		tls    bool
		cert   *tls.Certificate
		liar   bool     // the relay claims every certificate settles every pair
		from   []string // the db:results' from, in order (to b.test)
		byCert []string // the pairs answered without db:verify
	}{
		{name: "certificate valid for the from", tls: true, cert: &d.a, from: []string{"a.test"}, byCert: []string{"a.test"}},
		{name: "no TLS, whatever the relay says", liar: true, from: []string{"a.test"}},
		{name: "TLS without a client certificate", tls: true, from: []string{"a.test"}},
		{name: "certificate of an untrusted CA", tls: true, cert: &d.untrusted, from: []string{"a.test"}},
		{name: "certificate for another domain", tls: true, cert: &d.c, from: []string{"a.test"}},
		{name: "multiplexed from the certificate is not valid for", tls: true, cert: &d.a, from: []string{"a.test", "c.test"}, byCert: []string{"a.test"}},
		{name: "multiplexed from the certificate is valid for too", tls: true, cert: &d.ac, from: []string{"a.test", "c.test"}, byCert: []string{"a.test", "c.test"}},
		{name: "certificate valid for the multiplexed from only", tls: true, cert: &d.c, from: []string{"a.test", "c.test"}, byCert: []string{"c.test"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rh := newRecvHost()
			rh.tls, rh.offerTLS = d.server, tt.tls
			rh.certFor = d.validFor
			if tt.liar {
				rh.certFor = func(*Stream, Pair) bool { return true }
			}
			p, id, done := openDWD(t, rh, tt.tls, tt.cert)
			var wantVerified, wantByCert []Pair
			for _, from := range tt.from {
				p.send("<db:result from='" + from + "' to='b.test'>" + dialback.Key(secret, "b.test", from, id) + "</db:result>")
				el := p.next()
				if el.Local != "result" || el.Type != dialback.Valid || el.From != "b.test" || el.To != from {
					t.Fatalf("db:result from %s answered %s, want valid", from, el.Raw)
				}
				if slices.Contains(tt.byCert, from) {
					wantByCert = append(wantByCert, Pair{from, "b.test"})
				} else {
					wantVerified = append(wantVerified, Pair{from, "b.test"})
				}
			}
			rh.mu.Lock()
			verified, byCert := slices.Clone(rh.verified), slices.Clone(rh.byCert)
			for _, from := range tt.from {
				if m := rh.pairs[Pair{from, "b.test"}]; m != MethodDialback {
					t.Errorf("%s → b.test recorded as %q, want %q", from, m, MethodDialback)
				}
			}
			rh.mu.Unlock()
			if !slices.Equal(verified, wantVerified) {
				t.Errorf("VerifyKey asked about %v, want %v", verified, wantVerified)
			}
			if !slices.Equal(byCert, wantByCert) {
				t.Errorf("authorised as settled by the certificate: %v, want %v", byCert, wantByCert)
			}
			p.c.Close()
			<-done
		})
	}
}

// TestDialbackWithoutDialbackKeyUnused: settled by the certificate, the
// key is not what decides (no one is asked about it).
func TestDialbackWithoutDialbackKeyUnused(t *testing.T) {
	d := newDWDTLS(t)
	rh := newRecvHost()
	rh.tls, rh.offerTLS, rh.certFor = d.server, true, d.validFor
	rh.keyValid = false // an authoritative server would say invalid
	p, _, done := openDWD(t, rh, true, &d.a)
	p.send("<db:result from='a.test' to='b.test'>not-a-key</db:result>")
	if el := p.next(); el.Type != dialback.Valid {
		t.Fatalf("got %s, want valid", el.Raw)
	}
	// Another from is verified, and the authoritative server's answer
	// decides.
	p.send("<db:result from='c.test' to='b.test'>not-a-key</db:result>")
	contains(t, string(p.next().Raw), "<forbidden ")
	rh.mu.Lock()
	verified := slices.Clone(rh.verified)
	rh.mu.Unlock()
	if !slices.Equal(verified, []Pair{{"c.test", "b.test"}}) {
		t.Errorf("VerifyKey asked about %v", verified)
	}
	p.c.Close()
	<-done
}

// TestDialbackWithoutDialbackRefused: the policy still decides a pair its
// certificate settles; refused, the stream ends with its stream error and
// no authoritative server is asked.
func TestDialbackWithoutDialbackRefused(t *testing.T) {
	d := newDWDTLS(t)
	rh := newRecvHost()
	rh.tls, rh.offerTLS, rh.certFor, rh.denied = d.server, true, d.validFor, true
	p, id, done := openDWD(t, rh, true, &d.a)
	p.send("<db:result from='a.test' to='b.test'>" + dialback.Key(secret, "b.test", "a.test", id) + "</db:result>")
	go func() {
		for {
			if _, err := p.r.Next(); err != nil {
				return
			}
		}
	}()
	err := <-done
	expectCondition(t, err, stream.PolicyViolation)
	rh.mu.Lock()
	defer rh.mu.Unlock()
	if len(rh.verified) != 0 || len(rh.pairs) != 0 {
		t.Errorf("verified %v, pairs %v", rh.verified, rh.pairs)
	}
	var se *stream.Error
	if !errors.As(err, &se) || se.Text != "denied" {
		t.Errorf("err = %v", err)
	}
}

// TestDialbackDANE: DNSSEC-authenticated data (DANE) may settle a
// db:result the certificate's PKIX check did not — asked only on a
// TLS-protected stream, after the policy allowed the pair, and not when
// the certificate settled it already.
func TestDialbackDANE(t *testing.T) {
	d := newDWDTLS(t)
	aTest := func(_ *Stream, p Pair) bool { return p.From == "a.test" }
	for _, tt := range []struct {
		name    string
		tls     bool
		cert    *tls.Certificate
		dane    func(*Stream, Pair) bool
		denied  bool
		answer  string // valid | invalid | "": a stream error (policy-violation)
		asked   bool   // DialbackDANE asked
		byDANE  bool   // settled by DANE, no VerifyKey
		keyGood bool
	}{
		{name: "DANE settles an untrusted certificate", tls: true, cert: &d.untrusted, dane: aTest, answer: dialback.Valid, asked: true, byDANE: true, keyGood: true},
		{name: "DANE settles, forged key", tls: true, cert: &d.untrusted, dane: aTest, answer: dialback.Valid, asked: true, byDANE: true},
		{name: "DANE does not settle: db:verify", tls: true, cert: &d.untrusted, dane: func(*Stream, Pair) bool { return false }, answer: dialback.Valid, asked: true, keyGood: true},
		{name: "DANE does not settle, forged key", tls: true, cert: &d.untrusted, answer: dialback.Invalid, asked: true},
		{name: "no TLS: DANE not asked", dane: aTest, answer: dialback.Valid, keyGood: true},
		{name: "certificate settles: DANE not asked", tls: true, cert: &d.a, dane: aTest, answer: dialback.Valid},
		{name: "policy refuses: DANE not asked", tls: true, cert: &d.untrusted, dane: aTest, denied: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rh := newRecvHost()
			rh.tls, rh.offerTLS, rh.certFor, rh.daneFor, rh.denied = d.server, tt.tls, d.validFor, tt.dane, tt.denied
			p, id, done := openDWD(t, rh, tt.tls, tt.cert)
			key := "forged"
			if tt.keyGood {
				key = dialback.Key(secret, "b.test", "a.test", id)
			}
			p.send("<db:result from='a.test' to='b.test'>" + key + "</db:result>")
			var err error
			if tt.answer == "" {
				go func() {
					for {
						if _, err := p.r.Next(); err != nil {
							return
						}
					}
				}()
				err = <-done
				expectCondition(t, err, stream.PolicyViolation)
			} else if el := p.next(); el.Local != "result" || el.Type != tt.answer {
				t.Fatalf("got %s, want %s", el.Raw, tt.answer)
			}
			rh.mu.Lock()
			asked, byDANE, verified := len(rh.askDANE), slices.Clone(rh.byDANE), len(rh.verified)
			rh.mu.Unlock()
			if asked != 0 != tt.asked {
				t.Errorf("DialbackDANE asked %d times, want asked: %v", asked, tt.asked)
			}
			var want []Pair
			if tt.byDANE {
				want = []Pair{{"a.test", "b.test"}}
			}
			if !slices.Equal(byDANE, want) {
				t.Errorf("settled by DANE: %v, want %v", byDANE, want)
			}
			if wantVerify := tt.answer != "" && !tt.byDANE && !(tt.tls && tt.cert == &d.a); (verified == 1) != wantVerify {
				t.Errorf("VerifyKey asked %d times, want asked: %v", verified, wantVerify)
			}
			if tt.answer != "" {
				p.c.Close()
				<-done
			}
		})
	}
}
