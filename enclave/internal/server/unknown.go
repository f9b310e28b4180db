package server

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// allFieldsKnown refuses a request that carries a field this enclave's
// schema does not know, at any depth. Protobuf decoders keep such fields and
// otherwise ignore them; a signer must not, because a client built against a
// newer schema would then get a signature over something other than what it
// sent.
func (s *Server) allFieldsKnown(r *signerv1.SignRequest) error {
	m := r.ProtoReflect()
	path, num, found := "request", protowire.Number(0), false
	if u := m.GetUnknown(); len(u) > 0 {
		num, found = firstNumber(u), true
	} else {
		switch r.GetPayload().(type) {
		case *signerv1.SignRequest_Digest, *signerv1.SignRequest_Message, nil:
			// Raw payloads hold no messages; skip the walk on the hot path.
		default:
			path, num, found = unknownField(m)
		}
	}
	if !found {
		return nil
	}
	return invalid(path, "field number %d is not known to this enclave (version %s) and would be "+
		"ignored; leave it out, or upgrade the enclave to one that knows it", num, s.cfg.Version)
}

// unknownField finds a field unknown to the schema in m or in any message
// inside it, and returns its path ("eth_transaction.fields.access_list[1]",
// "request" for m itself) and number.
func unknownField(m protoreflect.Message) (path string, num protowire.Number, found bool) {
	if u := m.GetUnknown(); len(u) > 0 {
		return "request", firstNumber(u), true
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true // the signing messages hold no maps
		}
		name := string(fd.Name())
		if fd.IsList() {
			l := v.List()
			for i := range l.Len() {
				if path, num, found = unknownField(l.Get(i).Message()); found {
					path = join(name+"["+strconv.Itoa(i)+"]", path)
					return false
				}
			}
			return true
		}
		if path, num, found = unknownField(v.Message()); found {
			path = join(name, path)
			return false
		}
		return true
	})
	return path, num, found
}

// firstNumber is the field number of the first field in unknown, which the
// protobuf decoder kept only if it was well formed.
func firstNumber(unknown []byte) protowire.Number {
	num, _, n := protowire.ConsumeTag(unknown)
	if n < 0 {
		return 0
	}
	return num
}

// join appends a nested message's path to its field's name; "request" is
// the message the walk started from.
func join(parent, child string) string {
	if child == "request" {
		return parent
	}
	return parent + "." + child
}
