// Command popbench puts load on a POP3 server and checks every answer.
//
//	popbench -addr 127.0.0.1:110 -user alice -pass secret -mode retr-all -c 8 -n 64
//	popbench -addr HOST:PORT -user alice -mode mixed -c 50 -d 30s -pipeline 32 -json report.json
//	popbench rig -json results.json      the Dovecot comparison of BENCHMARKS.md (needs root and Dovecot)
//
// The password may come from the environment variable POPBENCH_PASS
// instead of -pass. Modes: stat, list, uidl, retr-all, top, mixed. Every
// session logs in, runs STAT and the mode's commands and QUITs without
// deleting anything. The exit code is 1 when any check failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/popbridge/popbridge/internal/popbench"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // a check failed or the run could not be done
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "rig" {
		return rigMain(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("popbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:110", "POP3 server `host:port`")
	users := fs.String("user", "", "user `name`s, comma-separated; sessions take them in turn")
	pass := fs.String("pass", "", "the users' `password` (or set POPBENCH_PASS)")
	var modes []string
	for _, m := range popbench.Modes {
		modes = append(modes, string(m))
	}
	mode := fs.String("mode", "stat", "command profile: "+strings.Join(modes, ", "))
	conc := fs.Int("c", 1, "concurrent `sessions`")
	n := fs.Int("n", 0, "total `sessions` (default: -c, or unlimited with -d)")
	dur := fs.Duration("d", 0, "stop starting sessions after this `duration`")
	pipeline := fs.Int("pipeline", 1, "commands in flight per session (1: no pipelining)")
	topLines := fs.Int("top-lines", 10, "TOP line `count`")
	expect := fs.String("expect", "", "JSON `file` of the expected messages: {\"messages\":[{\"size\":N,\"sha256\":\"hex\"}]}")
	jsonOut := fs.String("json", "", "also write the report as JSON to this `file` (- for stdout)")
	timeout := fs.Duration("timeout", 0, "bound on each read and write (default 60s)")
	seed := fs.Uint64("seed", 1, "random seed of the mixed profile")
	label := fs.String("label", "", "name of the target in the report")
	if !parseFlags(fs, args) {
		return exitUsage
	}
	if *users == "" {
		fmt.Fprintln(stderr, "popbench: -user is required")
		return exitUsage
	}
	if *pass == "" {
		*pass = os.Getenv("POPBENCH_PASS")
	}
	opts := popbench.Options{
		Addr: *addr, Mode: popbench.Mode(*mode), Concurrency: *conc, Sessions: *n, Duration: *dur,
		Pipeline: *pipeline, TopLines: *topLines, Timeout: *timeout, Seed: *seed, Label: *label,
	}
	for _, u := range strings.Split(*users, ",") {
		opts.Users = append(opts.Users, popbench.Credentials{User: u, Pass: *pass})
	}
	if *expect != "" {
		e, err := popbench.LoadExpected(*expect)
		if err != nil {
			fmt.Fprintln(stderr, "popbench:", err)
			return exitUsage
		}
		opts.Expect = e
	}
	rep, err := popbench.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	out := stdout
	if *jsonOut == "-" {
		out = stderr // JSON goes to stdout alone
	}
	rep.WriteText(out)
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, stdout, rep); err != nil {
			fmt.Fprintln(stderr, "popbench:", err)
			return exitFail
		}
	}
	if rep.Err() != nil {
		return exitFail
	}
	return exitOK
}

func writeJSON(path string, stdout io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// parseFlags parses args into fs, which takes no positional arguments;
// false means a usage error, which fs has reported on its output.
func parseFlags(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return false
	}
	return true
}
