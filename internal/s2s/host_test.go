package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

const secret = "s3cret"

// testTLS holds certificates for a.test (initiating) and b.test
// (receiving), issued by one CA that both trust.
type testTLS struct {
	server, client *tls.Config
}

func newTestTLS(t *testing.T) testTLS {
	t.Helper()
	ca, err := certstest.NewCA("s2s test CA")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	pair := func(name string) tls.Certificate {
		c, k, err := ca.Issue(certstest.LeafOptions{CommonName: name, DNSNames: []string{name}})
		if err != nil {
			t.Fatal(err)
		}
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return testTLS{
		server: &tls.Config{Certificates: []tls.Certificate{pair("b.test")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		client: &tls.Config{Certificates: []tls.Certificate{pair("a.test")}, RootCAs: pool, ServerName: "b.test"},
	}
}

// recvHost is a Receiver for b.test: a.test may originate.
type recvHost struct {
	tls        *tls.Config
	offerTLS   bool
	requireTLS bool
	certValid  bool
	keyValid   bool
	verifyErr  error
	denied     bool
	sm         bool // offer stream management
	hold       bool // keep stanzas' tickets instead of handling them at once
	bidi       bool // offer XEP-0288
	bidiAsked  int
	// certFor is the relay's XEP-0344 verdict (DialbackCertificate);
	// nil: never settled by the certificate.
	certFor func(s *Stream, p Pair) bool
	// daneFor is the relay's DANE verdict (DialbackDANE); nil: never.
	daneFor func(s *Stream, p Pair) bool

	mu       sync.Mutex
	tickets  []Ticket
	pairs    map[Pair]string
	stanzas  []string
	answered []string
	verified []Pair // the pairs VerifyKey was asked about
	byCert   []Pair // the pairs authorised as settled by the certificate
	byDANE   []Pair // the pairs verified as settled by DANE
	askDANE  []Pair // the pairs DialbackDANE was asked about
	wg       sync.WaitGroup
}

func newRecvHost() *recvHost { return &recvHost{pairs: make(map[Pair]string), keyValid: true} }

func (h *recvHost) Accept(s *Stream) error {
	if s.To() != "b.test" {
		return &stream.Error{Condition: stream.HostUnknown}
	}
	return nil
}
func (h *recvHost) RequireTLS() bool                    { return h.requireTLS }
func (h *recvHost) HeaderTimeout() time.Duration        { return 5 * time.Second }
func (h *recvHost) ReadTimeout() (time.Duration, error) { return 5 * time.Second, nil }
func (h *recvHost) Stanza(el *xmlstream.Element, t Ticket) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stanzas = append(h.stanzas, string(el.Raw))
	if h.hold {
		h.tickets = append(h.tickets, t)
	} else {
		t.Done()
	}
	return nil
}
func (h *recvHost) StreamManagement(*Stream) bool { return h.sm }
func (h *recvHost) OfferBidi(*Stream) bool        { return h.bidi }
func (h *recvHost) BidiRequested(*Stream) {
	h.mu.Lock()
	h.bidiAsked++
	h.mu.Unlock()
}
func (h *recvHost) OfferTLS(string) bool             { return h.offerTLS }
func (h *recvHost) ServerTLS(string) *tls.Config     { return h.tls }
func (h *recvHost) TLSDone(error)                    {}
func (h *recvHost) CertificateValid(*Stream) bool    { return h.certValid }
func (h *recvHost) MayOriginate(from, _ string) bool { return from == "a.test" || from == "c.test" }
func (h *recvHost) AuthenticateSASL(from, to string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pairs[Pair{from, to}] = MethodSASLExternal
	return nil
}
func (h *recvHost) Sides(orig, recv string) (bool, bool) {
	return h.MayOriginate(orig, recv), recv == "b.test"
}
func (h *recvHost) Authenticated(p Pair) (bool, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, done := h.pairs[p]
	return done, len(h.pairs) > 0
}
func (h *recvHost) AcquireVerification() bool { return true }
func (h *recvHost) ReleaseVerification()      {}
func (h *recvHost) DialbackCertificate(s *Stream, p Pair) bool {
	return h.certFor != nil && h.certFor(s, p)
}
func (h *recvHost) DialbackDANE(_ context.Context, s *Stream, p Pair) bool {
	h.mu.Lock()
	h.askDANE = append(h.askDANE, p)
	h.mu.Unlock()
	return h.daneFor != nil && h.daneFor(s, p)
}
func (h *recvHost) AuthorizeDialback(p Pair, byCertificate bool) (func(bool, bool, error), error) {
	if h.denied {
		return nil, &stream.Error{Condition: stream.PolicyViolation, Text: "denied"}
	}
	if byCertificate {
		h.mu.Lock()
		h.byCert = append(h.byCert, p)
		h.mu.Unlock()
	}
	return func(valid, byCert bool, err error) {
		if valid && err == nil {
			h.mu.Lock()
			h.pairs[p] = MethodDialback
			if byCert && !byCertificate {
				h.byDANE = append(h.byDANE, p)
			}
			h.mu.Unlock()
		}
	}, nil
}
func (h *recvHost) VerifyKey(_ context.Context, p Pair, streamID, key string) (bool, error) {
	h.mu.Lock()
	h.verified = append(h.verified, p)
	h.mu.Unlock()
	if h.verifyErr != nil {
		return false, h.verifyErr
	}
	return h.keyValid && dialback.Equal(key, dialback.Key(secret, p.To, p.From, streamID)), nil
}
func (h *recvHost) DialbackCondition(error) stanza.Condition { return stanza.RemoteServerTimeout }
func (h *recvHost) Go(f func())                              { h.wg.Add(1); go func() { defer h.wg.Done(); f() }() }
func (h *recvHost) IssuesKeysFor(orig string) bool           { return orig == "b.test" }
func (h *recvHost) DialbackSecret() string                   { return secret }
func (h *recvHost) DialbackAnswered(_, _, typ string) {
	h.mu.Lock()
	h.answered = append(h.answered, typ)
	h.mu.Unlock()
}

// initHost is an Initiator for a.test.
type initHost struct {
	tls        *tls.Config
	useTLS     bool
	requireTLS bool
	clientCert bool
	noFallback bool // refuse dialback after a SASL EXTERNAL failure
	secured    int
	results    []string
	refused    []string // the conditions of SASL EXTERNAL failures
}

func (h *initHost) UseTLS() (bool, bool)                 { return h.useTLS, h.requireTLS }
func (h *initHost) ClientTLS(string, string) *tls.Config { return h.tls }
func (h *initHost) TLSDone(_ context.Context, _ *Stream, err error) {
	if err == nil {
		h.secured++
	}
}
func (h *initHost) HaveClientCert(string) bool { return h.clientCert }
func (h *initHost) SASLRefused(cond string) bool {
	h.refused = append(h.refused, cond)
	return !h.noFallback
}
func (h *initHost) DialbackSecret() string         { return secret }
func (h *initHost) DialbackTimeout() time.Duration { return 5 * time.Second }
func (h *initHost) DialbackResult(typ string)      { h.results = append(h.results, typ) }

// pair runs Receive with rh on one end of a pipe; the other end is
// returned for the initiating side.
func pair(t *testing.T, rh *recvHost) (net.Conn, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	rc := stream.NewConn(b, stream.Options{})
	go func() {
		err := Receive(context.Background(), rc, rh)
		if se := stream.ToError(err); se != nil {
			rc.Fail(se, "b.test", "a.test")
		}
		rh.wg.Wait()
		rc.Abort()
		done <- err
	}()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, done
}

func expectCondition(t *testing.T, err error, cond stream.Condition) {
	t.Helper()
	var se *stream.Error
	if !errors.As(err, &se) || se.Condition != cond {
		t.Fatalf("err = %v, want the stream error %s", err, cond)
	}
}

func contains(t *testing.T, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("%q lacks %q", got, want)
	}
}
