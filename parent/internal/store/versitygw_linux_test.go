package store_test

import "syscall"

// On Linux the kernel kills versitygw if the test binary dies without
// running TestMain's cleanup (a panic, a timeout).
func init() { gwProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
