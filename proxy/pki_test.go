package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// testPKI is a throw-away CA that issues certificates into PEM files.
type testPKI struct {
	t      *testing.T
	key    *ecdsa.PrivateKey
	ca     *x509.Certificate
	CAFile string
	Pool   *x509.CertPool
	dir    string
	serial atomic.Int64
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{t: t, dir: t.TempDir()}
	p.serial.Store(100)
	p.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "popbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(p.ca)
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	writeFileAtomic(t, p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return p
}

// issue writes a new certificate for 127.0.0.1 (server) or a client
// certificate to fresh files and returns their names and serial number.
func (p *testPKI) issue(name string, client bool) (certFile, keyFile string, serial int64) {
	certFile = filepath.Join(p.dir, name+".crt")
	keyFile = filepath.Join(p.dir, name+".key")
	return certFile, keyFile, p.writePair(certFile, keyFile, name, client)
}

// serverPair issues a server certificate named name and loads it, for a
// TLS upstream.
func (p *testPKI) serverPair(name string) tls.Certificate {
	p.t.Helper()
	certFile, keyFile, _ := p.issue(name, false)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return pair
}

// writePair (over)writes a certificate and key file pair.
func (p *testPKI) writePair(certFile, keyFile, cn string, client bool) int64 {
	p.t.Helper()
	serial := p.serial.Add(1)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	writeFileAtomic(p.t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	writeFileAtomic(p.t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return serial
}

// clientConfig trusts the CA and expects the server at 127.0.0.1.
func (p *testPKI) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1"}
}

func writeFileAtomic(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}
