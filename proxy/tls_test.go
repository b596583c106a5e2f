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
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// testCA makes a CA and a server certificate for 127.0.0.1, and writes the
// CA to a PEM file for upstream.ca_file.
func testCA(t *testing.T) (serverCert tls.Certificate, caFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "popbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "imap.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func TestUpstreamTLSVerifiesCertificates(t *testing.T) {
	cert, caFile := testCA(t)
	for _, mode := range []imapback.TLSMode{imapback.TLSImplicit, imapback.TLSStartTLS} {
		t.Run(string(mode), func(t *testing.T) {
			srv, err := memimap.Listen(memimap.Options{
				TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
				ImplicitTLS: mode == "implicit",
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			srv.AddUser("alice", "secret")
			srv.Append("alice", "INBOX", testMessage(1, "over TLS\r\n"))

			trusted := startProxy(t, srv.Addr, proxyOptions{configure: func(c *config.Config) {
				c.Upstream.TLS = mode
				c.Upstream.CAFile = caFile
			}}).addr
			c := pop3test.Dial(t, trusted)
			c.Login("alice", "secret")
			if got := c.Multi("RETR 1"); !strings.Contains(string(got), "over TLS") {
				t.Errorf("RETR over upstream TLS = %q", got)
			}
			c.Quit()

			// Without the CA the certificate is unknown: verification is on
			// by default, so the login fails and nothing is sent upstream.
			untrusted := startProxy(t, srv.Addr, proxyOptions{configure: func(c *config.Config) { c.Upstream.TLS = mode }}).addr
			c = pop3test.Dial(t, untrusted)
			c.OK("USER alice")
			if resp := c.Cmd("PASS secret"); !strings.HasPrefix(resp, "-ERR [SYS/TEMP]") {
				t.Errorf("unverifiable upstream certificate: %q", resp)
			}
		})
	}
}
