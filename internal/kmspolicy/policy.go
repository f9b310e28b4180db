package kmspolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxPolicySize is the largest key policy [Parse] accepts, in bytes: the
// KMS key policy document quota (32 KiB).
const MaxPolicySize = 32 * 1024

// Errors returned (wrapped) by [Parse]. The wrapping message names the
// offending element, e.g. `Statement[2].Condition: unsupported condition
// operator "Bool"`.
var (
	// ErrMalformed means the document is not a valid key policy: not JSON,
	// a missing or mistyped element, an unknown element, a duplicate member
	// name, or a document over MaxPolicySize.
	ErrMalformed = errors.New("kmspolicy: malformed policy")

	// ErrUnsupported means the document uses IAM policy grammar this package
	// does not evaluate (see the package documentation), so evaluating it
	// could differ from AWS.
	ErrUnsupported = errors.New("kmspolicy: unsupported policy element")
)

// Policy is a parsed key policy. Create it with [Parse]; the zero value
// has no statements and denies everything. A Policy is immutable and safe
// for concurrent use.
type Policy struct {
	version    string
	id         string
	statements []statement
}

// statement is one parsed policy statement.
type statement struct {
	index       int // position in the document, from 0
	sid         string
	deny        bool
	principals  []principal
	actions     []string // lower-case patterns
	notAction   bool
	resources   []string
	notResource bool
	conditions  []condition
}

// name describes the statement in evaluation reasons.
func (s *statement) name() string {
	if s.sid == "" {
		return fmt.Sprintf("statement %d", s.index)
	}
	return fmt.Sprintf("statement %d (Sid %q)", s.index, s.sid)
}

// operator is a condition operator without its IfExists suffix.
type operator int

const (
	opStringEquals operator = iota + 1
	opStringNotEquals
	opStringEqualsIgnoreCase
	opStringNotEqualsIgnoreCase
	opStringLike
	opStringNotLike
	opNull
)

var operators = map[string]operator{
	"StringEquals":              opStringEquals,
	"StringNotEquals":           opStringNotEquals,
	"StringEqualsIgnoreCase":    opStringEqualsIgnoreCase,
	"StringNotEqualsIgnoreCase": opStringNotEqualsIgnoreCase,
	"StringLike":                opStringLike,
	"StringNotLike":             opStringNotLike,
	"Null":                      opNull,
}

// negated reports whether op holds when no value matches (NOR of values).
func (op operator) negated() bool {
	return op == opStringNotEquals || op == opStringNotEqualsIgnoreCase || op == opStringNotLike
}

// condition is one (operator, key, values) triple of a Condition block.
type condition struct {
	op       operator
	ifExists bool
	key      string // canonical: lower case
	values   []string
}

// Canonical (lower-case) names of the supported condition keys.
const (
	keyImageSha384 = "kms:recipientattestation:imagesha384"
	keyPCRPrefix   = "kms:recipientattestation:pcr"
	keyCaller      = "kms:calleraccount"
	keyPrincipal   = "aws:principalaccount"
)

// numPCRs is the number of PCRs an NSM has (0..31).
const numPCRs = 32

// Parse parses a KMS key policy document. It is strict: unknown elements,
// duplicate member names, and grammar outside the supported subset (see the
// package documentation) are errors wrapping [ErrMalformed] or
// [ErrUnsupported], so that no policy is evaluated differently from AWS.
// Parse is safe on untrusted input.
func Parse(doc []byte) (*Policy, error) {
	if len(doc) > MaxPolicySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(doc), MaxPolicySize)
	}
	if !json.Valid(doc) {
		return nil, fmt.Errorf("%w: not valid JSON", ErrMalformed)
	}
	top, err := objectMembers(doc, "policy", true)
	if err != nil {
		return nil, err
	}
	p := &Policy{}
	var stmts json.RawMessage
	for _, m := range top {
		switch m.name {
		case "Version":
			if err := json.Unmarshal(m.value, &p.version); err != nil || kind(m.value) != '"' {
				return nil, fmt.Errorf("%w: Version: want a string", ErrMalformed)
			}
			if p.version != "2012-10-17" && p.version != "2008-10-17" {
				return nil, fmt.Errorf("%w: Version %q (want 2012-10-17 or 2008-10-17)", ErrMalformed, p.version)
			}
		case "Id":
			if err := json.Unmarshal(m.value, &p.id); err != nil || kind(m.value) != '"' {
				return nil, fmt.Errorf("%w: Id: want a string", ErrMalformed)
			}
		case "Statement":
			stmts = m.value
		default:
			return nil, fmt.Errorf("%w: unknown top-level element %q", ErrMalformed, m.name)
		}
	}
	if stmts == nil {
		return nil, fmt.Errorf("%w: no Statement", ErrMalformed)
	}
	var raws []json.RawMessage
	switch kind(stmts) {
	case '{':
		raws = []json.RawMessage{stmts}
	case '[':
		if err := json.Unmarshal(stmts, &raws); err != nil {
			return nil, fmt.Errorf("%w: Statement: %v", ErrMalformed, err)
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("%w: Statement: empty list", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: Statement: want an object or a list of objects", ErrMalformed)
	}
	for i, raw := range raws {
		s, err := parseStatement(raw, i)
		if err != nil {
			return nil, err
		}
		p.statements = append(p.statements, s)
	}
	return p, nil
}

// parseStatement parses the i-th statement.
func parseStatement(raw json.RawMessage, i int) (statement, error) {
	where := fmt.Sprintf("Statement[%d]", i)
	members, err := objectMembers(raw, where, false)
	if err != nil {
		return statement{}, err
	}
	s := statement{index: i}
	var effect, principal, action, resource, cond json.RawMessage
	for _, m := range members {
		switch m.name {
		case "Sid":
			if kind(m.value) != '"' || json.Unmarshal(m.value, &s.sid) != nil {
				return s, fmt.Errorf("%w: %s.Sid: want a string", ErrMalformed, where)
			}
		case "Effect":
			effect = m.value
		case "Principal":
			principal = m.value
		case "NotPrincipal":
			return s, fmt.Errorf("%w: %s.NotPrincipal", ErrUnsupported, where)
		case "Action", "NotAction":
			if action != nil {
				return s, fmt.Errorf("%w: %s: both Action and NotAction", ErrMalformed, where)
			}
			action, s.notAction = m.value, m.name == "NotAction"
		case "Resource", "NotResource":
			if resource != nil {
				return s, fmt.Errorf("%w: %s: both Resource and NotResource", ErrMalformed, where)
			}
			resource, s.notResource = m.value, m.name == "NotResource"
		case "Condition":
			cond = m.value
		default:
			return s, fmt.Errorf("%w: %s: unknown element %q", ErrMalformed, where, m.name)
		}
	}

	var e string
	if effect == nil || kind(effect) != '"' || json.Unmarshal(effect, &e) != nil {
		return s, fmt.Errorf("%w: %s.Effect: missing or not a string", ErrMalformed, where)
	}
	switch e {
	case "Allow":
	case "Deny":
		s.deny = true
	default:
		return s, fmt.Errorf("%w: %s.Effect %q (want Allow or Deny)", ErrMalformed, where, e)
	}
	if principal == nil {
		return s, fmt.Errorf("%w: %s: no Principal (required in key policies)", ErrMalformed, where)
	}
	if s.principals, err = parsePrincipals(principal, where+".Principal"); err != nil {
		return s, err
	}
	if action == nil {
		return s, fmt.Errorf("%w: %s: no Action or NotAction", ErrMalformed, where)
	}
	if s.actions, err = parseActions(action, where+".Action"); err != nil {
		return s, err
	}
	if resource == nil {
		return s, fmt.Errorf("%w: %s: no Resource or NotResource", ErrMalformed, where)
	}
	if s.resources, err = parseResources(resource, where+".Resource"); err != nil {
		return s, err
	}
	if cond != nil {
		if s.conditions, err = parseConditions(cond, where+".Condition"); err != nil {
			return s, err
		}
	}
	return s, nil
}

// parseActions checks and lower-cases action patterns: "*" or
// "service:Name", where Name may hold the wildcards * and ?.
func parseActions(raw json.RawMessage, what string) ([]string, error) {
	list, err := stringOrList(raw, what)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		if a != "*" {
			svc, name, ok := strings.Cut(a, ":")
			if !ok || !isToken(svc, "-", true) || !isToken(name, "*?", true) {
				return nil, fmt.Errorf("%w: %s %q: want \"*\" or \"service:Action\"", ErrMalformed, what, a)
			}
		}
		out = append(out, strings.ToLower(a))
	}
	return out, nil
}

// isToken reports whether s is non-empty and made of ASCII letters, digits
// and the bytes in extra; mixed allows upper case letters.
func isToken(s, extra string, mixed bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			if !mixed {
				return false
			}
		case strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseResources checks resource patterns: "*" or an ARN pattern.
func parseResources(raw json.RawMessage, what string) ([]string, error) {
	list, err := stringOrList(raw, what)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		if strings.Contains(r, "${") {
			return nil, fmt.Errorf("%w: %s %q: policy variables", ErrUnsupported, what, r)
		}
		if r != "*" && !strings.HasPrefix(r, "arn:") {
			return nil, fmt.Errorf("%w: %s %q: want \"*\" or an ARN", ErrMalformed, what, r)
		}
	}
	return list, nil
}

// parseConditions parses a Condition block: operator → key → value(s).
func parseConditions(raw json.RawMessage, what string) ([]condition, error) {
	ops, err := objectMembers(raw, what, false)
	if err != nil {
		return nil, err
	}
	var out []condition
	for _, o := range ops {
		name := o.name
		if strings.HasPrefix(name, "ForAnyValue:") || strings.HasPrefix(name, "ForAllValues:") {
			return nil, fmt.Errorf("%w: %s: set operator %q (the supported keys are single-valued)", ErrUnsupported, what, name)
		}
		base, ifExists := strings.CutSuffix(name, "IfExists")
		op, ok := operators[base]
		if !ok || (ifExists && op == opNull) {
			return nil, fmt.Errorf("%w: %s: condition operator %q", ErrUnsupported, what, name)
		}
		opWhere := what + "." + name
		keys, err := objectMembers(o.value, opWhere, false)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("%w: %s: no condition keys", ErrMalformed, opWhere)
		}
		for _, k := range keys {
			key, err := canonicalKey(k.name)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: condition key %q", err, opWhere, k.name)
			}
			values, err := conditionValues(k.value, opWhere+"."+k.name)
			if err != nil {
				return nil, err
			}
			for _, v := range values {
				if strings.Contains(v, "${") {
					return nil, fmt.Errorf("%w: %s.%s: policy variables", ErrUnsupported, opWhere, k.name)
				}
				if op == opNull && v != "true" && v != "false" {
					return nil, fmt.Errorf("%w: %s.%s: Null takes \"true\" or \"false\", not %q", ErrMalformed, opWhere, k.name, v)
				}
			}
			out = append(out, condition{op: op, ifExists: ifExists, key: key, values: values})
		}
	}
	return out, nil
}

// canonicalKey returns the lower-case form of a supported condition key,
// or an error wrapping ErrUnsupported.
func canonicalKey(name string) (string, error) {
	k := strings.ToLower(name)
	switch k {
	case keyImageSha384, keyCaller, keyPrincipal:
		return k, nil
	}
	if n, ok := strings.CutPrefix(k, keyPCRPrefix); ok {
		if _, ok := pcrIndex(n); ok {
			return k, nil
		}
	}
	return "", ErrUnsupported
}

// pcrIndex parses a PCR index 0..31 written without sign or leading zeros.
func pcrIndex(s string) (int, bool) {
	if s == "" || len(s) > 2 || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n >= numPCRs {
		return 0, false
	}
	return n, true
}

// pcrKey returns the canonical condition key for PCR i.
func pcrKey(i int) string { return keyPCRPrefix + strconv.Itoa(i) }
