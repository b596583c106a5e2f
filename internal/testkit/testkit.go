// Package testkit holds small helpers that tests of several packages
// need alike: a self-signed TLS pair (in memory or in files), a free
// port that stays free, a log buffer and a tally safe for concurrent
// writers, goroutines released at once, a reader in small chunks, a file
// written for the test, fake servers and mail servers set up, mail put in
// a maildir or over IMAP, an external program found or a skip that fails
// in CI, the error check of table cases, and how getmail6 is run.
package testkit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// SelfSignedTLS makes a certificate for 127.0.0.1, valid for an hour,
// and returns a server config with it and a client config that trusts
// it and nothing else.
func SelfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	der, key := selfSigned(t, 1)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// WriteSelfSigned writes a certificate like SelfSignedTLS's with the given
// serial number, and its key, as PEM files, for a server that loads (and
// reloads) its certificate from files: the serial tells which one it
// serves.
func WriteSelfSigned(t testing.TB, certFile, keyFile string, serial int64) {
	t.Helper()
	der, key := selfSigned(t, serial)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func selfSigned(t testing.TB, serial int64) (der []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// FreeAddr returns a free loopback address below the ephemeral port range
// (32768 and up on Linux), so that no listener of a parallel test that
// binds port 0 can take it over once it is closed, for tests that check
// that a closed address refuses connections.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 200 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12000)))
		if err == nil {
			defer ln.Close()
			return ln.Addr().String()
		}
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}

// WriteFile writes content to the file name in dir, readable by its owner
// only, and returns its path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Tally counts events by name, for counting callbacks that other
// goroutines call. The zero value is ready to use.
type Tally struct {
	mu sync.Mutex
	n  map[string]int
}

// Add counts one event of name.
func (t *Tally) Add(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = make(map[string]int)
	}
	t.n[name]++
}

// Count is how many events of name were added.
func (t *Tally) Count(name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[name]
}

// LockedBuffer collects output (a logger's, a process's) from several
// goroutines while a test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Unavailable skips t for want of msg's tool on a developer machine, but
// fails it when the environment variable CI is "true": CI must not
// silently skip the integration tests.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; failing because CI=true")
	}
	t.Skip(msg)
}

// Program returns the path of name, an external program the test drives.
// A missing program makes the test Unavailable: in CI it is a missing
// install step.
func Program(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, name+" is not installed (test.sh installs it)")
	}
	return path
}

// AtOnce runs f(0) to f(n-1), each in its own goroutine, released
// together so that they contend, and returns when all have returned.
func AtOnce(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// ChunkReader returns a reader of r that returns at most n octets per
// Read, as a socket may.
func ChunkReader(r io.Reader, n int) io.Reader { return &chunkReader{r, n} }

type chunkReader struct {
	r io.Reader
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	return r.r.Read(p[:min(len(p), r.n)])
}
