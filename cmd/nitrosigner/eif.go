package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nitrosigner/nitrosigner/eif"
	"github.com/nitrosigner/nitrosigner/verify"
)

const (
	eifSynopsis      = "nitrosigner eif describe|pcr|build ..."
	describeSynopsis = "nitrosigner eif describe FILE [--pcrs FILE] [--json]"
	pcrSynopsis      = "nitrosigner eif pcr --role ARN | --instance-id ID | --cert PEM_FILE [--json]"
	buildSynopsis    = "nitrosigner eif build --kernel FILE --cmdline FILE|STRING --ramdisk FILE [--ramdisk FILE ...] [--app FILE [--app-arg ARG ...]] --out FILE"
)

const eifHelp = `Work offline with AWS Nitro Enclaves image files (EIF) and the PCRs an
enclave reports. No server is contacted.

Subcommands:
  describe   check an image (layout, CRC-32, signature) and print its PCR0, PCR1,
             PCR2 and, if signed, PCR8
  pcr        print PCR3 of a parent IAM role, PCR4 of a parent instance, or
             PCR8 of a signing certificate
  build      build an image without Docker, deterministically

With --json, describe and build print nitro-cli's {"Measurements": {...}},
which attest --pcrs and kms-policy read; pcr prints {"PCRn": "hex"}.`

const describeHelp = `Read an enclave image file, check its structure and CRC-32, verify its
signature if it has one, and print its sections and the PCRs the enclave
will report outside debug mode. With --pcrs, also check them against a JSON
file of expected values (nitro-cli's Measurements output, as written by
eif/build.sh) and exit with status 1 if any differs.`

const pcrHelp = `Print one PCR as lowercase hex:
  --role ARN          PCR3, the IAM role of the parent instance
  --instance-id ID    PCR4, the parent instance
  --cert PEM_FILE     PCR8, the certificate an image is signed with`

const buildHelp = `Build an enclave image file from a kernel, its command line and ramdisks,
without Docker. The same inputs always give the same bytes and PCRs (except
the signature section of signed images, whose ECDSA signature is random).

The first --ramdisk is the bootstrap ramdisk (AWS init and nsm.ko); the
others, and the ramdisk made from --app, hold the application. --app makes
the application ramdisk from one static binary started as
"--app-path --app-arg...", the layout nitro-cli gives a Docker image.
--cmdline names a file, whose contents are used with surrounding white space
trimmed as nitro-cli does, or is the command line itself.

Metadata (not measured): --name, --version, and a build time taken from
SOURCE_DATE_EPOCH (default 0).`

// measurementsJSON is nitro-cli's build-enclave / describe-eif output.
type measurementsJSON struct {
	Measurements map[string]string `json:"Measurements"`
}

// runEIF runs "nitrosigner eif ...". args are the arguments after "eif".
// It contacts no server; ctx only bounds the reading of large files.
func runEIF(ctx context.Context, args []string, stdout io.Writer) error {
	c := &cli{stdout: stdout, stderr: io.Discard}
	fs := newFlagSet("eif")
	fs.BoolVar(&c.cfg.json, "json", false, "print one JSON object instead of text")
	if err := parseFlags(fs, args, stdout, eifSynopsis, eifHelp); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef(eifSynopsis, "eif: no subcommand given")
	}
	switch rest[0] {
	case "describe":
		return c.eifDescribe(ctx, rest[1:])
	case "pcr":
		return c.eifPCR(rest[1:])
	case "build":
		return c.eifBuild(ctx, rest[1:])
	case "help":
		printHelp(stdout, fs, eifSynopsis, eifHelp)
		return errHelpShown
	default:
		return usagef(eifSynopsis, "eif: unknown subcommand %q", rest[0])
	}
}

// parseInterspersed parses args into fs allowing flags after positional
// arguments ("describe FILE --json").
func parseInterspersed(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis, help string) error {
	args = hoistGlobalFlags(fs, args)
	isHelp := func(a string) bool { return a == "-h" || a == "--h" || a == "-help" || a == "--help" }
	if i := slices.IndexFunc(args, isHelp); i > 0 {
		args = append([]string{args[i]}, slices.Delete(slices.Clone(args), i, i+1)...)
	}
	return parseFlags(fs, args, stdout, synopsis, help)
}

func (c *cli) eifDescribe(ctx context.Context, args []string) error {
	fs := newFlagSet("eif describe")
	fs.BoolVar(&c.cfg.json, "json", c.cfg.json, "print nitro-cli's Measurements JSON")
	pcrsFile := fs.String("pcrs", "", "JSON `file` of expected PCRs (nitro-cli's Measurements); exit 1 if any differs")
	if err := parseInterspersed(fs, args, c.stdout, describeSynopsis, describeHelp); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef(describeSynopsis, "eif describe: want exactly one image file")
	}
	name := fs.Arg(0)
	var want map[int][]byte
	if *pcrsFile != "" {
		var err error
		if want, err = verify.LoadPCRs(*pcrsFile); err != nil {
			return &usageError{msg: fmt.Sprintf("--pcrs: %v", err)}
		}
	}

	img, size, err := readImage(ctx, name)
	if err != nil {
		return err
	}
	m := img.Measurements
	if img.Signature != nil {
		if err := img.Signature.Verify(m.PCR0); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if want != nil {
		if err := checkMeasurements(m, want); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if c.cfg.json {
		return c.writeJSON(measurementsJSON{Measurements: m.NitroCLI()})
	}

	lines := []string{
		"file", printable(name),
		"size", strconv.FormatInt(size, 10),
		"eif_version", strconv.Itoa(int(img.Version)),
		"arch", img.Arch(),
		"crc32", fmt.Sprintf("%08x (ok)", img.CRC32),
		"cmdline", printable(img.Cmdline),
	}
	if md := img.Metadata; md != nil {
		lines = append(lines,
			"image_name", printable(md.ImageName),
			"image_version", printable(md.ImageVersion),
			"build_time", printable(md.BuildMetadata.BuildTime),
			"build_tool", printable(strings.TrimSpace(md.BuildMetadata.BuildTool+" "+md.BuildMetadata.BuildToolVersion)))
	}
	if sig := img.Signature; sig != nil {
		cert := sig.Certificate
		validity := formatTime(cert.NotBefore) + " .. " + formatTime(cert.NotAfter)
		if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
			validity += " (NOT VALID NOW: run-enclave refuses the image)"
		}
		lines = append(lines,
			"signed", "yes, signature over PCR0 verified",
			"signing_cert", printable(cert.Subject.String()),
			"signing_cert_valid", validity)
	} else {
		lines = append(lines, "signed", "no")
	}
	lines = append(lines,
		"PCR0", hex.EncodeToString(m.PCR0),
		"PCR1", hex.EncodeToString(m.PCR1),
		"PCR2", hex.EncodeToString(m.PCR2))
	if m.PCR8 != nil {
		lines = append(lines, "PCR8", hex.EncodeToString(m.PCR8))
	}
	if want != nil {
		lines = append(lines, "pcrs_check", "ok, matches "+printable(*pcrsFile))
	}
	if err := c.fields(lines...); err != nil {
		return err
	}
	rows := [][]string{{"SECTION", "TYPE", "OFFSET", "SIZE"}}
	for i, s := range img.Sections {
		rows = append(rows, []string{strconv.Itoa(i), s.Type.String(), strconv.FormatInt(s.Offset, 10), strconv.FormatInt(s.Size, 10)})
	}
	fmt.Fprintln(c.stdout)
	return c.table(rows)
}

// readImage reads and measures the image in file name.
func readImage(ctx context.Context, name string) (*eif.Image, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, &usageError{msg: err.Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, &usageError{msg: fmt.Sprintf("%s: not a regular file", name)}
	}
	img, err := eif.Read(ctxReaderAt{ctx, f}, st.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	return img, st.Size(), nil
}

// ctxReaderAt stops reading once ctx is done.
type ctxReaderAt struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(p, off)
}

// checkMeasurements compares m with the expected PCRs.
func checkMeasurements(m eif.Measurements, want map[int][]byte) error {
	have := map[int][]byte{0: m.PCR0, 1: m.PCR1, 2: m.PCR2}
	if m.PCR8 != nil {
		have[8] = m.PCR8
	}
	for _, i := range slices.Sorted(maps.Keys(want)) {
		got, ok := have[i]
		switch {
		case !ok && i == 8:
			return errors.New("the expected PCRs include PCR8 but the image is not signed")
		case !ok:
			return fmt.Errorf("PCR%d is not a property of the image and cannot be checked against it", i)
		case !bytes.Equal(got, want[i]):
			return fmt.Errorf("PCR%d is %x, the expected value is %x", i, got, want[i])
		}
	}
	if _, ok := want[8]; !ok && m.PCR8 != nil {
		return errors.New("the image is signed but the expected PCRs have no PCR8")
	}
	return nil
}

var (
	// roleARN matches IAM role ARNs in every partition, with paths.
	roleARN = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	// instanceID matches EC2 instance ids (8 or 17 hex digits).
	instanceID = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

func (c *cli) eifPCR(args []string) error {
	fs := newFlagSet("eif pcr")
	fs.BoolVar(&c.cfg.json, "json", c.cfg.json, `print {"PCRn": "hex"}`)
	role := fs.String("role", "", "IAM role `ARN` of the parent instance (PCR3)")
	instance := fs.String("instance-id", "", "EC2 instance `ID` of the parent (PCR4)")
	certFile := fs.String("cert", "", "PEM `file` of the image signing certificate (PCR8)")
	if err := parseInterspersed(fs, args, c.stdout, pcrSynopsis, pcrHelp); err != nil {
		return err
	}
	if err := noArgs(fs, pcrSynopsis); err != nil {
		return err
	}
	set := setFlags(fs)
	if n := btoi(set["role"]) + btoi(set["instance-id"]) + btoi(set["cert"]); n != 1 {
		return usagef(pcrSynopsis, "eif pcr: give exactly one of --role, --instance-id and --cert")
	}

	var (
		index int
		value []byte
	)
	switch {
	case set["role"]:
		if strings.Contains(*role, ":instance-profile/") {
			return usagef(pcrSynopsis, "--role: %q is an instance profile; PCR3 measures the ARN of its role (arn:aws:iam::ACCOUNT:role/NAME)", *role)
		}
		if !roleARN.MatchString(*role) {
			return usagef(pcrSynopsis, "--role: %q is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", *role)
		}
		index, value = 3, eif.PCR3(*role)
	case set["instance-id"]:
		if !instanceID.MatchString(*instance) {
			return usagef(pcrSynopsis, "--instance-id: %q is not an EC2 instance id (i- and 8 or 17 hex digits)", *instance)
		}
		index, value = 4, eif.PCR4(*instance)
	default:
		data, err := os.ReadFile(*certFile)
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--cert: %v", err)}
		}
		cert, err := eif.ParseCertificatePEM(data)
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--cert: %s: %v", *certFile, err)}
		}
		index, value = 8, eif.PCR8(cert)
	}
	if c.cfg.json {
		return c.writeJSON(map[string]string{"PCR" + strconv.Itoa(index): hex.EncodeToString(value)})
	}
	_, err := fmt.Fprintln(c.stdout, hex.EncodeToString(value))
	return err
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// repeatedFlag collects the values of a flag given several times.
type repeatedFlag []string

func (r *repeatedFlag) String() string { return strings.Join(*r, ",") }

func (r *repeatedFlag) Set(v string) error { *r = append(*r, v); return nil }

func (c *cli) eifBuild(ctx context.Context, args []string) error {
	fs := newFlagSet("eif build")
	fs.BoolVar(&c.cfg.json, "json", c.cfg.json, "print nitro-cli's Measurements JSON")
	kernelFile := fs.String("kernel", "", "kernel image `file` (nitro-cli's blobs/bzImage); required")
	cmdline := fs.String("cmdline", "", "kernel command line `file` (blobs/cmdline) or the command line itself; required")
	var ramdisks, appArgs, appEnv repeatedFlag
	fs.Var(&ramdisks, "ramdisk", "ramdisk `file`; the first is the bootstrap ramdisk; repeat for more; at least one")
	appFile := fs.String("app", "", "static `binary` to make the application ramdisk from")
	appPath := fs.String("app-path", "/enclave", "`path` of --app inside the enclave")
	fs.Var(&appArgs, "app-arg", "`argument` of --app; repeat for more")
	fs.Var(&appEnv, "app-env", "`NAME=value` in the environment of --app; repeat for more")
	arch := fs.String("arch", "x86_64", "`architecture` of the kernel: x86_64 or aarch64")
	name := fs.String("name", "", "image `name` for the metadata (default: the base name of --out)")
	version := fs.String("version", "", "image `version` for the metadata")
	certFile := fs.String("signing-certificate", "", "PEM `file` of the signing certificate (needs --private-key)")
	keyFile := fs.String("private-key", "", "PEM `file` of the ECDSA signing key (needs --signing-certificate)")
	out := fs.String("out", "", "output `file`; required")
	if err := parseInterspersed(fs, args, c.stdout, buildSynopsis, buildHelp); err != nil {
		return err
	}
	if err := noArgs(fs, buildSynopsis); err != nil {
		return err
	}
	set := setFlags(fs)
	switch {
	case *kernelFile == "" || *out == "" || !set["cmdline"] || len(ramdisks) == 0:
		return usagef(buildSynopsis, "eif build: --kernel, --cmdline, --ramdisk and --out are required")
	case *arch != "x86_64" && *arch != "aarch64":
		return usagef(buildSynopsis, "--arch: %q is neither x86_64 nor aarch64", *arch)
	case (*certFile == "") != (*keyFile == ""):
		return usagef(buildSynopsis, "--signing-certificate and --private-key go together")
	case *appFile == "" && (set["app-path"] || len(appArgs) > 0 || len(appEnv) > 0):
		return usagef(buildSynopsis, "--app-path, --app-arg and --app-env need --app")
	}
	buildTime, err := sourceDateEpoch()
	if err != nil {
		return &usageError{msg: err.Error()}
	}

	cfg := eif.BuildConfig{AArch64: *arch == "aarch64"}
	if cfg.Kernel, err = readInput("--kernel", *kernelFile); err != nil {
		return err
	}
	if cfg.Cmdline, err = readCmdline(*cmdline); err != nil {
		return err
	}
	for _, r := range ramdisks {
		data, err := readInput("--ramdisk", r)
		if err != nil {
			return err
		}
		cfg.Ramdisks = append(cfg.Ramdisks, data)
	}
	if *appFile != "" {
		bin, err := readInput("--app", *appFile)
		if err != nil {
			return err
		}
		rd, err := eif.AppRamdisk(eif.App{Path: *appPath, Binary: bin, Args: appArgs, Env: appEnv})
		if err != nil {
			return &usageError{msg: err.Error(), synopsis: buildSynopsis}
		}
		cfg.Ramdisks = append(cfg.Ramdisks, rd)
	}
	if *certFile != "" {
		if cfg.Certificate, err = readInput("--signing-certificate", *certFile); err != nil {
			return err
		}
		if cfg.Signer, err = loadSigningKey(*keyFile); err != nil {
			return err
		}
	}
	imageName := *name
	if imageName == "" {
		imageName = strings.TrimSuffix(filepath.Base(*out), ".eif")
	}
	cfg.Metadata = &eif.Metadata{
		ImageName:    imageName,
		ImageVersion: *version,
		BuildMetadata: eif.BuildMetadata{
			BuildTime:        buildTime.UTC().Format(time.RFC3339),
			BuildTool:        "nitrosigner eif build",
			BuildToolVersion: "1",
			OperatingSystem:  "linux",
		},
	}

	m, err := writeImage(*out, cfg)
	if err != nil {
		return err
	}
	// Read the file back: what describe will say is what was built.
	img, size, err := readImage(ctx, *out)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if !equalMeasurements(img.Measurements, m) {
		return fmt.Errorf("%s: measurements read back differ from those built", *out)
	}
	if c.cfg.json {
		return c.writeJSON(measurementsJSON{Measurements: m.NitroCLI()})
	}
	lines := []string{
		"file", printable(*out),
		"size", strconv.FormatInt(size, 10),
		"cmdline", printable(cfg.Cmdline),
		"PCR0", hex.EncodeToString(m.PCR0),
		"PCR1", hex.EncodeToString(m.PCR1),
		"PCR2", hex.EncodeToString(m.PCR2),
	}
	if m.PCR8 != nil {
		lines = append(lines, "PCR8", hex.EncodeToString(m.PCR8))
	}
	return c.fields(lines...)
}

func equalMeasurements(a, b eif.Measurements) bool {
	return bytes.Equal(a.PCR0, b.PCR0) && bytes.Equal(a.PCR1, b.PCR1) &&
		bytes.Equal(a.PCR2, b.PCR2) && bytes.Equal(a.PCR8, b.PCR8)
}

// sourceDateEpoch returns the time in SOURCE_DATE_EPOCH, or the Unix epoch.
func sourceDateEpoch() (time.Time, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || v == "" {
		return time.Unix(0, 0), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
	}
	return time.Unix(sec, 0), nil
}

func readInput(flagName, file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("%s: %v", flagName, err)}
	}
	return data, nil
}

// readCmdline returns the contents of file v with surrounding white space
// trimmed (nitro-cli reads blobs/cmdline this way), or v itself when no
// such file exists. A value that looks like a path but names no file is an
// error rather than a command line.
func readCmdline(v string) (string, error) {
	if st, err := os.Stat(v); err == nil && st.Mode().IsRegular() {
		data, err := os.ReadFile(v)
		if err != nil {
			return "", &usageError{msg: fmt.Sprintf("--cmdline: %v", err)}
		}
		return strings.TrimSpace(string(data)), nil
	}
	if strings.Contains(v, "/") && !strings.ContainsAny(v, " =") {
		return "", &usageError{msg: fmt.Sprintf("--cmdline: no such file %q (a literal command line has spaces or '=')", v)}
	}
	return v, nil
}

// loadSigningKey reads an ECDSA private key from a PEM file: "EC PRIVATE
// KEY" (openssl ecparam -genkey) or PKCS#8 "PRIVATE KEY". The file's bytes
// are cleared once parsed.
func loadSigningKey(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--private-key: %v", err)}
	}
	defer clear(data)
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, &usageError{msg: fmt.Sprintf("--private-key: %s: no EC PRIVATE KEY or PRIVATE KEY PEM block", file)}
		}
		var key any
		switch block.Type {
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			continue
		}
		clear(block.Bytes)
		if err != nil {
			return nil, &usageError{msg: fmt.Sprintf("--private-key: %s: cannot parse the key", file)}
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, &usageError{msg: fmt.Sprintf("--private-key: %s: not an ECDSA key", file)}
		}
		return ec, nil
	}
}

// writeImage builds the image into a temporary file next to out and
// renames it into place, so that out is never left half-written.
func writeImage(out string, cfg eif.BuildConfig) (eif.Measurements, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return eif.Measurements{}, &usageError{msg: fmt.Sprintf("--out: %v", err)}
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	w := bufio.NewWriterSize(tmp, 1<<20)
	m, err := eif.Build(w, cfg)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return eif.Measurements{}, fmt.Errorf("write %s: %w", out, err)
	}
	return m, nil
}
