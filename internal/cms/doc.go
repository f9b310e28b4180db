// Package cms encodes and decodes the CMS EnvelopedData that AWS KMS returns
// as CiphertextForRecipient when a request carries a Recipient (an
// attestation document holding the enclave's RSA public key).
//
// The enclave uses [Decrypt] to open KMS answers with its private key; the
// KMS simulator uses [Encrypt] to build them. The package depends on the
// standard library only and does no I/O, so it is safe inside the enclave.
//
// # Format
//
// KMS writes BER with indefinite lengths on the outer containers:
//
//	30 80                                   ContentInfo
//	  06 09 2a864886f70d010703              id-envelopedData
//	  a0 80                                 [0] EXPLICIT
//	    30 80                               EnvelopedData
//	      02 01 02                          version 2
//	      31 82 01 6b                       recipientInfos SET (definite)
//	        30 82 01 67                     KeyTransRecipientInfo (definite)
//	          02 01 02                      version 2
//	          80 20 <32 bytes>              rid [0] subjectKeyIdentifier = SHA-256(DER SPKI)
//	          30 3c 06 09 2a864886f70d010107 30 2f
//	            a0 0f 30 0d 06 09 608648016503040201 05 00              hashFunc SHA-256
//	            a1 1c 30 1a 06 09 2a864886f70d010108
//	                  30 0d 06 09 608648016503040201 05 00              MGF1-SHA-256
//	          04 82 01 00 <256 bytes>       encryptedKey = RSA-OAEP(CEK)
//	      30 80                             EncryptedContentInfo
//	        06 09 2a864886f70d010701        id-data
//	        30 1d 06 09 60864801650304012a 04 10 <IV>      aes256-CBC
//	        80 LL <ciphertext>                             primitive encryptedContent, or
//	        a0 80 04 LL <chunk> [04 LL <chunk> ...] 00 00  constructed encryptedContent
//	      00 00
//	    00 00 00 00 00 00
//
// The CEK is 32 random bytes; the content is encrypted with AES-256-CBC and
// PKCS#7 padding. [Encrypt] writes exactly this layout (shortest length
// forms). [Parse] accepts it with definite or indefinite lengths on any
// constructed element, and nothing else: no optional CMS fields, one
// recipient, no OAEP label, no trailing octets.
//
// # Limits
//
// Input longer than [MaxEnvelopeSize] (1 MiB) is rejected before any
// parsing. Elements may nest at most 16 levels deep, length fields are at
// most 4 octets and must fit the remaining input, and multi-byte tags are
// rejected, so crafted input fails quickly and without deep recursion.
//
// # Security
//
// EnvelopedData with AES-CBC carries no MAC and anyone with the public key
// can build an envelope, so a successful [Decrypt] proves only that the
// envelope was addressed to the key, not who made it. The enclave relies on
// its TLS connection to KMS for authenticity. Decryption failures (OAEP,
// length, padding) all return the same [ErrDecrypt] and padding is checked
// in constant time. Content-encryption keys are zeroized after use.
package cms
