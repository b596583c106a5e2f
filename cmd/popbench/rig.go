package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/popbridge/popbridge/internal/benchrig"
)

// rigMain runs the Dovecot comparison of BENCHMARKS.md (internal/benchrig).
func rigMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("popbench rig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg benchrig.Config
	fs.StringVar(&cfg.Dir, "dir", "", "work `dir` for the instances and mail (default: a temp dir, removed afterwards)")
	fs.StringVar(&cfg.Popbridge, "popbridge", "", "popbridge `binary` to measure (default: go build ./cmd/popbridge)")
	fs.StringVar(&cfg.Baseline, "baseline", "", "another popbridge `binary` measured beside it in the same rounds (e.g. the previous commit's)")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "rounds per scenario; every round measures every target")
	fs.IntVar(&cfg.Small, "small", 10000, "`messages` in the small-message mailbox (4 KiB each)")
	fs.IntVar(&cfg.Mixed, "mixed", 1000, "`messages` in the mixed mailbox (90% 4 KiB, 9% 100 KiB, 1% 2 MiB)")
	fs.IntVar(&cfg.IdleSessions, "idle", 10000, "idle `sessions` for the memory figure (-1: skip)")
	fs.StringVar(&cfg.Only, "only", "", "run only scenarios whose name contains this `text` (\"memory\" for the memory figures)")
	jsonOut := fs.String("json", "", "write all results and raw reports to this JSON `file`")
	if !parseFlags(fs, args) {
		return exitUsage
	}
	cfg.Log = stdout
	res, err := benchrig.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "popbench rig:", err)
		return exitFail
	}
	if *jsonOut != "" {
		if err := res.WriteJSON(*jsonOut); err != nil {
			fmt.Fprintln(stderr, "popbench rig:", err)
			return exitFail
		}
	}
	return exitOK
}
