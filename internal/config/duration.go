package config

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as a Go duration string:
// "10s", "1m30s", "10m", or with whole days first: "2555d", "1d12h". A bare number is refused, because its unit would be
// a guess.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does ("10m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a duration string. Problems are returned as
// *yaml.TypeError so that decoding goes on and every problem of the file is
// reported together.
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return typeError(node, "must be a duration with a unit, like \"10s\" or \"10m\"")
	}
	if _, err := strconv.ParseFloat(node.Value, 64); err == nil {
		return typeError(node, fmt.Sprintf("%s has no unit: write a duration with a unit, like \"%ss\" or \"%sm\"", node.Value, node.Value, node.Value))
	}
	v, err := parseDuration(node.Value)
	if err != nil {
		return typeError(node, fmt.Sprintf("%q is not a duration: write it like \"10s\", \"1m30s\", \"10m\" or \"2555d\" (units: ms, s, m, h, d)", node.Value))
	}
	*d = Duration(v)
	return nil
}

// parseDuration is time.ParseDuration that also takes whole days first:
// "2555d", "1d12h" (a day is 24h).
func parseDuration(s string) (time.Duration, error) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits == len(s) || s[digits] != 'd' {
		return time.ParseDuration(s)
	}
	const day = 24 * time.Hour
	days, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || days > int64(math.MaxInt64/day) {
		return 0, fmt.Errorf("%q: too many days", s)
	}
	d := time.Duration(days) * day
	if rest := s[digits+1:]; rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || d > math.MaxInt64-r {
			return 0, fmt.Errorf("%q: not a duration after the days", s)
		}
		d += r
	}
	return d, nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func typeError(node *yaml.Node, problem string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", node.Line, problem)}}
}
