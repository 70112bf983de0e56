package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults of the policy and audit sections.
const (
	DefaultPolicyTimeout = Duration(50 * time.Millisecond)
	DefaultPolicyMode    = "enforce"
	DefaultBundlePoll    = Duration(60 * time.Second)
	DefaultDurability    = "sync"
)

var (
	policyModes  = []string{"enforce", "dry-run"}
	durabilities = []string{"sync", "async"}
)

// PolicyConfig chooses the OPA policy that decides every session and
// stanza: a folder of .rego files plus data files, or a bundle from a
// bundle server. One of the two is required: xmppedge does not relay
// without a policy.
type PolicyConfig struct {
	// Rules is a folder of .rego files (e.g. the shipped rules/).
	Rules string `yaml:"rules"`
	// Data are JSON or YAML files loaded under data.xmppedge (e.g.
	// partners.yaml → data.xmppedge.partners).
	Data []string `yaml:"data"`
	// Bundle loads the policy from an OPA bundle server instead of Rules.
	Bundle *BundleConfig `yaml:"bundle"`
	// Timeout bounds one evaluation; a decision that takes longer is a deny
	// (default 50ms).
	Timeout Duration `yaml:"timeout"`
	// Mode is enforce (default) or dry-run: in dry-run every decision is
	// computed, logged and audited as "would deny", and nothing is blocked.
	Mode string `yaml:"mode"`
	// WarmSamples is a file where the gateway keeps, across restarts, one
	// sample input per decision class the policy learnt (addresses, ids,
	// stanza kinds, payload facts; never message text), saved after each
	// reload, every 10 minutes and at shutdown, and decided again at start
	// before traffic flows: the first stanzas after a restart are then
	// decided from warm caches. Empty (default): none; the first decision
	// of each class after a start is a full evaluation (~0.5 ms).
	WarmSamples string `yaml:"warm_samples"`
}

// BundleConfig is an OPA bundle source.
type BundleConfig struct {
	URL       string   `yaml:"url"`        // the bundle's URL
	Poll      Duration `yaml:"poll"`       // how often to look for a new revision (default 60s)
	PublicKey string   `yaml:"public_key"` // PEM public key: bundles must be signed with its private key
}

// AuditConfig configures the tamper-evident audit log.
type AuditConfig struct {
	// Backend is file (default: the hash-chained file at Path) or
	// jetstream (the cluster's replicated stream; needs the cluster
	// section).
	Backend string `yaml:"backend"`
	// Path is the current audit file (JSON Lines); rotated files sit beside
	// it. Required with the file backend.
	Path string `yaml:"path"`
	// Durability is sync (default: a stanza is relayed only once its record
	// is on disk) or async (records reach the disk within a second).
	Durability string `yaml:"durability"`
	// Rotate starts a new file past a size or an age (0: never).
	Rotate RotateConfig `yaml:"rotate"`
	// HMACKeyFile, when set, keys the hash chain so that someone who can
	// write the file cannot rebuild a valid chain.
	HMACKeyFile string `yaml:"hmac_key_file"`
	// Node names this node in every record (default: cluster.node in a
	// cluster, else the host name); in a cluster it must equal cluster.node.
	Node string `yaml:"node"`
	// Retention drops records older than this (e.g. 2555d; 0, the
	// default: keep them all). The file backend deletes whole rotated
	// files, oldest first, whose records are all older, unless a legal
	// hold matches one (docs/retention.md); the jetstream backend makes it
	// the stream's max age.
	Retention Duration `yaml:"retention"`
	// LegalHolds keep the rotated files holding records they match (file
	// backend only).
	LegalHolds []LegalHoldConfig `yaml:"legal_holds"`
}

// RotateConfig bounds one audit file.
type RotateConfig struct {
	Size ByteSize `yaml:"size"` // e.g. 100MB; 0: no size limit
	Age  Duration `yaml:"age"`  // e.g. 24h; 0: no age limit
}

func (c *Config) applyPolicyAuditDefaults() {
	if c.Policy.Timeout == 0 {
		c.Policy.Timeout = DefaultPolicyTimeout
	}
	if c.Policy.Mode == "" {
		c.Policy.Mode = DefaultPolicyMode
	}
	if c.Policy.Bundle != nil && c.Policy.Bundle.Poll == 0 {
		c.Policy.Bundle.Poll = DefaultBundlePoll
	}
	if c.Audit.Durability == "" {
		c.Audit.Durability = DefaultDurability
	}
}

func (c *Config) validatePolicy(v *validator) {
	p := &c.Policy
	switch {
	case p.Rules == "" && p.Bundle == nil:
		v.add("policy.rules", "required: name the folder of .rego files (the shipped ones are in rules/), or configure policy.bundle; xmppedge does not relay without a policy")
	case p.Rules != "" && p.Bundle != nil:
		v.add("policy.bundle", "choose one source: policy.rules (a folder) or policy.bundle (a bundle server), not both")
	}
	if p.Rules != "" {
		info, err := os.Stat(c.ResolvePath(p.Rules))
		if err != nil || !info.IsDir() {
			v.add("policy.rules", "%s is not a folder: name the folder that holds the .rego files", c.ResolvePath(p.Rules))
		}
	}
	for i, f := range p.Data {
		field := fmt.Sprintf("policy.data[%d]", i)
		if problem := c.fileProblem(f); problem != "" {
			v.add(field, "%s", problem)
		} else if ext := strings.ToLower(filepath.Ext(f)); ext != ".json" && ext != ".yaml" && ext != ".yml" {
			v.add(field, "%s: data files must be .json, .yaml or .yml", f)
		}
	}
	if b := p.Bundle; b != nil {
		u, err := url.Parse(b.URL)
		if b.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("policy.bundle.url", "%q is not an http(s) URL of a bundle", b.URL)
		}
		if b.Poll < Duration(time.Second) {
			v.add("policy.bundle.poll", "%s is too short: poll at most once a second", b.Poll)
		}
		if b.PublicKey != "" {
			if problem := c.fileProblem(b.PublicKey); problem != "" {
				v.add("policy.bundle.public_key", "%s", problem)
			}
		}
	}
	if p.WarmSamples != "" {
		path := c.ResolvePath(p.WarmSamples)
		if info, err := os.Stat(path); err == nil && info.IsDir() {
			v.add("policy.warm_samples", "%s is a folder: name a file in it, like %s", path, filepath.Join(path, "policy-samples.json"))
		} else if info, err := os.Stat(filepath.Dir(path)); err != nil || !info.IsDir() {
			v.add("policy.warm_samples", "the folder of %s does not exist: create it, or name a file in a folder xmppedge can write", path)
		}
	}
	if p.Timeout < Duration(time.Millisecond) || p.Timeout > Duration(10*time.Second) {
		v.add("policy.timeout", "%s is out of range: give a duration between 1ms and 10s; the default is %s", p.Timeout, DefaultPolicyTimeout)
	}
	p.Mode = strings.ToLower(strings.TrimSpace(p.Mode))
	if !slices.Contains(policyModes, p.Mode) {
		v.add("policy.mode", "%q is not a mode: use enforce or dry-run", p.Mode)
	}
}

func (c *Config) validateAudit(v *validator) {
	a := &c.Audit
	if a.Path == "" && strings.EqualFold(strings.TrimSpace(a.Backend), AuditBackendJetStream) {
		// The stream holds the records; no file is needed.
	} else if a.Path == "" {
		v.add("audit.path", "required: the audit log file (JSON Lines), like /var/lib/xmppedge/audit.jsonl; every cross-organisation stanza is recorded there")
	} else {
		dir := filepath.Dir(c.ResolvePath(a.Path))
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			v.add("audit.path", "the folder %s does not exist: create it", dir)
		}
	}
	a.Durability = strings.ToLower(strings.TrimSpace(a.Durability))
	if !slices.Contains(durabilities, a.Durability) {
		v.add("audit.durability", "%q is not a durability: use sync or async", a.Durability)
	}
	if a.Rotate.Size < 0 {
		v.add("audit.rotate.size", "must not be negative")
	} else if a.Rotate.Size > 0 && a.Rotate.Size < 64<<10 {
		v.add("audit.rotate.size", "%d bytes is too small: rotate at 64KB or more", a.Rotate.Size)
	}
	if a.Rotate.Age < 0 || (a.Rotate.Age > 0 && a.Rotate.Age < Duration(time.Minute)) {
		v.add("audit.rotate.age", "%s: give 0 (no age rotation) or at least 1m", a.Rotate.Age)
	}
	if a.HMACKeyFile != "" {
		path := c.ResolvePath(a.HMACKeyFile)
		if problem := c.fileProblem(a.HMACKeyFile); problem != "" {
			v.add("audit.hmac_key_file", "%s", problem)
		} else if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			v.add("audit.hmac_key_file", "%s can be read by other users: run chmod 600 %s", path, path)
		}
	}
}

// ByteSize is a size in bytes written as a number or with a unit: 512KB,
// 100MB, 1GB (powers of 1024).
type ByteSize int64

// UnmarshalText reads "100MB", "64KB", "1GB" or a plain number of bytes.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(text)))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		return fmt.Errorf("%q is not a size: write a number of bytes or use a unit, like 100MB", string(text))
	}
	*b = ByteSize(n * mult)
	return nil
}
