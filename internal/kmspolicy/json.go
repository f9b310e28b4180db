package kmspolicy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// member is one name/value pair of a JSON object, in document order.
type member struct {
	name  string
	value json.RawMessage
}

// objectMembers decodes the JSON object in raw into its members, refusing
// anything that is not an object and duplicate member names. what names
// the element in errors. When top is set, nothing but white space may
// follow the object.
func objectMembers(raw []byte, what string, top bool) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: %s: want a JSON object", ErrMalformed, what)
	}
	var out []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s: want a member name", ErrMalformed, what)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: %s: member %q appears twice", ErrMalformed, what, name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %v", ErrMalformed, what, name, err)
		}
		out = append(out, member{name: name, value: v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if top {
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: data after the policy object", ErrMalformed, what)
		}
	}
	return out, nil
}

// kind returns the JSON type of raw by its first byte: '{', '[', '"', 'n'
// (null), 't'/'f' (booleans) or a digit or '-' for numbers.
func kind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// stringOrList decodes a JSON string or a non-empty array of strings.
func stringOrList(raw json.RawMessage, what string) ([]string, error) {
	switch kind(raw) {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		return []string{s}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("%w: %s: empty list", ErrMalformed, what)
		}
		out := make([]string, 0, len(items))
		for i, it := range items {
			if kind(it) != '"' {
				return nil, fmt.Errorf("%w: %s[%d]: want a string", ErrMalformed, what, i)
			}
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, fmt.Errorf("%w: %s[%d]: %v", ErrMalformed, what, i, err)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %s: want a string or a list of strings", ErrMalformed, what)
	}
}

// conditionValues decodes the value of a condition key: a string, a
// boolean, or a non-empty array of them. Booleans become "true" and
// "false", as IAM compares them as strings.
func conditionValues(raw json.RawMessage, what string) ([]string, error) {
	scalar := func(r json.RawMessage, what string) (string, error) {
		switch kind(r) {
		case '"':
			var s string
			if err := json.Unmarshal(r, &s); err != nil {
				return "", fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
			}
			return s, nil
		case 't', 'f':
			var b bool
			if err := json.Unmarshal(r, &b); err != nil {
				return "", fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
			}
			if b {
				return "true", nil
			}
			return "false", nil
		default:
			return "", fmt.Errorf("%w: %s: want a string or a boolean", ErrMalformed, what)
		}
	}
	if kind(raw) != '[' {
		s, err := scalar(raw, what)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: %s: empty list", ErrMalformed, what)
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := scalar(it, fmt.Sprintf("%s[%d]", what, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
