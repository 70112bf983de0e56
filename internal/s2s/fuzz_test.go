package s2s

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

func FuzzErrorCondition(f *testing.F) {
	f.Add([]byte("<db:result from='b.test' to='a.test' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"))
	f.Add([]byte("<db:result type='error'/>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if ErrorCondition(raw, map[string]string{"": xmlstream.NSServer, "db": xmlstream.NSDialback}) == "" {
			t.Fatal("empty condition")
		}
	})
}

// FuzzReceive feeds a receiving stream arbitrary elements after a valid
// header: no panic, and nothing is authenticated when the authoritative
// server says every key is invalid and no certificate is valid.
func FuzzReceive(f *testing.F) {
	for _, s := range []string{
		"<db:result from='a.test' to='b.test'>k</db:result>",
		"<db:result from='a.test' to='b.test' type='valid'/>",
		"<db:verify from='a.test' to='b.test' id='x'>k</db:verify>",
		"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>",
		"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
		"<message from='a.test' to='b.test'/>",
		"</stream:stream>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rh := newRecvHost()
		rh.keyValid = false
		a, b := net.Pipe()
		defer a.Close()
		go io.Copy(io.Discard, a)
		go func() {
			a.Write([]byte(rawHeader))
			a.Write(body)
			a.Close()
		}()
		rc := stream.NewConn(b, stream.Options{Limits: xmlstream.Limits{MaxElementSize: 4096, MaxDepth: 8}})
		Receive(context.Background(), rc, rh)
		rh.wg.Wait()
		rc.Abort()
		if len(rh.pairs) != 0 {
			t.Fatalf("authenticated %v", rh.pairs)
		}
	})
}
