package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// When one process may not hold all the connections (open files are capped
// per process), the coordinator spawns workers: this same binary run as
// "loadtest worker". They talk JSON over the worker's stdin and stdout, one
// request and one answer at a time:
//
//	→ {"op":"connect","config":{GroupConfig}}   ← {"result":{ConnectResult}}
//	→ {"op":"counts"}                           ← {"result":{Counts}}
//	→ {"op":"report"}                           ← {"result":{GroupReport}}
//	→ {"op":"close"}                            ← {"result":null}, then the worker exits
//
// An answer may carry "error" instead. A worker exits when its stdin ends
// (the coordinator died) or after -max-life, whatever happens.

// workerEnv marks a process started as a worker, so that a test binary
// (which has no subcommands) can act as one too.
const workerEnv = "LOADTEST_WORKER"

type workerRequest struct {
	Op     string       `json:"op"`
	Config *GroupConfig `json:"config,omitempty"`
}

type workerAnswer struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// runWorker serves one localGroup over in and out.
func runWorker(ctx context.Context, args []string, in io.Reader, out, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxLife := fs.Duration("max-life", 30*time.Minute, "exit after this long, whatever happens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()
	g := newLocalGroup()
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		g.Close(cctx)
	}()

	reqs := make(chan workerRequest)
	readErr := make(chan error, 1)
	go func() {
		dec := json.NewDecoder(in)
		for {
			var r workerRequest
			if err := dec.Decode(&r); err != nil {
				readErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	enc := json.NewEncoder(out)
	for {
		var r workerRequest
		select {
		case <-ctx.Done():
			return fmt.Errorf("worker: %w", ctx.Err())
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("worker: read request: %w", err)
		case r = <-reqs:
		}
		var (
			res any
			err error
		)
		switch r.Op {
		case "connect":
			if r.Config == nil {
				err = errors.New("connect without config")
				break
			}
			res, err = g.Connect(ctx, *r.Config)
		case "counts":
			res, err = g.Counts(ctx)
		case "report":
			res, err = g.Report(ctx)
		case "close":
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			err = g.Close(cctx)
			ccancel()
		default:
			err = fmt.Errorf("unknown op %q", r.Op)
		}
		var a workerAnswer
		if err != nil {
			a.Error = err.Error()
		} else if a.Result, err = json.Marshal(res); err != nil {
			a.Error = err.Error()
		}
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("worker: write answer: %w", err)
		}
		if r.Op == "close" {
			return nil
		}
	}
}

// remoteGroup is a worker process seen from the coordinator.
type remoteGroup struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	dec  *json.Decoder
	mu   sync.Mutex // one call at a time
	dead chan struct{}
}

// startWorker spawns this executable as a worker.
func startWorker(maxLife time.Duration, stderr io.Writer) (*remoteGroup, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe, "worker", "-max-life", maxLife.String())
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	g := &remoteGroup{cmd: cmd, in: in, dec: json.NewDecoder(out), dead: make(chan struct{})}
	go func() { cmd.Wait(); close(g.dead) }()
	return g, nil
}

func (g *remoteGroup) Pid() int { return g.cmd.Process.Pid }

// call sends one request and decodes its answer into res. If ctx ends
// first, the worker is killed: it can no longer be trusted to be in step.
func (g *remoteGroup) call(ctx context.Context, req workerRequest, res any) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		if err := json.NewEncoder(g.in).Encode(req); err != nil {
			done <- fmt.Errorf("send %s: %w", req.Op, err)
			return
		}
		var a workerAnswer
		if err := g.dec.Decode(&a); err != nil {
			done <- fmt.Errorf("answer to %s: %w", req.Op, err)
			return
		}
		if a.Error != "" {
			done <- fmt.Errorf("worker %d: %s: %s", g.Pid(), req.Op, a.Error)
			return
		}
		if res != nil {
			done <- json.Unmarshal(a.Result, res)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		g.cmd.Process.Kill()
		return fmt.Errorf("worker %d: %s: %w", g.Pid(), req.Op, ctx.Err())
	}
}

func (g *remoteGroup) Connect(ctx context.Context, cfg GroupConfig) (*ConnectResult, error) {
	var r ConnectResult
	return &r, g.call(ctx, workerRequest{Op: "connect", Config: &cfg}, &r)
}

func (g *remoteGroup) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	return c, g.call(ctx, workerRequest{Op: "counts"}, &c)
}

func (g *remoteGroup) Report(ctx context.Context) (*GroupReport, error) {
	var r GroupReport
	return &r, g.call(ctx, workerRequest{Op: "report"}, &r)
}

// Close asks the worker to close its connections and waits for it to exit;
// it kills the worker if ctx ends first.
func (g *remoteGroup) Close(ctx context.Context) error {
	err := g.call(ctx, workerRequest{Op: "close"}, nil)
	g.in.Close()
	select {
	case <-g.dead:
	case <-ctx.Done():
		g.cmd.Process.Kill()
		<-g.dead
	}
	return err
}
