package s2s

import (
	"testing"
)

// TestBidiReceivingRole: XEP-0288 is listed where the relay offers it and
// no TLS is still required; a request is passed on only where it was
// offered.
func TestBidiReceivingRole(t *testing.T) {
	tests := []struct {
		name       string
		offer      bool
		requireTLS bool // the receiving side requires TLS (the initiator uses none here)
		listed     bool
		asked      int
	}{
		{"offered and asked", true, false, true, 1},
		{"not offered", false, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rh := newRecvHost()
			rh.bidi = tt.offer
			c, done := pair(t, rh)
			s, err := initiate(t, c, &initHost{})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.PeerFeatures().Child(NSBidiFeature, "bidi") != nil; got != tt.listed {
				t.Fatalf("bidi listed %v, want %v", got, tt.listed)
			}
			send(t, s, "<bidi xmlns='urn:xmpp:bidi'/>")
			// An element with an answer after it: the request was handled
			// by then.
			send(t, s, "<enable xmlns='urn:xmpp:sm:3'/>")
			next(t, s)
			rh.mu.Lock()
			asked := rh.bidiAsked
			rh.mu.Unlock()
			if asked != tt.asked {
				t.Fatalf("the relay was told %d time(s), want %d", asked, tt.asked)
			}
			s.Conn.Close()
			<-done
		})
	}
}

// TestBidiAfterTLS: where TLS is required, bidi is listed on the stream
// after STARTTLS (edge's TestBidiReceiving checks it is not before).
func TestBidiAfterTLS(t *testing.T) {
	tt := newTestTLS(t)
	rh := newRecvHost()
	rh.bidi, rh.tls, rh.offerTLS, rh.requireTLS = true, tt.server, true, true
	c, _ := pair(t, rh)
	ih := &initHost{tls: tt.client, useTLS: true, requireTLS: true}
	s, err := initiate(t, c, ih)
	if err != nil {
		t.Fatal(err)
	}
	if s.PeerFeatures().Child(NSBidiFeature, "bidi") == nil {
		t.Fatal("bidi not listed after TLS")
	}
}
