package stanza

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

func TestType(t *testing.T) {
	for c, want := range map[Condition]ErrorType{
		RemoteServerNotFound: Cancel, RemoteServerTimeout: Wait, ResourceConstraint: Wait,
		ServiceUnavailable: Cancel, InternalServerError: Cancel, PolicyViolation: Modify,
		JIDMalformed: Modify, Forbidden: Cancel,
	} {
		if got := c.Type(); got != want {
			t.Errorf("%s.Type() = %s, want %s", c, got, want)
		}
	}
}

func TestDefined(t *testing.T) {
	if !Defined("policy-violation") || !Defined("undefined-condition") {
		t.Error("defined conditions not recognised")
	}
	for _, s := range []string{"", "remote-connection-failed", "x'/><evil", "Policy-Violation"} {
		if Defined(s) {
			t.Errorf("Defined(%q) = true", s)
		}
	}
}

func TestAnswerable(t *testing.T) {
	for _, tt := range []struct {
		kind, typ string
		want      bool
	}{
		{"message", "", true}, {"message", "error", false}, {"iq", "get", true},
		{"iq", "result", false}, {"presence", "", true}, {"presence", "subscribe", true},
		{"presence", "unavailable", false}, {"presence", "error", false},
	} {
		if got := Answerable(tt.kind, tt.typ); got != tt.want {
			t.Errorf("Answerable(%s, %s) = %v", tt.kind, tt.typ, got)
		}
	}
}

func TestAppendError(t *testing.T) {
	got := string(AppendError(nil, "message", "b.test", "a@a.test/r", "i'1", PolicyViolation, "no <way>"))
	want := "<message from='b.test' to='a@a.test/r' type='error' id='i&apos;1'><error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no &lt;way&gt;</text></error></message>"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func FuzzAppendError(f *testing.F) {
	f.Add("message", "a.test", "b.test", "id", "text")
	f.Fuzz(func(t *testing.T, kind, from, to, id, text string) {
		if kind != "message" && kind != "iq" && kind != "presence" {
			return
		}
		for _, s := range []string{from, to, id, text} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r >= 0xFFFD && r <= 0xFFFF }) {
				return // not XML characters: the escaper replaces them
			}
		}
		b := AppendError(nil, kind, from, to, id, RemoteServerTimeout, text)
		n, err := xmlstream.ParseNode(b, map[string]string{"": xmlstream.NSServer})
		if err != nil {
			return // from/to/text not valid XML characters
		}
		if n.Attr("from") != from || n.Attr("to") != to || n.Attr("id") != id || n.Attr("type") != "error" {
			t.Fatalf("attributes changed: %q", b)
		}
	})
}
