package docs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/policy"
)

// Markers on the first line of a fenced block that say what the block is.
const (
	xmppedgeMarker = "# xmppedge.yaml"
	prosodyMarker  = "-- prosody.cfg.lua"
	partnersMarker = "# partners.yaml" // policy data for the shipped rules
)

// block is one fenced code block of a Markdown file.
type block struct {
	file string // the Markdown file
	line int    // line of the opening fence
	lang string // the info string ("yaml", "lua", ...)
	body string
}

func (b block) String() string { return fmt.Sprintf("%s:%d (```%s)", b.file, b.line, b.lang) }

// firstLine is the block's first non-blank line, trimmed.
func (b block) firstLine() string {
	for _, l := range strings.Split(b.body, "\n") {
		if s := strings.TrimSpace(l); s != "" {
			return s
		}
	}
	return ""
}

// fencedBlocks returns the ``` blocks of a Markdown file (fences at the start
// of a line, not indented).
func fencedBlocks(t *testing.T, file string) []block {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	var cur *block
	var body strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{file: file, line: n, lang: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			body.Reset()
		case cur != nil && strings.TrimRight(line, " ") == "```":
			cur.body = body.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if cur != nil {
		t.Errorf("%s:%d: code block never closed", file, cur.line)
	}
	return out
}

func guides(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Markdown guides in docs/")
	}
	sort.Strings(files)
	return files
}

// missingFileProblem reports whether a config problem only says that a file
// or folder named by the config is absent on this machine: the guides name
// production paths (/etc/xmppedge, /var/lib/xmppedge) that do not exist
// here. Everything else (unknown keys, wrong types, bad values) is a real
// error in the guide.
func missingFileProblem(e config.FieldError) bool {
	return e.Field != "" && (strings.Contains(e.Problem, "does not exist") || strings.Contains(e.Problem, "is not a folder"))
}

// checkXmppedgeConfig parses data with config.Parse, the strict parser of
// `xmppedge check`, and reports every problem that is not a missing file.
func checkXmppedgeConfig(t *testing.T, where string, data []byte, dir string) {
	t.Helper()
	_, err := config.Parse(data, dir)
	if err == nil {
		return
	}
	var fe config.FieldErrors
	if !errors.As(err, &fe) {
		t.Errorf("%s: %v", where, err)
		return
	}
	for _, e := range fe {
		if missingFileProblem(e) {
			continue
		}
		t.Errorf("%s: %s", where, e.Error())
	}
}

// TestXmppedgeConfigs parses every xmppedge configuration of the guides (the
// ```yaml blocks whose first line is "# xmppedge.yaml") and
// example/xmppedge.yaml with the strict parser.
func TestXmppedgeConfigs(t *testing.T) {
	perFile := map[string]int{}
	for _, f := range guides(t) {
		for _, b := range fencedBlocks(t, f) {
			if b.lang != "yaml" || !strings.HasPrefix(b.firstLine(), xmppedgeMarker) {
				continue
			}
			perFile[f]++
			checkXmppedgeConfig(t, b.String(), []byte(b.body), t.TempDir())
		}
	}
	for _, f := range []string{"prosody.md", "ejabberd.md", "openfire.md"} {
		if perFile[f] == 0 {
			t.Errorf("%s has no ```yaml block starting with %q: the guide's xmppedge config would go unchecked", f, xmppedgeMarker)
		}
	}
	t.Logf("xmppedge configs checked in the guides: %v", perFile)

	const example = "example/xmppedge.yaml"
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(filepath.Dir(example))
	if err != nil {
		t.Fatal(err)
	}
	checkXmppedgeConfig(t, example, data, dir)
	// The example is "every section": keep it so.
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"domains", "inside", "outside", "dns", "tls", "dialback", "limits", "log", "policy", "audit", "metrics"} {
		if _, ok := top[section]; !ok {
			t.Errorf("%s: section %q is missing; the example shows every section", example, section)
		}
	}
}

// TestParserRejectsMistakes makes sure the check above has teeth: the same
// filter must not let an unknown key, a wrong type or a bad value through.
func TestParserRejectsMistakes(t *testing.T) {
	base := "domains: [company.example]\ninside: {listen: [\"10.1.0.5:5269\"], server: \"10.1.0.2:5269\"}\n" +
		"outside: {listen: [\"203.0.113.10:5269\"]}\ndialback: {secret_file: /nonexistent/dialback.secret}\n" +
		"policy: {rules: /nonexistent/rules}\naudit: {path: /nonexistent/audit/audit.jsonl}\n"
	for name, extra := range map[string]string{
		"unknown key": "log: {levle: debug}\n",
		"wrong type":  "limits: {queue_size: many}\n",
		"bad value":   "inside: {listen: [\"10.1.0.5:5269\"], server: \"10.1.0.2:5269\", tls: sometimes}\n",
		"no unit":     "limits: {idle_timeout: 600}\n",
	} {
		doc := base + extra
		if extra != "" && strings.HasPrefix(extra, "inside:") {
			doc = strings.Replace(base, "inside: {listen: [\"10.1.0.5:5269\"], server: \"10.1.0.2:5269\"}\n", extra, 1)
		}
		_, err := config.Parse([]byte(doc), t.TempDir())
		var fe config.FieldErrors
		if !errors.As(err, &fe) {
			t.Errorf("%s: Parse returned %v, want FieldErrors", name, err)
			continue
		}
		real := 0
		for _, e := range fe {
			if !missingFileProblem(e) {
				real++
			}
		}
		if real == 0 {
			t.Errorf("%s: every problem was filtered as a missing file: %v", name, fe)
		}
	}
	// And the base alone is only missing files.
	_, err := config.Parse([]byte(base), t.TempDir())
	var fe config.FieldErrors
	if errors.As(err, &fe) {
		for _, e := range fe {
			if !missingFileProblem(e) {
				t.Errorf("base config: %s", e.Error())
			}
		}
	}
}

// TestOtherYAML checks that every other ```yaml block (ejabberd.yml
// excerpts, ...) is at least valid YAML.
func TestOtherYAML(t *testing.T) {
	n := 0
	for _, f := range guides(t) {
		for _, b := range fencedBlocks(t, f) {
			if (b.lang != "yaml" && b.lang != "yml") || strings.HasPrefix(b.firstLine(), xmppedgeMarker) {
				continue
			}
			n++
			var v any
			if err := yaml.Unmarshal([]byte(b.body), &v); err != nil {
				t.Errorf("%s: not valid YAML: %v", b, err)
			}
		}
	}
	t.Logf("other YAML blocks checked: %d", n)
}

// luaChecker returns a command line that checks the syntax of a Lua file
// (the file name is appended), or "" when no Lua is installed.
func luaChecker() ([]string, string) {
	for _, c := range []string{"luac5.4", "luac5.3", "luac5.2", "luac5.1", "luac"} {
		if p, err := exec.LookPath(c); err == nil {
			return []string{p, "-p"}, c + " -p"
		}
	}
	for _, c := range []string{"lua5.4", "lua5.3", "lua5.2", "lua5.1", "lua"} {
		if p, err := exec.LookPath(c); err == nil {
			// loadfile compiles without running; arg[1] is the file.
			return []string{p, "-e", `local f, err = loadfile(arg[1]) if not f then io.stderr:write(err, "\n") os.exit(1) end`, "-"}, c + " loadfile"
		}
	}
	return nil, ""
}

// TestProsodyLua compiles every ```lua block marked "-- prosody.cfg.lua"
// (Prosody's config file is Lua) with luac -p, or lua's loadfile.
func TestProsodyLua(t *testing.T) {
	var blocks []block
	for _, f := range guides(t) {
		for _, b := range fencedBlocks(t, f) {
			if b.lang == "lua" && strings.HasPrefix(b.firstLine(), prosodyMarker) {
				blocks = append(blocks, b)
			}
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("no ```lua block starting with %q in the guides", prosodyMarker)
	}
	argv, how := luaChecker()
	if argv == nil {
		t.Skipf("no Lua compiler or interpreter (luac5.4, lua5.4, luac, lua) on PATH: %d Prosody config block(s) not syntax-checked; apt-get install lua5.4", len(blocks))
	}
	dir := t.TempDir()
	for i, b := range blocks {
		file := filepath.Join(dir, fmt.Sprintf("block%d.cfg.lua", i))
		if err := os.WriteFile(file, []byte(b.body), 0o644); err != nil {
			t.Fatal(err)
		}
		// luac -p FILE, or lua -e CODE - FILE (FILE is arg[1]; the script
		// "-" is the empty standard input).
		args := append(slices.Clone(argv[1:]), file)
		out, err := exec.Command(argv[0], args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: not valid Lua (%s): %v\n%s", b, how, err, out)
		}
	}
	t.Logf("%d Prosody config block(s) checked with %s", len(blocks), how)
}

// TestSystemdUnit runs `systemd-analyze verify` on xmppedge.service. verify
// needs the binaries of Exec*= lines to exist, so a copy with
// /usr/local/bin/xmppedge replaced by /bin/true is checked; it exits 0 on
// unknown keys, so any warning about the unit fails the test too.
func TestSystemdUnit(t *testing.T) {
	const unit = "xmppedge.service"
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/xmppedge run -config /etc/xmppedge/xmppedge.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"User=xmppedge",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"ReadWritePaths=/var/lib/xmppedge",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"LimitNOFILE=65536",
		"Restart=on-failure",
		"TimeoutStopSec=15",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("%s: %q is missing", unit, want)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (it comes with the systemd package): the unit's syntax is not verified here")
	}
	bin := "/bin/true"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s does not exist: cannot stand in for xmppedge in the unit", bin)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, unit)
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(text, "/usr/local/bin/xmppedge", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", "--man=no", copyPath)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Skip("systemd-analyze verify did not finish within 60 s in this environment")
	}
	output := strings.TrimSpace(string(out))
	// Inside some containers systemd-analyze cannot set up its manager at
	// all; that is the environment, not the unit.
	for _, env := range []string{"Failed to initialize manager", "Failed to setup working directory", "Failed to allocate manager object", "Operation not permitted"} {
		if err != nil && strings.Contains(output, env) && !strings.Contains(output, unit+":") {
			t.Skipf("systemd-analyze cannot run in this environment (%q): the unit is not verified here\n%s", env, output)
		}
	}
	if err != nil {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unit, err, output)
	}
	for _, line := range strings.Split(output, "\n") {
		if strings.Contains(line, unit) {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	t.Logf("systemd-analyze verify: ok%s", map[bool]string{true: "", false: " (other output: " + output + ")"}[output == ""])
}

// registeredMetrics returns the metric families xmppedge registers, with
// every method of metrics.Metrics exercised so that every series exists,
// and whether each family is a histogram.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New("test")
	oops := errors.New("test")
	m.SessionOpened(metrics.LegOutside, metrics.RoleIncoming, metrics.AuthSASLExternal)
	m.SessionOpened(metrics.LegInside, metrics.RoleOutgoing, metrics.AuthDialback)
	m.SessionClosed(metrics.LegInside, metrics.RoleOutgoing, metrics.AuthDialback)
	m.SessionAttempt(metrics.LegOutside, metrics.RoleIncoming)
	m.SessionFailure(metrics.LegOutside, metrics.RoleOutgoing, metrics.FailTLS)
	m.Stanza(metrics.DirInbound, metrics.KindMessage, metrics.OutcomeRelayed, "")
	m.Stanza(metrics.DirOutbound, metrics.KindMessage, metrics.OutcomeDenied, metrics.ReasonPolicyViolation)
	m.Stanza(metrics.DirOutbound, metrics.KindIQ, metrics.OutcomeBounced, metrics.ReasonRemoteServerNotFound)
	m.Bytes(metrics.LegOutside, metrics.BytesReceived, 100)
	m.PolicyDecision(metrics.PolicyKindStanza, time.Microsecond, true, false)
	m.PolicyDecision(metrics.PolicyKindSession, time.Millisecond, false, true)
	m.DNSLookup(metrics.QTypeSRV, time.Millisecond, nil)
	m.DNSLookup(metrics.QTypeA, time.Millisecond, oops)
	m.TLSHandshake(metrics.LegOutside, metrics.ResultSuccess, "TLS 1.3")
	m.Dialback(metrics.DialbackReceiving, metrics.DialbackValid)
	m.AuditRecord(time.Microsecond, nil)
	m.AuditRecord(time.Microsecond, oops)
	m.AuditFsync(200 * time.Microsecond)
	m.QueueDepth(metrics.LegOutside, 1)
	m.CertificateExpiry("company.example", time.Now().Add(30*24*time.Hour))
	m.PolicyRevision("r1")
	m.Reload(nil)
	m.Reload(oops)
	m.ReloadClosedSessions(1)

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]bool, len(families))
	for _, f := range families {
		out[f.GetName()] = f.GetType().String() == "HISTOGRAM"
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:xmppedge|process|go)_[a-z0-9_]+`)

// TestGrafanaDashboard checks that grafana-dashboard.json is a dashboard
// whose queries only use metrics xmppedge registers.
func TestGrafanaDashboard(t *testing.T) {
	const file = "grafana-dashboard.json"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Panels        []struct {
			Title      string          `json:"title"`
			Type       string          `json:"type"`
			Datasource json.RawMessage `json:"datasource"`
			Targets    []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", file, err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("%s: title and uid must be set", file)
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("%s: schemaVersion %d; want a current Grafana schema (>= 36)", file, dash.SchemaVersion)
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		if v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Errorf("%s: no datasource variable DS_PROMETHEUS of type prometheus", file)
	}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if !strings.Contains(string(p.Datasource), "${DS_PROMETHEUS}") {
			t.Errorf("%s: panel %q does not use the ${DS_PROMETHEUS} datasource", file, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", file, p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: panel %q has an empty query", file, p.Title)
			}
			queries++
		}
	}

	registered := registeredMetrics(t)
	used := map[string]bool{}
	for _, name := range metricName.FindAllString(string(data), -1) {
		used[name] = true
	}
	covered := map[string]bool{}
	for name := range used {
		family := name
		if _, ok := registered[name]; !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suffix); cut && registered[base] {
					family = base
					break
				}
			}
		}
		if _, ok := registered[family]; !ok {
			t.Errorf("%s uses %s, which xmppedge does not register (see internal/metrics)", file, name)
			continue
		}
		if registered[family] && family == name && strings.HasPrefix(name, "xmppedge_") {
			t.Errorf("%s uses histogram %s without _bucket, _sum or _count", file, name)
		}
		covered[family] = true
	}
	var missing []string
	for name := range registered {
		if strings.HasPrefix(name, "xmppedge_") && !covered[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Logf("note: xmppedge metrics not shown on the dashboard: %s", strings.Join(missing, ", "))
	}
	t.Logf("%d panels, %d queries, %d metric names, all registered", len(dash.Panels), queries, len(used))
}

// TestIndex checks that docs/README.md links every guide and file.
func TestIndex(t *testing.T) {
	index, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"xmppedge.service", "grafana-dashboard.json", "example/xmppedge.yaml"}
	for _, f := range guides(t) {
		if f != "README.md" {
			files = append(files, f)
		}
	}
	for _, f := range files {
		if !strings.Contains(string(index), "("+f+")") {
			t.Errorf("README.md does not link %s", f)
		}
	}
}

// TestDashboardPromQL parses every query of the dashboard with promtool
// (as recording rules, Grafana's variables replaced by sample values), when
// promtool is installed.
func TestDashboardPromQL(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus): the dashboard's PromQL is not parsed here")
	}
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			n++
			expr, _ := json.Marshal(vars.Replace(tg.Expr)) // a JSON string is a YAML string
			fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n", n, expr)
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%d dashboard queries parsed by promtool", n)
}

// TestJSONBlocks checks that every ```json block of the guides is valid JSON.
func TestJSONBlocks(t *testing.T) {
	for _, f := range guides(t) {
		for _, b := range fencedBlocks(t, f) {
			if b.lang != "json" {
				continue
			}
			if !json.Valid([]byte(b.body)) {
				t.Errorf("%s: not valid JSON", b)
			}
		}
	}
}

// shippedRules is the folder of the shipped Rego policy.
const shippedRules = "../rules"

// loadPolicy loads rules with one data file. Decisions are not cached (no
// background work to stop) and have a generous timeout (the default 50ms
// is wall-clock: a busy machine must not fail the guide).
func loadPolicy(t *testing.T, rules, data string) (*policy.Engine, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return policy.New(ctx, policy.Config{Rules: rules, Data: []string{data}, CacheSize: -1, Timeout: time.Minute})
}

// e2eeExpectations returns, for each partner entry of a partners.yaml
// snippet whose domain line has the comment "E2EE allowed" or "E2EE
// refused", its domain and whether an encrypted message to it is allowed.
func e2eeExpectations(t *testing.T, b block) map[string]bool {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(b.body), &doc); err != nil || len(doc.Content) == 0 {
		t.Fatalf("%s: not valid YAML: %v", b, err)
	}
	top := doc.Content[0]
	out := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "partners" {
			continue
		}
		for _, entry := range top.Content[i+1].Content {
			for j := 0; j+1 < len(entry.Content); j += 2 {
				if entry.Content[j].Value != "domain" {
					continue
				}
				v := entry.Content[j+1]
				switch c := v.LineComment + entry.Content[j].LineComment; {
				case strings.Contains(c, "E2EE allowed"):
					out[v.Value] = true
				case strings.Contains(c, "E2EE refused"):
					out[v.Value] = false
				}
			}
		}
	}
	return out
}

// TestPolicyDataSnippets loads every ```yaml block whose first line starts
// with "# partners.yaml" as the data of the shipped rules (the engine
// checks the partner settings' types and values), and checks what the
// comments of its partner entries promise: an OMEMO message to a partner
// marked "E2EE allowed" passes, one to a partner marked "E2EE refused" is
// refused with the reason users see.
func TestPolicyDataSnippets(t *testing.T) {
	perFile := map[string]int{}
	checked := 0
	for _, f := range guides(t) {
		for _, b := range fencedBlocks(t, f) {
			if b.lang != "yaml" || !strings.HasPrefix(b.firstLine(), partnersMarker) {
				continue
			}
			perFile[f]++
			data := filepath.Join(t.TempDir(), "partners.yaml")
			if err := os.WriteFile(data, []byte(b.body), 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := loadPolicy(t, shippedRules, data)
			if err != nil {
				t.Errorf("%s: the shipped rules reject this data: %v", b, err)
				continue
			}
			want := e2eeExpectations(t, b)
			if len(want) == 0 {
				t.Errorf("%s: no partner marked \"# E2EE allowed\" or \"# E2EE refused\": nothing checks what the snippet does", b)
			}
			for domain, allowed := range want {
				to := "bob@" + strings.Replace(domain, "*.", "chat.", 1)
				in := policy.StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", ID: "docs",
					From:       policy.JID{Full: "alice@company.example/phone", Bare: "alice@company.example", Domain: "company.example"},
					To:         policy.JID{Full: to, Bare: to, Domain: to[strings.IndexByte(to, '@')+1:]},
					Children:   []policy.Child{{Name: "encrypted", Namespace: "eu.siacs.conversations.axolotl"}, {Name: "body", Namespace: "jabber:server"}},
					Body:       "I sent you an OMEMO encrypted message but your client doesn't seem to support that.",
					Encryption: policy.EncryptionOMEMO, BodyIsFallback: true,
				}
				d := e.DecideStanza(context.Background(), &in)
				checked++
				if d.Allow != allowed {
					t.Errorf("%s: an OMEMO message to %s: allow %v (%s), the comment says allowed %v", b, in.To.Domain, d.Allow, d.Reason, allowed)
				}
				if !allowed && !strings.Contains(d.Reason, "end-to-end encrypted messages (OMEMO) to "+in.To.Domain+" are not permitted") {
					t.Errorf("%s: refused for %q, not for the encryption", b, d.Reason)
				}
			}
		}
	}
	if perFile["compliance.md"] < 4 {
		t.Errorf("compliance.md has %d partners.yaml snippets; the three choices and the files settings make 4", perFile["compliance.md"])
	}
	t.Logf("partners.yaml snippets checked: %v; %d encrypted messages decided", perFile, checked)
}

// TestRegoSnippets compiles every ```rego block of the guides that starts
// with a package under data.xmppedge together with the shipped rules.
func TestRegoSnippets(t *testing.T) {
	shipped, err := filepath.Glob(filepath.Join(shippedRules, "*.rego"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range guides(t) {
		for i, b := range fencedBlocks(t, f) {
			if b.lang != "rego" || !strings.HasPrefix(b.firstLine(), "package xmppedge.") {
				continue
			}
			n++
			dir := t.TempDir()
			for _, r := range shipped {
				if strings.HasSuffix(r, "_test.rego") {
					continue
				}
				src, err := os.ReadFile(r)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(r)), src, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("snippet%d.rego", i)), []byte(b.body), 0o644); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "data.yaml")
			if err := os.WriteFile(data, []byte("partners: [{domain: partner.example}]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := loadPolicy(t, dir, data); err != nil {
				t.Errorf("%s: does not compile with the shipped rules: %v", b, err)
			}
		}
	}
	t.Logf("%d Rego snippets compiled with the shipped rules", n)
}
