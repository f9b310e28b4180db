package eth

// ReencodeUnsignedTx decodes an unsigned transaction and encodes it again, so
// that tests can check that accepted encodings are canonical.
func ReencodeUnsignedTx(b []byte) ([]byte, error) {
	tx, err := decodeUnsignedTx(b)
	if err != nil {
		return nil, err
	}
	return tx.encode(nil), nil
}

// HashTypedData returns the EIP-712 digest of typed-data JSON.
func HashTypedData(s string) ([]byte, error) {
	d, _, err := hashTypedData(s)
	return d, err
}
