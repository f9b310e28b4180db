package transport

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalidAddress is wrapped by every error that [Parse], [Listen], [Dial]
// and [Dialer] return for an address string that is malformed or cannot be
// used for the requested operation. The full error names the address and
// what is wrong with it.
var ErrInvalidAddress = errors.New("invalid address")

// CIDAny is the vsock context ID that binds a listener to every local
// context ID (VMADDR_CID_ANY). It is written "any" in address strings.
const CIDAny = math.MaxUint32

// Network names used in [Addr.Network].
const (
	NetworkVsock = "vsock"
	NetworkUnix  = "unix"
	NetworkTCP   = "tcp"
)

// Addr is a parsed transport address. Only the fields for its Network are
// set; the others are zero. Addr is a plain value and safe to copy.
type Addr struct {
	// Network is one of NetworkVsock, NetworkUnix or NetworkTCP.
	Network string
	// CID is the vsock context ID; [CIDAny] means any local CID.
	CID uint32
	// Port is the vsock port.
	Port uint32
	// Path is the absolute path of a unix socket.
	Path string
	// HostPort is the TCP "host:port" in the form [net.JoinHostPort]
	// produces, with IPv6 literals in brackets and a decimal port.
	HostPort string
}

// Parse parses an address string in one of the forms listed in the package
// documentation. Every error it returns wraps [ErrInvalidAddress] and names
// the address and what is wrong with it. Parse does no I/O: it neither
// resolves host names nor looks at the file system.
func Parse(s string) (Addr, error) {
	if s == "" {
		return Addr{}, invalid(s, "address is empty")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		// A known scheme without "//" (for example "unix:/run/x.sock")
		// would otherwise be misread as a host:port pair.
		for _, n := range []string{NetworkVsock, NetworkUnix, NetworkTCP} {
			if strings.HasPrefix(s, n+":") {
				return Addr{}, invalid(s, "scheme %q must be followed by \"://\"", n)
			}
		}
		return parseTCP(s, s)
	}
	switch scheme {
	case NetworkVsock:
		return parseVsock(s, rest)
	case NetworkUnix:
		return parseUnix(s, rest)
	case NetworkTCP:
		return parseTCP(s, rest)
	default:
		return Addr{}, invalid(s, "unknown scheme %q (want vsock, unix or tcp)", scheme)
	}
}

func parseVsock(s, rest string) (Addr, error) {
	cidStr, portStr, ok := strings.Cut(rest, ":")
	if !ok {
		return Addr{}, invalid(s, "missing port (want vsock://CID:PORT)")
	}
	var cid uint32
	if cidStr == "any" {
		cid = CIDAny
	} else {
		n, err := strconv.ParseUint(cidStr, 10, 32)
		if err != nil {
			return Addr{}, invalid(s, "CID %q is not a decimal uint32 or \"any\"", cidStr)
		}
		cid = uint32(n)
	}
	port, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil {
		return Addr{}, invalid(s, "port %q is not a decimal uint32", portStr)
	}
	return Addr{Network: NetworkVsock, CID: cid, Port: uint32(port)}, nil
}

func parseUnix(s, path string) (Addr, error) {
	switch {
	case path == "":
		return Addr{}, invalid(s, "missing socket path")
	case !strings.HasPrefix(path, "/"):
		return Addr{}, invalid(s, "unix socket path %q is not absolute (want unix:///abs/path)", path)
	case strings.ContainsRune(path, 0):
		return Addr{}, invalid(s, "unix socket path contains a NUL byte")
	}
	return Addr{Network: NetworkUnix, Path: path}, nil
}

func parseTCP(s, hostport string) (Addr, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		var aerr *net.AddrError
		if errors.As(err, &aerr) {
			// Drop the *net.AddrError's own copy of the address.
			return Addr{}, invalid(s, "%s (want tcp://HOST:PORT)", aerr.Err)
		}
		return Addr{}, invalid(s, "%v", err)
	}
	if portStr == "" {
		return Addr{}, invalid(s, "missing port")
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return Addr{}, invalid(s, "port %q is not a decimal number from 0 to 65535", portStr)
	}
	if err := checkHost(host); err != nil {
		return Addr{}, invalid(s, "%v", err)
	}
	return Addr{
		Network:  NetworkTCP,
		HostPort: net.JoinHostPort(host, strconv.FormatUint(port, 10)),
	}, nil
}

// checkHost accepts an IP literal or something shaped like a DNS name. It is
// a sanity check against typos, not a full RFC 1123 validator.
func checkHost(host string) error {
	if host == "" {
		return errors.New("missing host (use 0.0.0.0 or [::] to mean every interface)")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if strings.Contains(host, ":") {
		return fmt.Errorf("host %q is not a valid IPv6 address", host)
	}
	for _, r := range host {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9',
			r == '-', r == '.', r == '_':
		default:
			return fmt.Errorf("host %q contains %q, which is not allowed in a host name", host, r)
		}
	}
	return nil
}

// invalid returns an error wrapping ErrInvalidAddress that names s.
func invalid(s, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidAddress, s, fmt.Sprintf(format, args...))
}

// String returns a in the URL form [Parse] accepts, so that
// Parse(a.String()) returns a for any a that Parse produced. A vsock CID of
// [CIDAny] is written "any". The zero Addr, or one with an unknown Network,
// yields the empty string.
func (a Addr) String() string {
	switch a.Network {
	case NetworkVsock:
		cid := strconv.FormatUint(uint64(a.CID), 10)
		if a.CID == CIDAny {
			cid = "any"
		}
		return "vsock://" + cid + ":" + strconv.FormatUint(uint64(a.Port), 10)
	case NetworkUnix:
		return "unix://" + a.Path
	case NetworkTCP:
		return "tcp://" + a.HostPort
	default:
		return ""
	}
}
