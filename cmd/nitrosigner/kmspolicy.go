package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nitrosigner/nitrosigner/eif"
	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
	"github.com/nitrosigner/nitrosigner/verify"
)

const kmsPolicySynopsis = "nitrosigner kms-policy --role-arn ARN --admin-arn ARN --pcrs FILE [--pcrs FILE ...] [--pcr N=HEX ...] [--no-pcr3] [--out FILE]"

const kmsPolicyHelp = `Print the key policy of the KMS key that wraps nitrosigner's KEKs. No
server is contacted.

Each --pcrs file is one enclave image the policy admits: nitro-cli's
Measurements JSON, as printed by build-enclave, describe-eif and
"nitrosigner eif describe --json". Give one file, or two during an upgrade
(the old and the new image). An enclave must match every PCR of one image:
those in its file, PCR3 (the parent's IAM role, computed from --role-arn)
and each --pcr. Each image gets its own statement, so PCRs of different
images cannot be mixed.

In the policy the parent's role may call Decrypt, GenerateDataKey and
GenerateRandom only with such an attestation; --admin-arn may manage the key
but not use it; every key use without an attestation document, or by a
debug-mode enclave, is denied to everyone. Measurements of debug-mode
enclaves (PCR0 all zeros) are refused.

The output is the policy JSON alone, on stdout or in --out FILE.`

// runKMSPolicy runs "nitrosigner kms-policy". args are the arguments after
// "kms-policy". The policy goes to stdout (or --out); warnings go to
// stderr. It contacts no server.
func runKMSPolicy(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("kms-policy")
	role := fs.String("role-arn", "", "IAM role `ARN` of the parent instance (required); the key's account is its account")
	admin := fs.String("admin-arn", "", "`ARN` of the IAM role or user that administers the key (required)")
	var files, extra repeatedFlag
	fs.Var(&files, "pcrs", "measurements JSON `file` of an image to admit (required; repeat for each image)")
	fs.Var(&extra, "pcr", "also pin PCR N to HEX in every image (`N=HEX`; repeatable), e.g. PCR4 of one instance")
	noPCR3 := fs.Bool("no-pcr3", false, "do not pin PCR3 to --role-arn: admits the images on instances with any role")
	out := fs.String("out", "", "write the policy to `file` instead of stdout")
	if err := parseFlags(fs, args, stdout, kmsPolicySynopsis, kmsPolicyHelp); err != nil {
		return err
	}
	if err := noArgs(fs, kmsPolicySynopsis); err != nil {
		return err
	}
	if *role == "" || *admin == "" || len(files) == 0 {
		return usagef(kmsPolicySynopsis, "kms-policy: --role-arn, --admin-arn and --pcrs are required")
	}
	if !roleARN.MatchString(*role) {
		return usagef(kmsPolicySynopsis, "--role-arn: %q is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", *role)
	}

	// common holds the PCRs pinned in every image.
	common := make(map[int]pinned)
	for _, p := range extra {
		i, v, err := parsePCRFlag(p)
		if err != nil {
			return usagef(kmsPolicySynopsis, "--pcr %s: %v", p, err)
		}
		if _, dup := common[i]; dup {
			return usagef(kmsPolicySynopsis, "--pcr: PCR%d given twice", i)
		}
		common[i] = pinned{v, "--pcr"}
	}
	if !*noPCR3 {
		pcr3 := hex.EncodeToString(eif.PCR3(*role))
		if p, ok := common[3]; ok && p.value != pcr3 {
			return usagef(kmsPolicySynopsis, "--pcr 3=...: differs from PCR3 of --role-arn %s (%s); drop it, or add --no-pcr3", *role, pcr3)
		}
		common[3] = pinned{pcr3, "--role-arn"}
	}

	images := make([]kmspolicy.Image, 0, len(files))
	for _, f := range files {
		pcrs, err := loadImagePCRs(f, common)
		if err != nil {
			return err
		}
		images = append(images, kmspolicy.Image{PCRs: pcrs})
	}
	doc, err := kmspolicy.Generate(kmspolicy.GenerateOptions{
		Account:        strings.Split(*role, ":")[4],
		AdminPrincipal: *admin,
		ParentRole:     *role,
		Images:         images,
	})
	if errors.Is(err, kmspolicy.ErrInvalidOptions) {
		// Name the flags, not the fields of GenerateOptions.
		names := []string{"AdminPrincipal", "--admin-arn", "ParentRole", "--role-arn"}
		for n, f := range files {
			names = append(names, fmt.Sprintf("Images[%d].PCRs", n), "--pcrs "+f, fmt.Sprintf("Images[%d]", n), "--pcrs "+f)
		}
		msg := strings.TrimPrefix(err.Error(), kmspolicy.ErrInvalidOptions.Error()+": ")
		return usagef(kmsPolicySynopsis, "kms-policy: %s", strings.NewReplacer(names...).Replace(msg))
	}
	if err != nil {
		return err
	}

	if *noPCR3 {
		fmt.Fprintf(stderr, "nitrosigner: WARNING: --no-pcr3: the policy does not pin PCR3, so it admits these images on instances with any IAM role, not only %s (as long as the request is signed with its credentials)\n", *role)
	}
	if *out == "" {
		_, err := stdout.Write(doc)
		return err
	}
	return writePolicyFile(*out, doc)
}

// pinned is a PCR value pinned in every image, and the flag that gave it.
type pinned struct{ value, flag string }

// parsePCRFlag parses an --pcr value N=HEX: an index 0..31 and 96 hex
// digits, optionally 0x-prefixed, not all zero. It returns the value as
// lowercase hex.
func parsePCRFlag(p string) (int, string, error) {
	n, v, ok := strings.Cut(p, "=")
	i, err := strconv.Atoi(n)
	if !ok || err != nil || i < 0 || i > 31 || n != strconv.Itoa(i) {
		return 0, "", errors.New("want N=HEX with N from 0 to 31")
	}
	v = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X"))
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != 48 {
		return 0, "", errors.New("want 96 hex digits (SHA-384) after N=")
	}
	if isZero(b) {
		return 0, "", fmt.Errorf("PCR%d is all zeros, which any debug-mode enclave presents", i)
	}
	return i, v, nil
}

// loadImagePCRs reads the measurements file of one image and adds the
// common PCRs. It refuses, as usage errors, debug-mode measurements, files
// that identify no image (neither PCR0 nor PCR8) and PCRs that contradict
// the common ones.
func loadImagePCRs(file string, common map[int]pinned) (map[int]string, error) {
	raw, err := verify.LoadPCRs(file)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--pcrs: %v", err)}
	}
	pcrs := make(map[int]string, len(raw)+len(common))
	for _, i := range slices.Sorted(maps.Keys(raw)) {
		if isZero(raw[i]) {
			return nil, &usageError{msg: fmt.Sprintf("--pcrs %s: PCR%d is all zeros, as reported by debug-mode enclaves: these are not the measurements of an image to admit", file, i)}
		}
		pcrs[i] = hex.EncodeToString(raw[i])
	}
	if pcrs[0] == "" && pcrs[8] == "" {
		return nil, &usageError{msg: fmt.Sprintf("--pcrs %s: neither PCR0 (image) nor PCR8 (signing certificate): it does not identify an image", file)}
	}
	for _, i := range slices.Sorted(maps.Keys(common)) {
		p := common[i]
		if v, ok := pcrs[i]; ok && v != p.value {
			return nil, &usageError{msg: fmt.Sprintf("--pcrs %s: PCR%d is %s, but %s gives %s", file, i, v, p.flag, p.value)}
		}
		pcrs[i] = p.value
	}
	return pcrs, nil
}

func isZero(b []byte) bool {
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// writePolicyFile writes doc to a temporary file next to name and renames
// it into place, so that name never holds half a policy.
func writePolicyFile(name string, doc []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--out: %v", err)}
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(doc)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
