package loadgen

import (
	"math"
	"slices"
	"time"
)

// Latency summarises a set of send-to-receive times, in milliseconds (as
// the JSON summary carries them).
type Latency struct {
	Count int     `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize sorts d in place and summarises it; all zero when d is empty.
func Summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	var sum float64
	for _, v := range d {
		sum += float64(v)
	}
	return Latency{
		Count: len(d),
		Min:   ms(d[0]),
		Mean:  ms(time.Duration(sum / float64(len(d)))),
		P50:   ms(Percentile(d, 50)),
		P90:   ms(Percentile(d, 90)),
		P99:   ms(Percentile(d, 99)),
		Max:   ms(d[len(d)-1]),
	}
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest value such that at least p % of the values are
// less than or equal to it. It is 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms is d in milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
