package e2e_test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
)

// TestRunLocal runs scripts/run-local.sh, what `make run` runs, with
// binaries, state and ports of its own: the stack comes up; every CLI,
// grpcurl and curl example it prints works as printed; the enclave is
// started again after it is killed and signing works again; SIGINT to the
// script's process group (Ctrl-C) leaves no process behind, also during
// start-up, and neither does the parent's death; a port already in use stops
// it before it starts anything.
func TestRunLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs the whole stack")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := sockDir(t) // short: the enclave's unix socket lives under it
	bin := filepath.Join(dir, "bin")
	args := []string{"build", "-o", bin + "/"}
	if raceEnabled {
		args = append(args, "-race") // reuses the packages this test run compiled
	}
	build := exec.Command("go", append(args, "./enclave/cmd/enclave", "./parent/cmd/parent", "./cmd/nitrosigner", "./cmd/kmssim")...)
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	grpcurl := findGrpcurl(root)
	addr := freeAddr(t)
	env := append(os.Environ(),
		"NITROSIGNER_BIN="+bin, "NITROSIGNER_RUN_DIR="+filepath.Join(dir, "run"),
		"NITROSIGNER_ADDR="+addr, "NITROSIGNER_KMS_ADDR="+freeAddr(t), "NITROSIGNER_METRICS_ADDR="+freeAddr(t),
		"GRPCURL="+grpcurl)
	// Each step is a subtest, so that a failure names its step; a step
	// that fails stops the rest, which build on it.
	start := func(t *testing.T, extraEnv ...string) (*exec.Cmd, *syncbuf.Buffer, <-chan error) {
		t.Helper()
		var log syncbuf.Buffer
		script := exec.Command("bash", "scripts/run-local.sh")
		script.Dir, script.Env, script.Stdout, script.Stderr = root, append(slices.Clone(env), extraEnv...), &log, &log
		script.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, script.Start())
		exited := make(chan error, 1)
		go func() { exited <- script.Wait() }()
		t.Cleanup(func() {
			_ = syscall.Kill(-script.Process.Pid, syscall.SIGKILL)
			if t.Failed() {
				t.Logf("run-local output (its last %d lines):\n%s", logTail, tail(log.String(), logTail))
			}
		})
		return script, &log, exited
	}
	waitOutput := func(t *testing.T, log *syncbuf.Buffer, what string, limit time.Duration) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Contains(log.String(), what) }, limit, 50*time.Millisecond,
			"no %q in the output", what)
	}
	waitExit := func(t *testing.T, exited <-chan error, why string) error {
		t.Helper()
		var err error
		select {
		case err = <-exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("run-local did not stop %s", why)
		}
		require.Eventually(t, func() bool { return len(processesOf(t, bin+"/")) == 0 }, 5*time.Second, 50*time.Millisecond,
			"processes left %s: %v", why, processesOf(t, bin+"/"))
		return err
	}
	script, log, exited := start(t)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"comes_up", func(t *testing.T) { waitOutput(t, log, "Press Ctrl-C to stop.", 2*time.Minute) }},
		{"examples_work_as_printed", func(t *testing.T) {
			// Every example, verbatim, from the repository root.
			var cliRan int
			sc := bufio.NewScanner(strings.NewReader(log.String()))
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				switch {
				case strings.HasPrefix(line, bin+"/nitrosigner "):
					cliRan++
				case strings.HasPrefix(line, grpcurl+" "):
					if _, err := os.Stat(grpcurl); err != nil {
						continue // not installed (make grpcurl)
					}
				case strings.HasPrefix(line, "curl "):
					if _, err := exec.LookPath("curl"); err != nil {
						continue
					}
				default:
					continue
				}
				cmd := exec.Command("bash", "-c", line)
				cmd.Dir = root
				out, err := cmd.CombinedOutput()
				assert.NoError(t, err, "%s\n%s", line, out)
			}
			assert.Equal(t, 8, cliRan, "CLI examples found in the output")
		}},
		{"enclave_restarted_after_kill", func(t *testing.T) {
			// The enclave dies; its supervisor starts it again and the parent
			// reconnects and reloads the key on its next use.
			demo, err := os.ReadFile(filepath.Join(dir, "run", "demo-keys"))
			require.NoError(t, err)
			keys := strings.Fields(string(demo))
			require.Len(t, keys, 2)
			enclaves := processesOf(t, bin+"/enclave")
			require.Len(t, enclaves, 1)
			require.NoError(t, syscall.Kill(enclaves[0], syscall.SIGKILL))
			waitOutput(t, log, "run-local: the enclave exited", 10*time.Second)
			var last atomic.Value // the condition runs on its own goroutine
			if !assert.Eventually(t, func() bool {
				out, err := exec.Command(bin+"/nitrosigner", "--addr", addr, "sign", "--key", keys[1], "--message", "68656c6c6f").CombinedOutput()
				last.Store(string(out))
				return err == nil
			}, 15*time.Second, 100*time.Millisecond) {
				t.Fatalf("signing after the enclave's restart; the last try said: %v", last.Load())
			}
		}},
		{"second_stack_on_same_dir_refused", func(t *testing.T) {
			// A second stack on the same run directory (other ports) is
			// refused before it touches anything there.
			_, log2, exited2 := start(t, "NITROSIGNER_ADDR="+freeAddr(t), "NITROSIGNER_KMS_ADDR="+freeAddr(t), "NITROSIGNER_METRICS_ADDR="+freeAddr(t))
			select {
			case err := <-exited2:
				require.Error(t, err)
			case <-time.After(20 * time.Second):
				t.Fatal("a second stack on the same run directory did not stop")
			}
			assert.Contains(t, log2.String(), "is in use by another make run")
			assert.NotContains(t, log2.String(), "[kmssim]")
			_, err := os.Stat(filepath.Join(dir, "run", "kmssim", "key-arn"))
			require.NoError(t, err, "the running stack's files are left alone")
		}},
		{"ctrl_c_stops_all", func(t *testing.T) {
			// Ctrl-C: SIGINT to the whole foreground process group.
			require.NoError(t, syscall.Kill(-script.Process.Pid, syscall.SIGINT))
			require.NoError(t, waitExit(t, exited, "after Ctrl-C"), "Ctrl-C is a clean stop")
			assert.Contains(t, log.String(), "run-local: stopped")
		}},
		{"parent_death_stops_all", func(t *testing.T) {
			// When the parent dies, the script stops the rest itself
			// (SIGTERM to the KMS simulator and to the enclave's supervisor,
			// which stops the enclave).
			_, log, exited := start(t)
			waitOutput(t, log, "Press Ctrl-C to stop.", time.Minute)
			parents := processesOf(t, bin+"/parent")
			require.Len(t, parents, 1)
			require.NoError(t, syscall.Kill(parents[0], syscall.SIGTERM))
			require.Error(t, waitExit(t, exited, "after the parent died"), "a stack that lost a process failed")
			assert.Contains(t, log.String(), "run-local: parent exited")
			assert.Contains(t, log.String(), "run-local: stopped")
		}},
		{"ctrl_c_during_start_up", func(t *testing.T) {
			// Ctrl-C while the stack is still coming up stops it there: a
			// clean stop (status 0), not a fall back into the wait for the
			// parent that then reports a failed start. The enclave is held
			// back (a wrapper waits for a file that never appears), so the
			// script is surely still waiting for it when the signal comes.
			gated := filepath.Join(bin, "gated")
			require.NoError(t, os.Mkdir(gated, 0o755))
			for _, b := range []string{"kmssim", "parent", "nitrosigner"} {
				require.NoError(t, os.Symlink(filepath.Join(bin, b), filepath.Join(gated, b)))
			}
			wrapper := "#!/bin/sh\ncase \"$1\" in --nsm=*) while [ ! -e " + filepath.Join(dir, "gate") +
				" ]; do sleep 0.05; done ;; esac\nexec " + filepath.Join(bin, "enclave") + " \"$@\"\n"
			require.NoError(t, os.WriteFile(filepath.Join(gated, "enclave"), []byte(wrapper), 0o755))
			script, log, exited := start(t, "NITROSIGNER_BIN="+gated)
			waitOutput(t, log, "kmssim: listening", time.Minute)
			require.NoError(t, syscall.Kill(-script.Process.Pid, syscall.SIGINT))
			require.NoError(t, waitExit(t, exited, "after Ctrl-C during start-up"))
			assert.Contains(t, log.String(), "run-local: stopped")
			assert.NotContains(t, log.String(), "did not come up")
			assert.NotContains(t, log.String(), "nitrosigner is running")
		}},
		{"port_in_use_starts_nothing", func(t *testing.T) {
			// Another stack holds the gRPC port, on IPv4 or IPv6 loopback:
			// nothing starts, and the message says what to do.
			for _, host := range []string{"127.0.0.1", "[::1]"} {
				taken, err := net.Listen("tcp", host+":0")
				require.NoError(t, err, "this machine has IPv4 and IPv6 loopback")
				defer taken.Close()
				_, log, exited := start(t, "NITROSIGNER_ADDR="+taken.Addr().String())
				require.Error(t, waitExit(t, exited, "with its port taken"))
				assert.Contains(t, log.String(), taken.Addr().String()+" is already in use")
				assert.NotContains(t, log.String(), "[kmssim]", "nothing was started")
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			return // the steps after it build on it
		}
	}
}

// logTail is how many lines of a failed run's output a test prints: the end
// of a CI log is what is shown of it.
const logTail = 40

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// findGrpcurl returns the grpcurl that `make grpcurl` installs.
func findGrpcurl(root string) string {
	cmd := exec.Command("make", "-s", "--no-print-directory", "print-grpcurl")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "grpcurl"
	}
	return strings.TrimSpace(string(out))
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// processesOf returns the pids of processes whose program path starts with
// prefix.
func processesOf(t *testing.T, prefix string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); strings.HasPrefix(string(argv0), prefix) {
			pids = append(pids, pid)
		}
	}
	return pids
}
