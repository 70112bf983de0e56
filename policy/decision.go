package policy

import (
	"fmt"
	"math"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision documents: the values of data.xmppedge.session.decision and
// data.xmppedge.stanza.decision, read into SessionDecision and
// StanzaDecision. Anything malformed is an error, and the caller fails
// closed: nothing of a malformed decision is kept.

// Key terms of the decision documents: immutable, shared by all engines
// (a term built per lookup would be an allocation per decision).
var (
	kAllow   = ast.StringTerm("allow")
	kReason  = ast.StringTerm("reason")
	kError   = ast.StringTerm("error")
	kAudit   = ast.StringTerm("audit")
	kRequire = ast.StringTerm("require")
	kRate    = ast.StringTerm("rate")
	kStrip   = ast.StringTerm("strip")
)

func decisionObject(t *ast.Term, path string) (ast.Object, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("malformed decision: %s is %v, want an object with allow", path, ast.ValueName(t.Value))
	}
	at := obj.Get(kAllow)
	if at == nil {
		return nil, fmt.Errorf("malformed decision: %s has no allow", path)
	}
	if _, ok := at.Value.(ast.Boolean); !ok {
		return nil, fmt.Errorf("malformed decision: %s.allow is %v, want a boolean", path, ast.ValueName(at.Value))
	}
	return obj, nil
}

// decisionHead reads what every decision document holds: the object at
// path (see decisionObject), which it returns, with its allow and its
// optional reason into allow and reason.
func decisionHead(t *ast.Term, path string, allow *bool, reason *string) (ast.Object, error) {
	obj, err := decisionObject(t, path)
	if err != nil {
		return nil, err
	}
	*allow = bool(obj.Get(kAllow).Value.(ast.Boolean))
	if *reason, err = optString(obj, kReason, path); err != nil {
		return nil, err
	}
	return obj, nil
}

func optString(obj ast.Object, key *ast.Term, path string) (string, error) {
	t := obj.Get(key)
	if t == nil {
		return "", nil
	}
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("malformed decision: %s.%s is %v, want a string", path, string(key.Value.(ast.String)), ast.ValueName(t.Value))
	}
	return string(s), nil
}

func parseSessionDecision(t *ast.Term, d *SessionDecision) error {
	const path = "data.xmppedge.session.decision"
	obj, err := decisionHead(t, path, &d.Allow, &d.Reason)
	if err != nil {
		return err
	}
	if rt := obj.Get(kRequire); rt != nil {
		var list []string
		add := func(x *ast.Term) error {
			s, ok := x.Value.(ast.String)
			if !ok {
				return fmt.Errorf("malformed decision: %s.require holds %v, want strings", path, x)
			}
			list = append(list, string(s))
			return nil
		}
		switch c := rt.Value.(type) {
		case *ast.Array:
			err = c.Iter(add)
		case ast.Set:
			err = c.Sorted().Iter(add)
		default:
			err = fmt.Errorf("malformed decision: %s.require is %v, want an array of strings", path, ast.ValueName(rt.Value))
		}
		if err != nil {
			return err
		}
		d.Require = list
	}
	rate, err := parseRate(obj.Get(kRate), path)
	if err != nil {
		return err
	}
	if d.Allow {
		d.Rate = rate // a denied session has no rate
	}
	return nil
}

// maxBurst bounds a rate's burst (a token bucket's size).
const maxBurst = 1 << 30

// parseRate reads {"per_second": F, "burst": N}: F a positive number, N a
// positive integer, nothing else. nil (no rate key) is no limit.
func parseRate(t *ast.Term, path string) (*Rate, error) {
	if t == nil {
		return nil, nil
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("malformed decision: %s.rate is %v, want an object {\"per_second\": number, \"burst\": integer}", path, ast.ValueName(t.Value))
	}
	var r Rate
	var haveRate, haveBurst bool
	err := obj.Iter(func(k, v *ast.Term) error {
		n, isNum := v.Value.(ast.Number)
		switch {
		case k.Value.Compare(ast.String("per_second")) == 0:
			var f float64
			if isNum {
				f, _ = n.Float64()
			}
			if !isNum || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
				return fmt.Errorf("malformed decision: %s.rate.per_second is %v, want a positive number", path, v)
			}
			r.PerSecond, haveRate = f, true
		case k.Value.Compare(ast.String("burst")) == 0:
			var b int64
			isInt := false
			if isNum {
				if b, isInt = n.Int64(); !isInt { // 50.0 is 50
					f, _ := n.Float64()
					isInt = f == math.Trunc(f) && math.Abs(f) <= maxBurst
					b = int64(f)
				}
			}
			if !isInt || b < 1 || b > maxBurst {
				return fmt.Errorf("malformed decision: %s.rate.burst is %v, want an integer from 1 to %d", path, v, maxBurst)
			}
			r.Burst, haveBurst = int(b), true
		default:
			return fmt.Errorf("malformed decision: %s.rate has the key %v; a rate is {\"per_second\": number, \"burst\": integer}", path, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !haveRate || !haveBurst {
		return nil, fmt.Errorf("malformed decision: %s.rate is %v, want both per_second and burst", path, t)
	}
	return &r, nil
}

func parseStanzaDecision(t *ast.Term, d *StanzaDecision) error {
	const path = "data.xmppedge.stanza.decision"
	obj, err := decisionHead(t, path, &d.Allow, &d.Reason)
	if err != nil {
		return err
	}
	if d.Error, err = optString(obj, kError, path); err != nil {
		return err
	}
	if d.Error == "" && !d.Allow {
		d.Error = DefaultStanzaError
	}
	audit, err := optString(obj, kAudit, path)
	if err != nil {
		return err
	}
	switch audit {
	case "":
		d.Audit = AuditMeta
	case AuditNone, AuditMeta, AuditHash, AuditFull:
		d.Audit = audit
	default:
		return fmt.Errorf("malformed decision: %s.audit is %q, want none, meta, hash or full", path, audit)
	}
	strip, err := parseStrip(obj.Get(kStrip), path)
	if err != nil {
		return err
	}
	if d.Allow {
		d.Strip = strip // a denied stanza is not forwarded: nothing to strip
	}
	return nil
}

// parseStrip reads the children to strip: an array or set of
// {"name": N, "namespace": NS}, both non-empty strings and nothing else
// (a set in its sorted order). nil (no strip key) or empty is nothing.
func parseStrip(t *ast.Term, path string) ([]Child, error) {
	if t == nil {
		return nil, nil
	}
	var out []Child
	add := func(x *ast.Term) error {
		c, err := parseChild(x)
		if err != nil {
			return fmt.Errorf("malformed decision: %s.strip holds %v: %w", path, x, err)
		}
		out = append(out, c)
		return nil
	}
	var err error
	switch v := t.Value.(type) {
	case *ast.Array:
		err = v.Iter(add)
	case ast.Set:
		err = v.Sorted().Iter(add)
	default:
		err = fmt.Errorf("malformed decision: %s.strip is %v, want an array of {\"name\": string, \"namespace\": string}", path, ast.ValueName(t.Value))
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func parseChild(t *ast.Term) (Child, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return Child{}, fmt.Errorf("want an object {\"name\": string, \"namespace\": string}, not %v", ast.ValueName(t.Value))
	}
	var c Child
	err := obj.Iter(func(k, v *ast.Term) error {
		s, isStr := v.Value.(ast.String)
		var field *string
		switch {
		case k.Value.Compare(ast.String("name")) == 0:
			field = &c.Name
		case k.Value.Compare(ast.String("namespace")) == 0:
			field = &c.Namespace
		default:
			return fmt.Errorf("unknown key %v (a child is name and namespace)", k)
		}
		if !isStr || s == "" {
			return fmt.Errorf("%v is %v, want a non-empty string", k, v)
		}
		*field = string(s)
		return nil
	})
	if err != nil {
		return Child{}, err
	}
	if c.Name == "" || c.Namespace == "" {
		return Child{}, fmt.Errorf("a child needs both name and namespace")
	}
	return c, nil
}
