package limits_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/nitrosigner/nitrosigner/internal/limits"
)

func TestCheckFreezeReason(t *testing.T) {
	for _, ok := range []string{"x", "incident 42: leaked API credential", "gelöscht – 漢字", strings.Repeat("r", limits.FreezeReason)} {
		assert.NoError(t, limits.CheckFreezeReason(ok), "%q", ok)
	}
	for bad, want := range map[string]string{
		"": "required",
		strings.Repeat("r", limits.FreezeReason+1): "at most 256 bytes, got 257",
		"\xffbad":   "UTF-8",
		"tab\there": "U+0009",
		"nl\n":      "U+000A",
		"del\x7f":   "U+007F",
		"c1\u0085":  "U+0085",
	} {
		err := limits.CheckFreezeReason(bad)
		if assert.Error(t, err, "%q", bad) {
			assert.Contains(t, err.Error(), want)
		}
	}
}
