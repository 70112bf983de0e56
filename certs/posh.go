package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// POSHStatus is the outcome of a POSH check.
type POSHStatus int

const (
	// POSHNotApplicable: the domain publishes no POSH file (HTTP 404 or
	// no HTTPS server).
	POSHNotApplicable POSHStatus = iota
	// POSHMatched: the leaf's public key is one the domain publishes.
	POSHMatched
	// POSHFailed: the domain publishes POSH fingerprints and the leaf
	// matches none of them.
	POSHFailed
	// POSHError: the POSH file could not be fetched or understood.
	POSHError
)

func (s POSHStatus) String() string {
	return outcomeName("POSHStatus", int(s), "not applicable", "matched", "failed", "error")
}

// POSHResult is the outcome of VerifyPOSH.
type POSHResult struct {
	Status POSHStatus
	// Verdict is valid only when Status is POSHMatched (Method "posh");
	// otherwise its Reason says why.
	Verdict Verdict
	// Cached is true when the POSH file came from the cache.
	Cached bool
}

// poshFile is the JSON of /.well-known/posh/xmpp-server.json (RFC 7711 §3).
type poshFile struct {
	Fingerprints []map[string]string `json:"fingerprints"`
	URL          string              `json:"url"`
	Expires      int64               `json:"expires"`
}

// poshCache keeps POSH fingerprints per domain until their expiry.
type poshCache struct {
	mu      sync.Mutex
	entries map[string]poshEntry
}

type poshEntry struct {
	fingerprints []map[string]string
	until        time.Time
}

func newPOSHCache() *poshCache { return &poshCache{entries: map[string]poshEntry{}} }

// maxPOSHFile bounds the size of a POSH document.
const maxPOSHFile = 64 << 10

// maxPOSHCache bounds how long a POSH file is cached, whatever it says.
const maxPOSHCache = 7 * 24 * time.Hour

// POSHPath is where a domain publishes its POSH file for XMPP servers.
const POSHPath = "/.well-known/posh/xmpp-server.json"

// VerifyPOSH checks chain against the fingerprints that domain publishes
// at https://DOMAIN/.well-known/posh/xmpp-server.json (RFC 7711): the
// file holds {"fingerprints":[{"sha-256":"BASE64"}, …],"expires":SECONDS}
// or delegates with {"url":"https://…","expires":SECONDS} to a file of
// the first form (one level). A fingerprint is the hash of the leaf's
// SubjectPublicKeyInfo; "sha-256" and "sha-512" are understood. The HTTPS
// server is authenticated by the Verifier's HTTP client (WithPOSHClient),
// which is what makes POSH a proof that the domain delegated. The file is
// cached for "expires" seconds (at most a week; 0 means not cached). The
// leaf's validity dates must hold; its names are not checked, since the
// domain vouches for the key.
func (v *Verifier) VerifyPOSH(ctx context.Context, chain []*x509.Certificate, domain string) POSHResult {
	name, err := normalizeDomain(domain)
	if err != nil {
		return POSHResult{Status: POSHError, Verdict: Verdict{Reason: "POSH: " + err.Error()}}
	}
	if len(chain) == 0 || chain[0] == nil {
		return POSHResult{Status: POSHFailed, Verdict: Verdict{Reason: "no certificate presented"}}
	}
	leaf := chain[0]
	verdict := Verdict{Issuer: issuerName(leaf)}
	if names, err := certificateNames(leaf); err == nil {
		verdict.Names = names.all()
	}

	fingerprints, cached, status, err := v.poshFingerprints(ctx, name)
	if err != nil {
		verdict.Reason = "POSH: " + err.Error()
		return POSHResult{Status: status, Verdict: verdict, Cached: cached}
	}
	now := time.Now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		verdict.Reason = fmt.Sprintf("POSH: certificate is not valid at this time (valid %s to %s)",
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		return POSHResult{Status: POSHFailed, Verdict: verdict, Cached: cached}
	}
	if poshMatches(fingerprints, leaf) {
		verdict.Valid, verdict.Method = true, MethodPOSH
		return POSHResult{Status: POSHMatched, Verdict: verdict, Cached: cached}
	}
	verdict.Reason = fmt.Sprintf("POSH: the certificate's key matches none of the %d fingerprints %s publishes", len(fingerprints), name)
	return POSHResult{Status: POSHFailed, Verdict: verdict, Cached: cached}
}

// poshFingerprints returns domain's fingerprints from the cache or the
// web. On error, status is POSHNotApplicable or POSHError.
func (v *Verifier) poshFingerprints(ctx context.Context, domain string) (fps []map[string]string, cached bool, status POSHStatus, err error) {
	now := time.Now()
	v.posh.mu.Lock()
	e, ok := v.posh.entries[domain]
	if ok && now.After(e.until) {
		delete(v.posh.entries, domain)
		ok = false
	}
	v.posh.mu.Unlock()
	if ok {
		return e.fingerprints, true, POSHMatched, nil
	}

	file, found, err := v.fetchPOSH(ctx, "https://"+domain+POSHPath)
	if err != nil {
		return nil, false, POSHError, err
	}
	if !found {
		return nil, false, POSHNotApplicable, fmt.Errorf("%s publishes no POSH file", domain)
	}
	expires := file.Expires
	if file.URL != "" && len(file.Fingerprints) == 0 {
		u, perr := url.Parse(file.URL)
		if perr != nil || u.Scheme != "https" || u.Host == "" {
			return nil, false, POSHError, fmt.Errorf("%s delegates to %q, which is not an https URL", domain, file.URL)
		}
		delegated, found, err := v.fetchPOSH(ctx, file.URL)
		if err != nil {
			return nil, false, POSHError, fmt.Errorf("%s delegates to %s: %w", domain, file.URL, err)
		}
		if !found || len(delegated.Fingerprints) == 0 {
			return nil, false, POSHError, fmt.Errorf("%s delegates to %s, which holds no fingerprints", domain, file.URL)
		}
		file = delegated
		if file.Expires < expires {
			expires = file.Expires
		}
	}
	if len(file.Fingerprints) == 0 {
		return nil, false, POSHError, fmt.Errorf("the POSH file of %s holds no fingerprints", domain)
	}
	if expires > 0 {
		ttl := time.Duration(expires) * time.Second
		if ttl > maxPOSHCache || ttl < 0 {
			ttl = maxPOSHCache
		}
		v.posh.mu.Lock()
		v.posh.entries[domain] = poshEntry{fingerprints: file.Fingerprints, until: now.Add(ttl)}
		v.posh.mu.Unlock()
	}
	return file.Fingerprints, false, POSHMatched, nil
}

// fetchPOSH GETs a POSH file. found is false for 404/410.
func (v *Verifier) fetchPOSH(ctx context.Context, u string) (file poshFile, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return file, false, fmt.Errorf("bad POSH URL %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.poshClient.Do(req)
	if err != nil {
		return file, false, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return file, false, nil
	case resp.StatusCode != http.StatusOK:
		return file, false, fmt.Errorf("fetching %s: HTTP status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPOSHFile+1))
	if err != nil {
		return file, false, fmt.Errorf("reading %s: %w", u, err)
	}
	if len(body) > maxPOSHFile {
		return file, false, fmt.Errorf("%s is larger than %d bytes", u, maxPOSHFile)
	}
	if err := json.Unmarshal(body, &file); err != nil {
		return file, false, fmt.Errorf("%s is not a POSH JSON document: %w", u, err)
	}
	if file.URL == "" && len(file.Fingerprints) == 0 {
		return file, false, errors.New(u + " holds neither fingerprints nor a url")
	}
	return file, true, nil
}

// poshMatches reports whether a fingerprint is the hash of leaf's
// SubjectPublicKeyInfo.
func poshMatches(fingerprints []map[string]string, leaf *x509.Certificate) bool {
	s256 := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	s512 := sha512.Sum512(leaf.RawSubjectPublicKeyInfo)
	for _, fp := range fingerprints {
		for alg, value := range fp {
			want, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
			if err != nil {
				continue
			}
			switch strings.ToLower(alg) {
			case "sha-256":
				if bytes.Equal(want, s256[:]) {
					return true
				}
			case "sha-512":
				if bytes.Equal(want, s512[:]) {
					return true
				}
			}
		}
	}
	return false
}
