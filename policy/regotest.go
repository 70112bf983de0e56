package policy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego test (a rule named test_…).
type TestResult struct {
	Name     string // data.package.test_name
	Location string // file:line
	Pass     bool
	Skip     bool   // todo_test_…
	Failure  string // why it failed: an error, or "" for a plain false/undefined result
	Duration time.Duration
	Output   string // print() output
}

// RunRegoTests runs the *_test.rego tests of a rules directory against its
// policy and data files, the way `opa test` does (OPA's own test runner),
// with the xmppedge built-ins available. Built-in errors fail a test, as
// they fail a decision closed in the engine.
func RunRegoTests(ctx context.Context, rulesDir string, dataFiles []string) ([]TestResult, error) {
	src, err := loadFiles(rulesDir, dataFiles, true)
	if err != nil {
		return nil, err
	}
	if err := checkDataAgainstPackages(src); err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(src.data, inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the test store: %w", err)
	}
	defer store.Abort(ctx, txn)
	compiler := ast.NewCompiler().WithCapabilities(capabilities()).WithEnablePrintStatements(true).WithDefaultRegoVersion(ast.RegoV1)
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(src.modules).
		AddCustomBuiltins(newBuiltinSet().testerBuiltins()).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		SetTimeout(10 * time.Second)
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("rule tests do not compile (fix the file and line named): %w", err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{
			Name:     r.Package + "." + r.Name,
			Pass:     r.Pass(),
			Skip:     r.Skip,
			Duration: r.Duration,
			Output:   string(r.Output),
		}
		if r.Location != nil {
			tr.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		}
		if r.Error != nil {
			tr.Failure = r.Error.Error()
		}
		out = append(out, tr)
	}
	sort.SliceStable(out, func(i, j int) bool { return lessLocation(out[i].Location, out[j].Location) })
	return out, nil
}

// lessLocation orders "file:line" by file, then line number.
func lessLocation(a, b string) bool {
	fa, la := splitLocation(a)
	fb, lb := splitLocation(b)
	if fa != fb {
		return fa < fb
	}
	return la < lb
}

func splitLocation(s string) (string, int) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0
	}
	n, _ := strconv.Atoi(s[i+1:])
	return s[:i], n
}
