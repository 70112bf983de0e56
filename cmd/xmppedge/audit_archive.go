package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/archive"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
)

// archiveOptions are the flags of `audit export -format eml|jsonl`.
type archiveOptions struct {
	format, domain, jid, since, until string
	series, noVerify                  bool
}

func archiveFlags(fs *flag.FlagSet) *archiveOptions {
	o := &archiveOptions{}
	fs.StringVar(&o.format, "format", "", "eml or jsonl: export the matching records for an archiver (without it: -config with audit.backend jetstream writes every node's chain)")
	fs.StringVar(&o.domain, "domain", "", "-format: local or remote domain, or the domain of from/to")
	fs.StringVar(&o.jid, "jid", "", "-format: from or to: bare JID (any resource) or full JID")
	fs.StringVar(&o.since, "since", "", "-format: records at or after this time")
	fs.StringVar(&o.until, "until", "", "-format: records before this time")
	fs.BoolVar(&o.series, "series", true, "-format: with one FILE, read its rotated predecessors too")
	fs.BoolVar(&o.noVerify, "no-verify", false, "-format: export even from a broken chain (the manifest says where it broke)")
	return o
}

// filtered reports whether a flag of -format was given without it.
func (o *archiveOptions) filtered() bool {
	return o.domain != "" || o.jid != "" || o.since != "" || o.until != "" || o.noVerify || !o.series
}

// auditArchive runs `audit export -format`: it reads every chain of the
// target (the files, the configured log, or each node's chain of the
// cluster's stream), verifying it in the same pass, into an export folder.
func auditArchive(ctx context.Context, o *archiveOptions, cfgPath, out, keyFile string, files []string, stdout, stderr io.Writer) int {
	if out == "" || (len(files) == 0 && cfgPath == "") {
		fmt.Fprintln(stderr, "xmppedge audit export: give -o DIR and the audit file(s), or -config FILE")
		return 2
	}
	if o.format != archive.FormatEML && o.format != archive.FormatJSONL {
		fmt.Fprintf(stderr, "xmppedge audit export: -format %q: use eml or jsonl\n", o.format)
		return 2
	}
	f := audit.Filter{Domain: o.domain, JID: o.jid}
	if err := parseTimes(&f, o.since, o.until, time.Now()); err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 2
	}
	ctx, t, code := openAuditTarget(ctx, "export", cfgPath, files, stderr)
	if code != 0 {
		return code
	}
	defer t.close()
	key, err := t.hmacKey(keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 1
	}
	chains, cleanup, err := archiveChains(ctx, t, o.series)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 1
	}
	e, err := archive.Start(archive.Options{Dir: out, Format: o.format, Filter: f, Verified: !o.noVerify})
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 1
	}
	if code := exportChains(e, chains, key, o.noVerify, stderr); code != 0 {
		e.Abort()
		return code
	}
	m, err := e.Finish()
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
		return 1
	}
	printArchiveSummary(stdout, out, m)
	return 0
}

// chainInput is one chain to read: its files in order, and what the
// manifest names as its source.
type chainInput struct {
	files, source []string
}

// archiveChains lists the chains to read: the file series, or each node's
// chain of the stream written to a temporary folder (cleanup removes it).
func archiveChains(ctx context.Context, t *auditTarget, series bool) ([]chainInput, func(), error) {
	if !t.stream() {
		files, err := auditSeries(t.files, series)
		return []chainInput{{files, files}}, func() {}, err
	}
	dir, err := os.MkdirTemp("", "xmppedge-audit-export-")
	if err != nil {
		return nil, func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	files, err := jsaudit.Export(ctx, t.node.JetStream(), jsaudit.DefaultStream, dir)
	if err != nil {
		return nil, cleanup, fmt.Errorf("reading the stream: %w", err)
	}
	chains := make([]chainInput, 0, len(files))
	for _, f := range files {
		node := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		chains = append(chains, chainInput{[]string{f}, []string{"stream " + jsaudit.DefaultStream + ", node " + node}})
	}
	return chains, cleanup, nil
}

// exportChains reads each chain into the export: verified in the same
// pass, or (noVerify) verified apart and read whole. A broken chain stops
// the export unless noVerify. It returns the exit code.
func exportChains(e *archive.Export, chains []chainInput, key []byte, noVerify bool, stderr io.Writer) int {
	for _, c := range chains {
		files := c.files
		e.BeginChain(c.source)
		var res audit.VerifyResult
		var err error
		if noVerify {
			if res, err = audit.Verify(files, key); err == nil {
				err = audit.ReadRecords(files, e.Add)
			}
		} else {
			res, err = audit.VerifyEach(files, key, e.Add)
		}
		if err != nil {
			fmt.Fprintf(stderr, "xmppedge audit export: %v\n", err)
			return 1
		}
		e.EndChain(res)
		if res.OK {
			continue
		}
		where := fmt.Sprintf("chain broken at %s line %d (seq %d): %s", filepath.Base(res.File), res.Line, res.Seq, res.Reason)
		if !noVerify {
			fmt.Fprintf(stderr, "xmppedge audit export: %s; nothing exported (audit verify says more; -no-verify exports what can be read)\n", where)
			return 1
		}
		fmt.Fprintf(stderr, "warning: %s; exporting anyway (-no-verify), the manifest says so\n", where)
	}
	return 0
}

func printArchiveSummary(w io.Writer, dir string, m *archive.Manifest) {
	c := m.Counts
	fmt.Fprintf(w, "exported %d message(s) and %d record line(s) to %s (format %s): %d records read, %d matched\n",
		c.Messages, c.Lines, dir, m.Format, c.Read, c.Matched)
	if c.NoBody > 0 || c.Unparsed > 0 {
		fmt.Fprintf(w, "note: %d message stanza(s) kept in full without a body and %d that did not parse are in %s\n", c.NoBody, c.Unparsed, archive.RecordsName)
	}
	for _, ch := range m.Chains {
		state := "intact"
		if !ch.Intact {
			state = "BROKEN: " + ch.Break
		}
		fmt.Fprintf(w, "chain %s: %d records, seq %d to %d, last hash %s, %s\n", chainName(ch.Source), ch.Records, ch.FirstSeq, ch.LastSeq, ch.LastHash, state)
	}
	fmt.Fprintf(w, "manifest: %s\n", filepath.Join(dir, archive.ManifestName))
}

// chainName names a chain by its last source, a file's base name.
func chainName(source []string) string {
	if len(source) == 0 {
		return "(none)"
	}
	return filepath.Base(source[len(source)-1])
}
