package uidlmap

// The old POP3 server, read without changing it: USER/PASS, UIDL, LIST
// and TOP n 0 for each message's header, then QUIT (nothing is marked
// deleted, so nothing is removed).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// POP3Source says how to reach the old server.
type POP3Source struct {
	Address        string
	ImplicitTLS    bool
	TLSConfig      *tls.Config // nil: system roots, the host of Address
	User, Password string
	Timeout        time.Duration // each exchange; 0: 30 s
}

// Bounds on what the old server may send.
const (
	maxPOP3Line    = 8 << 10
	maxPOP3Header  = 4 << 20
	maxOldMessages = 10_000_000
)

// ReadPOP3 logs in to the old server and lists its maildrop.
func ReadPOP3(ctx context.Context, src POP3Source) ([]OldMessage, error) {
	timeout := src.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", src.Address)
	if err != nil {
		return nil, err
	}
	if src.ImplicitTLS {
		cfg := src.TLSConfig
		if cfg == nil {
			host, _, _ := net.SplitHostPort(src.Address)
			cfg = &tls.Config{ServerName: host}
		}
		nc = tls.Client(nc, cfg)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	p := &pop3Conn{nc: nc, r: bufio.NewReaderSize(nc, 4096), timeout: timeout}
	if _, err := p.status(); err != nil {
		return nil, fmt.Errorf("POP3 greeting: %w", err)
	}
	if _, err := p.cmd("USER " + src.User); err != nil {
		return nil, fmt.Errorf("POP3 USER: %w", err)
	}
	if _, err := p.cmd("PASS " + src.Password); err != nil {
		return nil, fmt.Errorf("POP3 PASS: %w", err)
	}
	uidls, err := p.listing("UIDL")
	if err != nil {
		return nil, err
	}
	sizes, err := p.listing("LIST")
	if err != nil {
		return nil, err
	}
	var old []OldMessage
	for n := 1; n <= len(uidls) || n <= len(sizes); n++ {
		id, ok := uidls[n]
		if !ok {
			continue
		}
		if err := CheckUIDL(id); err != nil {
			return nil, fmt.Errorf("POP3 UIDL %d: %w", n, err)
		}
		m := OldMessage{UIDL: id, Size: -1}
		if s, err := strconv.ParseInt(sizes[n], 10, 64); err == nil && s >= 0 {
			m.Size = s
		}
		header, err := p.multi(fmt.Sprintf("TOP %d 0", n), maxPOP3Header)
		if err != nil {
			return nil, err
		}
		if m.Hash, err = imapback.HeaderHash(bytes.NewReader(header)); err != nil {
			return nil, err
		}
		old = append(old, m)
	}
	p.cmd("QUIT")
	return old, nil
}

type pop3Conn struct {
	nc      net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

func (p *pop3Conn) line() ([]byte, error) {
	p.nc.SetReadDeadline(time.Now().Add(p.timeout))
	line, err := p.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxPOP3Line {
		return nil, errors.New("POP3 line too long")
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func (p *pop3Conn) status() (string, error) {
	line, err := p.line()
	if err != nil {
		return "", err
	}
	if rest, ok := bytes.CutPrefix(line, []byte("+OK")); ok {
		return string(rest), nil
	}
	return "", fmt.Errorf("server said %q", line)
}

func (p *pop3Conn) cmd(c string) (string, error) {
	p.nc.SetWriteDeadline(time.Now().Add(p.timeout))
	if _, err := p.nc.Write([]byte(c + "\r\n")); err != nil {
		return "", err
	}
	return p.status()
}

// multi sends c and returns its multi-line answer, dot-unstuffed, with
// CRLF line ends, of at most max octets.
func (p *pop3Conn) multi(c string, max int) ([]byte, error) {
	if _, err := p.cmd(c); err != nil {
		return nil, fmt.Errorf("POP3 %s: %w", strings.Fields(c)[0], err)
	}
	var out []byte
	for {
		line, err := p.line()
		if err != nil {
			return nil, err
		}
		if bytes.Equal(line, []byte(".")) {
			return out, nil
		}
		line = bytes.TrimPrefix(line, []byte("."))
		if len(out)+len(line) > max {
			return nil, fmt.Errorf("POP3 %s: answer larger than %d octets", c, max)
		}
		out = append(append(out, line...), '\r', '\n')
	}
}

// listing runs UIDL or LIST and returns the second field by number.
func (p *pop3Conn) listing(c string) (map[int]string, error) {
	body, err := p.multi(c, maxOldMessages*80)
	if err != nil {
		return nil, err
	}
	m := make(map[int]string)
	for _, line := range strings.Split(string(body), "\r\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 || n > maxOldMessages {
			return nil, fmt.Errorf("POP3 %s: bad line %q", c, line)
		}
		m[n] = f[1]
	}
	return m, nil
}
