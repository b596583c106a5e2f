// config.go holds the admin listener's configuration: its YAML keys, the
// checks that refuse an unsafe listener, and the bearer token's file.

package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the `admin` section of the configuration file. The listener
// is off unless Listen is set.
type Config struct {
	// Listen is the host:port of the admin HTTP listener; empty means
	// none. Without TokenFile it must be a loopback address.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token that every request must carry.
	// Required when Listen is not a loopback address; when set, the token
	// is required on loopback too.
	TokenFile string `yaml:"token_file"`
}

// minTokenLen refuses tokens short enough to guess.
const minTokenLen = 16

// Check validates c without binding anything. It reads the token file, so
// that a file that would fail at start fails here.
func (c Config) Check() error {
	if c.Listen == "" {
		if c.TokenFile != "" {
			return errors.New("admin.token_file: set, but admin.listen is empty: the admin listener is off")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %q: want host:port (e.g. 127.0.0.1:9111)", c.Listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("admin.listen: port %q: want a number up to 65535", port)
	}
	if c.TokenFile == "" {
		if !loopbackHost(host) {
			return fmt.Errorf("admin.listen: %q is not a loopback address: a non-loopback admin listener needs admin.token_file", c.Listen)
		}
		return nil
	}
	_, err = readToken(c.TokenFile)
	return err
}

// loopbackHost reports whether host names only loopback addresses as
// written: a loopback IP or "localhost". An empty host (every interface)
// and other names are not; Start checks the address actually bound.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// loopbackAddr reports whether a bound listener address is a loopback one.
func loopbackAddr(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// readToken reads the bearer token from path: the file's content without
// surrounding white space.
func readToken(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %v", err)
	}
	tok := bytes.TrimSpace(data)
	if len(tok) < minTokenLen {
		return nil, fmt.Errorf("admin.token_file: %s: the token has %d characters; want at least %d (e.g. openssl rand -hex 32)", path, len(tok), minTokenLen)
	}
	if bytes.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("admin.token_file: %s: the token must be one word", path)
	}
	return tok, nil
}

// ReadToken reads the bearer token from path as the admin listener does,
// for clients.
func ReadToken(path string) (string, error) {
	tok, err := readToken(path)
	return string(tok), err
}

// ConfigFromFile reads the admin section of a popbridge configuration
// file, ignoring every other key, for the CLI verbs that call the admin
// listener. It does not check the values.
func ConfigFromFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var doc struct {
		Admin Config `yaml:"admin"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: %v", path, err)
	}
	return doc.Admin, nil
}
