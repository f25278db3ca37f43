/*
Copyright 2026 The dingtalk-token-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// Build builds the main package pkg (e.g. "./cmd") of the module in dir into out, like
// `make build`; with race, instrumented for the race detector (pass RaceEnabled from a test: the
// build then reuses the packages the test build compiled). flags are more `go build` flags (the
// bench builds as a release does: -trimpath, -ldflags=-s -w).
func Build(dir, pkg, out string, race bool, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, b)
	}
	return nil
}

// FreeAddr returns a 127.0.0.1 address whose port is free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// Process is a built binary running as a child process, as a user would run it.
type Process struct {
	// Name tells processes apart in messages.
	Name string
	// Args are the arguments it was started with.
	Args []string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer // its output, unless it goes to logPath
	// logPath, when set, is the file its output goes to.
	logPath string
	done    chan struct{}
	err     error // the exit error, once done is closed
}

// StartProcess runs bin with args. Its standard output and error are kept in memory, or go to
// logPath when it is set (a long run's log). Stop it with Kill or Terminate.
func StartProcess(name, bin, logPath string, args ...string) (*Process, error) {
	return StartProcessEnv(name, bin, logPath, nil, args...)
}

// StartProcessEnv is StartProcess with env ("KEY=value") added to this process's environment,
// e.g. a GOMEMLIMIT as a Deployment sets it.
func StartProcessEnv(name, bin, logPath string, env []string, args ...string) (*Process, error) {
	p := &Process{Name: name, Args: args, logPath: logPath, done: make(chan struct{})}
	var out io.Writer
	var logFile *os.File
	if logPath == "" {
		p.out = &testutil.SyncBuffer{}
		out = p.out
	} else {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		logFile, out = f, f
	}
	p.cmd = exec.Command(bin, args...)
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		if logFile != nil {
			_ = logFile.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		if logFile != nil {
			_ = logFile.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Flag returns the value of --name=value among its arguments ("" when absent).
func (p *Process) Flag(name string) string {
	for _, a := range p.Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// Output is everything the process wrote so far.
func (p *Process) Output() string {
	if p.out != nil {
		return p.out.String()
	}
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Tail is the last n lines of its output.
func (p *Process) Tail(n int) string {
	lines := strings.Split(strings.TrimSuffix(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Logged reports whether the process wrote s (in any letter case).
func (p *Process) Logged(s string) bool {
	return strings.Contains(strings.ToLower(p.Output()), strings.ToLower(s))
}

// Exited reports whether the process ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process at once (SIGKILL), like a node failure, and waits until it is gone.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Terminate sends SIGTERM, like the kubelet on a rollout, and waits at most timeout. It returns
// the exit error (nil for exit code 0).
func (p *Process) Terminate(timeout time.Duration) error {
	return p.signal(syscall.SIGTERM, "SIGTERM", timeout)
}

// Interrupt sends SIGINT, like Ctrl-C in a terminal, and waits at most timeout. It returns the
// exit error (nil for exit code 0).
func (p *Process) Interrupt(timeout time.Duration) error {
	return p.signal(syscall.SIGINT, "SIGINT", timeout)
}

func (p *Process) signal(sig os.Signal, name string, timeout time.Duration) error {
	if !p.Exited() {
		_ = p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return errors.New(p.Name + " still running " + timeout.String() + " after " + name)
	}
}
