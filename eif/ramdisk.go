package eif

import (
	"errors"
	"fmt"
	"strings"
)

// App is an application for [AppRamdisk]: one static binary and the
// command line and environment the AWS bootstrap init starts it with.
type App struct {
	// Path is where the binary lives inside the enclave's root file
	// system: an absolute path with a single component, such as
	// "/enclave".
	Path string
	// Binary is the executable, typically a static Go binary.
	Binary []byte
	// Args are the arguments after the program name.
	Args []string
	// Env are the environment variables, "NAME=value" each. The init adds
	// PATH=/sbin:/usr/sbin:/bin:/usr/bin.
	Env []string
}

// AppRamdisk returns the application ramdisk for app: an uncompressed
// cpio archive (newc format) in the layout nitro-cli gives the customer
// ramdisk (enclave_build/src/yaml_generator.rs, docker.rs):
//
//	cmd                 the program path, then each argument, one per line
//	env                 the environment, one "NAME=value" per line
//	rootfs/             the root the init chroots into, with the empty
//	                    directories dev, proc, run, sys, tmp and var
//	rootfs/<Path>       the binary, mode 0755
//
// Every entry is owned by root with modification time 0, so the same App
// always gives the same bytes, hence the same PCR2. The init reads cmd and
// env line by line, so no argument or variable may contain a newline,
// carriage return or NUL.
func AppRamdisk(app App) ([]byte, error) {
	name, ok := strings.CutPrefix(app.Path, "/")
	if !ok || !validFileName(name) {
		return nil, fmt.Errorf("eif: app path %q: want /NAME with NAME of letters, digits, '.', '_' or '-'", app.Path)
	}
	if len(app.Binary) == 0 || len(app.Binary) > 0xffffffff {
		return nil, errors.New("eif: app binary is empty or larger than cpio's 4 GiB limit")
	}
	for _, a := range app.Args {
		if strings.ContainsAny(a, "\n\r\x00") {
			return nil, fmt.Errorf("eif: app argument %q contains a newline, carriage return or NUL", a)
		}
	}
	for _, e := range app.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.ContainsAny(e, "\n\r\x00") {
			return nil, fmt.Errorf("eif: app environment entry %q: want NAME=value on one line", e)
		}
	}

	var cmd, env strings.Builder
	for _, line := range append([]string{app.Path}, app.Args...) {
		cmd.WriteString(line + "\n")
	}
	for _, line := range app.Env {
		env.WriteString(line + "\n")
	}
	var w cpioWriter
	w.file("cmd", 0o644, []byte(cmd.String()))
	w.file("env", 0o644, []byte(env.String()))
	w.dir("rootfs")
	for _, d := range []string{"dev", "proc", "run", "sys", "tmp", "var"} {
		w.dir("rootfs/" + d)
	}
	w.file("rootfs/"+name, 0o755, app.Binary)
	return w.close(), nil
}

func validFileName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cpioWriter writes a "newc" (SVR4, magic 070701) cpio archive, the format
// of Linux initramfs (Documentation/driver-api/early-userspace/
// buffer-format.rst): a 110-byte ASCII header of 13 eight-digit hex fields,
// the NUL-terminated name, padding to 4 bytes, the data, padding to 4
// bytes; the archive ends with an entry named "TRAILER!!!".
type cpioWriter struct {
	b   []byte
	ino uint32
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
)

func (w *cpioWriter) dir(name string) { w.entry(name, cpioDir|0o755, 2, nil) }

func (w *cpioWriter) file(name string, perm uint32, data []byte) {
	w.entry(name, cpioFile|perm, 1, data)
}

func (w *cpioWriter) entry(name string, mode, nlink uint32, data []byte) {
	w.ino++
	ino := w.ino
	if name == "TRAILER!!!" {
		ino = 0
	}
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
	w.b = fmt.Appendf(w.b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	w.b = append(w.b, name...)
	w.b = append(w.b, 0)
	w.pad()
	w.b = append(w.b, data...)
	w.pad()
}

func (w *cpioWriter) pad() {
	for len(w.b)%4 != 0 {
		w.b = append(w.b, 0)
	}
}

func (w *cpioWriter) close() []byte {
	w.entry("TRAILER!!!", 0, 1, nil)
	return w.b
}
