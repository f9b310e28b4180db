package kmspolicy

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Decision is the outcome of [Policy.Evaluate]. The zero value is
// ImplicitDeny.
type Decision int

const (
	// ImplicitDeny: no statement allows the request (and none denies it).
	ImplicitDeny Decision = iota
	// Allow: a statement allows the request and none denies it.
	Allow
	// ExplicitDeny: a Deny statement applies; it overrides every Allow.
	ExplicitDeny
)

// String returns "ImplicitDeny", "Allow" or "ExplicitDeny".
func (d Decision) String() string {
	switch d {
	case ImplicitDeny:
		return "ImplicitDeny"
	case Allow:
		return "Allow"
	case ExplicitDeny:
		return "ExplicitDeny"
	default:
		return fmt.Sprintf("Decision(%d)", int(d))
	}
}

// Request is the request context a policy is evaluated against.
type Request struct {
	// Principal is the caller's ARN, e.g.
	// arn:aws:iam::111122223333:role/parent or the session form
	// arn:aws:sts::111122223333:assumed-role/parent/i-0123456789abcdef0.
	Principal string

	// Action is the KMS action, e.g. "kms:Decrypt" (matched
	// case-insensitively).
	Action string

	// Resource is the key ARN.
	Resource string

	// Attestation is nil when the request has no Recipient (always for
	// operations that take none, such as Encrypt). Otherwise it holds the
	// values of the attestation document, which the caller must have
	// verified first: an unverified document must fail the request, not be
	// evaluated.
	Attestation *Attestation
}

// Attestation is what the policy sees of a verified attestation document.
type Attestation struct {
	// PCRs maps PCR index (0..31) to value. kms:RecipientAttestation:
	// ImageSha384 is PCR0.
	PCRs map[int][]byte
}

// context returns the request's condition keys (canonical names) and
// values.
func (r Request) context(c caller) map[string]string {
	ctx := make(map[string]string)
	if c.ok {
		ctx[keyCaller] = c.arn.account
		ctx[keyPrincipal] = c.arn.account
	}
	if r.Attestation != nil {
		for i, v := range r.Attestation.PCRs {
			if i < 0 || i >= numPCRs || v == nil {
				continue
			}
			ctx[pcrKey(i)] = hex.EncodeToString(v)
		}
		if v, ok := ctx[pcrKey(0)]; ok {
			ctx[keyImageSha384] = v
		}
	}
	return ctx
}

// Evaluate decides r with the IAM evaluation logic: an applicable Deny
// statement gives [ExplicitDeny], else an applicable Allow gives [Allow],
// else [ImplicitDeny]. The reason names the deciding statement (by index
// and Sid) for logs; it holds no secrets. A nil Policy denies everything.
// Evaluate is safe for concurrent use.
func (p *Policy) Evaluate(r Request) (Decision, string) {
	if p == nil {
		return ImplicitDeny, "no key policy"
	}
	c := newCaller(r.Principal)
	ctx := r.context(c)
	action := strings.ToLower(r.Action)
	var allow *statement
	for i := range p.statements {
		s := &p.statements[i]
		if !s.applies(c, action, r.Resource, ctx) {
			continue
		}
		if s.deny {
			return ExplicitDeny, fmt.Sprintf("%s explicitly denies %s", s.name(), r.Action)
		}
		if allow == nil {
			allow = s
		}
	}
	if allow != nil {
		return Allow, fmt.Sprintf("%s allows %s", allow.name(), r.Action)
	}
	return ImplicitDeny, fmt.Sprintf("no statement allows %s", r.Action)
}

// applies reports whether the statement covers the request.
func (s *statement) applies(c caller, action, resource string, ctx map[string]string) bool {
	if !anyPrincipal(s.principals, c) {
		return false
	}
	if anyMatch(s.actions, action) == s.notAction {
		return false
	}
	if anyMatch(s.resources, resource) == s.notResource {
		return false
	}
	for _, cond := range s.conditions {
		if !cond.holds(ctx) {
			return false
		}
	}
	return true
}

func anyPrincipal(ps []principal, c caller) bool {
	for _, p := range ps {
		if p.matches(c) {
			return true
		}
	}
	return false
}

func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

// holds evaluates one condition against the request context.
func (c condition) holds(ctx map[string]string) bool {
	v, present := ctx[c.key]
	if c.op == opNull {
		for _, want := range c.values {
			if (want == "true") != present {
				return true
			}
		}
		return false
	}
	if !present {
		// IfExists passes on a missing key; otherwise a missing key matches
		// no value, which makes negated operators true.
		return c.ifExists || c.op.negated()
	}
	matched := false
	for _, want := range c.values {
		if c.op.match(want, v) {
			matched = true
			break
		}
	}
	return matched != c.op.negated()
}

// match compares one policy value with the context value.
func (op operator) match(want, got string) bool {
	switch op {
	case opStringEquals, opStringNotEquals:
		return want == got
	case opStringEqualsIgnoreCase, opStringNotEqualsIgnoreCase:
		return strings.EqualFold(want, got)
	case opStringLike, opStringNotLike:
		return glob(want, got)
	default:
		return false
	}
}

// glob matches s against pattern, where * matches any run of characters
// (including none) and ? exactly one character. It runs in
// O(len(pattern)·len(s)) time at worst.
func glob(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	pi, ti := 0, 0
	star, mark := -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
