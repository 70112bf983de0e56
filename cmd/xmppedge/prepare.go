package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/edge"
	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/cluster"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/posture"
	"github.com/xmppedge/xmppedge/policy"
)

// startup is what run needs before it listens, loaded and checked by
// prepare.
type startup struct {
	opt        edge.Options   // without the dialback secret, policy, auditor and metrics
	eng        *policy.Engine // the compiled policy
	secret     string         // the dialback secret ("" from check when it is yet to be created)
	hmacKey    []byte         // audit.hmac_key_file's key, or nil
	adminAuth  *admin.Auth    // nil when the admin API is off
	metricsTLS *tls.Config    // nil: the metrics listener serves plain HTTP
	cluster    *cluster.Node  // this node's part of the cluster (run only), or nil
	posture    *posture.Store // the best postures seen per partner (agreements.go)
}

// prepare loads and checks everything a valid configuration points at —
// certificates, CA files, the internal CA, the dialback secret, the audit
// key and files, the admin API's token, client CA and TLS certificate, and
// the policy — and returns every problem at once, as FieldErrors naming
// the setting to blame. `xmppedge check` and `xmppedge run` both call it,
// so that check reports everything run would refuse at start (except what
// only binding the listeners can tell: an address in use, a port that
// needs privileges).
//
// With obtain false (check) nothing is created, ordered or written: the
// internal CA and the dialback secret are loaded when they exist (else
// their folder must be writable), no ACME certificate is ordered. With
// obtain true (run) they are created when missing and ACME certificates
// are obtained — but only once every local check has passed.
func prepare(ctx context.Context, cfg *config.Config, log *slog.Logger, obtain bool) (*startup, error) {
	st := &startup{}
	var err error
	var fe config.FieldErrors
	add := func(field string, err error) {
		if err == nil {
			return
		}
		var more config.FieldErrors
		if errors.As(err, &more) {
			fe = append(fe, more...)
			return
		}
		fe = append(fe, config.FieldError{Field: field, Problem: err.Error()})
	}

	// Everything is checked first; nothing is created or ordered unless
	// every check passed.
	if cfg.Audit.HMACKeyFile != "" {
		st.hmacKey, err = audit.LoadHMACKey(cfg.ResolvePath(cfg.Audit.HMACKeyFile))
		add("audit.hmac_key_file", err)
	}
	if err == nil && cfg.Audit.Backend != config.AuditBackendJetStream {
		add("audit.path", checkAuditFiles(cfg, st.hmacKey))
	}
	// The posture state beside the audit log must read back: a gateway
	// that forgot its partners' postures would miss their downgrades.
	st.posture, err = posture.Open(postureStatePath(cfg))
	add("audit.path", err)
	if cfg.Metrics.Admin || cfg.Metrics.TLS() {
		st.adminAuth, st.metricsTLS, err = loadMetricsAuth(cfg)
		add("metrics", err)
	}
	add("dialback.secret_file", checkDialbackSecret(cfg))
	st.eng, err = newPolicyEngine(ctx, cfg, log, obtain)
	add("policy.rules", err)

	obtain = obtain && len(fe) == 0
	if obtain {
		// The cluster comes first: ACME keeps its state there.
		st.cluster, err = startCluster(ctx, cfg, log)
		add("cluster", err)
		obtain = len(fe) == 0
	}
	st.opt, err = buildOptions(ctx, cfg, log, obtain, st.cluster)
	add("tls", err)
	if obtain && len(fe) == 0 {
		st.secret, err = dialback.LoadOrCreateSecret(cfg.ResolvePath(cfg.Dialback.SecretFile))
		add("dialback.secret_file", err)
		if err != nil && cfg.TLS.ACME != nil {
			st.opt.Certificates.Close()
		}
	}
	if len(fe) > 0 {
		if st.cluster != nil {
			st.cluster.Close()
		}
		return nil, fe
	}
	return st, nil
}

// checkDialbackSecret checks the dialback secret without creating it: an
// existing file is read as run reads it (mode, content); a missing one
// needs a writable folder.
func checkDialbackSecret(cfg *config.Config) error {
	path := cfg.ResolvePath(cfg.Dialback.SecretFile)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if problem := dirNotWritable(filepath.Dir(path)); problem != "" {
			return fmt.Errorf("%s does not exist yet and cannot be created: %s", path, problem)
		}
		return nil
	}
	_, err := dialback.LoadOrCreateSecret(path) // it exists: read, not created
	return err
}

// checkInternalCA checks the internal CA without creating it: existing
// files are loaded as run loads them; missing ones need a writable folder.
func checkInternalCA(cfg *config.Config) error {
	certFile, keyFile := cfg.ResolvePath(cfg.Inside.CA.CertFile), cfg.ResolvePath(cfg.Inside.CA.KeyFile)
	_, certErr := os.Lstat(certFile)
	_, keyErr := os.Lstat(keyFile)
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		for _, dir := range []string{filepath.Dir(keyFile), filepath.Dir(certFile)} {
			if problem := dirNotWritable(dir); problem != "" {
				return fmt.Errorf("the internal CA does not exist yet and cannot be created: %s", problem)
			}
		}
		return nil
	}
	_, _, err := certs.LoadOrCreateInternalCA(certFile, keyFile) // not both missing: loaded, not created
	return err
}

// checkAuditFiles checks what audit.Open needs besides the key: a writable
// folder, a current file it may append to, and a chain head (the last
// record of the current file, or of the newest rotated file) whose hash
// matches its content with the configured key. It takes no lock: a
// running xmppedge holds it.
func checkAuditFiles(cfg *config.Config, key []byte) error {
	path := cfg.ResolvePath(cfg.Audit.Path)
	if problem := dirNotWritable(filepath.Dir(path)); problem != "" {
		return errors.New(problem)
	}
	if info, err := os.Stat(path); err == nil {
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("%s cannot be appended to: %w", path, err)
		}
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s cannot be examined: %w", path, err)
	}
	return checkAuditHead(path, key)
}

// checkAuditHead verifies the record the chain continues from, as
// audit.Open does before it writes.
func checkAuditHead(path string, key []byte) error {
	file := path
	line, complete, err := lastAuditLine(path)
	if err != nil {
		return err
	}
	if line == nil {
		rotated, err := audit.RotatedFiles(path)
		if err != nil || len(rotated) == 0 {
			return err // a new chain starts
		}
		file = rotated[len(rotated)-1]
		if line, complete, err = lastAuditLine(file); err != nil {
			return err
		}
		if line == nil || !complete {
			return fmt.Errorf("the newest rotated audit file %s does not end in a complete record: run `xmppedge audit verify` on the series and move the damaged file aside", file)
		}
	}
	// Verify the line alone (the first record's prev is taken as given),
	// with the verifier of `xmppedge audit verify`, from a copy in the
	// audit folder (writable, checked above; the name matches no audit
	// file).
	tmp, err := os.CreateTemp(filepath.Dir(path), ".xmppedge-check-*")
	if err != nil {
		return fmt.Errorf("checking the last record of %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(line, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("checking the last record of %s: %w", file, err)
	}
	res, err := audit.Verify([]string{tmp.Name()}, key)
	if err != nil {
		return fmt.Errorf("checking the last record of %s: %w", file, err)
	}
	if !res.OK {
		return fmt.Errorf("the last record of %s does not verify (%s): it was changed by something other than xmppedge, or written with another audit.hmac_key_file than the one configured; xmppedge would refuse to continue its chain. Run `xmppedge audit verify %s`, then move the file aside so that a new one is started", file, res.Reason, file)
	}
	return nil
}

// lastAuditLine returns the last complete line of the file at path (nil
// if it has none, or does not exist) and whether the file ends right after
// it.
func lastAuditLine(path string) (line []byte, complete bool, err error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	end, err := audit.LastRecords(path, 1, func(_ *audit.Record, l []byte) error {
		line = append([]byte(nil), l...)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return line, end == info.Size(), nil
}

// dirNotWritable says why files cannot be created in dir, or "". It
// creates and removes a temporary file: permissions alone do not tell
// (root, ACLs, read-only mounts).
func dirNotWritable(dir string) string {
	f, err := os.CreateTemp(dir, ".xmppedge-check-*")
	if err != nil {
		return fmt.Sprintf("the folder %s is not writable by this user: %v", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return ""
}

// loadMetricsAuth loads the admin API's authentication (token, client CA)
// and the metrics listener's TLS certificate.
func loadMetricsAuth(cfg *config.Config) (*admin.Auth, *tls.Config, error) {
	m := cfg.Metrics
	var fe config.FieldErrors
	var ac admin.AuthConfig
	var pool *x509.CertPool
	if m.Admin && m.AdminTokenFile != "" {
		token, err := admin.LoadToken(cfg.ResolvePath(m.AdminTokenFile))
		if err != nil {
			fe = append(fe, config.FieldError{Field: "metrics.admin_token_file", Problem: err.Error()})
		}
		ac.Token = token
	}
	if m.Admin && m.ClientCA != "" {
		var err error
		if pool, err = loadCAPool(cfg.ResolvePath(m.ClientCA)); err != nil {
			fe = append(fe, config.FieldError{Field: "metrics.client_ca", Problem: err.Error()})
		}
		ac.ClientCertificates = true
	}
	var tc *tls.Config
	if m.TLS() {
		cert, err := tls.LoadX509KeyPair(cfg.ResolvePath(m.TLSCertFile), cfg.ResolvePath(m.TLSKeyFile))
		if err != nil {
			fe = append(fe, config.FieldError{Field: "metrics.tls_cert_file", Problem: fmt.Sprintf("the certificate %s and key %s do not load as a pair: %v",
				cfg.ResolvePath(m.TLSCertFile), cfg.ResolvePath(m.TLSKeyFile), err)})
		} else {
			tc = certs.Harden(admin.ServerTLSConfig(cert, pool))
		}
	}
	if len(fe) > 0 {
		return nil, nil, fe
	}
	if !m.Admin {
		return nil, tc, nil
	}
	auth, err := admin.NewAuth(ac)
	if err != nil {
		return nil, nil, config.FieldErrors{{Field: "metrics.admin", Problem: err.Error()}}
	}
	return auth, tc, nil
}

// loadCAPool reads a PEM file of CA certificates.
func loadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA certificate(s) that issue the administrators' client certificates", path)
	}
	return pool, nil
}
