package policy

import "testing"

// BenchmarkTrivialMiss is OPA's floor: one uncached evaluation of a
// constant and of a one-expression policy, through the engine.
func BenchmarkTrivialMiss(b *testing.B) {
	for _, tc := range []struct{ name, pol string }{
		{"const", "package xmppedge.session\ndecision := {\"allow\": true}\n"},
		{"in-set", headerPolicy},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, _ := newTestEngine(b, map[string]string{"p.rego": tc.pol}, Config{CacheSize: -1})
			ctx := testContext(b)
			in := &SessionInput{RemoteDomain: "partner.test", Direction: "inbound"}
			measure(b, func(int) { e.DecideSession(ctx, in) })
		})
	}
}

var sink uint64

// BenchmarkMachineNoise: a fixed ~3µs CPU loop, no allocation: its p99
// shows the machine's own jitter, the floor under every p99 here.
func BenchmarkMachineNoise(b *testing.B) {
	measure(b, func(int) {
		x := uint64(1)
		for i := 0; i < 3000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		sink += x
	})
}
