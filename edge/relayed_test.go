package edge

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// TestForwardBuffersKeepEachStanza: stanzas forwarded from reused buffers
// (forwardBuffers) reach the partner each with its own bytes: 3,000
// messages of sizes from 0 to 20 KiB (so that buffers of every size are
// taken back, reused and, past maxPooledForward, dropped), sent in one
// burst on one stream, so that they are queued and written in batches,
// with now and then one the policy refuses (bounced: its buffer is not
// taken back). Each message the sink reads must carry the body and the
// addresses its id was sent with.
func TestForwardBuffersKeepEachStanza(t *testing.T) {
	const n = 3000
	body := func(i int) string {
		size := (i * 7919) % 20000
		if i%10 == 0 {
			size = 0
		}
		return fmt.Sprintf("#%d#%s", i, strings.Repeat(string(rune('a'+i%26)), size))
	}
	r := newRelayEnv(t, "async")
	var mu sync.Mutex
	got := map[string]string{} // id → what was wrong with it, or ""
	all := make(chan struct{})
	check := func(el *xmlstream.Element) {
		if !strings.HasPrefix(el.ID, "buf") {
			return
		}
		var i int
		fmt.Sscanf(el.ID, "buf%d", &i)
		want := "<body>" + body(i) + "</body>"
		why := ""
		switch raw := string(el.Raw); {
		case !strings.Contains(raw, want):
			why = fmt.Sprintf("body not its own: %.80q…", raw[strings.Index(raw, "<body>"):])
		case el.From != "alice@company.test/desk" || el.To != "bob@partner.test":
			why = fmt.Sprintf("addressed from %q to %q", el.From, el.To)
		}
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[el.ID]; dup {
			why = "received twice"
		}
		got[el.ID] = why
		if len(got) == n-n/100 {
			close(all)
		}
	}
	r.sink.mu.Lock()
	r.sink.got = check
	r.sink.mu.Unlock()
	r.sink.expect(-1) // never: the test counts

	var b strings.Builder
	for i := range n {
		text := body(i)
		if i%100 == 99 {
			text = "CONFIDENTIAL " + text // refused by the shipped rules' keywords
		}
		fmt.Fprintf(&b, "<message from='alice@company.test/desk' to='bob@partner.test' id='buf%d' type='chat'><body>%s</body></message>", i, text)
	}
	go r.p.send(b.String())

	timedOut := false
	select {
	case <-all:
	case <-time.After(time.Minute):
		timedOut = true
	}
	mu.Lock()
	defer mu.Unlock()
	bad := 0
	for id, why := range got {
		if why != "" {
			if bad++; bad <= 5 {
				t.Errorf("%s: %s", id, why)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d messages were not forwarded as sent", bad, len(got))
	}
	if timedOut {
		t.Errorf("the sink received %d of the %d allowed messages", len(got), n-n/100)
	}
}
