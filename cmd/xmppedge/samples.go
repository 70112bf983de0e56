package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/xmppedge/xmppedge/policy"
)

// Keeping the policy's warm-up samples across restarts
// (policy.warm_samples; policy.Config.SampleFile): the engine reads them
// at start; run saves them after each reload, every samplesEvery (a crash
// loses at most that much) and at shutdown.

// samplesEvery is how often the samples are saved while the gateway runs.
const samplesEvery = 10 * time.Minute

// saveSamples saves the engine's samples, if it keeps any, and logs a
// failure: the samples only make the next start faster, so a failure
// stops nothing.
func saveSamples(eng *policy.Engine, log *slog.Logger) {
	if err := eng.SaveSamples(); err != nil {
		log.Warn("policy warm-up samples not saved; the next start begins with cold caches", "err", err)
	}
}

// saveSamplesEvery saves the samples every interval until ctx ends.
func saveSamplesEvery(ctx context.Context, eng *policy.Engine, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			saveSamples(eng, log)
		}
	}
}
