package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/policy"
)

// stringList is a repeatable string flag.
type stringList struct {
	values []string
	set    bool
}

func (s *stringList) String() string { return strings.Join(s.values, ",") }

func (s *stringList) Set(v string) error {
	if !s.set { // the first -data replaces the default
		s.values, s.set = nil, true
	}
	s.values = append(s.values, v)
	return nil
}

func policyUsage(w io.Writer) {
	fmt.Fprint(w, `usage:
  xmppedge policy test [-rules DIR] [-data FILE]...
      run the rule tests (*_test.rego) like "opa test -v", with the xmppedge built-ins
  xmppedge policy eval [-rules DIR] [-data FILE]... -input FILE [-kind session|stanza]
      print the decision for a sample input (JSON in the documented input shape)
  xmppedge policy replay [-rules DIR] [-data FILE]... [-examples 3] [-format text|json]
                         [-hmac-key-file F] [-verify=false] [-series=false] AUDIT_FILE...
      re-decide the recorded sessions and stanzas with the candidate policy and
      report, per partner and direction, what would be newly denied or allowed;
      exit 0 nothing would change, 1 something would, 2 usage or unreadable input
      (a broken chain too, unless -verify=false). One current AUDIT_FILE stands
      for its rotated series. See docs/replay.md.
defaults: -rules rules -data rules/partners.yaml
`)
}

// policyCommand implements "xmppedge policy test|eval|replay". It returns
// the process exit code: 0 success, 1 failed tests or a policy error, 2
// usage (replay: see policyReplay).
func policyCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		policyUsage(stderr)
		return 2
	}
	sub := args[0]
	switch sub {
	case "test", "eval":
	case "replay":
		return policyReplay(context.Background(), args[1:], stdout, stderr)
	case "help", "-h", "--help":
		policyUsage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "xmppedge policy: unknown command %q\n", sub)
		policyUsage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("policy "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	rules := fs.String("rules", "rules", "directory of .rego files")
	data := &stringList{values: []string{"rules/partners.yaml"}}
	fs.Var(data, "data", "data file (JSON or YAML) merged under data.xmppedge; repeatable")
	var input, kind *string
	if sub == "eval" {
		input = fs.String("input", "", "input document (JSON)")
		kind = fs.String("kind", "", "decision: session or stanza (default: guessed from the input: a \"kind\" field means stanza)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xmppedge policy %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if sub == "test" {
		return policyTest(ctx, *rules, data.values, stdout, stderr)
	}
	if *input == "" {
		fmt.Fprintln(stderr, "xmppedge policy eval: -input FILE is required")
		return 2
	}
	return policyEval(ctx, *rules, data.values, *input, *kind, stdout, stderr)
}

func policyTest(ctx context.Context, rules string, data []string, stdout, stderr io.Writer) int {
	results, err := policy.RunRegoTests(ctx, rules, data)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy test: %v\n", err)
		return 1
	}
	passed, failed, skipped := 0, 0, 0
	file := ""
	for _, r := range results {
		f, _, _ := strings.Cut(r.Location, ":")
		if f != file {
			if file != "" {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "%s:\n", f)
			file = f
		}
		var outcome string
		switch {
		case r.Skip:
			outcome = "SKIPPED"
			skipped++
		case r.Pass:
			outcome = "PASS"
			passed++
		case r.Failure != "":
			outcome = "ERROR"
			failed++
		default:
			outcome = "FAIL"
			failed++
		}
		fmt.Fprintf(stdout, "%s: %s (%v)\n", r.Name, outcome, r.Duration.Round(time.Microsecond))
		if r.Failure != "" {
			fmt.Fprintf(stdout, "  %s\n", r.Failure)
		}
		if !r.Pass && r.Output != "" {
			for line := range strings.SplitSeq(strings.TrimRight(r.Output, "\n"), "\n") {
				fmt.Fprintf(stdout, "  %s\n", line)
			}
		}
	}
	fmt.Fprintln(stdout, strings.Repeat("-", 80))
	if skipped > 0 {
		fmt.Fprintf(stdout, "SKIPPED: %d\n", skipped)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	if passed == 0 {
		fmt.Fprintf(stderr, "xmppedge policy test: no tests found in %s (tests are rules named test_… in *_test.rego files)\n", rules)
		return 1
	}
	return 0
}

func policyEval(ctx context.Context, rules string, data []string, inputFile, kind string, stdout, stderr io.Writer) int {
	raw, err := os.ReadFile(inputFile)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy eval: %v\n", err)
		return 1
	}
	if kind == "" {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(raw, &probe); err != nil {
			fmt.Fprintf(stderr, "xmppedge policy eval: input %s is not a JSON object: %v\n", inputFile, err)
			return 1
		}
		kind = "session"
		if _, ok := probe["kind"]; ok {
			kind = "stanza"
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	engine, err := policy.New(ctx, policy.Config{Rules: rules, Data: data, Logger: logger, CacheSize: -1})
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy eval: %v\n", err)
		return 1
	}
	var decision any
	switch kind {
	case "session":
		var in policy.SessionInput
		if err := strictJSON(raw, &in); err != nil {
			fmt.Fprintf(stderr, "xmppedge policy eval: input %s is not a session input: %v\n", inputFile, err)
			return 1
		}
		decision = engine.DecideSession(ctx, &in)
	case "stanza":
		var in policy.StanzaInput
		if err := strictJSON(raw, &in); err != nil {
			fmt.Fprintf(stderr, "xmppedge policy eval: input %s is not a stanza input: %v\n", inputFile, err)
			return 1
		}
		decision = engine.DecideStanza(ctx, &in)
	default:
		fmt.Fprintf(stderr, "xmppedge policy eval: -kind %q: use session or stanza\n", kind)
		return 2
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(decision); err != nil {
		fmt.Fprintf(stderr, "xmppedge policy eval: %v\n", err)
		return 1
	}
	return 0
}

// strictJSON decodes, rejecting unknown fields (a misspelt field would
// otherwise be silently absent from the input).
func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
