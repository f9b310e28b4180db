package kmspolicy

import (
	"encoding/json"
	"fmt"
	"strings"
)

// principal is one entry of a statement's Principal.
type principal struct {
	raw       string // as written
	any       bool   // "*"
	service   string // a Service principal
	root      bool   // an account: every caller in it
	partition string // for root and role; "" for a bare account id (any)
	account   string // for root and role
	roleName  string // for a role: the last path segment of its name
}

// arn is the split form of an ARN
// arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE.
type arn struct {
	partition, service, region, account, resource string
}

// parseARN splits s into its six fields; ok is false when s is not an ARN.
func parseARN(s string) (a arn, ok bool) {
	f := strings.SplitN(s, ":", 6)
	if len(f) != 6 || f[0] != "arn" || !isToken(f[1], "-", false) || !isToken(f[2], "-", false) {
		return arn{}, false
	}
	return arn{partition: f[1], service: f[2], region: f[3], account: f[4], resource: f[5]}, true
}

// isAccountID reports whether s is a 12-digit AWS account id.
func isAccountID(s string) bool {
	return len(s) == 12 && strings.Trim(s, "0123456789") == ""
}

// parsePrincipals parses a Principal element: "*" or an object whose "AWS"
// and "Service" members hold a string or a list of strings.
func parsePrincipals(raw json.RawMessage, what string) ([]principal, error) {
	if kind(raw) == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s != "*" {
			return nil, fmt.Errorf("%w: %s: a string principal must be \"*\"", ErrMalformed, what)
		}
		return []principal{{raw: s, any: true}}, nil
	}
	members, err := objectMembers(raw, what, false)
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: %s: empty", ErrMalformed, what)
	}
	var out []principal
	for _, m := range members {
		where := what + "." + m.name
		list, err := stringOrList(m.value, where)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			var p principal
			switch m.name {
			case "AWS":
				p, err = parseAWSPrincipal(s, where)
			case "Service":
				p, err = parseServicePrincipal(s, where)
			default:
				return nil, fmt.Errorf("%w: %s: principal type %q", ErrUnsupported, what, m.name)
			}
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// parseServicePrincipal accepts a service name such as
// "ec2.amazonaws.com".
func parseServicePrincipal(s, what string) (principal, error) {
	if !isToken(s, ".-", false) || !strings.Contains(s, ".") {
		return principal{}, fmt.Errorf("%w: %s %q: want a service name like ec2.amazonaws.com", ErrMalformed, what, s)
	}
	return principal{raw: s, service: s}, nil
}

// parseAWSPrincipal accepts "*", a 12-digit account id, or the ARN of an
// account root, IAM user, IAM role or STS assumed-role session.
func parseAWSPrincipal(s, what string) (principal, error) {
	switch {
	case s == "*":
		return principal{raw: s, any: true}, nil
	case isAccountID(s):
		return principal{raw: s, root: true, account: s}, nil
	case strings.ContainsAny(s, "*?"):
		return principal{}, fmt.Errorf("%w: %s %q: wildcards are allowed only as \"*\" alone", ErrMalformed, what, s)
	case strings.Contains(s, "${"):
		return principal{}, fmt.Errorf("%w: %s %q: policy variables", ErrUnsupported, what, s)
	}
	a, ok := parseARN(s)
	if !ok || a.region != "" || !isAccountID(a.account) {
		return principal{}, fmt.Errorf("%w: %s %q: want \"*\", an account id or an IAM ARN", ErrMalformed, what, s)
	}
	p := principal{raw: s, partition: a.partition, account: a.account}
	switch {
	case a.service == "iam" && a.resource == "root":
		p.root = true
		return p, nil
	case a.service == "iam" && validPath(a.resource, "user/"):
		return p, nil
	case a.service == "iam" && validPath(a.resource, "role/"):
		p.roleName = a.resource[strings.LastIndexByte(a.resource, '/')+1:]
		return p, nil
	case a.service == "sts" && isSession(a.resource):
		return p, nil
	}
	return principal{}, fmt.Errorf("%w: %s %q: principal kind (want an account root, user, role or assumed-role)", ErrUnsupported, what, s)
}

// validPath reports whether res is prefix followed by a non-empty name
// whose segments are non-empty.
func validPath(res, prefix string) bool {
	rest, ok := strings.CutPrefix(res, prefix)
	if !ok || rest == "" {
		return false
	}
	for _, seg := range strings.Split(rest, "/") {
		if seg == "" {
			return false
		}
	}
	return true
}

// isSession reports whether res is "assumed-role/NAME/SESSION".
func isSession(res string) bool {
	rest, ok := strings.CutPrefix(res, "assumed-role/")
	if !ok {
		return false
	}
	name, session, ok := strings.Cut(rest, "/")
	return ok && name != "" && session != "" && !strings.Contains(session, "/")
}

// caller is a request's principal, parsed once per evaluation.
type caller struct {
	raw string
	arn arn
	ok  bool // raw is an ARN with a 12-digit account
}

func newCaller(s string) caller {
	a, ok := parseARN(s)
	return caller{raw: s, arn: a, ok: ok && isAccountID(a.account)}
}

// matches reports whether the policy principal p designates c.
func (p principal) matches(c caller) bool {
	switch {
	case p.any:
		return true
	case p.service != "":
		return c.raw == p.service
	case p.root:
		return c.ok && c.arn.account == p.account && (p.partition == "" || c.arn.partition == p.partition)
	case c.raw == p.raw:
		return true
	case p.roleName != "":
		// An assumed-role session of the role. Session ARNs carry the role
		// name without its path.
		if !c.ok || c.arn.service != "sts" || c.arn.account != p.account || c.arn.partition != p.partition || !isSession(c.arn.resource) {
			return false
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(c.arn.resource, "assumed-role/"), "/")
		return name == p.roleName
	default:
		return false
	}
}
