package imapback

// The scripted upstream of FuzzUpstreamSession: an IMAP server on
// 127.0.0.1 whose answers come from the fuzz input. It holds a model
// mailbox and answers each command with the next scripted reply for the
// command's kind, or with a well-formed default (Dovecot-like). A reply
// may use these placeholders:
//
//	$T      the command's tag
//	$D      the well-formed data of the command (EXISTS of SELECT, the
//	        size, header, identity, body or flag responses of a FETCH, the
//	        EXPUNGEs of UID EXPUNGE, the SEARCH or ESEARCH response of a
//	        UID SEARCH), from the model
//	$U, $O  the first UID and the offset a FETCH asks for
//	{*}...  a literal of the octets up to the next \x01 (or the end),
//	        with its length filled in
//
// Each connection is served by a goroutine of its own; close ends them
// all and waits. Everything written and read is recorded for the checks.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

type fakeMsg struct {
	uid  uint64
	body []byte
}

type fakeUpstream struct {
	conn      *testkit.ConnServer
	model     []fakeMsg
	lowExists uint64 // if > 0, the EXISTS of SELECT's default answer
	caps      string // the capabilities of the default greeting and LOGIN
	headFirst bool   // the snapshot's default answers name BODY[HEADER] first

	mu     sync.Mutex
	hold   bool                // connections accepted now get only defaults
	script map[string][]string // kind -> replies not used yet
	custom bool                // a scripted reply was used
	recv   []string            // command lines received (without CRLF)
	recvOn []int               // the connection of each of recv
	sent   [][]byte            // what each connection was sent
}

// fakeCaps are the capabilities of the default greeting and LOGIN
// unless the fuzz target adds ESEARCH.
const fakeCaps = "IMAP4rev1 LITERAL+ UIDPLUS"

// startFake listens on 127.0.0.1 and serves script: segments separated
// by NUL, each its kind on the first line and its reply after.
func startFake(model []fakeMsg, script []byte) (*fakeUpstream, error) {
	f := &fakeUpstream{model: model, caps: fakeCaps, script: map[string][]string{}}
	for _, seg := range bytes.Split(script, []byte{0}) {
		kind, reply, ok := bytes.Cut(seg, []byte("\n"))
		if ok {
			k := strings.ToUpper(strings.TrimSpace(string(kind)))
			f.script[k] = append(f.script[k], string(reply))
		}
	}
	var err error
	f.conn, err = testkit.ServeConns(10*time.Second, func(nc net.Conn) {
		f.mu.Lock()
		f.sent = append(f.sent, nil)
		idx, hold := len(f.sent)-1, f.hold
		f.mu.Unlock()
		f.serve(nc, idx, hold)
	})
	return f, err
}

func (f *fakeUpstream) close() { f.conn.Close() }

// next returns the next scripted reply of kind, or def (always def for
// a connection accepted on hold).
func (f *fakeUpstream) next(kind, def string, hold bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.script[kind]; len(q) > 0 && !hold {
		f.script[kind] = q[1:]
		f.custom = true
		return q[0]
	}
	return def
}

func (f *fakeUpstream) serve(nc net.Conn, idx int, hold bool) {
	write := func(p []byte) bool {
		f.mu.Lock()
		f.sent[idx] = append(f.sent[idx], p...)
		f.mu.Unlock()
		_, err := nc.Write(p)
		return err == nil
	}
	greeting := f.next("GREETING", "* OK [CAPABILITY "+f.caps+"] Dovecot ready.\r\n", hold)
	if !write(f.expand(greeting, "", "", "")) {
		return
	}
	r := bufio.NewReaderSize(nc, 4096)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(string(line), "\r\n")
		f.mu.Lock()
		f.recv, f.recvOn = append(f.recv, cmd), append(f.recvOn, idx)
		f.mu.Unlock()
		tag, rest, _ := strings.Cut(cmd, " ")
		kind := commandKind(tag, rest)
		if !write(f.expand(f.next(kind, f.defaultReply(kind), hold), tag, kind, rest)) || kind == "LOGOUT" {
			return
		}
	}
}

// commandKind names what a command line asks for, as the script's
// segments name their replies.
func commandKind(tag, rest string) string {
	up := strings.ToUpper(rest)
	if tag == rawTag {
		return "IDS"
	}
	if strings.HasPrefix(up, "UID FETCH ") {
		switch {
		// A %m snapshot asks for the header beside the size of every
		// message; a TOP, or the snapshot's second try for sizes a flag
		// change hid, of a few UIDs.
		case strings.HasPrefix(up, "UID FETCH 1:* ") && strings.Contains(up, "BODY.PEEK[HEADER]") && strings.Contains(up, "RFC822.SIZE"):
			return "SNAPSHOT"
		case strings.Contains(up, "BODY.PEEK[HEADER]") && strings.Contains(up, "RFC822.SIZE"):
			return "TOP"
		case strings.Contains(up, "RFC822.SIZE"):
			return "SIZES"
		case strings.Contains(up, "BODY.PEEK[HEADER]"):
			return "HEADERS"
		case strings.Contains(up, "BODY.PEEK[]<"):
			return "BODY"
		case strings.Contains(up, "BODY.PEEK[]"):
			return "BATCH"
		case strings.Contains(up, "FLAGS"):
			return "FLAGS"
		}
		return "SEQS"
	}
	name, sub, _ := strings.Cut(up, " ")
	if name == "UID" {
		name, _, _ = strings.Cut(sub, " ")
	}
	return name
}

func (f *fakeUpstream) defaultReply(kind string) string {
	switch kind {
	case "LOGIN":
		return "$T OK [CAPABILITY " + f.caps + "] Logged in\r\n"
	case "CAPABILITY":
		return "* CAPABILITY " + f.caps + "\r\n$T OK Capability completed.\r\n"
	case "SELECT":
		return "$D$T OK [READ-WRITE] Select completed.\r\n"
	case "LOGOUT":
		return "* BYE Logging out\r\n$T OK Logout completed.\r\n"
	}
	return "$D$T OK " + strings.ToLower(kind) + " completed.\r\n"
}

var (
	reFetchArgs = regexp.MustCompile(`(?i)^UID FETCH (\S+) `)
	rePartial   = regexp.MustCompile(`<(\d+)\.(\d+)>`)
	reItem      = regexp.MustCompile(`(?i)\(UID ([A-Z0-9-]+)\)$`)
	reExpunge   = regexp.MustCompile(`(?i)^UID EXPUNGE (\S+)$`)
)

// expand fills in the placeholders of reply for the command rest.
func (f *fakeUpstream) expand(reply, tag, kind, rest string) []byte {
	var set uidRanges
	if m := reFetchArgs.FindStringSubmatch(rest); m != nil {
		set = parseUIDRanges(m[1])
	} else if m := reExpunge.FindStringSubmatch(rest); m != nil {
		set = parseUIDRanges(m[1])
	}
	var off, size int64
	if m := rePartial.FindStringSubmatch(rest); m != nil {
		off, _ = strconv.ParseInt(m[1], 10, 64)
		size, _ = strconv.ParseInt(m[2], 10, 64)
	}
	var out []byte
	for len(reply) > 0 {
		switch {
		case strings.HasPrefix(reply, "$T"):
			out, reply = append(out, tag...), reply[2:]
		case strings.HasPrefix(reply, "$D"):
			out, reply = f.data(out, kind, tag, rest, set, off, size), reply[2:]
		case strings.HasPrefix(reply, "$U"):
			if len(set) > 0 {
				out = strconv.AppendUint(out, set[0][0], 10)
			}
			reply = reply[2:]
		case strings.HasPrefix(reply, "$O"):
			out, reply = strconv.AppendInt(out, off, 10), reply[2:]
		case strings.HasPrefix(reply, "{*}"):
			lit, after, _ := strings.Cut(reply[3:], "\x01")
			out = fmt.Appendf(out, "{%d}\r\n%s", len(lit), lit)
			reply = after
		default:
			out, reply = append(out, reply[0]), reply[1:]
		}
	}
	return out
}

// data appends the well-formed answer of a command of kind to out.
func (f *fakeUpstream) data(out []byte, kind, tag, rest string, set uidRanges, off, size int64) []byte {
	switch kind {
	case "SEARCH":
		return f.searchData(out, tag, rest)
	case "SELECT":
		n := uint64(len(f.model))
		if f.lowExists > 0 {
			n = min(n, f.lowExists)
		}
		return fmt.Appendf(out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"+
			"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"+
			"* %d EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1700000007] UIDs valid\r\n* OK [UIDNEXT 100] Predicted next UID\r\n", n)
	case "EXPUNGE":
		for k := len(f.model) - 1; k >= 0; k-- {
			if set.contains(f.model[k].uid) {
				out = fmt.Appendf(out, "* %d EXPUNGE\r\n", k+1)
			}
		}
		return out
	}
	for k, m := range f.model {
		if !set.contains(m.uid) {
			continue
		}
		switch kind {
		case "SIZES":
			out = fmt.Appendf(out, "* %d FETCH (UID %d RFC822.SIZE %d)\r\n", k+1, m.uid, len(m.body))
		case "IDS":
			item := "X-GUID"
			if it := reItem.FindStringSubmatch(rest); it != nil {
				item = it[1]
			}
			out = fmt.Appendf(out, "* %d FETCH (UID %d %s 8a1f03%026x)\r\n", k+1, m.uid, item, m.uid)
		case "HEADERS":
			h, _, _ := bytes.Cut(m.body, []byte("\r\n\r\n"))
			h = append(h[:len(h):len(h)], "\r\n\r\n"...)
			out = fmt.Appendf(out, "* %d FETCH (UID %d BODY[HEADER] {%d}\r\n%s)\r\n", k+1, m.uid, len(h), h)
		case "SNAPSHOT":
			if f.headFirst {
				out = fmt.Appendf(out, "* %d FETCH (", k+1)
				out = appendHeadText(out, m.body, false, 0)
				out = fmt.Appendf(out[:len(out)-3], " UID %d RFC822.SIZE %d)\r\n", m.uid, len(m.body))
				continue
			}
			out = fmt.Appendf(out, "* %d FETCH (UID %d RFC822.SIZE %d ", k+1, m.uid, len(m.body))
			out = appendHeadText(out, m.body, false, 0)
		case "TOP":
			out = fmt.Appendf(out, "* %d FETCH (UID %d RFC822.SIZE %d ", k+1, m.uid, len(m.body))
			out = appendHeadText(out, m.body, strings.Contains(strings.ToUpper(rest), "BODY.PEEK[TEXT]"), size)
		case "BODY":
			p := m.body[min(off, int64(len(m.body))):]
			p = p[:min(size, int64(len(p)))]
			out = fmt.Appendf(out, "* %d FETCH (UID %d BODY[]<%d> {%d}\r\n%s)\r\n", k+1, m.uid, off, len(p), p)
		case "BATCH":
			out = fmt.Appendf(out, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", k+1, m.uid, len(m.body), m.body)
		case "FLAGS":
			out = fmt.Appendf(out, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", k+1, m.uid)
		case "SEQS":
			out = fmt.Appendf(out, "* %d FETCH (UID %d)\r\n", k+1, m.uid)
		}
	}
	return out
}

// appendHeadText appends the BODY[HEADER] of body, its BODY[TEXT]<0>
// of at most size octets if withText, and the end of the response.
func appendHeadText(out, body []byte, withText bool, size int64) []byte {
	n := len(body)
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		n = i + 4
	}
	out = fmt.Appendf(out, "BODY[HEADER] {%d}\r\n%s", n, body[:n])
	if withText {
		text := body[n:]
		text = text[:min(size, int64(len(text)))]
		out = fmt.Appendf(out, " BODY[TEXT]<0> {%d}\r\n%s", len(text), text)
	}
	return append(out, ")\r\n"...)
}

// uidRanges is a parsed UID set: inclusive ranges, "*" as the largest UID.
type uidRanges [][2]uint64

func parseUIDRanges(s string) uidRanges {
	num := func(p string) uint64 {
		if p == "*" {
			return 1<<32 - 1
		}
		n, _ := strconv.ParseUint(p, 10, 32)
		return n
	}
	var r uidRanges
	for _, part := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(part, ":")
		lo, hi := num(a), num(a)
		if ok {
			hi = num(b)
		}
		r = append(r, [2]uint64{min(lo, hi), max(lo, hi)})
	}
	return r
}

func (r uidRanges) contains(uid uint64) bool {
	for _, x := range r {
		if x[0] <= uid && uid <= x[1] {
			return true
		}
	}
	return false
}

// commands returns the command lines received so far.
func (f *fakeUpstream) commands() []string { return f.commandsFrom(0) }

// commandsFrom returns the command lines received so far on the
// connections from the from-th on.
func (f *fakeUpstream) commandsFrom(from int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cmds []string
	for k, c := range f.recv {
		if f.recvOn[k] >= from {
			cmds = append(cmds, c)
		}
	}
	return cmds
}
