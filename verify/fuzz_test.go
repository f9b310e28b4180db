package verify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
	"github.com/nitrosigner/nitrosigner/verify"
)

// FuzzParsePCRs checks that ParsePCRs never panics and that every value it
// returns is a 48-byte PCR with an index in 0..31.
func FuzzParsePCRs(f *testing.F) {
	a := strings.Repeat("ab", 48)
	f.Add([]byte(`{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "` + blockyPCR0 + `", "PCR1": "` + a + `", "PCR2": "` + a + `"}}`))
	f.Add([]byte(fmt.Sprintf(`{"0": %q, "31": "0x%s"}`, a, strings.ToUpper(a))))
	f.Add([]byte(`{"pcr8": "` + a + `", "PCR8": "` + a + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pcrs, err := verify.ParsePCRs(data)
		if err != nil {
			if pcrs != nil {
				t.Fatalf("PCRs returned with error %v", err)
			}
			return
		}
		if len(pcrs) == 0 {
			t.Fatal("no error and no PCRs")
		}
		for i, v := range pcrs {
			if i < 0 || i > 31 || len(v) != 48 {
				t.Fatalf("PCR%d of %d bytes accepted", i, len(v))
			}
		}
	})
}

// FuzzBindIdentity feeds arbitrary user_data and public_key values (the
// parts of a verified document the enclave chooses) to BindIdentity. It
// checks that it never panics and that an accepted identity is exactly
// what the document binds: user_data is its deterministic encoding and
// public_key hashes to its kms_public_key_sha256.
func FuzzBindIdentity(f *testing.F) {
	spki := []byte("DER SubjectPublicKeyInfo")
	sum := sha256.Sum256(spki)
	good, err := proto.MarshalOptions{Deterministic: true}.Marshal(&signerv1.EnclaveIdentity{
		Version: 1, IdentityPublicKey: bytes.Repeat([]byte{0x33}, 32), KmsPublicKeySha256: sum[:],
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, spki)
	f.Add(append(bytes.Clone(good), 0x2a, 0x01, 0x00), spki)
	f.Add(bytes.Repeat([]byte{1}, 1024), bytes.Repeat([]byte{1}, 1024))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, userData, publicKey []byte) {
		res := &verify.Result{UserData: userData, PublicKey: publicKey}
		id, err := res.BindIdentity()
		if err != nil {
			if !errors.Is(err, verify.ErrIdentity) || id != nil || res.Identity != nil {
				t.Fatalf("bad failure: %v, %v, %v", err, id, res.Identity)
			}
			return
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(id)
		if err != nil || !bytes.Equal(b, userData) {
			t.Fatalf("accepted a non-canonical user_data")
		}
		s := sha256.Sum256(publicKey)
		if !bytes.Equal(s[:], id.GetKmsPublicKeySha256()) || len(id.GetIdentityPublicKey()) != 32 || id.GetVersion() != 1 {
			t.Fatalf("accepted an unbound identity %v", id)
		}
	})
}

// FuzzKeyProof feeds arbitrary statements, validly signed, to KeyProof:
// what the enclave's identity key signs is still parsed with care, and a
// statement is accepted only for the key it describes.
func FuzzKeyProof(f *testing.F) {
	idKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	id := &signerv1.EnclaveIdentity{Version: 1, IdentityPublicKey: idKey.Public().(ed25519.PublicKey)}
	key := &signerv1.Key{
		KeyId: "key_0123456789abcdef0123456789abcdef", Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1,
		PublicKey: append([]byte{4}, bytes.Repeat([]byte{0x11}, 64)...),
		Addresses: &signerv1.Addresses{Ethereum: "0x1111111111111111111111111111111111111111", BitcoinP2Wpkh: "bc1q"},
	}
	good, err := proto.MarshalOptions{Deterministic: true}.Marshal(&signerv1.KeyStatement{
		Version: 1, KeyId: key.KeyId, Algorithm: key.Algorithm, PublicKey: key.PublicKey, Addresses: key.Addresses})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(append(bytes.Clone(good), 0x48, 0x01))
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, st []byte) {
		proof := &signerv1.KeyProof{Statement: st, Signature: ed25519.Sign(idKey, signerv1.KeyProofMessage(st)), IdentityPublicKey: id.IdentityPublicKey}
		got, err := verify.KeyProof(key, proof, id)
		if err != nil {
			if got != nil {
				t.Fatalf("statement returned with error %v", err)
			}
			return
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		if err != nil || !bytes.Equal(again, st) {
			t.Fatalf("accepted a statement that is not its own deterministic encoding")
		}
		if got.GetKeyId() != key.KeyId || !bytes.Equal(got.GetPublicKey(), key.PublicKey) || !proto.Equal(got.GetAddresses(), key.Addresses) {
			t.Fatalf("accepted a statement about another key: %v", got)
		}
	})
}
