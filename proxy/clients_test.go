package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// Real POP3 clients download mail through popbridge in front of each
// upstream. Every client stores what it received in its own way; its
// stored form must equal the upstream's message as a POP3 server sends it
// (testkit.WireForm), after the client's documented transformation
// (interopClient.stored) and after removing the header lines the client
// adds itself (interopClient.strip). docs/interop.md lists each client's
// transformations.

// clientRun is one invocation of a client: where it talks to and where it
// keeps its state and the mail it downloads.
type clientRun struct {
	tool       string
	host, port string
	user, pass string
	// state persists between runs of one client in one test (UIDL lists,
	// configs); out is empty before each run and receives the mail.
	state, out string
	delete     bool // delete after retrieval instead of leaving mail on the server
	// tls is "" for plain POP3, "starttls" for STLS (RFC 2595) or
	// "implicit" for POP3S; caFile then holds the CA that signed
	// popbridge's certificate, which the client must verify.
	tls, caFile string
	// auth is the client's authentication setting (mpop's "auth",
	// fetchmail's "auth"); "" is USER/PASS.
	auth string
}

// interopClient describes how to drive one real client.
type interopClient struct {
	name, tool string
	// uidlState: the client remembers downloaded messages by UIDL and
	// fetches only new ones on the next run.
	uidlState bool
	// run downloads the mail; it returns what was stored, one entry per
	// message, in any order.
	run func(t *testing.T, r *clientRun) [][]byte
	// stored is what the client makes of a message it received as wire.
	stored func(wire []byte) []byte
	// storedTLS, if set, replaces stored for downloads over TLS.
	storedTLS func(wire []byte) []byte
	// storedAll, if set, replaces stored, for all messages at once.
	storedAll func(t *testing.T, tool string, wires [][]byte) [][]byte
	// strip removes the header lines the client adds to what it stores.
	strip func(got []byte) []byte
	// tls is how the client protects its connection in
	// TestClientsDownloadOverTLS: "starttls" (STLS) or "implicit" (POP3S).
	tls string
	// broken lists messages (by Subject) that the client cannot store
	// intact whatever the server does, with the reason; they are left out
	// of the comparison, and docs/interop.md lists them.
	broken map[string]string
}

func identity(b []byte) []byte { return b }

// crlfToLF is what Unix mail stores make of CRLF line ends.
func crlfToLF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

// getmailFlatten is what getmail does with a message it retrieved over
// POP3 (getmailcore's SimplePOP3Retriever and Maildir destination): it
// parses poplib's lines with Python's email package and writes the
// message out again with "\n" line ends and a "Return-Path: <unknown>"
// field on top. The parser rewrites awkward mail: it refolds long header
// lines, turns bare CRs into line ends, drops a whitespace-only header
// line, adds a line end before a closing MIME boundary. The script runs
// getmail's own code, with getmail's interpreter, on the messages the
// upstream holds, so the test checks that getmail received exactly those.
const getmailFlatten = `
import base64, json, sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from getmailcore.message import Message
out = []
for w in json.load(sys.stdin):
    lines = base64.b64decode(w or "").split(b"\r\n")[:-1]
    out.append(base64.b64encode(Message(fromlines=lines + [b""]).flatten(False, False)).decode())
json.dump(out, sys.stdout)
`

func getmailStored(t *testing.T, tool string, wires [][]byte) [][]byte {
	t.Helper()
	in, err := json.Marshal(wires)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testkit.Interpreter(t, tool), "-c", getmailFlatten)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("running getmail's Message.flatten: %v\n%s", err, stderr)
	}
	var stored [][]byte
	if err := json.Unmarshal(out, &stored); err != nil {
		t.Fatal(err)
	}
	return stored
}

// runTool runs a client with a time limit and returns its combined output.
func runTool(t *testing.T, env []string, dir string, name string, args ...string) (string, error) {
	t.Helper()
	return runToolAs(t, nil, env, dir, name, args...)
}

// runToolAs is runTool with the process's user and group set to cred
// (nil: ours).
func runToolAs(t *testing.T, cred *syscall.Credential, env []string, dir string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within 2 minutes:\n%s", name, out.String())
	}
	return "", nil
}

// readFiles returns the contents of every regular file below dir.
func readFiles(t *testing.T, dir string) [][]byte {
	t.Helper()
	var msgs [][]byte
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		msgs = append(msgs, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func makeMaildir(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// interopClients are the clients under test. curl, poplib and Net::POP3 keep
// no state between runs (scripts built on the libraries would have to
// keep their own UIDL list), so the "second run downloads nothing" check
// applies to fetchmail, mpop and getmail6 only.
var interopClients = []interopClient{
	{name: "curl", tls: "starttls", tool: "curl", run: runCurl, stored: curlStored, strip: identity},
	{name: "poplib", tls: "starttls", tool: "python3", run: runPoplib, stored: identity, strip: identity},
	{name: "perl-net-pop3", tls: "starttls", tool: "perl", run: runNetPOP3, stored: crlfToLF, strip: identity,
		// Over TLS, Net::Cmd reads through IO::Socket::SSL and hands
		// out the lines with their CRLF.
		storedTLS: identity},
	{name: "fetchmail", tls: "starttls", tool: "fetchmail", uidlState: true, run: runFetchmail, stored: fetchmailStored, strip: fetchmailStrip,
		broken: map[string]string{
			"line-100k": "fetchmail inserts stray octets (e.g. NUL 0xA0 LF) into lines longer than about 8 KiB",
		}},
	{name: "mpop", tls: "starttls", tool: "mpop", uidlState: true, run: runMpop, stored: crlfToLF, strip: identity},
	{name: "getmail6", tls: "implicit", tool: "getmail", uidlState: true, run: runGetmail, storedAll: getmailStored, strip: identity},
}

// fetchmailStored is what fetchmail hands its MDA: every CR dropped
// (bare ones too: "stripcr" is on for MDAs), a blank line added to a
// message without a body separator, and header lines that begin with a
// dot left dot-stuffed (fetchmail undoes the stuffing in the body only).
func fetchmailStored(wire []byte) []byte {
	b := bytes.ReplaceAll(wire, []byte("\r"), nil)
	if len(b) == 0 {
		return []byte("\n") // headerless: see fetchmailStrip
	}
	if b[0] == '\n' {
		return b
	}
	head, body, ok := bytes.Cut(b, []byte("\n\n"))
	lines := bytes.SplitAfter(head, []byte("\n"))
	for i, l := range lines {
		if len(l) > 0 && l[0] == '.' {
			lines[i] = append([]byte("."), l...)
		}
	}
	out := bytes.Join(lines, nil)
	if !ok {
		return append(out, '\n')
	}
	return append(append(out, "\n\n"...), body...)
}

// fetchmailStrip removes the header fetchmail puts on a message that has
// none (an empty header block): "From: FETCHMAIL-DAEMON", "To: root@HOST"
// and "Subject: Headerless mail from ...".
func fetchmailStrip(got []byte) []byte {
	if !bytes.HasPrefix(got, []byte("From: FETCHMAIL-DAEMON\n")) {
		return got
	}
	if i := bytes.Index(got, []byte("\n\n")); i >= 0 {
		return got[i+1:]
	}
	return got
}

// curlStored: curl writes a 0-octet message as one CRLF (it takes the
// CRLF that ends the +OK line for part of the data when the terminating
// line follows at once).
func curlStored(wire []byte) []byte {
	if len(wire) == 0 {
		return []byte("\r\n")
	}
	return wire
}

// clientMessages is the part of the corpus the clients download: all but
// the 20 MiB message, which the differential test covers.
func clientMessages(t *testing.T) []corpusMessage {
	var msgs []corpusMessage
	for _, m := range loadCorpus(t) {
		if !m.big {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// Every client downloads the whole corpus through popbridge, leaving it on
// the server and then deleting it, from each upstream; clients that keep
// UIDL state download only new mail on the next run.
func TestClientsDownloadExactMail(t *testing.T) {
	corpus := clientMessages(t)
	forEachClient(t, func(t *testing.T, cl interopClient, tool string) {
		forEachUpstream(t, func(t *testing.T, u *upstream) {
			testClient(t, cl, tool, u, corpus)
		})
	})
}

// forEachClient runs f for every interop client in a parallel subtest
// named after it, with the path of the client's program.
func forEachClient(t *testing.T, f func(t *testing.T, cl interopClient, tool string)) {
	for _, cl := range interopClients {
		t.Run(cl.name, func(t *testing.T) {
			t.Parallel()
			f(t, cl, testkit.Program(t, cl.tool))
		})
	}
}

// download runs the client for r and returns what it stored, stripped,
// less the messages the client is known to break.
func (cl interopClient) download(t *testing.T, r *clientRun) [][]byte {
	t.Helper()
	if err := os.MkdirAll(r.out, 0o700); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for _, m := range cl.run(t, r) {
		if _, ok := cl.broken[subject(m)]; !ok {
			got = append(got, cl.strip(m))
		}
	}
	return got
}

func testClient(t *testing.T, cl interopClient, tool string, u *upstream, corpus []corpusMessage) {
	for _, m := range corpus {
		if u.refuses != nil && u.refuses(m.raw) {
			continue // the upstream cannot store it (Cyrus: bare LF, NUL, empty)
		}
		u.deliver(t, m.raw)
	}
	addr := startProxy(t, u.addr, proxyOptions{}).addr
	host, port, _ := net.SplitHostPort(addr)
	base := t.TempDir()
	run := func(name string, stateDir string, del bool) [][]byte {
		t.Helper()
		r := &clientRun{tool: tool, host: host, port: port, user: u.user, pass: u.pass,
			state: stateDir, out: filepath.Join(base, name), delete: del}
		return cl.download(t, r)
	}
	expect := func(state []upstreamMessage) [][]byte { return expectedStored(t, cl, tool, state) }
	newState := func(name string) string {
		d := filepath.Join(base, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}

	before := upstreamState(t, u)
	keepState := newState("keep-state")
	compareMail(t, "leave on server", run("keep1", keepState, false), expect(before))
	if after := upstreamState(t, u); len(after) != len(before) {
		t.Fatalf("leave on server: %d messages upstream afterwards, want %d", len(after), len(before))
	}

	if cl.uidlState {
		if got := run("keep2", keepState, false); len(got) != 0 {
			t.Errorf("second run downloaded %d messages again, want none", len(got))
		}
		extra := testMessage(99, "arrived after the first run\r\n")
		u.deliver(t, extra)
		state := upstreamState(t, u)
		compareMail(t, "third run after new mail", run("keep3", keepState, false), expect(state[len(state)-1:]))
		before = state
	}

	compareMail(t, "delete after retrieval", run("delete", newState("delete-state"), true), expect(before))
	if after := upstreamState(t, u); len(after) != 0 {
		t.Errorf("delete after retrieval: %d messages left upstream", len(after))
	}
}

// expectedStored is what cl should store for the messages of state.
func expectedStored(t *testing.T, cl interopClient, tool string, state []upstreamMessage) [][]byte {
	var want [][]byte
	for _, m := range state {
		if _, ok := cl.broken[subject(m.Body)]; !ok {
			want = append(want, testkit.WireForm(m.Body))
		}
	}
	if cl.storedAll != nil {
		return cl.storedAll(t, tool, want)
	}
	for i := range want {
		want[i] = cl.stored(want[i])
	}
	return want
}

// compareMail compares downloaded messages with the expected ones,
// ignoring order.
func compareMail(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	sortMail := func(m [][]byte) [][]byte {
		m = slices.Clone(m)
		slices.SortFunc(m, bytes.Compare)
		return m
	}
	got, want = sortMail(got), sortMail(want)
	var missing, extra [][]byte
	for _, w := range want {
		if i := slices.IndexFunc(got, func(g []byte) bool { return bytes.Equal(g, w) }); i >= 0 {
			got = slices.Delete(got, i, i+1)
		} else {
			missing = append(missing, w)
		}
	}
	extra = got
	for _, m := range missing {
		// Show the received message with the same subject next to it.
		subj := subject(m)
		i := slices.IndexFunc(extra, func(e []byte) bool { return subj != "" && subject(e) == subj })
		if i < 0 {
			t.Errorf("%s: message not received as expected: %s", what, preview(m))
			continue
		}
		k := commonPrefix(m, extra[i])
		t.Errorf("%s: %q differs at octet %d:\nwant %s\ngot  %s", what, subj, k, preview(m[k:]), preview(extra[i][k:]))
		extra = slices.Delete(extra, i, i+1)
	}
	for _, m := range extra {
		t.Errorf("%s: received unexpected message: %s", what, preview(m))
	}
}

// subject returns the first Subject field's value, or "".
func subject(m []byte) string {
	i := bytes.Index(m, []byte("Subject: "))
	if i < 0 {
		return ""
	}
	s := m[i+len("Subject: "):]
	if j := bytes.IndexAny(s, "\r\n"); j >= 0 {
		s = s[:j]
	}
	return string(s)
}

func preview(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q... (%d octets)", b[:200], len(b))
	}
	return strconv.Quote(string(b))
}
