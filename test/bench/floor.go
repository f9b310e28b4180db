package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// The crossing floor: the same process topology as a signature at one
// client (client → parent → enclave → parent → client, TCP loopback to the
// parent and a unix socket to the enclave), with nothing but a plain
// blocking relay in the middle and a busy loop as long as one signature at
// the end. Its p50 minus the busy loop is what four process crossings cost
// on this machine, before any gRPC, link or handler code; no design with
// this topology adds less.

// floorMsg is the size of the floor's request and answer (about a Sign
// request's).
const floorMsg = 64

// runFloorRole runs a hidden role of the bench binary if args ask for one:
// "floor-echo SOCK WORK_NS" or "floor-relay LISTEN SOCK". It reports whether
// it ran one.
func runFloorRole(args []string) bool {
	if len(args) < 3 {
		return false
	}
	var err error
	switch args[0] {
	case "floor-echo":
		err = floorEcho(args[1], args[2])
	case "floor-relay":
		err = floorRelay(args[1], args[2])
	default:
		return false
	}
	if err != nil && err != io.EOF {
		fmt.Fprintln(os.Stderr, "bench:", args[0]+":", err)
		os.Exit(1)
	}
	return true
}

func floorEcho(sock, work string) error {
	ns, err := strconv.ParseInt(work, 10, 64)
	if err != nil {
		return err
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	c, err := l.Accept()
	if err != nil {
		return err
	}
	buf := make([]byte, floorMsg)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		for start := time.Now(); time.Since(start) < time.Duration(ns); {
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
}

func floorRelay(listen, sock string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	up, err := l.Accept()
	if err != nil {
		return err
	}
	down, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	buf := make([]byte, floorMsg)
	for {
		if _, err := io.ReadFull(up, buf); err != nil {
			return err
		}
		if _, err := down.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(down, buf); err != nil {
			return err
		}
		if _, err := up.Write(buf); err != nil {
			return err
		}
	}
}

// crossingFloor starts the echo and relay processes (one P each, their
// best case), sends sequential requests for d and returns the p50 round
// trip minus work, in ns.
func crossingFloor(work float64, d time.Duration) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "nitrosigner-floor-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "echo.sock")
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	start := func(args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(self, args...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		cmd.Stderr = os.Stderr
		return cmd, cmd.Start()
	}
	echo, err := start("floor-echo", sock, strconv.FormatInt(int64(work), 10))
	if err != nil {
		return 0, err
	}
	defer func() { _ = echo.Process.Kill(); _ = echo.Wait() }()
	if err := waitFor(5*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return 0, fmt.Errorf("floor echo: %w", err)
	}
	relay, err := start("floor-relay", addr, sock)
	if err != nil {
		return 0, err
	}
	defer func() { _ = relay.Process.Kill(); _ = relay.Wait() }()
	var c net.Conn
	if err := waitFor(5*time.Second, func() bool { c, err = net.Dial("tcp", addr); return err == nil }); err != nil {
		return 0, fmt.Errorf("floor relay: %w", err)
	}
	defer c.Close()
	// A stopped (not dead) child must not hang the bench.
	if err := c.SetDeadline(time.Now().Add(d + 10*time.Second)); err != nil {
		return 0, err
	}
	buf := make([]byte, floorMsg)
	var lat latencies
	for end := time.Now().Add(d); time.Now().Before(end); {
		t := time.Now()
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	return lat.pct(50) - work, nil
}
