package proxy

// CheckMessageSize exposes the relay's size check to tests.
var CheckMessageSize = checkMessageSize
