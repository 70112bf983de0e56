package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/metrics"
)

// retentionInterval is how often the running gateway applies
// audit.retention, besides at start and after each rotation.
const retentionInterval = time.Hour

// retentionBound bounds one retention run's wait for its anchor record.
const retentionBound = time.Minute

// retentionOf is the configured retention of the file backend.
func retentionOf(cfg *config.Config) audit.Retention {
	r := audit.Retention{MaxAge: cfg.Audit.Retention.Std()}
	for _, h := range cfg.Audit.LegalHolds {
		r.Holds = append(r.Holds, audit.LegalHold{
			Reference: h.Reference, Domains: h.Domains, JIDs: h.JIDs,
			Since: h.Since.Time, Until: h.Until.Time,
		})
	}
	return r
}

// fileAuditConfig is the audit.Config of the file backend.
func fileAuditConfig(cfg *config.Config, hmacKey []byte, log *slog.Logger) audit.Config {
	return audit.Config{
		Path:       cfg.ResolvePath(cfg.Audit.Path),
		Durability: cfg.Audit.Durability,
		RotateSize: int64(cfg.Audit.Rotate.Size),
		RotateAge:  time.Duration(cfg.Audit.Rotate.Age),
		HMACKey:    hmacKey,
		Node:       cfg.Audit.Node,
		Logger:     log,
	}
}

// retentionRunner applies audit.retention in the running gateway: at
// start, every retentionInterval and after each rotation (kick).
type retentionRunner struct {
	r    audit.Retention
	log  *slog.Logger
	m    *metrics.Metrics
	kick chan struct{}
	done chan struct{}
}

func newRetentionRunner(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) *retentionRunner {
	return &retentionRunner{r: retentionOf(cfg), log: log, m: m, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// rotated is audit.Config.Rotated: it asks for a run without blocking.
func (rr *retentionRunner) rotated(string) {
	select {
	case rr.kick <- struct{}{}:
	default:
	}
}

// run applies retention to l until ctx ends; done is closed then.
func (rr *retentionRunner) run(ctx context.Context, l *audit.Log) {
	defer close(rr.done)
	tick := time.NewTicker(retentionInterval)
	defer tick.Stop()
	for {
		rr.once(ctx, l)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-rr.kick:
		}
	}
}

// once is one retention run; a failure is logged (the files stay) and
// the next run tries again.
func (rr *retentionRunner) once(ctx context.Context, l *audit.Log) {
	ctx, cancel := context.WithTimeout(ctx, retentionBound)
	defer cancel()
	plan, err := l.ApplyRetention(ctx, rr.r, time.Now())
	deleted := len(plan.Deleted())
	rr.m.AuditRetentionDeleted(deleted)
	if err != nil {
		rr.log.Error("audit retention failed: no file was deleted after the failure; the next run tries again", "err", err)
		return
	}
	for _, f := range plan.Files[deleted:] {
		if f.Hold != "" {
			rr.log.Info("audit retention: a legal hold keeps an expired file (and the newer ones)", "file", f.Path, "hold", f.Hold, "why", f.Why)
			break
		}
	}
	if deleted > 0 {
		rr.log.Info("audit retention: deleted the oldest audit files", "files", deleted, "chain_starts_at_seq", plan.AnchorSeq)
	}
}

// auditRetain runs `xmppedge audit retain -config FILE [-dry-run]`.
func auditRetain(args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("retain", stderr)
	cfgPath := fs.String("config", "", "the configuration file: its audit.path, audit.retention and audit.legal_holds")
	dryRun := fs.Bool("dry-run", false, "print what would be deleted and kept, and why; delete nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "xmppedge audit retain: give -config FILE (and -dry-run to delete nothing)")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printConfigError(stderr, *cfgPath, err)
		return 1
	}
	if cfg.Audit.Backend == config.AuditBackendJetStream {
		fmt.Fprintf(stderr, "xmppedge audit retain: %s has audit.backend jetstream: JetStream itself drops records older than audit.retention from the stream\n", *cfgPath)
		return 2
	}
	var key []byte
	if cfg.Audit.HMACKeyFile != "" {
		if key, err = audit.LoadHMACKey(cfg.ResolvePath(cfg.Audit.HMACKeyFile)); err != nil {
			fmt.Fprintf(stderr, "xmppedge audit retain: %v\n", err)
			return 1
		}
	}
	r := retentionOf(cfg)
	var plan audit.RetentionPlan
	if *dryRun {
		plan, err = audit.PlanRetention(cfg.ResolvePath(cfg.Audit.Path), r, key, time.Now())
	} else {
		plan, err = applyRetentionOnce(cfg, key, r, stderr)
	}
	printRetentionPlan(stdout, plan, r, *dryRun)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit retain: %v\n", err)
		return 1
	}
	return 0
}

// applyRetentionOnce opens the log (which a running gateway holds: then
// it says so) and applies retention once.
func applyRetentionOnce(cfg *config.Config, key []byte, r audit.Retention, stderr io.Writer) (audit.RetentionPlan, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := audit.Open(fileAuditConfig(cfg, key, log))
	if err != nil {
		return audit.RetentionPlan{}, fmt.Errorf("%w (a running gateway applies audit.retention itself at start, hourly and after each rotation; -dry-run shows what it will do)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), retentionBound)
	defer cancel()
	plan, err := l.ApplyRetention(ctx, r, time.Now())
	return plan, errors.Join(err, l.Close())
}

// printRetentionPlan prints one line per file: delete or keep, and why.
func printRetentionPlan(w io.Writer, plan audit.RetentionPlan, r audit.Retention, dryRun bool) {
	if len(plan.Files) == 0 {
		return
	}
	verb := "deleted"
	if dryRun {
		verb = "would delete"
	}
	if r.MaxAge > 0 {
		fmt.Fprintf(w, "retention %s: records before %s are expired; %d legal hold(s)\n", audit.FormatRetention(r.MaxAge), plan.Cutoff.UTC().Format(time.RFC3339), len(r.Holds))
	}
	for _, f := range plan.Files {
		action := "keep  "
		if f.Delete {
			action = verb
		}
		fmt.Fprintf(w, "%s %s: %s\n", action, filepath.Base(f.Path), f.Why)
	}
	if n := len(plan.Deleted()); n > 0 {
		fmt.Fprintf(w, "%s %d file(s); the chain goes on at seq %d (prev %s), named by an %s record\n", verb, n, plan.AnchorSeq, plan.AnchorPrev, audit.EventAnchor)
	} else {
		fmt.Fprintln(w, "nothing to delete")
	}
}
