package xmlstream

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const starttls = `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`

func TestStartTLSBuffered(t *testing.T) {
	tests := []struct {
		name         string
		src          func(string) io.Reader
		after        string // bytes sent in the same read as <starttls/>
		wantBuffered int
	}{
		{"injection in the same read", func(s string) io.Reader { return strings.NewReader(s) }, "<message to='victim'/>", len("<message to='victim'/>")},
		{"whitespace in the same read", func(s string) io.Reader { return strings.NewReader(s) }, " ", 1},
		{"clean", func(s string) io.Reader { return strings.NewReader(s) }, "", 0},
		{"one byte reads never read ahead", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }, "<message to='victim'/>", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.src(prosodyHeader+starttls+tt.after), Limits{})
			if _, err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			el, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if el.Space != NSTLS || el.Local != "starttls" || string(el.Raw) != starttls {
				t.Fatalf("got {%s}%s %q", el.Space, el.Local, el.Raw)
			}
			if got := r.Buffered(); got != tt.wantBuffered {
				t.Fatalf("Buffered() = %d, want %d", got, tt.wantBuffered)
			}
		})
	}
}

func TestResetForTLS(t *testing.T) {
	r := NewReader(strings.NewReader(prosodyHeader+starttls), Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("Buffered() = %d", r.Buffered())
	}
	// The new source is the TLS connection; its header declares no db
	// prefix, so a db: element must now be rejected.
	tlsHeader := `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='partner.test' from='company.test' version='1.0'>`
	r.Reset(strings.NewReader(tlsHeader + `<message id='after-tls'/><db:result/>`))
	if _, err := r.Next(); err == nil {
		t.Fatal("Next after Reset without ReadHeader succeeded")
	}
	h, err := r.ReadHeader()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Namespaces["db"]; ok {
		t.Fatal("db namespace survived Reset")
	}
	el, err := r.Next()
	if err != nil || el.ID != "after-tls" {
		t.Fatalf("Next = %+v, %v", el, err)
	}
	_, err = r.Next()
	checkErr(t, err, CondNotWellFormed)
}

func TestRestartAfterSASLKeepsBuffer(t *testing.T) {
	success := `<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`
	newHeader := `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='partner.test' from='company.test' version='1.0'>`
	in := prosodyHeader + success + newHeader + `<message id='m'/></stream:stream>`
	for _, oneByte := range []bool{false, true} {
		var src io.Reader = strings.NewReader(in)
		if oneByte {
			src = iotest.OneByteReader(src)
		}
		r := NewReader(src, Limits{})
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		el, err := r.Next()
		if err != nil || el.Space != NSSASL || el.Local != "success" {
			t.Fatalf("Next = %+v, %v", el, err)
		}
		if !oneByte && r.Buffered() == 0 {
			t.Fatal("expected the new header to be buffered already")
		}
		r.Restart()
		h, err := r.ReadHeader()
		if err != nil {
			t.Fatal(err)
		}
		if h.Space != NSStream || h.ID != "" || h.From != "company.test" {
			t.Fatalf("header after restart: %+v", h)
		}
		el, err = r.Next()
		if err != nil || el.ID != "m" {
			t.Fatalf("Next = %+v, %v", el, err)
		}
		if _, err := r.Next(); err != ErrStreamEnd {
			t.Fatalf("err = %v, want ErrStreamEnd", err)
		}
	}
}

func TestRestartForgetsStreamEnd(t *testing.T) {
	in := prosodyHeader + `</stream:stream>` + prosodyHeader + `<presence/>`
	r := NewReader(strings.NewReader(in), Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != ErrStreamEnd {
		t.Fatalf("err = %v", err)
	}
	r.Restart()
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if el, err := r.Next(); err != nil || el.Local != "presence" {
		t.Fatalf("Next = %+v, %v", el, err)
	}
}
