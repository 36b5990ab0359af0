// Command loadtest measures scanlogin: it opens many browser WebSockets
// to the push server, reads what each connection costs in server memory,
// then drives pushes (one or a batch per call) or signed WeChat scans at a
// fixed rate and times each one from the call to the frame in the browser.
// It also holds the
// baseline server the figures are compared with. It only talks to
// loopback addresses.
//
//	loadtest run       the measurement (see -h); JSON and a table row
//	loadtest baseline  the gorilla chat-example-shaped server with POST /push?id=N and /push/batch
//	loadtest report    docs/benchmarks.md from the JSON of several runs
//	loadtest freeports print free loopback TCP ports
//	loadtest wait      wait until HTTP URLs answer 200
//	loadtest quiet     wait (bounded) until the machine is nearly idle
//	loadtest worker    internal: holds connections for a run (spawned by run)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if err := dispatch(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: loadtest run|baseline|report|freeports|wait|quiet [flags]; loadtest CMD -h for flags`

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runRun(ctx, rest, stdout, stderr)
	case "baseline":
		return runBaseline(ctx, rest, stderr)
	case "report":
		return runReport(rest, stdout, stderr)
	case "freeports":
		return runFreePorts(rest, stdout, stderr)
	case "wait":
		return runWait(ctx, rest, stderr)
	case "quiet":
		return runQuiet(ctx, rest, stderr)
	case "worker":
		return runWorker(ctx, rest, stdin, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q; %s", cmd, usage)
}

// runFreePorts prints n distinct free loopback ports, space separated. The
// ports are free when printed; a script that starts servers on them right
// away rarely loses one.
func runFreePorts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("freeports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1, "how many ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 64 {
		return errors.New("-n must be 1..64")
	}
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []string
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, l)
		ports = append(ports, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
	}
	_, err := fmt.Fprintln(stdout, strings.Join(ports, " "))
	return err
}

// runWait polls URLs until each answers 200, or fails after -timeout.
func runWait(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *timeout <= 0 || *timeout > 5*time.Minute {
		return errors.New("-timeout must be in (0, 5m]")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hc := loopbackClient(2, time.Second)
	for _, raw := range fs.Args() {
		if _, err := checkURL("wait", raw, "http"); err != nil {
			return err
		}
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
			res, err := hc.Do(req)
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("HTTP %d", res.StatusCode)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait %s: %w (last: %v)", raw, ctx.Err(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// runQuiet waits until the machine's CPUs were less busy than -below
// cores over one second, or -max-wait passed; it never fails for a busy
// machine, it only says so. Benchmarks call it before each run, so that
// other work on a shared machine disturbs them less.
func runQuiet(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("quiet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	below := fs.Float64("below", 0.3, "busy cores that count as quiet")
	maxWait := fs.Duration("max-wait", 30*time.Second, "give up waiting after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *maxWait < 0 || *maxWait > 10*time.Minute {
		return errors.New("-max-wait must be 0..10m")
	}
	start := time.Now()
	for {
		a, err := readMachine()
		if err != nil {
			return err
		}
		t0 := time.Now()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		b, err := readMachine()
		if err != nil {
			return err
		}
		busy := (b.Busy - a.Busy).Seconds() / time.Since(t0).Seconds()
		if busy < *below {
			fmt.Fprintf(stderr, "loadtest: machine quiet (%.2f cores busy) after %.0fs\n", busy, time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) >= *maxWait {
			fmt.Fprintf(stderr, "loadtest: machine still busy (%.2f cores) after %v; going on\n", busy, *maxWait)
			return nil
		}
	}
}
