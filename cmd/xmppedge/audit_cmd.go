package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
)

const auditUsage = `usage:
  xmppedge audit verify [-hmac-key-file F] [-series=false] FILE...
      check the hash chain over FILE... (oldest first); exit 0 only if intact.
      One current FILE stands for its whole series: the rotated files
      FILE.<time>.<seq> beside it, oldest first, then FILE (-series=false: FILE only).
  xmppedge audit tail [-n 20] [-f] [-format table|jsonl] FILE
      the last records of FILE; -f follows new records across rotation.
  xmppedge audit query [-domain D] [-jid J] [-since T] [-until T] [-decision D]
                       [-event E] [-format table|jsonl] [-series=false] FILE...
      the records matching every filter given. T is RFC 3339, a date
      (2026-03-15, UTC) or a duration ago (24h). -event session matches
      session.open/auth/close. -jid with a /resource matches it exactly.
`

// auditCommand runs `xmppedge audit SUBCOMMAND ...` and returns the exit
// code: 0 success (verify: chain intact), 1 failure (verify: broken or
// unreadable), 2 usage.
func auditCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "tail":
		return auditTail(args[1:], stdout, stderr)
	case "query":
		return auditQuery(args[1:], stdout, stderr)
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

func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("verify", stderr)
	keyFile := fs.String("hmac-key-file", "", "the HMAC key file of a keyed log (audit.hmac_key_file)")
	series := fs.Bool("series", true, "with one FILE, verify its rotated predecessors too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "xmppedge audit verify: name the audit file(s)")
		return 2
	}
	var key []byte
	if *keyFile != "" {
		k, err := audit.LoadHMACKey(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
			return 1
		}
		key = k
	}
	files, err := auditSeries(fs.Args(), *series)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
		return 1
	}
	res, err := audit.Verify(files, key)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit verify: %v\n", err)
		return 1
	}
	if !res.OK {
		fmt.Fprintf(stdout, "chain broken at %s line %d (seq %d): %s\n", res.File, res.Line, res.Seq, res.Reason)
		fmt.Fprintf(stdout, "%d records verified before the break\n", res.Records)
		return 1
	}
	if res.Records == 0 {
		fmt.Fprintf(stdout, "0 records in %d file(s), chain intact (empty)\n", res.Files)
		return 0
	}
	fmt.Fprintf(stdout, "%d records, chain intact (%d file(s), seq %d to %d, last hash %s)\n",
		res.Records, res.Files, res.FirstSeq, res.LastSeq, res.LastHash)
	if res.FirstPrev != "" {
		fmt.Fprintf(stdout, "note: the first record (seq %d) continues an earlier chain (prev %s): earlier files were not given\n", res.FirstSeq, res.FirstPrev)
	}
	if res.Recoveries > 0 {
		fmt.Fprintf(stdout, "note: %d torn-tail recovery record(s) (event %s): a crash cut a line, the chain continues from the last complete record\n", res.Recoveries, audit.EventLogRecovered)
	}
	return 0
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

func auditTail(args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("tail", stderr)
	n := fs.Int("n", 20, "how many records")
	follow := fs.Bool("f", false, "follow: print new records as they are written, until interrupted")
	format := fs.String("format", "table", "table or jsonl")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *n < 0 {
		fmt.Fprintln(stderr, "xmppedge audit tail: name one audit file (and -n 0 or more)")
		return 2
	}
	out, err := newRecordPrinter(*format, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
		return 2
	}
	path := fs.Arg(0)
	end, err := audit.LastRecords(path, *n, out)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
		return 1
	}
	if !*follow {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := audit.Follow(ctx, path, end, 200*time.Millisecond, out); err != nil {
		fmt.Fprintf(stderr, "xmppedge audit tail: %v\n", err)
		return 1
	}
	return 0
}

func auditQuery(args []string, stdout, stderr io.Writer) int {
	fs := auditFlags("query", stderr)
	var f audit.Filter
	fs.StringVar(&f.Domain, "domain", "", "local or remote domain, or the domain of from/to")
	fs.StringVar(&f.JID, "jid", "", "from or to: bare JID (any resource) or full JID")
	since := fs.String("since", "", "records at or after this time")
	until := fs.String("until", "", "records before this time")
	fs.StringVar(&f.Decision, "decision", "", "allow, deny, would-deny, bounced, undeliverable or error")
	fs.StringVar(&f.Event, "event", "", "event, or a prefix like session")
	format := fs.String("format", "table", "table or jsonl")
	series := fs.Bool("series", true, "with one FILE, read its rotated predecessors too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "xmppedge audit query: name the audit file(s)")
		return 2
	}
	now := time.Now()
	for _, b := range []struct {
		text string
		into *time.Time
	}{{*since, &f.Since}, {*until, &f.Until}} {
		if b.text == "" {
			continue
		}
		t, err := audit.ParseTime(b.text, now)
		if err != nil {
			fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
			return 2
		}
		*b.into = t
	}
	out, err := newRecordPrinter(*format, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
		return 2
	}
	files, err := auditSeries(fs.Args(), *series)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
		return 1
	}
	matched := 0
	err = audit.ReadRecords(files, func(r *audit.Record, line []byte) error {
		if !f.Match(r) {
			return nil
		}
		matched++
		return out(r, line)
	})
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit query: %v\n", err)
		return 1
	}
	if matched == 0 {
		fmt.Fprintf(stderr, "no records match (in %d file(s): %s)\n", len(files), filepath.Base(files[len(files)-1]))
	}
	return 0
}
