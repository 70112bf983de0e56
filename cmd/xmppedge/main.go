// Command xmppedge is the XMPP federation edge gateway.
//
//	xmppedge run   -config FILE   run the gateway
//	xmppedge check -config FILE   validate a config file: every error with its field; exit 1 on any
//	xmppedge policy test|eval     run the Rego tests, or evaluate a sample input
//	xmppedge audit verify|tail|query  check the audit chain, read the audit log
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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/edge"
	"github.com/xmppedge/xmppedge/edge/audit"
	"github.com/xmppedge/xmppedge/edge/config"
	"github.com/xmppedge/xmppedge/edge/resolve"
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
  xmppedge audit verify FILE...                           check the audit hash chain
  xmppedge audit tail|query ... FILE...                   read the audit log
  xmppedge version              print the version
`)
}

func runCLI(args []string, stdout, stderr io.Writer) int {
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
		if _, err := buildOptions(cfg, slog.New(slog.DiscardHandler)); err != nil {
			printConfigError(stderr, *path, err)
			return 1
		}
		if _, err := newPolicyEngine(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
			printConfigError(stderr, *path, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *path)
		return 0
	}
	return run(cfg, *path, stdout, stderr)
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

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	switch cfg.Log.Level {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// buildOptions turns a validated config into the gateway's options,
// loading what the config points at. Its errors are FieldErrors where a
// field is to blame.
func buildOptions(cfg *config.Config, log *slog.Logger) (edge.Options, error) {
	var fe config.FieldErrors
	var pairs []certs.KeyPairFiles
	for _, c := range cfg.TLS.Certificates {
		pairs = append(pairs, certs.KeyPairFiles{CertFile: cfg.ResolvePath(c.CertFile), KeyFile: cfg.ResolvePath(c.KeyFile)})
	}
	store, err := certs.LoadStore(pairs)
	if err != nil {
		fe = append(fe, config.FieldError{Field: "tls.certificates", Problem: err.Error()})
	} else {
		for _, d := range cfg.Domains {
			if store.Certificate(d) == nil {
				fe = append(fe, config.FieldError{Field: "tls.certificates", Problem: "no certificate covers the local domain " + d + ": outside peers need one for STARTTLS; add a cert_file/key_file pair for it"})
			}
		}
	}
	var cas []string
	for _, f := range cfg.TLS.CAFiles {
		cas = append(cas, cfg.ResolvePath(f))
	}
	verifier, err := certs.NewVerifier(cas, cfg.TLS.SystemRoots == nil || *cfg.TLS.SystemRoots)
	if err != nil {
		fe = append(fe, config.FieldError{Field: "tls.ca_files", Problem: err.Error()})
	}
	res, err := resolve.New(resolve.Config{Servers: cfg.DNS.Servers})
	if err != nil {
		fe = append(fe, config.FieldError{Field: "dns.servers", Problem: err.Error()})
	}
	if len(fe) > 0 {
		return edge.Options{}, fe
	}
	return edge.Options{
		Domains:          cfg.Domains,
		InsideListen:     cfg.Inside.Listen,
		InsideServer:     cfg.Inside.Server,
		InsideAllow:      cfg.ParsedAllow(),
		OutsideListen:    cfg.Outside.Listen,
		OutsideListenTLS: cfg.Outside.ListenTLS,
		RequireTLS:       cfg.Outside.TLSRequired(),
		Certificates:     store,
		Verifier:         verifier,
		Resolver:         res,
		MaxStanzaSize:    cfg.Limits.MaxStanzaSize,
		QueueSize:        cfg.Limits.QueueSize,
		ConnectTimeout:   time.Duration(cfg.Limits.ConnectTimeout),
		IdleTimeout:      time.Duration(cfg.Limits.IdleTimeout),
		Logger:           log,
	}, nil
}

// newPolicyEngine loads the configured policy; a compile error is a
// field error of policy.rules (or policy.bundle).
func newPolicyEngine(ctx context.Context, cfg *config.Config, log *slog.Logger) (*policy.Engine, error) {
	pc := policy.Config{Timeout: time.Duration(cfg.Policy.Timeout), Mode: cfg.Policy.Mode, Logger: log}
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

// openAudit opens the audit log the config names.
func openAudit(cfg *config.Config, log *slog.Logger) (*audit.Log, error) {
	ac := audit.Config{
		Path:       cfg.ResolvePath(cfg.Audit.Path),
		Durability: cfg.Audit.Durability,
		RotateSize: int64(cfg.Audit.Rotate.Size),
		RotateAge:  time.Duration(cfg.Audit.Rotate.Age),
		Node:       cfg.Audit.Node,
		Logger:     log,
	}
	if f := cfg.Audit.HMACKeyFile; f != "" {
		key, err := os.ReadFile(cfg.ResolvePath(f))
		if err != nil {
			return nil, fmt.Errorf("audit.hmac_key_file: %w", err)
		}
		ac.HMACKey = []byte(strings.TrimSpace(string(key)))
	}
	l, err := audit.Open(ac)
	if err != nil {
		return nil, fmt.Errorf("audit.path: %w", err)
	}
	return l, nil
}

func run(cfg *config.Config, path string, stdout, stderr io.Writer) int {
	log := newLogger(cfg, stderr)
	opt, err := buildOptions(cfg, log)
	if err != nil {
		printConfigError(stderr, path, err)
		return 1
	}
	ctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	eng, err := newPolicyEngine(ctx, cfg, log)
	if err != nil {
		printConfigError(stderr, path, err)
		return 1
	}
	alog, err := openAudit(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	defer alog.Close()
	opt.Policy = eng
	opt.Auditor = alog
	secret, err := dialback.LoadOrCreateSecret(cfg.ResolvePath(cfg.Dialback.SecretFile))
	if err != nil {
		fmt.Fprintf(stderr, "%s: dialback.secret_file: %v\n", path, err)
		return 1
	}
	opt.DialbackSecret = secret
	gw, err := edge.New(opt)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge: %v\n", err)
		return 1
	}
	if err := gw.Start(); err != nil {
		fmt.Fprintf(stderr, "xmppedge: %v\n", err)
		return 1
	}
	var addrs []string
	for _, a := range gw.Addrs() {
		addrs = append(addrs, a.String())
	}
	fmt.Fprintf(stdout, "xmppedge %s running: domains %s; inside %s -> %s; outside %s (STARTTLS) %s (direct TLS); policy %s (%s, revision %s); audit %s (%s)\n",
		version, strings.Join(cfg.Domains, ","), strings.Join(cfg.Inside.Listen, ","), cfg.Inside.Server,
		strings.Join(cfg.Outside.Listen, ","), strings.Join(cfg.Outside.ListenTLS, ","),
		cfg.Policy.Rules, cfg.Policy.Mode, eng.Revision(), cfg.ResolvePath(cfg.Audit.Path), cfg.Audit.Durability)

	// A new policy (file change, bundle, SIGHUP) re-decides every session.
	eng.OnReload(func(rev string) {
		log.Info("policy reloaded", "policy_revision", rev)
		gw.Recheck()
	})
	go eng.Watch(ctx)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	var s os.Signal
	for s = range sig {
		if s != syscall.SIGHUP {
			break
		}
		log.Info("SIGHUP: reloading the policy")
		if err := eng.Reload(ctx); err != nil {
			log.Error("policy reload rejected: the previous policy stays active", "err", err)
		}
	}
	log.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), shutdownBound)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish in time: connections dropped", "err", err)
		gw.Close()
	}
	log.Info("stopped")
	return 0
}
