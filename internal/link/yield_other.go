//go:build !linux

package link

// yieldCPU does nothing where sched_yield is not available. A variable,
// so that tests can count the calls.
var yieldCPU = func() {}
