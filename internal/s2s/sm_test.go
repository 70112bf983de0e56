package s2s

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// TestAcks: <a h=/> answers an <r/> only once every stanza received
// before it is handled, whatever the order they are handled in; a ticket
// done twice, or one never issued, counts nothing.
func TestAcks(t *testing.T) {
	type op struct {
		recv int    // stanzas received
		r    bool   // an <r/> arrives
		done []int  // tickets done, in this order
		want string // the h of the <a/> sent by this op, "" none
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"r with nothing received", []op{{r: true, want: "0"}}},
		{"handled in order, then r", []op{{recv: 2}, {done: []int{1, 2}}, {r: true, want: "2"}}},
		{"r waits for the tail", []op{{recv: 3}, {done: []int{1}}, {r: true}, {done: []int{2}}, {done: []int{3}, want: "3"}}},
		{"out of order", []op{{recv: 3}, {r: true}, {done: []int{3}}, {done: []int{2}}, {done: []int{1}, want: "3"}}},
		{"counts only what came before the r", []op{{recv: 1}, {r: true}, {recv: 1}, {done: []int{1}, want: "1"}, {done: []int{2}}}},
		{"done twice counts once", []op{{recv: 2}, {done: []int{1, 1}}, {r: true}, {done: []int{2}, want: "2"}}},
		{"a ticket never issued counts nothing", []op{{recv: 1}, {done: []int{7}}, {r: true}, {done: []int{1}, want: "1"}}},
		{"no r, no a", []op{{recv: 2}, {done: []int{2, 1}}}},
		// A burst: an <a/> unasked every ackEvery handled stanzas.
		{"unasked every 32", []op{{recv: 40}, {done: seq(1, 31)}, {done: []int{32}, want: "32"}, {done: seq(33, 40)}, {r: true, want: "40"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent []string
			a := &Acks{send: func(b []byte) error { sent = append(sent, string(b)); return nil }, early: map[uint64]struct{}{}}
			var tickets []Ticket
			for i, o := range tt.ops {
				sent = sent[:0]
				for j := 0; j < o.recv; j++ {
					tickets = append(tickets, a.ticket())
				}
				if o.r {
					a.request()
				}
				for _, n := range o.done {
					if n <= len(tickets) {
						tickets[n-1].Done()
					} else {
						Ticket{a: a, n: uint64(n)}.Done()
					}
				}
				var want []string
				if o.want != "" {
					want = []string{"<a xmlns='urn:xmpp:sm:3' h='" + o.want + "'/>"}
				}
				if strings.Join(sent, "") != strings.Join(want, "") {
					t.Fatalf("op %d: sent %q, want %q", i, sent, want)
				}
			}
		})
	}
}

// seq is from, from+1, ..., to.
func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestAckElementWraps(t *testing.T) {
	if got := string(ackElement(1<<32 + 5)); got != "<a xmlns='urn:xmpp:sm:3' h='5'/>" {
		t.Fatalf("got %s", got)
	}
}

func TestZeroTicket(t *testing.T) {
	Ticket{}.Done() // stream management off: nothing to count, no panic
	var a *Acks
	if a.ticket() != (Ticket{}) {
		t.Fatal("a nil Acks issued a ticket")
	}
}

// smStream authenticates a.test → b.test by dialback with stream
// management offered, and enables it.
func smStream(t *testing.T, rh *recvHost) (*Stream, <-chan error) {
	t.Helper()
	rh.sm = true
	c, done := pair(t, rh)
	s, err := initiate(t, c, &initHost{})
	if err != nil {
		t.Fatal(err)
	}
	if s.PeerFeatures().Child(NSStreamManagement, "sm") == nil {
		t.Fatal("stream management not offered")
	}
	send(t, s, "<enable xmlns='urn:xmpp:sm:3'/>")
	if el := next(t, s); el.Local != "enabled" || el.Space != NSStreamManagement {
		t.Fatalf("answer to <enable/>: %s", el.Raw)
	}
	return s, done
}

func send(t *testing.T, s *Stream, x string) {
	t.Helper()
	if err := s.Conn.SendWait(5*time.Second, []byte(x)); err != nil {
		t.Fatal(err)
	}
}

func next(t *testing.T, s *Stream) xmlstream.Element {
	t.Helper()
	el, err := s.Conn.Next(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return el
}

// TestStreamManagementReceiving: the peer's <r/> is answered once the
// relay has handled every stanza sent before it — not before.
func TestStreamManagementReceiving(t *testing.T) {
	rh := newRecvHost()
	rh.hold = true
	s, done := smStream(t, rh)
	for _, id := range []string{"1", "2", "3"} {
		send(t, s, "<message from='a.test' to='b.test' id='"+id+"'/>")
	}
	send(t, s, "<r xmlns='urn:xmpp:sm:3'/>")
	// The relay handles 1 and 3; 2 is still in flight.
	var tickets []Ticket
	waitFor(t, func() bool {
		rh.mu.Lock()
		defer rh.mu.Unlock()
		tickets = append(tickets[:0], rh.tickets...)
		return len(tickets) == 3
	})
	tickets[0].Done()
	tickets[2].Done()
	// A second <enable/> is refused: its answer comes before any <a/>,
	// since nothing may be acknowledged yet.
	send(t, s, "<enable xmlns='urn:xmpp:sm:3'/>")
	if el := next(t, s); el.Local != "failed" || !strings.Contains(string(el.Raw), "unexpected-request") {
		t.Fatalf("second <enable/> answered with %s, want <failed/> (and no <a/> before 2 is handled)", el.Raw)
	}
	tickets[1].Done()
	if el := next(t, s); el.Local != "a" || !strings.Contains(string(el.Raw), "h='3'") {
		t.Fatalf("after every stanza is handled: %s, want <a h='3'/>", el.Raw)
	}
	s.Conn.Close()
	if err := <-done; !errors.Is(err, xmlstream.ErrStreamEnd) {
		t.Fatalf("Receive ended with %v", err)
	}
}

// TestStreamManagementHostile: what a peer may not send.
func TestStreamManagementHostile(t *testing.T) {
	tests := []struct {
		name    string
		enable  bool   // enable first
		sm      bool   // the relay offers it
		element string // then this
		answer  string // element answered (no stream error)
		cond    stream.Condition
	}{
		{"r before enable", false, true, "<r xmlns='urn:xmpp:sm:3'/>", "", stream.UnsupportedStanzaType},
		{"a never asked for", true, true, "<a xmlns='urn:xmpp:sm:3' h='5'/>", "", stream.UndefinedCondition},
		{"a without h", true, true, "<a xmlns='urn:xmpp:sm:3'/>", "", stream.UndefinedCondition},
		{"resume", false, true, "<resume xmlns='urn:xmpp:sm:3' h='0' previd='x'/>", "item-not-found", ""},
		{"enable not offered", false, false, "<enable xmlns='urn:xmpp:sm:3'/>", "unexpected-request", ""},
		{"unknown sm element", true, true, "<enabled xmlns='urn:xmpp:sm:3'/>", "", stream.UnsupportedStanzaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rh := newRecvHost()
			var s *Stream
			var done <-chan error
			if tt.enable {
				s, done = smStream(t, rh)
			} else {
				rh.sm = tt.sm
				c, d := pair(t, rh)
				var err error
				if s, err = initiate(t, c, &initHost{}); err != nil {
					t.Fatal(err)
				}
				done = d
			}
			send(t, s, tt.element)
			if tt.answer != "" {
				if el := next(t, s); el.Local != "failed" || !strings.Contains(string(el.Raw), tt.answer) {
					t.Fatalf("answer %s, want <failed/> with %s", el.Raw, tt.answer)
				}
				s.Conn.Close()
				<-done
				return
			}
			// Read the stream error (a pipe does not buffer it).
			if el := next(t, s); !stream.IsError(&el) {
				t.Fatalf("got %s, want a stream error", el.Raw)
			}
			expectCondition(t, <-done, tt.cond)
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
