package config

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var configType = reflect.TypeFor[Config]()

// checkKeys walks the YAML tree against the Go type t, reports every key that
// t does not know (with its dotted path, line and a suggestion), and records
// in lines the setting written on each line, so that the decoder's errors,
// which only carry a line, can be attributed to a setting.
func checkKeys(node *yaml.Node, t reflect.Type, path string, lines *lineIndex) FieldErrors {
	if node.Kind == yaml.ScalarNode {
		lines.note(node.Line, path, node.Value)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var problems FieldErrors
	switch {
	case node.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(node.Content); i += 2 {
			key, value := node.Content[i], node.Content[i+1]
			field, known := fields[key.Value]
			keyPath := joinPath(path, key.Value)
			if key.Value == "<<" {
				continue // merge key: the decoder handles it
			}
			if !known {
				problems = append(problems, FieldError{
					Field:   keyPath,
					Problem: fmt.Sprintf("unknown setting on line %d%s", key.Line, suggest(key.Value, fields, path)),
				})
				continue
			}
			lines.note(key.Line, keyPath, "")
			problems = append(problems, checkKeys(value, field.Type, keyPath, lines)...)
		}
	case node.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range node.Content {
			problems = append(problems, checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines)...)
		}
	}
	return problems
}

// lineIndex remembers which setting (and which scalar value) each line of
// the file holds, so that the decoder's errors, which only carry a line, can
// be attributed to a setting.
type lineIndex struct {
	paths  map[int]string
	values map[int]string
}

func newLineIndex() *lineIndex {
	return &lineIndex{paths: map[int]string{}, values: map[int]string{}}
}

// note records that line belongs to path (and holds the scalar value, if
// not ""); when several settings share a line (flow style), the line belongs
// to their common parent and no single value is kept.
func (l *lineIndex) note(line int, path, value string) {
	if path == "" {
		return
	}
	prev, seen := l.paths[line]
	switch {
	case !seen:
		l.paths[line] = path
	case prev != path:
		l.paths[line] = commonParent(prev, path)
		delete(l.values, line)
		return
	}
	if value != "" {
		if old, had := l.values[line]; had && old != value {
			delete(l.values, line)
			return
		}
		l.values[line] = value
	}
}

func commonParent(a, b string) string {
	pa, pb := splitPath(a), splitPath(b)
	n := 0
	for n < len(pa) && n < len(pb) && pa[n] == pb[n] {
		n++
	}
	return strings.Join(pa[:n], "")
}

// splitPath cuts "tls.certificates[0].key_file" into "tls", ".certificates",
// "[0]", ".key_file", so that joining a prefix gives a valid path.
func splitPath(p string) []string {
	var parts []string
	start := 0
	for i := 1; i < len(p); i++ {
		if p[i] == '.' || p[i] == '[' {
			parts = append(parts, p[start:i])
			start = i
		}
	}
	return append(parts, p[start:])
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// yamlFields maps the YAML keys of struct type t to their fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields
}

// suggest proposes the known key nearest to an unknown one, or the section
// where the key belongs when it is a known key of another section.
func suggest(unknown string, fields map[string]reflect.StructField, path string) string {
	lower := strings.ToLower(strings.ReplaceAll(unknown, "-", "_"))
	best, bestDist := "", len(unknown)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if d := editDistance(lower, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" && (bestDist <= 2 || bestDist*3 <= len(best)) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if elsewhere := sectionsWithKey(configType, "", lower); len(elsewhere) > 0 {
		for _, e := range elsewhere {
			if e == joinPath(path, lower) {
				return ""
			}
		}
		return fmt.Sprintf(" (%q is a setting of %s)", lower, strings.Join(elsewhere, ", "))
	}
	if len(names) > 0 {
		return fmt.Sprintf(" (known settings here: %s)", strings.Join(names, ", "))
	}
	return ""
}

// sectionsWithKey lists the paths of every known setting named key.
func sectionsWithKey(t reflect.Type, path, key string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	fields := yamlFields(t)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := joinPath(path, name)
		if name == key {
			out = append(out, p)
		}
		out = append(out, sectionsWithKey(fields[name].Type, p, key)...)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var (
	lineMessage  = regexp.MustCompile(`^line (\d+): (.*)$`)
	notFound     = regexp.MustCompile(`^field (\S+) not found in type`)
	cannotDecode = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	alreadySet   = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
)

// decodeProblems turns the decoder's messages ("line 7: cannot unmarshal
// !!str `abc` into int") into FieldErrors naming the setting. Unknown-field
// messages already reported by checkKeys are dropped.
func decodeProblems(te *yaml.TypeError, lines *lineIndex, known FieldErrors) FieldErrors {
	var out FieldErrors
	for _, msg := range te.Errors {
		m := lineMessage.FindStringSubmatch(msg)
		if m == nil {
			out = append(out, FieldError{Problem: msg})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		text := m[2]
		if notFound.MatchString(text) && reportedUnknownOn(known, line) {
			continue
		}
		out = append(out, FieldError{Field: lines.paths[line], Problem: fmt.Sprintf("line %d: %s", line, explainDecode(text, lines.values[line]))})
	}
	return out
}

func reportedUnknownOn(known FieldErrors, line int) bool {
	marker := fmt.Sprintf("unknown setting on line %d", line)
	for _, e := range known {
		if strings.HasPrefix(e.Problem, marker) {
			return true
		}
	}
	return false
}

// explainDecode rewrites a yaml.v3 decoding message in the operator's terms;
// written is the value on that line, when known (yaml.v3 shortens it).
func explainDecode(text, written string) string {
	if m := alreadySet.FindStringSubmatch(text); m != nil {
		return fmt.Sprintf("%q is set twice (first on line %s); keep one", m[1], m[2])
	}
	m := cannotDecode.FindStringSubmatch(text)
	if m == nil {
		return text
	}
	kind, value, into := m[1], m[2], m[3]
	if written != "" {
		value = written
	}
	var what string
	switch {
	case into == "bool":
		what = "must be true or false"
	case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
		what = "must be a whole number"
	case into == "string":
		what = "must be a single value"
	case strings.HasPrefix(into, "[]"):
		what = "must be a list, like [a, b] or one \"- item\" per line"
	case strings.HasPrefix(into, "config."):
		what = "must be a mapping of settings (key: value lines)"
	default:
		return text
	}
	switch kind {
	case "seq":
		return what + ", not a list"
	case "map":
		return what + ", not a mapping"
	}
	if value != "" {
		return fmt.Sprintf("%s, not %q", what, value)
	}
	return what
}
