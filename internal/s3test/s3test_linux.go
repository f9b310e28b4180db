package s3test

import "syscall"

// On Linux the kernel kills versitygw if the test binary dies without
// running its cleanup (a panic, a timeout).
func init() { procAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
