package link

import "syscall"

// yieldCPU gives the calling thread's CPU to another runnable thread, if
// the CPU has one waiting; it returns at once otherwise. A variable, so
// that tests can count the calls.
var yieldCPU = func() {
	syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) //nolint:errcheck // sched_yield cannot fail on Linux
}
