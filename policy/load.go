package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// source is a policy as read from files or a bundle, before compilation.
type source struct {
	modules  map[string]*ast.Module // by file name
	data     map[string]any         // the whole data document
	revision string
	digest   string // of the content: a reload with the same digest changes nothing
	origin   string // for messages: the rules directory or the bundle URL
}

// dataRoot is the key under data where data files are merged.
const dataRoot = "xmppedge"

// isRegoFile reports whether path is a policy file; tests are included
// only when withTests is set.
func isRegoFile(path string, withTests bool) bool {
	if !strings.HasSuffix(path, ".rego") {
		return false
	}
	return withTests || !strings.HasSuffix(path, "_test.rego")
}

// regoFiles lists the .rego files under dir, sorted.
func regoFiles(dir string, withTests bool) ([]string, error) {
	var files []string
	// The folder itself may be a symbolic link (e.g. to a versioned
	// release of the rules); WalkDir does not follow a linked root.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isRegoFile(path, withTests) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading rules directory: %w", err)
	}
	sort.Strings(files)
	return files, nil
}

// loadFiles reads a rules directory and data files. Parse errors name the
// file and line; data errors name the file.
func loadFiles(rulesDir string, dataFiles []string, withTests bool) (*source, error) {
	files, err := regoFiles(rulesDir, withTests)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .rego files in rules directory %s", rulesDir)
	}
	h := sha256.New()
	src := &source{modules: map[string]*ast.Module{}, origin: rulesDir}
	var errs ast.Errors
	for _, f := range files {
		bs, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading policy: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(bs))
		h.Write(bs)
		m, err := ast.ParseModuleWithOpts(f, string(bs), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			var pe ast.Errors
			if errors.As(err, &pe) {
				errs = append(errs, pe...)
				continue
			}
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		src.modules[f] = m
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("policy does not parse (fix the file and line named): %w", errs)
	}
	merged := map[string]any{}
	for _, f := range dataFiles {
		bs, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading data: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(bs))
		h.Write(bs)
		var doc any
		if err := util.Unmarshal(bs, &doc); err != nil {
			return nil, fmt.Errorf("data file %s is neither JSON nor YAML: %w", f, err)
		}
		if doc == nil { // an empty file
			continue
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("data file %s: the top level must be an object (keys merged under data.%s), not %T", f, dataRoot, doc)
		}
		if err := normalizeData(obj); err != nil {
			return nil, fmt.Errorf("data file %s: %w", f, err)
		}
		if err := mergeInto(merged, obj, dataRoot); err != nil {
			return nil, fmt.Errorf("data file %s: %w", f, err)
		}
	}
	src.data = map[string]any{dataRoot: merged}
	src.digest = hex.EncodeToString(h.Sum(nil))
	src.revision = src.digest[:12]
	return src, nil
}

// mergeInto merges src into dst; objects merge key by key, anything else
// defined twice is a conflict.
func mergeInto(dst, src map[string]any, path string) error {
	for k, v := range src {
		old, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("%s.%s is defined by an earlier data file too: define it in one file only", path, k)
		}
		if err := mergeInto(om, nm, path+"."+k); err != nil {
			return err
		}
	}
	return nil
}

// normalizeData checks and normalises the parts of the data document that
// the shipped rules and the built-ins rely on (under data.xmppedge):
// partner domains, audit_full and muc.services domains are put in A-label,
// lower-case form (so data files may use U-labels); directions are
// checked; confidential patterns must compile; the partner settings
// (allow_e2ee, allow_files, upload_hosts, rate, strip_presence_status,
// strip_presence), per partner and at the top level, must have their
// types and values (a mistake there would otherwise fail every decision
// of a partner closed, at run time, instead of rejecting the file).
func normalizeData(d map[string]any) error {
	if p, ok := d["partners"]; ok {
		list, ok := p.([]any)
		if !ok {
			return fmt.Errorf("partners must be a list, not %T", p)
		}
		for i, e := range list {
			entry, ok := e.(map[string]any)
			if !ok {
				return fmt.Errorf("partners[%d] must be an object with a domain", i)
			}
			dom, ok := entry["domain"].(string)
			if !ok {
				return fmt.Errorf("partners[%d]: domain missing or not a string", i)
			}
			n, err := normalizeDomain(dom)
			if err != nil {
				return fmt.Errorf("partners[%d]: %w", i, err)
			}
			entry["domain"] = n
			switch dir := entry["direction"].(type) {
			case nil:
			case string:
				if dir != "inbound" && dir != "outbound" && dir != "both" {
					return fmt.Errorf("partners[%d] (%s): direction %q must be inbound, outbound or both", i, dom, dir)
				}
			default:
				return fmt.Errorf("partners[%d] (%s): direction must be a string", i, dom)
			}
			if rc, ok := entry["require_cert"]; ok {
				if _, ok := rc.(bool); !ok {
					return fmt.Errorf("partners[%d] (%s): require_cert must be true or false", i, dom)
				}
			}
			if err := normalizePartnerSettings(entry); err != nil {
				return fmt.Errorf("partners[%d] (%s): %w", i, dom, err)
			}
			if err := normalizeAgreement(entry); err != nil {
				return fmt.Errorf("partners[%d] (%s): %w", i, dom, err)
			}
			if err := checkRequirePosture(entry); err != nil {
				return fmt.Errorf("partners[%d] (%s): %w", i, dom, err)
			}
		}
	}
	// The same settings at the top level are the defaults of every partner
	// (upload_hosts and strip_presence: added to each partner's).
	if err := normalizePartnerSettings(d); err != nil {
		return err
	}
	if err := normalizeDomainList(d, "audit_full"); err != nil {
		return err
	}
	if muc, ok := d["muc"].(map[string]any); ok {
		if err := normalizeDomainList(muc, "services"); err != nil {
			return fmt.Errorf("muc: %w", err)
		}
	}
	if c, ok := d["confidential"].(map[string]any); ok {
		if ps, ok := c["patterns"]; ok {
			list, ok := ps.([]any)
			if !ok {
				return fmt.Errorf("confidential.patterns must be a list of regular expressions")
			}
			for i, p := range list {
				s, ok := p.(string)
				if !ok {
					return fmt.Errorf("confidential.patterns[%d] is not a string", i)
				}
				if _, err := regexp.Compile(s); err != nil {
					return fmt.Errorf("confidential.patterns[%d]: %w", i, err)
				}
			}
		}
	}
	return nil
}

// fileTransferMethods are the values of allow_files (FileTransfer.Method).
var fileTransferMethods = []string{TransferOOB, TransferJingle, TransferIBB, TransferSOCKS5}

// normalizePartnerSettings checks the settings the shipped rules read
// from a partner entry (or from the top level, as defaults), and puts
// upload_hosts in A-label form.
func normalizePartnerSettings(d map[string]any) error {
	for _, key := range []string{"allow_e2ee", "strip_presence_status"} {
		if v, ok := d[key]; ok {
			if _, ok := v.(bool); !ok {
				return fmt.Errorf("%s must be true or false", key)
			}
		}
	}
	if v, ok := d["allow_files"]; ok {
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("allow_files must be a list of methods (%s)", strings.Join(fileTransferMethods, ", "))
		}
		for i, m := range list {
			s, _ := m.(string)
			if !slices.Contains(fileTransferMethods, s) {
				return fmt.Errorf("allow_files[%d] is %v: a method is one of %s", i, m, strings.Join(fileTransferMethods, ", "))
			}
		}
	}
	if err := normalizeDomainList(d, "upload_hosts"); err != nil {
		return err
	}
	if v, ok := d["rate"]; ok {
		if err := checkRate(v); err != nil {
			return fmt.Errorf("rate: %w", err)
		}
	}
	if v, ok := d["strip_presence"]; ok {
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("strip_presence must be a list of {name: …, namespace: …}")
		}
		for i, c := range list {
			if err := checkChild(c); err != nil {
				return fmt.Errorf("strip_presence[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// number reads a number of a data document (json.Number from the YAML and
// JSON readers; float64 or int from elsewhere).
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// checkRate checks {per_second: positive number, burst: positive integer}
// (the session decision's rate, see parseRate).
func checkRate(v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("want {per_second: number, burst: integer}, not %T", v)
	}
	for k := range obj {
		if k != "per_second" && k != "burst" {
			return fmt.Errorf("unknown key %q: a rate is {per_second: number, burst: integer}", k)
		}
	}
	ps, ok := number(obj["per_second"])
	if !ok || math.IsNaN(ps) || math.IsInf(ps, 0) || ps <= 0 {
		return fmt.Errorf("per_second must be a positive number (stanzas a second), not %v", obj["per_second"])
	}
	b, ok := number(obj["burst"])
	if !ok || b != math.Trunc(b) || b < 1 || b > maxBurst {
		return fmt.Errorf("burst must be an integer from 1 to %d (stanzas at once), not %v", maxBurst, obj["burst"])
	}
	return nil
}

// checkChild checks {name: …, namespace: …}, both non-empty strings (a
// stanza decision's strip entry, see parseChild).
func checkChild(v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("want {name: …, namespace: …}, not %T", v)
	}
	for k, x := range obj {
		if k != "name" && k != "namespace" {
			return fmt.Errorf("unknown key %q: a child is name and namespace", k)
		}
		if s, ok := x.(string); !ok || s == "" {
			return fmt.Errorf("%s must be a non-empty string", k)
		}
	}
	if _, ok := obj["name"]; !ok {
		return fmt.Errorf("name is missing")
	}
	if _, ok := obj["namespace"]; !ok {
		return fmt.Errorf("namespace is missing (e.g. jabber:server for <status/>)")
	}
	return nil
}

func normalizeDomainList(d map[string]any, key string) error {
	v, ok := d[key]
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%s must be a list of domains", key)
	}
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return fmt.Errorf("%s[%d] is not a string", key, i)
		}
		n, err := normalizeDomain(s)
		if err != nil {
			return fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		list[i] = n
	}
	return nil
}

// checkDataAgainstPackages rejects data keys under data.xmppedge that are
// also the first segment of a policy package (data.xmppedge.session …):
// rules and data may not share a path.
func checkDataAgainstPackages(src *source) error {
	root, _ := src.data[dataRoot].(map[string]any)
	if root == nil {
		return nil
	}
	for name, m := range src.modules {
		p := m.Package.Path
		if len(p) < 3 {
			continue
		}
		if s, ok := p[1].Value.(ast.String); !ok || string(s) != dataRoot {
			continue
		}
		seg, ok := p[2].Value.(ast.String)
		if !ok {
			continue
		}
		if _, clash := root[string(seg)]; clash {
			return fmt.Errorf("data key %q under data.%s clashes with package %v of %s: rename the data key", seg, dataRoot, p, name)
		}
	}
	return nil
}
