// Command xmppedge is the XMPP federation edge gateway.
//
//	xmppedge run   -config FILE   run the gateway
//	xmppedge check -config FILE   validate a config file and what it points at: every error with its field; exit 1 on any
//	xmppedge policy test|eval     run the Rego tests, or evaluate a sample input
//	xmppedge policy replay        re-decide recorded traffic with a candidate policy
//	xmppedge audit verify|tail|query|export|retain  check the audit chain, read, export or apply retention to the audit log
//	xmppedge probe DOMAIN         diagnose federation with a domain
//	xmppedge partners -config FILE  the partners, their agreements, sessions and postures
//	xmppedge version              print the version
//
// main owns the process: flags, signals, logging, and the wiring of the
// packages (config → certificates, resolver, dialback secret → edge).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
	"github.com/xmppedge/xmppedge/internal/cluster"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/policy"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// shutdownBound is how long SIGTERM may take, within the 10 s operators
// are promised.
const shutdownBound = 9 * time.Second

func main() {
	os.Exit(runCLI(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  xmppedge run   -config FILE   run the gateway
  xmppedge check -config FILE   validate a config file
  xmppedge policy test [-rules DIR] [-data FILE]...       run the policy's Rego tests
  xmppedge policy eval -input FILE [-kind session|stanza]  print the decision for a sample input
  xmppedge policy replay [-rules DIR] [-data FILE]... AUDIT_FILE...  what a candidate policy would change in recorded traffic
  xmppedge audit verify FILE... | -config FILE            check the audit hash chain(s) (and checkpoints)
  xmppedge audit tail|query ... FILE... | -config FILE    read the audit log (file or cluster stream)
  xmppedge audit export -config FILE -o DIR               write the cluster's audit stream as verifiable files
  xmppedge audit retain -config FILE [-dry-run]           delete expired audit files (audit.retention, audit.legal_holds)
  xmppedge probe [-config FILE] [-json] DOMAIN            diagnose federation with DOMAIN
  xmppedge partners [-config FILE] [-json]                the partners: agreements, sessions, postures
  xmppedge version              print the version
`)
}

func runCLI(args []string, stdout, stderr io.Writer) int {
	return runCLIContext(context.Background(), args, stdout, stderr)
}

// runCLIContext is runCLI; `run` also stops when ctx ends.
func runCLIContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "xmppedge %s\n", version)
		return 0
	case "run", "check":
	case "policy":
		return policyCommand(args[1:], stdout, stderr)
	case "audit":
		return auditCommand(args[1:], stdout, stderr)
	case "probe":
		return probeCommand(args[1:], stdout, stderr)
	case "partners":
		return partnersCommand(ctx, args[1:], stdout, stderr, time.Now())
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "xmppedge: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "xmppedge.yaml", "configuration file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	if args[0] == "check" {
		// The same checks as run's, short of creating, ordering and
		// listening.
		if _, err := prepare(ctx, cfg, slog.New(slog.DiscardHandler), false); err != nil {
			printConfigError(stderr, *path, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *path)
		return 0
	}
	return run(ctx, cfg, *path, stdout, stderr)
}

func printConfigError(w io.Writer, path string, err error) {
	var fe config.FieldErrors
	if errors.As(err, &fe) {
		fmt.Fprintf(w, "%s: %d error(s):\n", path, len(fe))
		for _, e := range fe {
			fmt.Fprintf(w, "  %s: %s\n", e.Field, e.Problem)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

// newLogger returns the logger the config asks for; its level can be
// changed at reload through the returned LevelVar.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(logLevel(cfg.Log.Level))
	o := &slog.HandlerOptions{Level: lv}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o)), lv
	}
	return slog.New(slog.NewTextHandler(w, o)), lv
}

func logLevel(name string) slog.Level {
	var lvl slog.Level
	switch name {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	return lvl
}

// newPolicyEngine loads the configured policy; a compile error is a
// field error of policy.rules (or policy.bundle). With serving (run), the
// engine keeps its warm-up samples in policy.warm_samples and starts from
// them; the commands that only ask the policy (check, partners, probe)
// neither read nor write them.
func newPolicyEngine(ctx context.Context, cfg *config.Config, log *slog.Logger, serving bool) (*policy.Engine, error) {
	pc := policy.Config{Timeout: time.Duration(cfg.Policy.Timeout), Mode: cfg.Policy.Mode, Logger: log}
	if serving {
		pc.SampleFile = cfg.ResolvePath(cfg.Policy.WarmSamples)
	}
	field := "policy.rules"
	if b := cfg.Policy.Bundle; b != nil {
		field = "policy.bundle"
		pc.Bundle = &policy.BundleConfig{URL: b.URL, Poll: time.Duration(b.Poll)}
		if b.PublicKey != "" {
			pc.Bundle.PublicKey = cfg.ResolvePath(b.PublicKey)
		}
	} else {
		pc.Rules = cfg.ResolvePath(cfg.Policy.Rules)
		for _, d := range cfg.Policy.Data {
			pc.Data = append(pc.Data, cfg.ResolvePath(d))
		}
	}
	eng, err := policy.New(ctx, pc)
	if err != nil {
		return nil, config.FieldErrors{{Field: field, Problem: err.Error()}}
	}
	return eng, nil
}

// openAudit opens the audit log the config names, keyed with hmacKey
// (audit.hmac_key_file, loaded by prepare) when set: the file log, or with
// audit.backend jetstream this node's chain in the cluster's stream.
func openAudit(ctx context.Context, cfg *config.Config, hmacKey []byte, log *slog.Logger, node *cluster.Node, m *metrics.Metrics, rotated func(string)) (audit.Sink, error) {
	if cfg.Audit.Backend == config.AuditBackendJetStream {
		ctx, cancel := context.WithTimeout(ctx, clusterStartBound)
		defer cancel()
		s, err := jsaudit.Open(ctx, jsaudit.Config{
			JetStream:      node.JetStream(),
			Node:           node.Name(),
			Replicas:       node.Replicas(),
			Durability:     cfg.Audit.Durability,
			Retention:      time.Duration(cfg.Audit.Retention),
			HMACKey:        hmacKey,
			Logger:         log.With("component", "audit"),
			ObservePublish: m.AuditStreamPublish,
		})
		if err != nil {
			return nil, fmt.Errorf("audit.backend jetstream: %w", err)
		}
		return s, nil
	}
	ac := fileAuditConfig(cfg, hmacKey, log)
	ac.Rotated = rotated
	l, err := audit.Open(ac)
	if err != nil {
		return nil, fmt.Errorf("audit.path: %w", err)
	}
	return l, nil
}
