package eth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxJSONDepth bounds nesting of typed-data JSON. Hashing recurses once per
// JSON level, so this also bounds the recursion of struct and array encoding.
const maxJSONDepth = 40

// jsonObject is a decoded JSON object whose keys were unique.
type jsonObject map[string]any

// decodeJSON decodes one JSON value strictly: objects become jsonObject,
// arrays []any, numbers json.Number (exact text), and strings, booleans and
// null their Go values. Duplicate object keys, nesting deeper than
// maxJSONDepth and anything after the value are refused.
func decodeJSON(s string) (any, error) {
	if err := checkJSONText(s); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	v, err := readJSON(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("malformed JSON: unexpected data after the top-level value at byte %d", dec.InputOffset())
	}
	return v, nil
}

func readJSON(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonSyntax(dec, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("JSON nested deeper than %d levels (at byte %d)", maxJSONDepth, dec.InputOffset())
	}
	if d == '[' {
		arr := []any{}
		for dec.More() {
			v, err := readJSON(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, jsonSyntax(dec, err)
		}
		return arr, nil
	}
	obj := jsonObject{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, jsonSyntax(dec, err)
		}
		key, _ := k.(string) // the decoder only yields string keys
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("duplicate key %s in a JSON object (at byte %d)", quote(key), dec.InputOffset())
		}
		if obj[key], err = readJSON(dec, depth+1); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonSyntax(dec, err)
	}
	return obj, nil
}

func jsonSyntax(dec *json.Decoder, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("malformed JSON: unexpected end of input")
	}
	return fmt.Errorf("malformed JSON near byte %d: %v", dec.InputOffset(), err)
}

// jsonKind names the JSON type of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}

// checkJSONText refuses \u escapes of unpaired UTF-16 surrogates, which
// encoding/json silently turns into U+FFFD (as it does invalid UTF-8, which
// the callers refuse first). Other libraries read them differently (keep,
// re-encode or refuse them), so the same document would have several
// digests, and the text shown to a signer would not be the text hashed.
func checkJSONText(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i+1 >= len(s) || s[i+1] != 'u' {
			i++ // an escaped character; the decoder checks it
			continue
		}
		hi, ok := hex4(s, i+2)
		if !ok {
			continue // the decoder reports the bad escape
		}
		switch {
		case hi >= 0xdc00 && hi <= 0xdfff:
			return fmt.Errorf("malformed JSON: \\u%04x at byte %d is a lone low surrogate", hi, i)
		case hi >= 0xd800 && hi <= 0xdbff:
			lo, ok := -1, false
			if i+7 < len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
				lo, ok = hex4(s, i+8)
			}
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return fmt.Errorf("malformed JSON: \\u%04x at byte %d is a high surrogate without its low half", hi, i)
			}
			i += 11
		default:
			i += 5
		}
	}
	return nil
}

// hex4 reads four hex digits at s[at:].
func hex4(s string, at int) (int, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[at : at+4]) {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | int(d)
	}
	return v, true
}
