package proxy

// CheckRequestSize and CheckDecodedSize expose the size checks to tests.
var (
	CheckRequestSize = checkRequestSize
	CheckDecodedSize = checkDecodedSize
)
