//go:build !linux

package nsm

import (
	"errors"
	"fmt"
	"io"
)

// SeedKernelEntropy is only implemented on Linux, the only platform with a
// Nitro Security Module; elsewhere it returns an error wrapping
// [errors.ErrUnsupported].
func SeedKernelEntropy(r io.Reader, n int) error {
	return seedKernelEntropy(r, n, "")
}

func seedKernelEntropy(io.Reader, int, string) error {
	return fmt.Errorf("seed kernel entropy: %w", errors.ErrUnsupported)
}
