package dialback

import (
	"testing"

	"github.com/xmppedge/xmppedge/internal/stanza"
)

func TestElements(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{string(Request(Result, "a.test", "b.test", "", "k<")), "<db:result from='a.test' to='b.test'>k&lt;</db:result>"},
		{string(Request(Verify, "b.test", "a.test", "S'1", "k")), "<db:verify from='b.test' to='a.test' id='S&apos;1'>k</db:verify>"},
		{string(Answer(Result, "b.test", "a.test", "", Valid)), "<db:result from='b.test' to='a.test' type='valid'/>"},
		{string(Answer(Verify, "a.test", "b.test", "S1", Invalid)), "<db:verify from='a.test' to='b.test' id='S1' type='invalid'/>"},
		{string(ErrorAnswer(Result, "b.test", "a.test", "", stanza.Cancel, stanza.ItemNotFound)),
			"<db:result from='b.test' to='a.test' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"},
	} {
		if tt.got != tt.want {
			t.Errorf("got  %s\nwant %s", tt.got, tt.want)
		}
	}
}
