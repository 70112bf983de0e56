package replay

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a replay found. Its JSON form is `policy replay -format
// json`'s output.
type Report struct {
	Records  int `json:"records"`  // records read
	Sessions int `json:"sessions"` // session decisions replayed
	Stanzas  int `json:"stanzas"`  // stanza decisions replayed
	// WithoutContent counts the stanza decisions made on metadata only
	// (the record holds no stanza); WithoutSession those made without
	// the session facts of their stream (its session.auth record is not
	// in the files read).
	WithoutContent int `json:"without_content"`
	WithoutSession int `json:"without_session"`
	// ReadsContent: the candidate policy reads content or payload facts.
	ReadsContent bool `json:"reads_content"`
	// Skipped counts the session and stanza records that are not policy
	// decisions, by "event decision" (e.g. "stanza bounced").
	Skipped map[string]int `json:"skipped"`
	Groups  []*Group       `json:"groups"`
}

// Group is one partner domain and direction.
type Group struct {
	Partner      string `json:"partner"`
	Direction    string `json:"direction"`
	NewlyDenied  int    `json:"newly_denied"`
	NewlyAllowed int    `json:"newly_allowed"`
	Unjudged     int    `json:"unjudged"`
	Unchanged    int    `json:"unchanged"`
	// Examples holds up to the asked number of records per outcome
	// (not for unchanged), in log order.
	Examples map[Outcome][]Example `json:"examples,omitempty"`
}

func (g *Group) count(o Outcome, keep int, ex Example) {
	switch o {
	case NewlyDenied:
		g.NewlyDenied++
	case NewlyAllowed:
		g.NewlyAllowed++
	case Unjudged:
		g.Unjudged++
	default:
		g.Unchanged++
		return
	}
	if len(g.Examples[o]) >= keep {
		return
	}
	if g.Examples == nil {
		g.Examples = map[Outcome][]Example{}
	}
	g.Examples[o] = append(g.Examples[o], ex)
}

func sortedGroups(m map[groupKey]*Group) []*Group {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b *Group) int {
		return cmp.Or(cmp.Compare(a.Partner, b.Partner), cmp.Compare(a.Direction, b.Direction))
	})
	return out
}

// Changed counts the decisions the candidate would change (newly denied
// and newly allowed; unjudged ones are not known to change).
func (r *Report) Changed() int {
	n := 0
	for _, g := range r.Groups {
		n += g.NewlyDenied + g.NewlyAllowed
	}
	return n
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: the table per partner and
// direction, the examples, what was skipped, and what could not be judged.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "replayed %d session and %d stanza decisions (%d records read)\n\n", r.Sessions, r.Stanzas, r.Records)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTNER\tDIRECTION\tNEWLY DENIED\tNEWLY ALLOWED\tUNJUDGED\tUNCHANGED")
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", g.Partner, g.Direction, g.NewlyDenied, g.NewlyAllowed, g.Unjudged, g.Unchanged)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, o := range []Outcome{NewlyDenied, NewlyAllowed, Unjudged} {
		for _, g := range r.Groups {
			writeExamples(w, o, g)
		}
	}
	r.writeNotes(w)
	_, err := fmt.Fprintf(w, "\n%d decisions would change\n", r.Changed())
	return err
}

func writeExamples(w io.Writer, o Outcome, g *Group) {
	exs := g.Examples[o]
	if len(exs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s, %s %s:\n", strings.ReplaceAll(string(o), "_", " "), g.Partner, g.Direction)
	for _, e := range exs {
		reason := e.Reason
		if reason == "" && e.RecordedReason != "" {
			reason = "(recorded: " + e.RecordedReason + ")"
		}
		fmt.Fprintf(w, "  seq %d  %s  %s  %s -> %s  %s -> %s  %s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Event,
			e.From, e.To, e.Old, e.New, reason)
	}
}

func (r *Report) writeNotes(w io.Writer) {
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "\nskipped (not policy decisions):\n")
		for _, k := range slices.Sorted(maps.Keys(r.Skipped)) {
			fmt.Fprintf(w, "  %d %s\n", r.Skipped[k], k)
		}
	}
	if r.WithoutContent > 0 {
		fmt.Fprintf(w, "\n%d of %d stanza decisions were made on metadata only (recorded without content, audit meta or hash):\n", r.WithoutContent, r.Stanzas)
		fmt.Fprintf(w, "  a change in a content rule cannot be judged for them")
		if r.ReadsContent {
			fmt.Fprintf(w, "; refusals the candidate allows on metadata are counted as unjudged")
		}
		fmt.Fprintln(w)
	}
	if r.WithoutSession > 0 {
		fmt.Fprintf(w, "\n%d stanza decisions were made without their stream's session facts (its session.auth record is not in the files read)\n", r.WithoutSession)
	}
}
