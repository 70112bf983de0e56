package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/posture"
	"github.com/xmppedge/xmppedge/policy"
)

// partnersTimeout bounds the question to the running gateway.
const partnersTimeout = 5 * time.Second

// partnerRow is one line of `xmppedge partners`: a partner entry of the
// policy data, with what the running gateway knows of it.
type partnerRow struct {
	Partner   string        `json:"partner"`
	Direction string        `json:"direction"`
	Owner     string        `json:"owner,omitempty"`
	Reference string        `json:"reference,omitempty"`
	Expires   *time.Time    `json:"expires,omitempty"`
	DaysLeft  *int          `json:"days_left,omitempty"` // whole days; negative: expired
	Sessions  *int          `json:"sessions,omitempty"`  // nil: the gateway was not asked
	Last      *posture.Seen `json:"last_posture,omitempty"`
	Best      *posture.Seen `json:"best_posture,omitempty"`
	Required  string        `json:"require_posture,omitempty"`
}

// partnersCommand is `xmppedge partners`: the partners of the policy
// data with their agreements, and from the running gateway's admin API
// their sessions and postures.
func partnersCommand(ctx context.Context, args []string, stdout, stderr io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("partners", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "xmppedge.yaml", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	eng, err := newPolicyEngine(ctx, cfg, slog.New(slog.DiscardHandler), false)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	rows := partnerRows(eng.Partners(), now)
	states, err := askPartners(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge partners: the running gateway was not asked (%v): sessions and postures are not shown\n", err)
	} else {
		mergePartnerStates(rows, states)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintf(stderr, "xmppedge partners: %v\n", err)
			return 1
		}
		return 0
	}
	printPartnerRows(stdout, rows)
	return 0
}

// partnerRows are the rows of the data's partner entries.
func partnerRows(ps []policy.Partner, now time.Time) []partnerRow {
	rows := make([]partnerRow, 0, len(ps))
	for _, p := range ps {
		r := partnerRow{Partner: p.Domain, Direction: p.Direction}
		if a := p.Agreement; a != nil {
			exp := a.Expires
			days := int(math.Floor(exp.Sub(now).Hours() / 24))
			r.Owner, r.Reference, r.Expires, r.DaysLeft = a.Owner, a.Reference, &exp, &days
		}
		if rp := p.RequirePosture; rp != nil {
			r.Required = strings.TrimPrefix(strings.Join([]string{tlsRequired(rp.TLS), rp.Auth}, ", "), ", ")
		}
		rows = append(rows, r)
	}
	return rows
}

func tlsRequired(v string) string {
	if v == "" {
		return ""
	}
	return "TLS " + v
}

// mergePartnerStates adds the gateway's sessions and postures to the rows
// of the partner entries they fall under.
func mergePartnerStates(rows []partnerRow, states []admin.PartnerState) {
	for i := range rows {
		r := &rows[i]
		n := 0
		for _, s := range states {
			if s.Partner != r.Partner {
				continue
			}
			n += s.Sessions
			if s.Last != nil && (r.Last == nil || s.Last.At.After(r.Last.At)) {
				r.Last = s.Last
			}
			if s.Best != nil && (r.Best == nil || s.Best.At.After(r.Best.At)) {
				r.Best = s.Best
			}
		}
		r.Sessions = &n
	}
}

func printPartnerRows(w io.Writer, rows []partnerRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTNER\tDIRECTION\tOWNER\tREFERENCE\tEXPIRES\tDAYS LEFT\tSESSIONS\tLAST POSTURE\tBEST POSTURE\tREQUIRED")
	for _, r := range rows {
		expires, days, sessions := "-", "-", "?"
		if r.Expires != nil {
			expires = r.Expires.Format(time.RFC3339)
			days = fmt.Sprint(*r.DaysLeft)
			if *r.DaysLeft < 0 {
				days = "EXPIRED"
			}
		}
		if r.Sessions != nil {
			sessions = fmt.Sprint(*r.Sessions)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Partner, r.Direction, dash(r.Owner), dash(r.Reference),
			expires, days, sessions, seenString(r.Last), seenString(r.Best), dash(r.Required))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func seenString(s *posture.Seen) string {
	if s == nil {
		return "-"
	}
	return s.Posture.String() + " (" + s.At.Format(time.DateOnly) + ")"
}

// askPartners asks the running gateway's admin API (metrics.listen, with
// metrics.admin_token_file's token) for GET /admin/partners.
func askPartners(ctx context.Context, cfg *config.Config) ([]admin.PartnerState, error) {
	m := cfg.Metrics
	if !m.Admin || m.Listen == "" || m.AdminTokenFile == "" {
		return nil, fmt.Errorf("the admin API with a token is not configured (metrics.admin, metrics.listen, metrics.admin_token_file)")
	}
	token, err := admin.LoadToken(cfg.ResolvePath(m.AdminTokenFile))
	if err != nil {
		return nil, fmt.Errorf("metrics.admin_token_file: %w", err)
	}
	client, base, err := adminClient(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, partnersTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/admin/partners", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s %s", req.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	var states []admin.PartnerState
	if err := json.Unmarshal(body, &states); err != nil {
		return nil, fmt.Errorf("%s: the answer is not a partner list: %w", req.URL, err)
	}
	return states, nil
}

// adminClient is an HTTP client for the admin API and its base URL: the
// listener's address (a wildcard one asked on loopback); over HTTPS it
// trusts the certificates of metrics.tls_cert_file.
func adminClient(cfg *config.Config) (*http.Client, string, error) {
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("metrics.listen: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	if !cfg.Metrics.TLS() {
		return &http.Client{}, "http://" + addr, nil
	}
	pem, err := os.ReadFile(cfg.ResolvePath(cfg.Metrics.TLSCertFile))
	if err != nil {
		return nil, "", fmt.Errorf("metrics.tls_cert_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pool.AppendCertsFromPEM(pem)
	tc := certs.Harden(&tls.Config{RootCAs: pool})
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}, "https://" + addr, nil
}
