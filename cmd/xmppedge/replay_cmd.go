package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/replay"
	"github.com/xmppedge/xmppedge/policy"
)

// Exit codes of policy replay.
const (
	replayUnchanged = 0 // nothing would change
	replayChanged   = 1 // some decisions would change
	replayUsage     = 2 // usage, unreadable input, a broken chain, a policy that does not load
)

// replayDecisionTimeout bounds one replayed decision: generous, since a
// decision that times out fails closed and would show as a change.
const replayDecisionTimeout = 30 * time.Second

// replayFlags are policy replay's options.
type replayFlags struct {
	rules, format, keyFile string
	data                   *stringList
	examples               int
	verify, series         bool
	files                  []string
}

func parseReplayFlags(args []string, stderr io.Writer) (*replayFlags, bool) {
	f := &replayFlags{data: &stringList{values: []string{"rules/partners.yaml"}}}
	fs := flag.NewFlagSet("policy replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.rules, "rules", "rules", "directory of the candidate .rego files")
	fs.Var(f.data, "data", "candidate data file (JSON or YAML) merged under data.xmppedge; repeatable")
	fs.IntVar(&f.examples, "examples", 3, "example records per partner, direction and outcome")
	fs.StringVar(&f.format, "format", "text", "text or json")
	fs.StringVar(&f.keyFile, "hmac-key-file", "", "the HMAC key file of a keyed log (audit.hmac_key_file), to verify its chain")
	fs.BoolVar(&f.verify, "verify", true, "verify the hash chain first and refuse a broken one (false: replay it anyway, with a warning)")
	fs.BoolVar(&f.series, "series", true, "one current FILE stands for its rotated series (FILE.<time>.<seq> beside it, then FILE)")
	if err := fs.Parse(args); err != nil {
		return nil, false
	}
	f.files = fs.Args()
	switch {
	case len(f.files) == 0:
		fmt.Fprintln(stderr, "xmppedge policy replay: name the audit file(s) to replay, oldest first")
	case f.format != "text" && f.format != "json":
		fmt.Fprintf(stderr, "xmppedge policy replay: -format %q: use text or json\n", f.format)
	case f.examples < 0:
		fmt.Fprintln(stderr, "xmppedge policy replay: -examples must be 0 or more")
	default:
		return f, true
	}
	return nil, false
}

// policyReplay implements "xmppedge policy replay": it re-decides the
// recorded sessions and stanzas with the candidate policy and reports what
// would change. Exit 0 nothing would change, 1 something would, 2 usage
// or input that cannot be read or trusted.
func policyReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, ok := parseReplayFlags(args, stderr)
	if !ok {
		return replayUsage
	}
	files, err := auditSeries(f.files, f.series)
	if err == nil {
		err = verifyReplayInput(files, f, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy replay: %v\n", err)
		return replayUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	engine, err := policy.New(ctx, policy.Config{Rules: f.rules, Data: f.data.values, Logger: logger, Timeout: replayDecisionTimeout})
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy replay: the candidate policy: %v\n", err)
		return replayUsage
	}
	report, err := replay.Run(ctx, engine, files, f.examples)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy replay: %v\n", err)
		return replayUsage
	}
	if n := engine.Stats().Failures; n > 0 {
		fmt.Fprintf(stderr, "xmppedge policy replay: warning: %d decisions of the candidate policy failed and count as denied (fail closed, as the gateway would)\n", n)
	}
	if f.format == "json" {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge policy replay: writing the report: %v\n", err)
		return replayUsage
	}
	if report.Changed() > 0 {
		return replayChanged
	}
	return replayUnchanged
}

// verifyReplayInput checks the hash chain of files: a broken chain is an
// error, or with -verify=false a warning.
func verifyReplayInput(files []string, f *replayFlags, stderr io.Writer) error {
	var key []byte
	if f.keyFile != "" {
		k, err := audit.LoadHMACKey(f.keyFile)
		if err != nil {
			return fmt.Errorf("-hmac-key-file: %w", err)
		}
		key = k
	}
	res, err := audit.Verify(files, key)
	if err != nil {
		return err
	}
	if res.OK {
		return nil
	}
	broken := fmt.Sprintf("the audit chain is broken in %s line %d (seq %d): %s", res.File, res.Line, res.Seq, res.Reason)
	if f.verify {
		return fmt.Errorf("%s; a keyed log needs -hmac-key-file; `xmppedge audit verify` shows the break; -verify=false replays it anyway", broken)
	}
	fmt.Fprintf(stderr, "xmppedge policy replay: warning: %s; replaying it anyway (-verify=false)\n", broken)
	return nil
}
