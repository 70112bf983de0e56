package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
	"github.com/xmppedge/xmppedge/internal/cluster"
	"github.com/xmppedge/xmppedge/internal/config"
)

const auditUsage = `usage:
  xmppedge audit verify [-hmac-key-file F] [-series=false] FILE...
  xmppedge audit verify -config FILE [-hmac-key-file F]
      check the hash chain over FILE... (oldest first); exit 0 only if intact.
      One current FILE stands for its whole series: the rotated files
      FILE.<time>.<seq> beside it, oldest first, then FILE (-series=false: FILE only);
      a series that starts mid-chain must have an audit.anchor record (retention)
      naming its start, else files were removed: a break.
      With -config: the configured audit log and HMAC key; with audit.backend
      jetstream, every node's chain in the cluster's stream, and the heads
      every checkpoint names, each a record of its chain with that hash.
  xmppedge audit tail [-n 20] [-f] [-format table|jsonl] FILE
  xmppedge audit tail -config FILE [-node N] [-n 20] [-f] [-format table|jsonl]
      the last records of FILE; -f follows new records across rotation.
      From the stream: the last records of all nodes (or of node N) by time;
      -f follows the records stored from then on.
  xmppedge audit query [-domain D] [-jid J] [-since T] [-until T] [-decision D]
                       [-event E] [-node N] [-format table|jsonl] [-series=false] FILE...
  xmppedge audit query -config FILE [filters as above]
      the records matching every filter given. T is RFC 3339, a date
      (2026-03-15, UTC) or a duration ago (24h). -event session matches
      session.open/auth/close. -jid with a /resource matches it exactly.
      From the stream: node after node, each node's chain in order.
  xmppedge audit export -config FILE -o DIR [-hmac-key-file F]
      (audit.backend jetstream) write every node's chain from the stream to
      DIR/<node>.jsonl, the file log's format, then verify those files as
      verify does; exit 0 only if all are intact. audit verify FILE checks
      one of them again offline.
  xmppedge audit export -format eml|jsonl [-domain D] [-jid J] [-since T] [-until T]
                        [-hmac-key-file F] [-series=false] [-no-verify] -o DIR (FILE... | -config FILE)
      for archivers (docs/export.md): verify the chain while reading it and
      write the matching records to DIR (new or empty): -format eml, one
      RFC 5322 message DIR/<node>-<seq>.eml per message kept in full with a
      body, the other matching records in DIR/records.jsonl; -format jsonl,
      all of them in DIR/records.jsonl; and DIR/manifest.json with the
      chain positions and SHA-256 of every file. A broken chain exports
      nothing (exit 1) unless -no-verify.
  xmppedge audit retain -config FILE [-dry-run]
      (file backend) delete the oldest rotated files whose records are all
      older than audit.retention and that no audit.legal_holds entry matches,
      after an audit.anchor record naming where the chain goes on; -dry-run
      prints what would go and what stays, and why. A running gateway does
      this itself at start, hourly and after each rotation.
`

// auditConnectBound bounds connecting to the cluster and waiting for
// JetStream to answer.
const auditConnectBound = 30 * time.Second

// auditCommand runs `xmppedge audit SUBCOMMAND ...` and returns the exit
// code: 0 success (verify: chain intact), 1 failure (verify: broken or
// unreadable), 2 usage.
func auditCommand(args []string, stdout, stderr io.Writer) int {
	return auditCommandContext(context.Background(), args, stdout, stderr)
}

// auditCommandContext is auditCommand; reading the cluster's stream (and
// following) also stops when ctx ends.
func auditCommandContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return auditVerify(ctx, args[1:], stdout, stderr)
	case "tail":
		return auditTail(ctx, args[1:], stdout, stderr)
	case "query":
		return auditQuery(ctx, args[1:], stdout, stderr)
	case "export":
		return auditExport(ctx, args[1:], stdout, stderr)
	case "retain":
		return auditRetain(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "xmppedge audit: unknown subcommand %q\n", args[0])
	fmt.Fprint(stderr, auditUsage)
	return 2
}

func auditFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("audit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditUsage) }
	return fs
}

// auditSeries expands a single current file into its rotated series.
func auditSeries(files []string, series bool) ([]string, error) {
	if !series || len(files) != 1 {
		return files, nil
	}
	all, err := audit.SeriesFiles(files[0])
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return files, nil // let the reader report the missing file
	}
	return all, nil
}

// auditTarget is what an audit command reads: files (the file backend,
// or files named on the command line) or, with -config and audit.backend
// jetstream, the cluster's stream through a client connection.
type auditTarget struct {
	cfg   *config.Config     // nil without -config
	files []string           // the file backend
	node  *cluster.Node      // the jetstream backend: a client, not a server
	stop  context.CancelFunc // ends the interruptible context of a stream read
}

func (t *auditTarget) stream() bool { return t.node != nil }

func (t *auditTarget) close() {
	if t.stop != nil {
		t.stop()
	}
	if t.node != nil {
		t.node.Close()
	}
}

// openAuditTarget loads the config at cfgPath, if given, and connects to
// the cluster when its audit backend is jetstream; reading the stream then
// stops on Ctrl-C (the returned context). Files named on the command line
// win over the configured audit.path. It returns an exit code other than 0
// when it failed (and said why).
func openAuditTarget(ctx context.Context, name, cfgPath string, args []string, stderr io.Writer) (context.Context, *auditTarget, int) {
	t, code := connectAuditTarget(ctx, name, cfgPath, args, stderr)
	if code != 0 || !t.stream() {
		return ctx, t, code
	}
	ctx, t.stop = interruptible(ctx)
	return ctx, t, 0
}

func connectAuditTarget(ctx context.Context, name, cfgPath string, args []string, stderr io.Writer) (*auditTarget, int) {
	if cfgPath == "" {
		return &auditTarget{files: args}, 0
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		printConfigError(stderr, cfgPath, err)
		return nil, 1
	}
	t := &auditTarget{cfg: cfg, files: args}
	if cfg.Audit.Backend != config.AuditBackendJetStream {
		if len(t.files) == 0 {
			t.files = []string{cfg.ResolvePath(cfg.Audit.Path)}
		}
		return t, 0
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "xmppedge audit %s: %s has audit.backend jetstream: the records are in the cluster's stream; name no files (or leave out -config)\n", name, cfgPath)
		return nil, 2
	}
	ccfg, _ := cfg.ClusterNode()
	cctx, cancel := context.WithTimeout(ctx, auditConnectBound)
	defer cancel()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	node, err := cluster.Connect(cctx, ccfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit %s: %v\n", name, err)
		return nil, 1
	}
	if err := node.WaitReady(cctx); err != nil {
		node.Close()
		fmt.Fprintf(stderr, "xmppedge audit %s: %v\n", name, err)
		return nil, 1
	}
	t.node = node
	return t, 0
}

// hmacKey is the key of -hmac-key-file, else the config's
// audit.hmac_key_file, else none.
func (t *auditTarget) hmacKey(flagFile string) ([]byte, error) {
	path := flagFile
	if path == "" && t.cfg != nil && t.cfg.Audit.HMACKeyFile != "" {
		path = t.cfg.ResolvePath(t.cfg.Audit.HMACKeyFile)
	}
	if path == "" {
		return nil, nil
	}
	return audit.LoadHMACKey(path)
}

// interruptible ends ctx on SIGINT and SIGTERM too: reading a stream or
// following stops cleanly (reading files stops by the signal's default).
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("verify", stderr)
	cfgPath := fs.String("config", "", "the configuration file: its audit log (file or jetstream) and HMAC key")
	keyFile := fs.String("hmac-key-file", "", "the HMAC key file of a keyed log (audit.hmac_key_file)")
	series := fs.Bool("series", true, "with one FILE, verify its rotated predecessors too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 && *cfgPath == "" {
		fmt.Fprintln(stderr, "xmppedge audit verify: name the audit file(s), or -config FILE")
		return 2
	}
	ctx, t, code := openAuditTarget(ctx, "verify", *cfgPath, fs.Args(), stderr)
	if code != 0 {
		return code
	}
	defer t.close()
	key, err := t.hmacKey(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
		return 1
	}
	if t.stream() {
		dir, err := os.MkdirTemp("", "xmppedge-audit-verify-")
		if err != nil {
			fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		files, err := jsaudit.Export(ctx, t.node.JetStream(), jsaudit.DefaultStream, dir)
		if err != nil {
			fmt.Fprintf(stderr, "xmppedge audit verify: reading the stream: %v\n", err)
			return 1
		}
		return reportNodeChains(files, key, stdout, stderr)
	}
	files, err := auditSeries(t.files, *series)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
		return 1
	}
	res, err := audit.Verify(files, key)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
		return 1
	}
	if *series && len(t.files) == 1 {
		res.RequireAnchoredStart() // the whole series: nothing may be missing at its start
	}
	if !res.OK {
		fmt.Fprintf(stdout, "chain broken at %s line %d (seq %d): %s\n", res.File, res.Line, res.Seq, res.Reason)
		fmt.Fprintf(stdout, "%d records verified before the break\n", res.Records)
		if res.Line == 1 && res.StartAnchor == nil && strings.Contains(res.Reason, audit.EventAnchor) {
			fmt.Fprintln(stdout, "to check only the files given, without their predecessors, use -series=false")
		}
		return 1
	}
	if res.Records == 0 {
		fmt.Fprintf(stdout, "0 records in %d file(s), chain intact (empty)\n", res.Files)
		return 0
	}
	fmt.Fprintf(stdout, "%d records, chain intact (%d file(s), seq %d to %d, last hash %s)\n",
		res.Records, res.Files, res.FirstSeq, res.LastSeq, res.LastHash)
	switch a := res.StartAnchor; {
	case a != nil:
		fmt.Fprintf(stdout, "chain starts at seq %d, anchored by record %d (%s): %d file(s) deleted by retention on %s: %s\n",
			res.FirstSeq, a.Seq, a.Event, a.DeletedFiles.Len(), a.Time.Format(time.DateOnly), a.Reason)
	case res.FirstPrev != "":
		fmt.Fprintf(stdout, "note: the first record (seq %d) continues an earlier chain (prev %s): earlier files were not given\n", res.FirstSeq, res.FirstPrev)
	}
	if res.Recoveries > 0 {
		fmt.Fprintf(stdout, "note: %d torn-tail recovery record(s) (event %s): a crash cut a line, the chain continues from the last complete record\n", res.Recoveries, audit.EventLogRecovered)
	}
	return 0
}

func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("export", stderr)
	cfgPath := fs.String("config", "", "the configuration file: its audit log (file or jetstream) and HMAC key")
	out := fs.String("o", "", "the folder to write into")
	keyFile := fs.String("hmac-key-file", "", "the HMAC key file, instead of the config's audit.hmac_key_file")
	ao := archiveFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if ao.format != "" {
		return auditArchive(ctx, ao, *cfgPath, *out, *keyFile, fs.Args(), stdout, stderr)
	}
	if ao.filtered() {
		fmt.Fprintln(stderr, "xmppedge audit export: the filters need -format eml or -format jsonl")
		return 2
	}
	if *cfgPath == "" || *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "xmppedge audit export: give -config FILE and -o DIR (and nothing else)")
		return 2
	}
	ctx, t, code := openAuditTarget(ctx, "export", *cfgPath, nil, stderr)
	if code != 0 {
		return code
	}
	defer t.close()
	if !t.stream() {
		fmt.Fprintf(stderr, "xmppedge audit export: %s has audit.backend %s: the audit log is already the files at %s (audit verify -config %s checks them); for an archiver, add -format eml or -format jsonl\n",
			*cfgPath, t.cfg.Audit.Backend, t.files[0], *cfgPath)
		return 2
	}
	key, err := t.hmacKey(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 1
	}
	files, err := jsaudit.Export(ctx, t.node.JetStream(), jsaudit.DefaultStream, *out)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "exported %d node chain(s) to %s\n", len(files), *out)
	return reportNodeChains(files, key, stdout, stderr)
}

// reportNodeChains verifies each node's file (<node>.jsonl, as
// jsaudit.Export writes them) with audit.Verify, then checks every
// checkpoint's heads against the chains, and prints one line per node and
// a summary. It returns 0 when every chain is intact and every head
// matches, else 1.
func reportNodeChains(files []string, key []byte, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stdout, "0 records: the stream holds no audit records (nothing to verify)")
		return 0
	}
	var records uint64
	broken := 0
	for _, f := range files {
		node := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		res, err := audit.Verify([]string{f}, key)
		if err != nil {
			fmt.Fprintf(stderr, "xmppedge audit: node %s: %v\n", node, err)
			return 1
		}
		records += res.Records
		if !res.OK {
			broken++
			fmt.Fprintf(stdout, "node %s: chain broken at its record %d (seq %d): %s; %d records verified before the break\n", node, res.Line, res.Seq, res.Reason, res.Records)
			continue
		}
		fmt.Fprintf(stdout, "node %s: %d records, chain intact (seq %d to %d, last hash %s)\n", node, res.Records, res.FirstSeq, res.LastSeq, res.LastHash)
		if res.FirstPrev != "" {
			fmt.Fprintf(stdout, "note: node %s's first record (seq %d) continues an earlier chain (prev %s): the stream's retention dropped its beginning\n", node, res.FirstSeq, res.FirstPrev)
		}
		if res.Recoveries > 0 {
			fmt.Fprintf(stdout, "note: node %s: %d recovery record(s) (event %s)\n", node, res.Recoveries, audit.EventLogRecovered)
		}
	}
	cp, err := checkCheckpoints(files)
	if err != nil {
		fmt.Fprintf(stdout, "checkpoints not checked: %v\n", err)
		cp.problems = append(cp.problems, err.Error())
	}
	const shown = 20
	for i, p := range cp.problems {
		if i == shown {
			fmt.Fprintf(stdout, "... and %d more problem(s)\n", len(cp.problems)-shown)
			break
		}
		fmt.Fprintf(stdout, "problem: %s\n", p)
	}
	if err == nil {
		fmt.Fprintf(stdout, "checkpoints: %d, naming %d head(s): %d match their chains", cp.checkpoints, cp.heads, cp.matched)
		if cp.dropped > 0 {
			fmt.Fprintf(stdout, ", %d before the stream's first record of the node (dropped by retention: not checked)", cp.dropped)
		}
		fmt.Fprintln(stdout)
	}
	if broken > 0 || len(cp.problems) > 0 {
		fmt.Fprintf(stdout, "FAILED: %d of %d node chain(s) broken, %d problem(s) with records and checkpoints (%d records verified)\n", broken, len(files), len(cp.problems), records)
		return 1
	}
	fmt.Fprintf(stdout, "%d records in %d node chain(s), all intact; every checkpoint head matches\n", records, len(files))
	return 0
}

// checkpointResult is what checkCheckpoints found.
type checkpointResult struct {
	checkpoints int      // audit.checkpoint records
	heads       int      // heads they name
	matched     int      // heads that are a record of the chain with that hash
	dropped     int      // heads before the first record the stream still holds
	problems    []string // heads that match nothing, records of the wrong node
}

// headRef is one head a checkpoint names.
type headRef struct {
	by   string // "checkpoint <node> seq <n>"
	seq  uint64
	hash string
	seen bool
}

// checkCheckpoints reads the node files (<node>.jsonl) twice: first for
// the checkpoints' heads (and that each record names its file's node),
// then for the records those heads name.
func checkCheckpoints(files []string) (checkpointResult, error) {
	sc := &checkpointScan{spans: map[string]*chainSpan{}, fileOf: map[string]string{}, want: map[string]map[uint64][]*headRef{}}
	for _, f := range files {
		if err := sc.readChain(f); err != nil {
			return sc.res, err
		}
	}
	nodes := make([]string, 0, len(sc.want))
	for n := range sc.want {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, node := range nodes {
		if err := sc.matchHeads(node); err != nil {
			return sc.res, err
		}
	}
	return sc.res, nil
}

// chainSpan is the first and last seq of a node's chain.
type chainSpan struct{ first, last uint64 }

// checkpointScan collects the checkpoints' heads of every node's chain,
// then looks each head up in the chain it names.
type checkpointScan struct {
	res    checkpointResult
	spans  map[string]*chainSpan
	fileOf map[string]string
	want   map[string]map[uint64][]*headRef // node → seq → the heads naming it
}

// readChain reads one node's exported chain: its span, a record naming
// another node, and the heads of its checkpoints.
func (sc *checkpointScan) readChain(f string) error {
	node := strings.TrimSuffix(filepath.Base(f), ".jsonl")
	sc.fileOf[node] = f
	sp := &chainSpan{}
	sc.spans[node] = sp
	wrongNode := false
	return audit.ReadRecords([]string{f}, func(r *audit.Record, _ []byte) error {
		if sp.first == 0 || r.Seq < sp.first {
			sp.first = r.Seq
		}
		sp.last = max(sp.last, r.Seq) // a forged record may go back
		if r.Node != node && !wrongNode {
			wrongNode = true
			sc.res.problems = append(sc.res.problems, fmt.Sprintf("node %s: its record seq %d names node %q (written by another writer?)", node, r.Seq, r.Node))
		}
		if r.Event == audit.EventCheckpoint {
			sc.addHeads(fmt.Sprintf("checkpoint of node %s seq %d", node, r.Seq), r.Heads.Values())
		}
		return nil
	})
}

// addHeads notes the heads ("<node> <seq> <hash>") a checkpoint names.
func (sc *checkpointScan) addHeads(by string, heads []string) {
	sc.res.checkpoints++
	for _, h := range heads {
		sc.res.heads++
		parts := strings.Fields(h)
		var seq uint64
		var err error
		if len(parts) == 3 {
			seq, err = strconv.ParseUint(parts[1], 10, 64)
		}
		if len(parts) != 3 || err != nil {
			sc.res.problems = append(sc.res.problems, fmt.Sprintf("%s: head %q is not \"<node> <seq> <hash>\"", by, h))
			continue
		}
		if sc.want[parts[0]] == nil {
			sc.want[parts[0]] = map[uint64][]*headRef{}
		}
		sc.want[parts[0]][seq] = append(sc.want[parts[0]][seq], &headRef{by: by, seq: seq, hash: parts[2]})
	}
}

// matchHeads looks up every head naming node in node's chain.
func (sc *checkpointScan) matchHeads(node string) error {
	refs := sc.want[node]
	seqs := make([]uint64, 0, len(refs))
	for seq := range refs {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	sp, ok := sc.spans[node]
	if !ok || sp.first == 0 {
		for _, seq := range seqs {
			for _, r := range refs[seq] {
				sc.res.problems = append(sc.res.problems, fmt.Sprintf("%s names node %s seq %d, but the stream holds no record of node %s", r.by, node, seq, node))
			}
		}
		return nil
	}
	err := audit.ReadRecords([]string{sc.fileOf[node]}, func(rec *audit.Record, _ []byte) error {
		for _, r := range refs[rec.Seq] {
			if rec.Hash == r.hash {
				r.seen = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		for _, r := range refs[seq] {
			switch {
			case r.seen:
				sc.res.matched++
			case seq < sp.first:
				sc.res.dropped++
			case seq > sp.last:
				sc.res.problems = append(sc.res.problems, fmt.Sprintf("%s names node %s seq %d, past the end of its chain (seq %d): records lost?", r.by, node, seq, sp.last))
			default:
				sc.res.problems = append(sc.res.problems, fmt.Sprintf("%s names node %s seq %d with hash %s, but its chain has no such record (chain rewritten?)", r.by, node, seq, r.hash))
			}
		}
	}
	return nil
}

// newRecordPrinter writes records as a table, or as JSON Lines: the
// lines exactly as they are in the file, so that they stay verifiable.
func newRecordPrinter(format string, w io.Writer) (audit.RecordFunc, error) {
	switch format {
	case "table":
		return audit.NewTableWriter(w).Write, nil
	case "jsonl", "json":
		return func(_ *audit.Record, line []byte) error {
			_, err := fmt.Fprintf(w, "%s\n", line)
			return err
		}, nil
	}
	return nil, fmt.Errorf("-format %q: use table or jsonl", format)
}

func auditTail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("tail", stderr)
	cfgPath := fs.String("config", "", "the configuration file: its audit log (file or jetstream)")
	node := fs.String("node", "", "from the stream: this node's records only")
	n := fs.Int("n", 20, "how many records")
	follow := fs.Bool("f", false, "follow: print new records as they are written, until interrupted")
	format := fs.String("format", "table", "table or jsonl")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n < 0 || (*cfgPath == "" && fs.NArg() != 1) || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "xmppedge audit tail: name one audit file or -config FILE (and -n 0 or more)")
		return 2
	}
	out, err := newRecordPrinter(*format, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
		return 2
	}
	ctx, t, code := openAuditTarget(ctx, "tail", *cfgPath, fs.Args(), stderr)
	if code != 0 {
		return code
	}
	defer t.close()
	if *follow && !t.stream() {
		var stop context.CancelFunc
		ctx, stop = interruptible(ctx)
		defer stop()
	}
	if t.stream() {
		if err := streamTail(ctx, t.node.JetStream(), *node, *n, *follow, out); err != nil {
			fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
			return 1
		}
		return 0
	}
	if *node != "" {
		fmt.Fprintln(stderr, "xmppedge audit tail: -node reads the cluster's stream: give -config with audit.backend jetstream")
		return 2
	}
	path := t.files[0]
	var last uint64 // the seq of the last record shown
	end, err := audit.LastRecords(path, *n, func(r *audit.Record, line []byte) error {
		last = r.Seq
		return out(r, line)
	})
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
		return 1
	}
	if !*follow {
		return 0
	}
	if err := audit.Follow(ctx, path, end, last, 200*time.Millisecond, out); err != nil {
		fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
		return 1
	}
	return 0
}

// tailRecord is a record kept for the tail, with a copy of its line.
type tailRecord struct {
	rec  *audit.Record
	line []byte
}

// streamTail prints the last n records of the stream (of node, if given),
// the nodes' records merged by time; with follow, then the records stored
// after them, until ctx ends. It reads each chain whole (the stream has no
// index to start n records before a subject's end).
func streamTail(ctx context.Context, js jetstream.JetStream, node string, n int, follow bool, out audit.RecordFunc) error {
	heads, err := jsaudit.Heads(ctx, js, jsaudit.DefaultStream)
	if err != nil {
		return err
	}
	var from uint64 // the stream sequence to follow from
	for _, h := range heads {
		from = max(from, h.StreamSeq)
	}
	lastSeq := map[string]uint64{} // per node: the last chain seq read
	var kept []tailRecord
	for _, h := range heads {
		if node != "" && h.Node != node {
			continue
		}
		var ring []tailRecord
		err := jsaudit.ReadChain(ctx, js, jsaudit.DefaultStream, h.Node, func(r *audit.Record, line []byte) error {
			lastSeq[h.Node] = r.Seq
			if n == 0 {
				return nil
			}
			if len(ring) == n {
				ring = ring[1:]
			}
			ring = append(ring, tailRecord{r, slices.Clone(line)})
			return nil
		})
		if err != nil {
			return err
		}
		kept = append(kept, ring...)
	}
	slices.SortStableFunc(kept, func(a, b tailRecord) int { return a.rec.Time.Compare(b.rec.Time) })
	if len(kept) > n {
		kept = kept[len(kept)-n:]
	}
	for _, k := range kept {
		if err := out(k.rec, k.line); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	return streamFollow(ctx, js, node, from+1, lastSeq, out)
}

// streamFollow prints the records stored from stream sequence from on (of
// node, if given) as they come, until ctx ends; a record whose chain seq
// is not past lastSeq of its node was printed already.
func streamFollow(ctx context.Context, js jetstream.JetStream, node string, from uint64, lastSeq map[string]uint64, out audit.RecordFunc) error {
	st, err := js.Stream(ctx, jsaudit.DefaultStream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", jsaudit.DefaultStream, err)
	}
	subject := jsaudit.SubjectPrefix + ">"
	if node != "" {
		subject = jsaudit.SubjectPrefix + node
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("following %s: %w", subject, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("following %s: %w", subject, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("following %s: %w", subject, err)
		}
		var rec audit.Record
		if err := json.Unmarshal(m.Data(), &rec); err != nil {
			return fmt.Errorf("a message on %s is not a record: %w", m.Subject(), err)
		}
		src := strings.TrimPrefix(m.Subject(), jsaudit.SubjectPrefix)
		if rec.Seq <= lastSeq[src] {
			continue
		}
		lastSeq[src] = rec.Seq
		if err := out(&rec, m.Data()); err != nil {
			return err
		}
	}
}

func auditQuery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("query", stderr)
	cfgPath := fs.String("config", "", "the configuration file: its audit log (file or jetstream)")
	var f audit.Filter
	fs.StringVar(&f.Domain, "domain", "", "local or remote domain, or the domain of from/to")
	fs.StringVar(&f.JID, "jid", "", "from or to: bare JID (any resource) or full JID")
	since := fs.String("since", "", "records at or after this time")
	until := fs.String("until", "", "records before this time")
	fs.StringVar(&f.Decision, "decision", "", "allow, deny, would-deny, bounced, undeliverable or error")
	fs.StringVar(&f.Event, "event", "", "event, or a prefix like session")
	node := fs.String("node", "", "records written by this node")
	format := fs.String("format", "table", "table or jsonl")
	series := fs.Bool("series", true, "with one FILE, read its rotated predecessors too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 && *cfgPath == "" {
		fmt.Fprintln(stderr, "xmppedge audit query: name the audit file(s), or -config FILE")
		return 2
	}
	if err := parseTimes(&f, *since, *until, time.Now()); err != nil {
		fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
		return 2
	}
	out, err := newRecordPrinter(*format, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
		return 2
	}
	ctx, t, code := openAuditTarget(ctx, "query", *cfgPath, fs.Args(), stderr)
	if code != 0 {
		return code
	}
	defer t.close()
	matched := 0
	match := func(r *audit.Record, line []byte) error {
		if !f.Match(r) || (*node != "" && r.Node != *node) {
			return nil
		}
		matched++
		return out(r, line)
	}
	where, err := readAuditTarget(ctx, t, *node, *series, match)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
		return 1
	}
	if matched == 0 {
		fmt.Fprintf(stderr, "no records match (in %s)\n", where)
	}
	return 0
}

// parseTimes sets the filter's time bounds from -since and -until.
func parseTimes(f *audit.Filter, since, until string, now time.Time) error {
	for _, b := range []struct {
		text string
		into *time.Time
	}{{since, &f.Since}, {until, &f.Until}} {
		if b.text == "" {
			continue
		}
		t, err := audit.ParseTime(b.text, now)
		if err != nil {
			return err
		}
		*b.into = t
	}
	return nil
}

// readAuditTarget hands every record of the target to fn: the stream (one
// node's chain, or all), or the files (with their rotated predecessors
// when series). It says what it read, for messages.
func readAuditTarget(ctx context.Context, t *auditTarget, node string, series bool, fn audit.RecordFunc) (string, error) {
	if t.stream() {
		js := t.node.JetStream()
		if node != "" {
			return "stream " + jsaudit.DefaultStream, jsaudit.ReadChain(ctx, js, jsaudit.DefaultStream, node, fn)
		}
		return "stream " + jsaudit.DefaultStream, jsaudit.ReadAll(ctx, js, jsaudit.DefaultStream, fn)
	}
	files, err := auditSeries(t.files, series)
	if err != nil {
		return "", err
	}
	where := fmt.Sprintf("%d file(s): %s", len(files), filepath.Base(files[len(files)-1]))
	return where, audit.ReadRecords(files, fn)
}
