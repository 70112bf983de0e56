package policy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// maxBundleSize bounds a downloaded bundle.
const maxBundleSize = 64 << 20

// bundleKeyID is the key id the verification config uses for the
// configured public key, whatever key id the signer put in the token.
const bundleKeyID = "xmppedge"

// bundleSource downloads an OPA bundle (conditionally, with ETag) and
// reads it, verifying its signature when a public key is configured.
type bundleSource struct {
	cfg    BundleConfig
	client *http.Client
	verify *bundle.VerificationConfig // nil: signatures not required

	mu   sync.Mutex
	etag string
}

func newBundleSource(cfg BundleConfig, client *http.Client) (*bundleSource, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("policy bundle url %q: want an http:// or https:// URL", cfg.URL)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultBundlePoll
	}
	b := &bundleSource{cfg: cfg, client: client}
	if cfg.PublicKey != "" {
		pemBytes, err := os.ReadFile(cfg.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("policy bundle public key: %w", err)
		}
		alg, err := signingAlgorithm(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("policy bundle public key %s: %w", cfg.PublicKey, err)
		}
		b.verify = bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{
			bundleKeyID: {Key: string(pemBytes), Algorithm: alg},
		}, bundleKeyID, "", nil)
	}
	return b, nil
}

// signingAlgorithm picks the JWS algorithm matching a PEM public key (or
// certificate): RS256 for RSA, ES256/384/512 for ECDSA by curve size.
func signingAlgorithm(pemBytes []byte) (string, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return "", errors.New("no PEM block found (want a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return "", fmt.Errorf("PEM block %q: want a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return "", err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return "ES256", nil
		case 384:
			return "ES384", nil
		case 521:
			return "ES512", nil
		}
	}
	return "", fmt.Errorf("unsupported key type %T (OPA bundle signing takes RSA or ECDSA keys)", key)
}

// fetch downloads the bundle; it returns nil, nil when the server says it
// has not changed since the last successful fetch.
func (b *bundleSource) fetch(ctx context.Context) (*source, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("policy bundle: %w", err)
	}
	b.mu.Lock()
	etag := b.etag
	b.mu.Unlock()
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("policy bundle download from %s failed: %w", b.cfg.URL, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, nil
	default:
		return nil, fmt.Errorf("policy bundle download from %s: server answered %s", b.cfg.URL, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy bundle download from %s: %w", b.cfg.URL, err)
	}
	if len(raw) > maxBundleSize {
		return nil, fmt.Errorf("policy bundle from %s is larger than %d bytes", b.cfg.URL, maxBundleSize)
	}
	src, err := readBundle(raw, b.verify, b.cfg.URL)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.etag = resp.Header.Get("ETag")
	b.mu.Unlock()
	return src, nil
}

// readBundle reads (and verifies, when verify is set) a bundle archive.
func readBundle(raw []byte, verify *bundle.VerificationConfig, origin string) (*source, error) {
	r := bundle.NewReader(bytes.NewReader(raw)).
		WithRegoVersion(ast.RegoV1).
		WithSizeLimitBytes(maxBundleSize)
	if verify != nil {
		r = r.WithBundleVerificationConfig(verify)
	} else {
		r = r.WithSkipBundleVerification(true)
	}
	b, err := r.Read()
	if err != nil {
		if verify != nil {
			return nil, fmt.Errorf("policy bundle from %s rejected (it must be signed with the key matching the configured public key, and unmodified): %w", origin, err)
		}
		return nil, fmt.Errorf("policy bundle from %s is not a valid OPA bundle: %w", origin, err)
	}
	src := &source{modules: map[string]*ast.Module{}, data: b.Data, origin: origin}
	if src.data == nil {
		src.data = map[string]any{}
	}
	for _, m := range b.Modules {
		name := strings.TrimPrefix(m.Path, "/")
		if name == "" {
			name = m.URL
		}
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		src.modules[name] = m.Parsed
	}
	if len(src.modules) == 0 {
		return nil, fmt.Errorf("policy bundle from %s has no policy (.rego) files", origin)
	}
	if root, ok := src.data[dataRoot].(map[string]any); ok {
		if err := normalizeData(root); err != nil {
			return nil, fmt.Errorf("policy bundle from %s: data.%s: %w", origin, dataRoot, err)
		}
	}
	sum := sha256.Sum256(raw)
	src.digest = hex.EncodeToString(sum[:])
	src.revision = b.Manifest.Revision
	if src.revision == "" {
		src.revision = src.digest[:12]
	}
	return src, nil
}
