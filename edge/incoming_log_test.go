package edge

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// An incoming session's log records name the listener it arrived on
// (local_addr), so that a stream that came by direct TLS can be told from
// one that came by STARTTLS.
func TestIncomingSessionLogsLocalAddr(t *testing.T) {
	log := &syncBuffer{}
	env := newTestEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, log), &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	p := dialPeer(t, env.outside)
	p.open("partner.test", "company.test")
	want := "local_addr=" + env.outside
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, l := range strings.Split(log.String(), "\n") {
			if strings.Contains(l, `msg="connection accepted"`) {
				if !strings.Contains(l, want) || !strings.Contains(l, "leg=outside") {
					t.Fatalf("connection accepted: %q, want %s", l, want)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted record in:\n%s", log.String())
		}
	}
}
