package transport_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/transport"
)

var parseGood = []struct {
	name string
	in   string
	want transport.Addr
	str  string // want String(); "" means same as in
}{
	{
		name: "vsock parent",
		in:   "vsock://3:8000",
		want: transport.Addr{Network: "vsock", CID: 3, Port: 8000},
	},
	{
		name: "vsock any",
		in:   "vsock://any:5000",
		want: transport.Addr{Network: "vsock", CID: transport.CIDAny, Port: 5000},
	},
	{
		name: "vsock numeric any",
		in:   "vsock://4294967295:1",
		want: transport.Addr{Network: "vsock", CID: transport.CIDAny, Port: 1},
		str:  "vsock://any:1",
	},
	{
		name: "vsock max port",
		in:   "vsock://16:4294967295",
		want: transport.Addr{Network: "vsock", CID: 16, Port: 4294967295},
	},
	{
		name: "vsock leading zeros",
		in:   "vsock://003:080",
		want: transport.Addr{Network: "vsock", CID: 3, Port: 80},
		str:  "vsock://3:80",
	},
	{
		name: "unix",
		in:   "unix:///run/nitrosigner/enclave.sock",
		want: transport.Addr{Network: "unix", Path: "/run/nitrosigner/enclave.sock"},
	},
	{
		name: "unix path taken literally",
		in:   "unix:///tmp/a b?c%20.sock",
		want: transport.Addr{Network: "unix", Path: "/tmp/a b?c%20.sock"},
	},
	{
		name: "tcp ipv4",
		in:   "tcp://127.0.0.1:8000",
		want: transport.Addr{Network: "tcp", HostPort: "127.0.0.1:8000"},
	},
	{
		name: "tcp ipv6",
		in:   "tcp://[::1]:8000",
		want: transport.Addr{Network: "tcp", HostPort: "[::1]:8000"},
	},
	{
		name: "tcp ipv6 zone",
		in:   "tcp://[fe80::1%eth0]:8000",
		want: transport.Addr{Network: "tcp", HostPort: "[fe80::1%eth0]:8000"},
	},
	{
		name: "tcp name",
		in:   "tcp://kms.eu-west-1.amazonaws.com:443",
		want: transport.Addr{Network: "tcp", HostPort: "kms.eu-west-1.amazonaws.com:443"},
	},
	{
		name: "tcp port zero",
		in:   "tcp://localhost:0",
		want: transport.Addr{Network: "tcp", HostPort: "localhost:0"},
	},
	{
		name: "tcp port normalised",
		in:   "tcp://localhost:0080",
		want: transport.Addr{Network: "tcp", HostPort: "localhost:80"},
		str:  "tcp://localhost:80",
	},
	{
		name: "bare host port",
		in:   "127.0.0.1:9000",
		want: transport.Addr{Network: "tcp", HostPort: "127.0.0.1:9000"},
		str:  "tcp://127.0.0.1:9000",
	},
	{
		name: "bare ipv6",
		in:   "[::]:9000",
		want: transport.Addr{Network: "tcp", HostPort: "[::]:9000"},
		str:  "tcp://[::]:9000",
	},
}

var parseBad = []struct {
	name    string
	in      string
	wantMsg string // substring of the error message
}{
	{name: "empty", in: "", wantMsg: "address is empty"},
	{name: "vsock missing port", in: "vsock://3", wantMsg: "missing port"},
	{name: "vsock empty port", in: "vsock://3:", wantMsg: `port ""`},
	{name: "vsock non-numeric cid", in: "vsock://parent:8000", wantMsg: `CID "parent" is not a decimal uint32`},
	{name: "vsock empty cid", in: "vsock://:8000", wantMsg: `CID ""`},
	{name: "vsock negative cid", in: "vsock://-1:8000", wantMsg: `CID "-1"`},
	{name: "vsock hex cid", in: "vsock://0x3:8000", wantMsg: `CID "0x3"`},
	{name: "vsock cid overflow", in: "vsock://4294967296:8000", wantMsg: `CID "4294967296"`},
	{name: "vsock port overflow", in: "vsock://3:4294967296", wantMsg: `port "4294967296"`},
	{name: "vsock extra colon", in: "vsock://3:80:1", wantMsg: `port "80:1"`},
	{name: "vsock trailing path", in: "vsock://3:80/", wantMsg: `port "80/"`},
	{name: "unix relative", in: "unix://run/x.sock", wantMsg: "not absolute"},
	{name: "unix dot relative", in: "unix://./x.sock", wantMsg: "not absolute"},
	{name: "unix empty", in: "unix://", wantMsg: "missing socket path"},
	{name: "unix nul", in: "unix:///tmp/a\x00b", wantMsg: "NUL"},
	{name: "unix single slash", in: "unix:/tmp/x.sock", wantMsg: `scheme "unix" must be followed by "://"`},
	{name: "vsock no slashes", in: "vsock:3:8000", wantMsg: `scheme "vsock" must be followed by "://"`},
	{name: "tcp missing port", in: "tcp://127.0.0.1", wantMsg: "missing port"},
	{name: "tcp empty port", in: "tcp://127.0.0.1:", wantMsg: "missing port"},
	{name: "tcp port too big", in: "tcp://127.0.0.1:65536", wantMsg: `port "65536"`},
	{name: "tcp negative port", in: "tcp://127.0.0.1:-1", wantMsg: `port "-1"`},
	{name: "tcp named port", in: "tcp://127.0.0.1:https", wantMsg: `port "https"`},
	{name: "tcp missing host", in: "tcp://:8000", wantMsg: "missing host"},
	{name: "tcp unbracketed ipv6", in: "tcp://::1:8000", wantMsg: "too many colons"},
	{name: "tcp bad ipv6", in: "tcp://[::g]:8000", wantMsg: "not a valid IPv6 address"},
	{name: "tcp space in host", in: "tcp://bad host:80", wantMsg: "not allowed in a host name"},
	{name: "tcp path", in: "tcp://example.com:80/x", wantMsg: `port "80/x"`},
	{name: "tcp userinfo", in: "tcp://user@example.com:80", wantMsg: "not allowed in a host name"},
	{name: "unknown scheme", in: "http://example.com:80", wantMsg: `unknown scheme "http"`},
	{name: "upper-case scheme", in: "TCP://127.0.0.1:80", wantMsg: `unknown scheme "TCP"`},
	{name: "bare host", in: "localhost", wantMsg: "missing port"},
	{name: "bare path", in: "/run/x.sock", wantMsg: "missing port"},
	{name: "leading space", in: " tcp://127.0.0.1:80", wantMsg: `unknown scheme " tcp"`},
}

func TestParse(t *testing.T) {
	for _, tt := range parseGood {
		t.Run(tt.name, func(t *testing.T) {
			got, err := transport.Parse(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			assert.Equal(t, wantStr, got.String())

			again, err := transport.Parse(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again, "String does not round-trip")
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tt := range parseBad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.Parse(tt.in)
			require.ErrorIs(t, err, transport.ErrInvalidAddress)
			msg := err.Error()
			assert.Contains(t, msg, tt.wantMsg)
			assert.Contains(t, msg, strconv.Quote(tt.in), "error must name the address")
			assert.True(t, strings.HasPrefix(msg, "invalid address "), "message %q", msg)
			assert.NotContains(t, ".!?:", msg[len(msg)-1:], "trailing punctuation in %q", msg)
		})
	}
}

func TestAddrStringZero(t *testing.T) {
	assert.Empty(t, transport.Addr{}.String())
	assert.Empty(t, transport.Addr{Network: "udp", HostPort: "1.2.3.4:5"}.String())
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseGood {
		f.Add(tt.in)
	}
	for _, tt := range parseBad {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := transport.Parse(s)
		if err != nil {
			require.ErrorIs(t, err, transport.ErrInvalidAddress)
			return
		}
		again, err := transport.Parse(a.String())
		require.NoError(t, err, "String() of %+v does not parse", a)
		require.Equal(t, a, again, "String() of %+v does not round-trip", a)
	})
}
