package signerv1

// KeyStatementContext is the domain separator of a KeyProof: the identity
// key signs it, then the statement's bytes, so that no other message the
// key may sign can be taken for a key statement.
const KeyStatementContext = "nitrosigner.v1.KeyStatement\x00"

// KeyStatementVersion is the KeyStatement format version.
const KeyStatementVersion = 1

// KeyProofMessage returns the bytes a KeyProof's signature covers: the
// context, then the encoded KeyStatement.
func KeyProofMessage(statement []byte) []byte {
	return append([]byte(KeyStatementContext), statement...)
}
