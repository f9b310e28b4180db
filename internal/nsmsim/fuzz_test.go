//go:build !nosim

package nsmsim_test

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// FuzzSendRaw feeds arbitrary request bytes to the simulated device: it must
// never panic and must always answer with a response hf/nsm can decode.
func FuzzSendRaw(f *testing.F) {
	for _, req := range []request.Request{
		&request.GetRandom{},
		&request.DescribeNSM{},
		&request.DescribePCR{Index: 16},
		&request.ExtendPCR{Index: 16, Data: []byte("data")},
		&request.LockPCR{Index: 17},
		&request.LockPCRs{Range: 20},
		&request.Attestation{},
		&request.Attestation{Nonce: []byte("nonce"), UserData: []byte{}, PublicKey: []byte("pk")},
	} {
		b, err := cbor.Marshal(req.Encoded())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x69, 'G', 'e', 't', 'R', 'a', 'n', 'd', 'o', 'm', 0xf6})
	f.Add([]byte{0xff})

	s, err := nsmsim.New(nsmsim.Config{Image: testImage, DevicePath: "/nonexistent/nsm-fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		raw, err := s.SendRaw(req)
		if err != nil {
			t.Fatal(err)
		}
		var res response.Response
		if err := cbor.Unmarshal(raw, &res); err != nil {
			t.Fatalf("undecodable response %x: %v", raw, err)
		}
	})
}
