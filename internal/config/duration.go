package config

import (
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as a Go duration string:
// "10s", "1m30s", "10m". A bare number is refused, because its unit would be
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
	v, err := time.ParseDuration(node.Value)
	if err != nil {
		return typeError(node, fmt.Sprintf("%q is not a duration: write it like \"10s\", \"1m30s\" or \"10m\" (units: ms, s, m, h)", node.Value))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func typeError(node *yaml.Node, problem string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", node.Line, problem)}}
}
