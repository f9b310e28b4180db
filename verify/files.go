package verify

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/nitrosigner/nitrosigner/internal/attest"
)

// maxFileSize bounds the PCR and root files read, which are a few KiB.
const maxFileSize = 1 << 20

// readSmallFile reads file, refusing anything over maxFileSize.
func readSmallFile(file string) ([]byte, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxFileSize)
	}
	return os.ReadFile(file)
}

// LoadPCRs reads expected PCR values from a JSON file in any of the forms
// [ParsePCRs] accepts.
func LoadPCRs(file string) (map[int][]byte, error) {
	data, err := readSmallFile(file)
	if err != nil {
		return nil, err
	}
	pcrs, err := ParsePCRs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return pcrs, nil
}

// ParsePCRs decodes expected PCR values from JSON in one of these forms:
//
//   - nitro-cli's measurements, as printed by build-enclave and
//     describe-eif: {"Measurements": {"HashAlgorithm": "Sha384 { ... }",
//     "PCR0": "hex", ...}} (other top-level members are ignored);
//   - the inner object alone: {"HashAlgorithm": ..., "PCR0": "hex", ...};
//   - keyed by bare index: {"0": "hex", "8": "hex"}.
//
// Keys are case-insensitive ("pcr1"); values are 96 hex digits, upper or
// lower case, optionally 0x-prefixed; indexes are 0..31. A HashAlgorithm
// other than SHA-384, an unknown key, a PCR given twice or no PCR at all is
// an error.
func ParsePCRs(data []byte) (map[int][]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m, ok := obj["Measurements"]; ok {
		obj = nil
		if err := json.Unmarshal(m, &obj); err != nil {
			return nil, fmt.Errorf("the \"Measurements\" field is not a JSON object: %w", err)
		}
	}
	hexPCRs := make(map[int]string)
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		var v string
		if err := json.Unmarshal(obj[k], &v); err != nil {
			return nil, fmt.Errorf("%q: want a string", k)
		}
		if k == "HashAlgorithm" {
			if !strings.Contains(strings.ToLower(v), "sha384") {
				return nil, fmt.Errorf("HashAlgorithm %q is not SHA-384", v)
			}
			continue
		}
		n := strings.TrimPrefix(strings.ToUpper(k), "PCR")
		idx, err := strconv.Atoi(n)
		if err != nil || strings.Trim(n, "0123456789") != "" {
			return nil, fmt.Errorf("unknown key %q (want PCRn or n)", k)
		}
		if _, dup := hexPCRs[idx]; dup {
			return nil, fmt.Errorf("PCR%d given twice", idx)
		}
		hexPCRs[idx] = strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
	}
	if len(hexPCRs) == 0 {
		return nil, errors.New("no PCR values")
	}
	return attest.ParsePCRs(hexPCRs)
}

// LoadRoots reads the PEM certificates in file, for [Options.Roots]. Use
// it for a simulator's root (nsmsim writes one); real enclaves need none.
func LoadRoots(file string) ([]*x509.Certificate, error) {
	data, err := readSmallFile(file)
	if err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		roots = append(roots, cert)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return roots, nil
}
