package certs

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

// tlsaServer is a DNS server for TLSA records that sets AD on the zones
// marked authenticated, and only when the query has the DO bit.
type tlsaServer struct {
	srv    *dns.Server
	addr   string
	mu     sync.Mutex
	zones  map[string]tlsaZone // FQDN, lowercase
	sawDO  bool
	sawAsk bool // AD asked for
}

type tlsaZone struct {
	records []dns.RR
	ad      bool
	rcode   int
}

func startTLSAServer(t *testing.T) *tlsaServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsaServer{addr: pc.LocalAddr().String(), zones: map[string]tlsaZone{}}
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(started) }}
	go s.srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("DNS server did not start")
	}
	t.Cleanup(func() { s.srv.Shutdown() })
	return s
}

func (s *tlsaServer) set(name string, z tlsaZone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[strings.ToLower(dns.Fqdn(name))] = z
}

func (s *tlsaServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	s.mu.Lock()
	do := req.IsEdns0() != nil && req.IsEdns0().Do()
	s.sawDO = s.sawDO || do
	s.sawAsk = s.sawAsk || req.AuthenticatedData
	z, ok := s.zones[strings.ToLower(req.Question[0].Name)]
	s.mu.Unlock()
	switch {
	case !ok:
		resp.Rcode = dns.RcodeNameError
	case z.rcode != 0:
		resp.Rcode = z.rcode
	default:
		resp.Answer = z.records
		resp.AuthenticatedData = z.ad && do
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(4096, opt.Do())
	}
	_ = w.WriteMsg(resp)
}

func tlsaRR(name string, usage, selector, matching uint8, cert *x509.Certificate) *dns.TLSA {
	data := cert.Raw
	if selector == 1 {
		data = cert.RawSubjectPublicKeyInfo
	}
	switch matching {
	case 1:
		h := sha256.Sum256(data)
		data = h[:]
	case 2:
		h := sha512.Sum512(data)
		data = h[:]
	}
	return &dns.TLSA{
		Hdr:   dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 60},
		Usage: usage, Selector: selector, MatchingType: matching, Certificate: hex.EncodeToString(data),
	}
}

func TestVerifyDANE(t *testing.T) {
	ca := newTestCA(t, "DANE Test CA")
	other := newTestCA(t, "Other CA")
	leaf, _, _ := issueLeaf(t, ca, certstest.LeafOptions{DNSNames: []string{"xmpp.partner.test"}, SRVNames: []string{"partner.test"}})
	wrongName, _, _ := issueLeaf(t, ca, certstest.LeafOptions{DNSNames: []string{"elsewhere.test"}})
	expired, _, _ := issueLeaf(t, ca, certstest.LeafOptions{DNSNames: []string{"xmpp.partner.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	stranger, _, _ := issueLeaf(t, other, certstest.LeafOptions{DNSNames: []string{"xmpp.partner.test"}})
	chain := []*x509.Certificate{leaf, ca.Cert}

	dnsSrv := startTLSAServer(t)
	v, err := NewVerifier(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	const name = "_5269._tcp.xmpp.partner.test"
	tests := []struct {
		name       string
		zone       *tlsaZone // nil: no records (NXDOMAIN)
		chain      []*x509.Certificate
		wantStatus DANEStatus
		wantMethod string
		wantReason string
	}{
		{"DANE-EE SPKI SHA-256", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, leaf)}, ad: true}, chain, DANEMatched, MethodDANEEE, ""},
		{"DANE-EE full certificate", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 0, 0, leaf)}, ad: true}, chain, DANEMatched, MethodDANEEE, ""},
		{"DANE-EE certificate SHA-512", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 0, 2, leaf)}, ad: true}, chain, DANEMatched, MethodDANEEE, ""},
		{"DANE-EE ignores dates", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, expired)}, ad: true}, []*x509.Certificate{expired}, DANEMatched, MethodDANEEE, ""},
		{"DANE-EE second record matches", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, stranger), tlsaRR(name, 3, 1, 1, leaf)}, ad: true}, chain, DANEMatched, MethodDANEEE, ""},
		{"DANE-TA SPKI SHA-256 of the issuer", &tlsaZone{records: []dns.RR{tlsaRR(name, 2, 1, 1, ca.Cert)}, ad: true}, chain, DANEMatched, MethodDANETA, ""},
		{"DANE-TA, leaf for another name", &tlsaZone{records: []dns.RR{tlsaRR(name, 2, 0, 1, ca.Cert)}, ad: true}, []*x509.Certificate{wrongName, ca.Cert}, DANEFailed, "", "not valid for partner.test"},
		{"DANE-TA, anchor not in the chain", &tlsaZone{records: []dns.RR{tlsaRR(name, 2, 0, 1, other.Cert)}, ad: true}, chain, DANEFailed, "", "matches none of the 1 TLSA records"},
		{"DANE-EE mismatch is a failure", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, stranger)}, ad: true}, chain, DANEFailed, "", "matches none of the 1 TLSA records"},
		{"no certificate", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, leaf)}, ad: true}, nil, DANEFailed, "", "no certificate presented"},
		{"not authenticated", &tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, leaf)}}, chain, DANENotApplicable, "", "no AD bit"},
		{"no TLSA records", nil, chain, DANENotApplicable, "", "no TLSA records"},
		{"only PKIX-EE records (unusable)", &tlsaZone{records: []dns.RR{tlsaRR(name, 1, 1, 1, leaf)}, ad: true}, chain, DANENotApplicable, "", "is usable"},
		{"SERVFAIL", &tlsaZone{rcode: dns.RcodeServerFailure}, chain, DANELookupFailed, "", "SERVFAIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.zone != nil {
				dnsSrv.set(name, *tt.zone)
			} else {
				dnsSrv.set(name, tlsaZone{})
				dnsSrv.mu.Lock()
				delete(dnsSrv.zones, strings.ToLower(dns.Fqdn(name)))
				dnsSrv.mu.Unlock()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got := v.VerifyDANEWith(ctx, tt.chain, DANEQuery{Host: "xmpp.partner.test", Port: 5269, Domain: "partner.test"}, DNSSECResolver{Addr: dnsSrv.addr})
			if got.Status != tt.wantStatus || got.Verdict.Method != tt.wantMethod || got.Verdict.Valid != (tt.wantStatus == DANEMatched) {
				t.Fatalf("status %v method %q verdict %+v, want %v %q", got.Status, got.Verdict.Method, got.Verdict, tt.wantStatus, tt.wantMethod)
			}
			if !strings.Contains(got.Verdict.Reason, tt.wantReason) {
				t.Errorf("reason %q does not say %q", got.Verdict.Reason, tt.wantReason)
			}
		})
	}
	dnsSrv.mu.Lock()
	sawDO, sawAsk := dnsSrv.sawDO, dnsSrv.sawAsk
	dnsSrv.mu.Unlock()
	if !sawDO || !sawAsk {
		t.Errorf("queries had DO %v, AD %v; want both", sawDO, sawAsk)
	}

	// VerifyDANE: the resolver address form, and no resolver at all.
	dnsSrv.set(name, tlsaZone{records: []dns.RR{tlsaRR(name, 3, 1, 1, leaf)}, ad: true})
	if got := v.VerifyDANE(context.Background(), chain, "xmpp.partner.test", 5269, dnsSrv.addr); got.Status != DANEMatched {
		t.Errorf("VerifyDANE = %+v", got)
	}
	if got := v.VerifyDANE(context.Background(), chain, "xmpp.partner.test", 5270, dnsSrv.addr); got.Status != DANENotApplicable {
		t.Errorf("VerifyDANE on port 5270 (no records) = %+v", got)
	}
	if got := v.VerifyDANE(context.Background(), chain, "xmpp.partner.test", 5269, ""); got.Status != DANENotApplicable {
		t.Errorf("VerifyDANE without resolver = %+v", got)
	}
}
