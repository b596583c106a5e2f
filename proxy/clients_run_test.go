package proxy

import (
	"bufio"
	"cmp"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// How each real client is driven. Each run function downloads every
// message (or, for clients with UIDL state, every new one) from r into
// r.out and returns what the client stored.

// runCurl lists the maildrop, then fetches all messages with one curl
// invocation, which reuses one POP3 session for all URLs; curl writes the
// data as received, dot-stuffing undone. With r.delete, a second
// invocation deletes them all ("curl -X DELE -I": DELE n for each URL in
// one session, then QUIT).
func runCurl(t *testing.T, r *clientRun) [][]byte {
	url := fmt.Sprintf("pop3://%s:%s@%s/", r.user, r.pass, net.JoinHostPort(r.host, r.port))
	base := []string{"-sS", "--max-time", "60"}
	if r.tls == "starttls" {
		base = append(base, "--ssl-reqd", "--cacert", r.caFile)
	}
	curl := func(args ...string) string {
		t.Helper()
		out, err := runTool(t, nil, r.out, r.tool, append(base, args...)...)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return out
	}
	var nums []string
	sc := bufio.NewScanner(strings.NewReader(curl(url)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			nums = append(nums, f[0])
		}
	}
	var get, dele []string
	for _, n := range nums {
		get = append(get, "-o", filepath.Join(r.out, n), url+n)
		dele = append(dele, url+n)
	}
	if len(nums) > 0 {
		curl(get...)
		if r.delete {
			curl(append([]string{"-X", "DELE", "-I"}, dele...)...)
		}
	}
	return readFiles(t, r.out)
}

// poplibScript downloads with Python's poplib. poplib returns the lines of
// a message without their CRLF (dot-stuffing undone); the script joins
// them with CRLF again. poplib refuses lines over 2048 octets
// (poplib._MAXLINE), shorter than RFC 5322's 998-character limit allows
// for in practice; the script raises the limit as scripts that meet real
// mail must.
const poplibScript = `
import poplib, ssl, sys
host, port, user, password, out, delete, tls, ca = sys.argv[1:]
poplib._MAXLINE = 1 << 20
p = poplib.POP3(host, int(port), timeout=60)
if tls == "starttls":
    p.stls(context=ssl.create_default_context(cafile=ca))
p.user(user)
p.pass_(password)
count, _ = p.stat()
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    with open("%s/%d" % (out, i), "wb") as f:
        f.write(b"".join(l + b"\r\n" for l in lines))
    if delete == "1":
        p.dele(i)
p.quit()
`

func runPoplib(t *testing.T, r *clientRun) [][]byte {
	out, err := runTool(t, nil, r.out, r.tool, "-c", poplibScript, r.host, r.port, r.user, r.pass, r.out, boolArg(r.delete), r.tls, r.caFile)
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	return readFiles(t, r.out)
}

// netPOP3Script downloads with Perl's Net::POP3 (libnet, in Perl's core).
// Net::Cmd hands out the data with every CRLF turned into "\n".
const netPOP3Script = `
use strict;
use Net::POP3;
my ($host, $port, $user, $pass, $out, $del, $tls, $ca) = @ARGV;
my $pop = Net::POP3->new($host, Port => $port, Timeout => 60) or die "connect: $@";
if ($tls eq "starttls") {
    $pop->starttls(SSL_ca_file => $ca, SSL_verifycn_name => $host) or die "STLS failed: $@";
}
defined($pop->login($user, $pass)) or die "login failed: " . $pop->message;
my $list = $pop->list or die "LIST failed";
for my $n (sort { $a <=> $b } keys %$list) {
    open(my $fh, '>:raw', "$out/$n") or die "$out/$n: $!";
    $pop->get($n, $fh) or die "RETR $n failed";
    close($fh) or die;
    if ($del) { $pop->delete($n) or die "DELE $n failed"; }
}
$pop->quit or die "QUIT failed";
`

func runNetPOP3(t *testing.T, r *clientRun) [][]byte {
	out, err := runTool(t, nil, r.out, r.tool, "-e", netPOP3Script, r.host, r.port, r.user, r.pass, r.out, boolArg(r.delete), r.tls, r.caFile)
	if err != nil {
		t.Fatalf("Net::POP3: %v\n%s", err, out)
	}
	return readFiles(t, r.out)
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// runFetchmail runs fetchmail once (no daemon), with its UIDL list
// (--idfile) in r.state, delivering each message to an MDA that writes it
// to a file of its own. Options that would change the mail are turned off
// where fetchmail has a switch: "set invisible" (no Received header),
// "norewrite" (no address rewriting). With "keep" and "uidl" fetchmail
// fetches only messages whose UIDL it has not seen; with r.delete it
// fetches all ("fetchall") and deletes them ("nokeep").
func runFetchmail(t *testing.T, r *clientRun) [][]byte {
	mode := "keep"
	if r.delete {
		mode = "nokeep fetchall"
	}
	tlsOpts := `sslproto ""` // no opportunistic STLS on plain runs
	if r.tls == "starttls" {
		// A protocol version with "+" makes fetchmail insist on STLS.
		tlsOpts = fmt.Sprintf(`sslproto "TLS1.2+" sslcertck sslcertfile "%s"`, r.caFile)
	}
	rc := filepath.Join(r.state, "fetchmailrc")
	writeConfig(t, rc, fmt.Sprintf(`set no syslog
set invisible
poll %s service %s protocol pop3 uidl auth %s timeout 60
  user "%s" there with password "%s" is "root" here
  %s no rewrite %s
  mda "cat > %s/msg.$$"
`, r.host, r.port, cmp.Or(r.auth, "password"), r.user, r.pass, mode, tlsOpts, r.out))
	out, err := runTool(t, []string{"HOME=" + r.state}, r.state, r.tool, "-f", rc, "--nodetach", "--nosyslog",
		"--idfile", filepath.Join(r.state, "fetchids"), "--pidfile", filepath.Join(r.state, "fetchmail.pid"))
	// Exit code 1 means "no new mail".
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("fetchmail: %v\n%s", err, out)
	}
	return readFiles(t, r.out)
}

// runMpop runs mpop with maildir delivery into r.out and its UIDL list
// (uidls_file) in r.state; "received_header off" keeps it from adding a
// Received header. "keep on" leaves mail on the server, and mpop then
// fetches only new messages (only_new, the default).
func runMpop(t *testing.T, r *clientRun) [][]byte {
	makeMaildir(t, r.out)
	keep := "on"
	if r.delete {
		keep = "off"
	}
	tlsOpts := "tls off"
	if r.tls == "starttls" {
		tlsOpts = "tls on\ntls_starttls on\ntls_trust_file " + r.caFile
	}
	rc := filepath.Join(r.state, "mpoprc")
	writeConfig(t, rc, fmt.Sprintf(`account default
host %s
port %s
user %s
password %s
auth %s
%s
timeout 60
delivery maildir %s
keep %s
uidls_file %s/uidls
received_header off
`, r.host, r.port, r.user, r.pass, cmp.Or(r.auth, "user"), tlsOpts, r.out, keep, r.state))
	out, err := runTool(t, []string{"HOME=" + r.state}, r.state, r.tool, "-C", rc, "--half-quiet", "default")
	if err != nil {
		t.Fatalf("mpop: %v\n%s", err, out)
	}
	return readFiles(t, r.out)
}

// runGetmail runs getmail6 with a Maildir destination in r.out and its
// state (the "oldmail" UIDL list) in r.state. "delivered_to" and
// "received" are off, so it adds no Delivered-To and Received headers;
// read_all = false fetches only messages not seen before. getmail refuses
// to deliver as root, so under root it runs as "nobody".
func runGetmail(t *testing.T, r *clientRun) [][]byte {
	makeMaildir(t, r.out)
	rc := filepath.Join(r.state, "getmailrc")
	retriever := "type = SimplePOP3Retriever"
	if r.tls == "implicit" {
		// getmail has no STLS; it speaks POP3S. The CA goes where
		// nobody can read it.
		ca, err := os.ReadFile(r.caFile)
		if err != nil {
			t.Fatal(err)
		}
		writeConfig(t, filepath.Join(r.state, "ca.pem"), string(ca))
		retriever = "type = SimplePOP3SSLRetriever\nca_certs = " + filepath.Join(r.state, "ca.pem")
	}
	writeConfig(t, rc, fmt.Sprintf(`[retriever]
%s
server = %s
port = %s
username = %s
password = %s
timeout = 60

[destination]
type = Maildir
path = %s/

[options]
verbose = 0
read_all = %t
delete = %t
delivered_to = false
received = false
`, retriever, r.host, r.port, r.user, r.pass, r.out, r.delete, r.delete))
	cred := testkit.NobodyOwns(t, r.state, r.out)
	prog, args := testkit.GetmailCommand(t, r.tool, "--getmaildir", r.state, "--rcfile", rc)
	out, err := runToolAs(t, cred, []string{"HOME=" + r.state}, r.state, prog, args...)
	if err != nil {
		t.Fatalf("getmail: %v\n%s", err, out)
	}
	return readFiles(t, r.out)
}
