package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/dovecottest"
	fr "github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/proxy/config"
)

// The fault matrix: one POP3 session per cell, with a fault injected
// between popbridge and Dovecot or between the client and popbridge. Every
// cell checks what the client saw at each step, that nothing hangs past the
// configured timeouts, and the upstream mailbox afterwards, read by an
// independent IMAP client. docs/reliability.md lists the cells and their
// guaranteed outcomes; keep the two in step.

// Short timeouts so that stalls end quickly, but long enough that a
// loaded CI machine (-race, 2 cores, Dovecot in the same box) does not
// run into them without a fault. The POP3 side allows
// matrixDial+3*matrixCmd for login and UPDATE (proxy.New).
const (
	matrixDial = 4 * time.Second
	matrixCmd  = 4 * time.Second
	// matrixBound is the longest any single answer may take: the POP3
	// command timeout plus slack for a loaded machine.
	matrixBound = matrixDial + 3*matrixCmd + 4*time.Second
)

// matrixChunk is the FETCH range size of the matrix, so that message 2
// spans three ranges and cuts can fall inside one or between two.
const matrixChunk = 256 << 10

// The maildrop of every cell. Message 2 is large enough for three
// matrixChunk ranges; message 4 was flagged \Deleted by another client, which
// popbridge must never expunge.
const bigSize = 700 << 10

func matrixMessages() [][]byte {
	big := []byte("From: a@example.org\r\nSubject: big\r\n\r\n.starts with a dot\r\n")
	line := []byte("0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n")
	for len(big)+len(line) <= bigSize-2 {
		big = append(big, line...)
	}
	big = append(big, bytes.Repeat([]byte("x"), bigSize-2-len(big))...)
	big = append(big, "\r\n"...)
	return [][]byte{
		testMessage(1, "first\r\n"),
		big,
		testMessage(3, "third\r\n"),
		testMessage(4, "flagged by another client\r\n"),
	}
}

// outcome is what the client sees for one command.
type outcome string

const (
	okAnswer  outcome = "+OK"             // +OK, and multi-line data complete and exact
	errTemp   outcome = "-ERR [SYS/TEMP]" // -ERR [SYS/TEMP] and the connection stays usable
	errQuit   outcome = "-ERR [SYS/TEMP] at QUIT"
	truncated outcome = "+OK, data cut without the terminating line"
	closed    outcome = "connection closed without an answer"
)

// The conversation of every cell, in order. A cell names the step that
// fails and how; the steps before it must succeed and the cell stops after
// it (dropping the connection unless it was QUIT).
var matrixScript = []string{"USER", "PASS", "DELE 1", "RETR 2", "TOP 2 5", "DELE 3", "QUIT"}

type matrixCell struct {
	name string
	// client puts the fault between the client and popbridge, else
	// between popbridge and Dovecot.
	client bool
	fault  fr.Fault
	// failStep is the index in matrixScript of the first command that
	// does not answer +OK, and fail what it answers; fail "" means the
	// client sees a clean session.
	failStep int
	fail     outcome
	// state is the upstream mailbox afterwards: per message "-" for
	// expunged, else its flags: S for \Seen, D for \Deleted.
	state string
	// script replaces matrixScript for this cell.
	script []string
	// holdUntilFault, for a client fault: the upstream's answer from
	// this text on is held until the fault has fired, so that popbridge
	// cannot have the whole message before the client is gone.
	holdUntilFault string
}

const (
	stUntouched   = "1: 2: 3: 4:D"
	stSeenOnly    = "1: 2:S 3: 4:D"
	stCommitted   = "1:- 2:S 3:- 4:D"
	stInterrupted = "1:D 2:S 3:D 4:D" // \Deleted set, UID EXPUNGE not done
)

func stepIndex(cmd string) int {
	for i, s := range matrixScript {
		if s == cmd {
			return i
		}
	}
	panic(cmd)
}

// fetchLiteral is the start of a FETCH response to BODY.PEEK[]<offset.size>
// as Dovecot sends it.
func fetchLiteral(offset, size int) string {
	return fmt.Sprintf("BODY[]<%d> {%d}\r\n", offset, size)
}

func matrixCells() []matrixCell {
	down := func(match string, off int, a fr.Action) fr.Fault {
		return fr.Fault{Dir: fr.Down, Match: match, Offset: int64(off), Action: a}
	}
	up := func(match string, off int, a fr.Action) fr.Fault {
		return fr.Fault{Dir: fr.Up, Match: match, Offset: int64(off), Action: a}
	}
	pass, dele3, retr, top, quit := stepIndex("PASS"), stepIndex("DELE 3"), stepIndex("RETR 2"), stepIndex("TOP 2 5"), stepIndex("QUIT")
	first, mid, last := fetchLiteral(0, 256<<10), fetchLiteral(256<<10, 256<<10), fetchLiteral(512<<10, bigSize-512<<10)
	// TOP of the large message 2 fetches its header and first lines:
	// the fault acts some octets into the header's literal.
	topLit := "BODY[HEADER] {"
	var cells []matrixCell
	for _, a := range []fr.Action{fr.Cut, fr.Stall} {
		cells = append(cells,
			matrixCell{name: "greeting", fault: fr.Fault{Dir: fr.Down, Offset: 5, Action: a}, failStep: pass, fail: errTemp, state: stUntouched},
			matrixCell{name: "login", fault: up("AUTHENTICATE PLAIN", 0, a), failStep: pass, fail: errTemp, state: stUntouched},
			matrixCell{name: "SELECT", fault: up("SELECT", 0, a), failStep: pass, fail: errTemp, state: stUntouched},
			matrixCell{name: "snapshot FETCH", fault: down("* 2 FETCH", 4, a), failStep: pass, fail: errTemp, state: stUntouched},
			matrixCell{name: "RETR first octets", fault: down(first, len(first)+100, a), failStep: retr, fail: errTemp, state: stUntouched},
			matrixCell{name: "RETR middle", fault: down(mid, len(mid)+1000, a), failStep: retr, fail: truncated, state: stUntouched},
			matrixCell{name: "RETR last octets", fault: down(last, len(last)+bigSize-512<<10-10, a), failStep: retr, fail: truncated, state: stUntouched},
			// Every octet of the last literal arrived, but not the end
			// of the FETCH: still not a complete message.
			matrixCell{name: "RETR after the last literal", fault: down(last, len(last)+bigSize-512<<10, a), failStep: retr, fail: truncated, state: stUntouched},
			// With read-ahead the \Seen STORE of RETR 2 goes out with
			// the next upstream command (TOP's FETCH), which waits for it.
			matrixCell{name: "STORE Seen after RETR", fault: up(`(\Seen)`, 0, a), failStep: top, fail: errTemp, state: stUntouched},
			matrixCell{name: "TOP", fault: down(topLit, len(topLit)+20, a), failStep: top, fail: errTemp, state: stSeenOnly},
			matrixCell{name: "UPDATE STORE Deleted", fault: up(`(\Deleted)`, 0, a), failStep: quit, fail: errQuit, state: stSeenOnly},
			matrixCell{name: "UPDATE UID EXPUNGE", fault: up("UID EXPUNGE", 0, a), failStep: quit, fail: errQuit, state: stInterrupted},
			// The upstream expunged, but its confirmation was lost.
			matrixCell{name: "UPDATE expunge confirmation", fault: down(" EXPUNGE\r\n", 0, a), failStep: quit, fail: errQuit, state: stCommitted},
			// go-imap takes a tagged "OK " cut short for a complete OK:
			// the upstream had said OK, so that is right.
			matrixCell{name: "UPDATE expunge tagged OK text", fault: down("Expunge completed", 0, a), state: stCommitted},
			// The client has its answer before popbridge logs out.
			matrixCell{name: "LOGOUT", fault: up("LOGOUT", 0, a), state: stCommitted},
		)
	}
	// Sequential RETRs of small messages are fetched whole, several in
	// one UID FETCH (read-ahead), before the first +OK: here the two
	// newest, which the first batch takes together.
	readAhead := []string{"USER", "PASS", "RETR 3", "RETR 4", "DELE 1", "QUIT"}
	for _, a := range []fr.Action{fr.Cut, fr.Stall} {
		cells = append(cells,
			matrixCell{name: "RETR read-ahead batch", script: readAhead, fault: down("BODY[] {", 20, a), failStep: 2, fail: errTemp, state: stUntouched})
	}
	for i := range cells {
		cells[i].name = "upstream " + cells[i].fault.Action.String() + " " + cells[i].name
	}
	cells = append(cells,
		matrixCell{name: "client cut in AUTHORIZATION", client: true, fault: up("PASS secret\r\n", len("PASS secret\r\n"), fr.Cut), failStep: pass, fail: closed, state: stUntouched},
		matrixCell{name: "client cut in TRANSACTION after DELE", client: true, fault: up("DELE 3\r\n", len("DELE 3\r\n"), fr.Cut), failStep: dele3, fail: closed, state: stSeenOnly},
		// Without the hold, a client that a loaded machine lets read
		// slowly gives popbridge time to write the rest of the message
		// into the socket buffers: a completed RETR, rightly \Seen.
		matrixCell{name: "client cut in the middle of RETR", client: true, fault: down(" octets\r\n", 300<<10, fr.Cut), failStep: retr, fail: truncated, state: stUntouched,
			holdUntilFault: last},
		// QUIT arrived: UPDATE runs although nobody reads its answer.
		matrixCell{name: "client cut right after QUIT", client: true, fault: up("QUIT\r\n", len("QUIT\r\n"), fr.Cut), failStep: quit, fail: closed, state: stCommitted},
	)
	return cells
}

func TestFaultMatrix(t *testing.T) {
	cells := matrixCells()
	users := make(map[string]string)
	for i := range cells {
		users[fmt.Sprintf("cell%02d", i)] = "secret"
	}
	d := dovecottest.Start(t, dovecottest.Options{Users: users})
	msgs := matrixMessages()

	fdsBefore := openFDs(t)
	ignore := goleak.IgnoreCurrent()
	t.Run("cells", func(t *testing.T) {
		for i, cell := range cells {
			t.Run(cell.name, func(t *testing.T) {
				t.Parallel()
				runMatrixCell(t, d, fmt.Sprintf("cell%02d", i), msgs, cell)
			})
		}
	})
	// Every session, upstream connection and relay has ended.
	goleak.VerifyNone(t, ignore)
	waitFDs(t, fdsBefore)
}

func runMatrixCell(t *testing.T, d *dovecottest.Server, user string, msgs [][]byte, cell matrixCell) {
	for _, m := range msgs {
		d.Deliver(t, user, m)
	}
	other := d.Dial(t, user)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uids := mailboxUIDs(t, other)
	if len(uids) != len(msgs) {
		t.Fatalf("%d messages delivered, %d in the mailbox", len(msgs), len(uids))
	}
	flagDeleted(t, other, uids[3])
	other.Logout().Wait()
	other.Close()

	upRelay := fr.New(t, d.IMAPAddr)
	addr := startProxy(t, upRelay.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.DialTimeout = matrixDial
		c.Upstream.CommandTimeout = matrixCmd
		c.Performance.ChunkSize = matrixChunk
	}}).addr
	clientRelay := fr.New(t, addr)
	if cell.client {
		armed := clientRelay.Arm(cell.fault)
		if cell.holdUntilFault != "" {
			upRelay.Arm(fr.Fault{Dir: fr.Down, Match: cell.holdUntilFault, Action: fr.Hold, Until: armed.Fired()})
		}
	} else {
		upRelay.Arm(cell.fault)
	}

	nc, err := net.DialTimeout("tcp", clientRelay.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &faultClient{nc: nc, br: bufio.NewReader(nc)}
	if line, err := c.line(); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("greeting: %q %v", line, err)
	}
	script := matrixScript
	if cell.script != nil {
		script = cell.script
	}
	for i, cmd := range script {
		switch cmd {
		case "USER":
			cmd = "USER " + user
		case "PASS":
			cmd = "PASS secret"
		}
		want := okAnswer
		if cell.fail != "" && i == cell.failStep {
			want = cell.fail
		}
		var wantData []byte
		switch cmd {
		case "RETR 1":
			wantData = msgs[0]
		case "RETR 2":
			wantData = msgs[1]
		case "RETR 3":
			wantData = msgs[2]
		case "TOP 2 5":
			wantData = topOf(msgs[1], 5)
		}
		start := time.Now()
		got := c.run(t, cmd, wantData)
		if d := time.Since(start); d > matrixBound {
			t.Errorf("%s took %v, longer than the configured timeouts allow (%v)", cmd, d, matrixBound)
		}
		if got != want {
			t.Fatalf("%s: client saw %q, want %q", cmd, got, want)
		}
		if want != okAnswer {
			break
		}
	}
	nc.Close()

	// popbridge must end the session and its upstream connection by
	// itself, within its timeouts.
	deadline := time.Now().Add(matrixBound)
	for upRelay.Open() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("popbridge still holds %d upstream connections %v after the client left", upRelay.Open(), matrixBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := cellState(t, d, user, uids); got != cell.state {
		t.Errorf("upstream mailbox afterwards: %q, want %q", got, cell.state)
	}
}

// faultClient is a POP3 client that reports failures instead of failing
// the test, with a deadline on every read.
type faultClient struct {
	nc net.Conn
	br *bufio.Reader
}

func (c *faultClient) line() (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(2 * matrixBound))
	l, err := c.br.ReadString('\n')
	if err != nil {
		return l, err
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

// run sends cmd and classifies the answer. wantData, when set, is the
// message the command returns: complete data must equal it, cut data must
// be a strict prefix of it on the wire.
func (c *faultClient) run(t *testing.T, cmd string, wantData []byte) outcome {
	t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(cmd + "\r\n")); err != nil {
		return closed
	}
	status, err := c.line()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: no answer within %v", cmd, 2*matrixBound)
	}
	if err != nil {
		return closed
	}
	if strings.HasPrefix(status, "-ERR [SYS/TEMP] ") {
		if cmd == "QUIT" {
			return errQuit
		}
		return errTemp
	}
	if !strings.HasPrefix(status, "+OK") {
		t.Fatalf("%s: unexpected answer %q", cmd, status)
	}
	if wantData == nil {
		return okAnswer
	}
	wire := dotStuff(wantData)
	c.nc.SetReadDeadline(time.Now().Add(2 * matrixBound))
	var got []byte
	buf := make([]byte, 32<<10)
	for !bytes.HasSuffix(got, []byte("\r\n.\r\n")) && len(got) <= len(wire) {
		n, err := c.br.Read(buf)
		got = append(got, buf[:n]...)
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: data stalled for %v after %d octets", cmd, 2*matrixBound, len(got))
		}
		if err != nil {
			// Whatever arrived must be a strict prefix of the message,
			// never something that looks like its end.
			if !bytes.HasPrefix(wire, got) || len(got) >= len(wire) {
				t.Fatalf("%s: %d octets before the cut are not a strict prefix of the message", cmd, len(got))
			}
			return truncated
		}
	}
	if !bytes.Equal(got, append(wire, ".\r\n"...)) {
		t.Fatalf("%s: %d octets of data differ from the message (%d octets with stuffing), equal prefix %d",
			cmd, len(got), len(wire)+3, commonPrefix(got, wire))
	}
	return okAnswer
}

// dotStuff is msg as POP3 sends it, before the terminating line.
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(msg) {
		if line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	return b.Bytes()
}

// topOf is the header, the blank line and n body lines of msg.
func topOf(msg []byte, n int) []byte {
	i := bytes.Index(msg, []byte("\r\n\r\n")) + 4
	rest := msg[i:]
	for range n {
		j := bytes.Index(rest, []byte("\r\n"))
		rest = rest[j+2:]
	}
	return msg[:len(msg)-len(rest)]
}

func mailboxUIDs(t *testing.T, c *imapclient.Client) []imap.UID {
	t.Helper()
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	for _, b := range bufs {
		uids = append(uids, b.UID)
	}
	return uids
}

// cellState describes the messages uids as "N:flags", N counting from
// 1: "-" for a message no longer there, else S for \Seen and D for
// \Deleted.
func cellState(t *testing.T, d *dovecottest.Server, user string, uids []imap.UID) string {
	t.Helper()
	c := d.Dial(t, user)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	flags := make(map[imap.UID][]imap.Flag)
	for _, b := range bufs {
		flags[b.UID] = b.Flags
	}
	c.Logout().Wait()
	var parts []string
	for i, uid := range uids {
		f, ok := flags[uid]
		s := strconv.Itoa(i+1) + ":"
		switch {
		case !ok:
			s += "-"
		default:
			if hasFlag(f, imap.FlagSeen) {
				s += "S"
			}
			if hasFlag(f, imap.FlagDeleted) {
				s += "D"
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(ents)
}

// waitFDs waits (bounded) until no more files are open than before.
func waitFDs(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := openFDs(t)
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d file descriptors open, %d before", n, before)
			out, _ := os.ReadDir("/proc/self/fd")
			for _, e := range out {
				target, _ := os.Readlink("/proc/self/fd/" + e.Name())
				t.Logf("fd %s -> %s", e.Name(), target)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
