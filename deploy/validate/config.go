// popbridge's own check of a rendered configuration: the file goes through
// `popbridge check-config`, with a throw-away certificate where the pod
// would mount its TLS Secret.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// popConfig is what the rules need from a popbridge configuration.
type popConfig struct {
	listen  []string
	metrics string
	drain   time.Duration
}

// checkConfig runs `popbridge check-config` on data. Paths under
// secretDirs (where the pod mounts Secrets) point at a directory with a
// throw-away certificate (tls.crt, tls.key, and ca.crt, the same
// self-signed certificate as a CA bundle), as a TLS or CA Secret would
// provide in the pod.
func checkConfig(popbridge, data string, secretDirs []string) (*popConfig, error) {
	dir, err := os.MkdirTemp("", "popbridge-validate")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if len(secretDirs) > 0 {
		if err := writeTestCert(dir); err != nil {
			return nil, err
		}
	}
	for _, d := range secretDirs {
		// The directory itself (a token store's dir) or a file in it.
		re := regexp.MustCompile(regexp.QuoteMeta(strings.TrimSuffix(d, "/")) + `\b`)
		data = re.ReplaceAllLiteralString(data, dir)
	}
	path := filepath.Join(dir, "popbridge.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return nil, err
	}
	out, err := exec.Command(popbridge, "check-config", path).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("popbridge check-config: %v\n%s", err, out)
	}
	var raw struct {
		Listen []struct {
			Address string `json:"address"`
		} `json:"listen"`
		Limits struct {
			DrainTimeout string `json:"drain_timeout"`
		} `json:"limits"`
		Metrics struct {
			Listen string `json:"listen"`
		} `json:"metrics"`
	}
	if err := yaml.Unmarshal([]byte(data), &raw); err != nil {
		return nil, err
	}
	cfg := &popConfig{metrics: raw.Metrics.Listen, drain: 30 * time.Second}
	for _, l := range raw.Listen {
		cfg.listen = append(cfg.listen, l.Address)
	}
	if raw.Limits.DrainTimeout != "" {
		if cfg.drain, err = time.ParseDuration(raw.Limits.DrainTimeout); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func writeTestCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pop.example.org"},
		DNSNames:     []string{"pop.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for _, name := range []string{"tls.crt", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, name), cert, 0o600); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}
