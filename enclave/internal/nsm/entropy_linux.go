package nsm

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// randomDevice is where the kernel accepts entropy from user space.
const randomDevice = "/dev/random"

// maxSeedSize bounds SeedKernelEntropy so the credited bit count fits the
// ioctl's int.
const maxSeedSize = 1 << 20

// SeedKernelEntropy reads n bytes from r (normally a [Device]) and adds them
// to the kernel's entropy pool: it writes them to /dev/random, which mixes
// them in, and credits them as n*8 bits of entropy with the RNDADDTOENTCNT
// ioctl, which needs CAP_SYS_ADMIN. Inside an enclave the kernel has few
// entropy sources, and since Go 1.26 crypto ignores custom random readers,
// so seeding the kernel is how NSM randomness reaches crypto/rand.
//
// n must be in [1, 1<<20]. The bytes are wiped from memory afterwards. The
// error says which step failed: reading r, opening or writing /dev/random,
// or the ioctl (for example EPERM without CAP_SYS_ADMIN).
func SeedKernelEntropy(r io.Reader, n int) error {
	return seedKernelEntropy(r, n, randomDevice)
}

func seedKernelEntropy(r io.Reader, n int, path string) error {
	if n <= 0 || n > maxSeedSize {
		return fmt.Errorf("seed kernel entropy: size %d not in [1, %d]", n, maxSeedSize)
	}
	buf := make([]byte, n)
	defer clear(buf)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("seed kernel entropy: read %d random bytes: %w", n, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("seed kernel entropy: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("seed kernel entropy: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("seed kernel entropy: %w", err)
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.RNDADDTOENTCNT, n*8)
	}); err != nil {
		return fmt.Errorf("seed kernel entropy: %w", err)
	}
	if ioctlErr != nil {
		return fmt.Errorf("seed kernel entropy: credit %d bits with RNDADDTOENTCNT on %s: %w", n*8, path, ioctlErr)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("seed kernel entropy: %w", err)
	}
	return nil
}
