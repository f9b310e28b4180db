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
