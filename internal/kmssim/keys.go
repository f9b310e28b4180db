//go:build !nosim

package kmssim

import (
	"fmt"
	"strings"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// keyARN returns the ARN of key id.
func (s *Server) keyARN(id string) string {
	return "arn:aws:kms:" + s.cfg.Region + ":" + s.cfg.Account + ":key/" + id
}

// aliasARN returns the ARN of an alias name ("alias/...").
func (s *Server) aliasARN(name string) string {
	return "arn:aws:kms:" + s.cfg.Region + ":" + s.cfg.Account + ":" + name
}

// resolve finds the key that ref names and returns a copy of it. ref is a
// key id or key ARN, or, when aliases is true, also an alias name or alias
// ARN. member names the request field in validation errors. Keys whose
// deletion window has passed are deleted first, as KMS would have.
func (s *Server) resolve(ref, member string, aliases bool) (key, *apiError) {
	if ref == "" || len(ref) > 2048 {
		return key{}, errLength(member, 1, 2048)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	id, aerr := s.lookupLocked(ref, aliases)
	if aerr != nil {
		return key{}, aerr
	}
	return *s.keys[id], nil
}

// lookupLocked maps ref to the id of an existing key. s.mu must be held.
func (s *Server) lookupLocked(ref string, aliases bool) (string, *apiError) {
	name := ref
	if strings.HasPrefix(ref, "arn:") {
		rest, ok := strings.CutPrefix(ref, "arn:aws:kms:"+s.cfg.Region+":"+s.cfg.Account+":")
		if !ok {
			// Another partition, region or account: not a key held here.
			return "", errNotFound("Key '%s' does not exist", ref)
		}
		if id, isKey := strings.CutPrefix(rest, "key/"); isKey {
			rest = id
			if !uuidPattern.MatchString(rest) {
				return "", errNotFound("Invalid keyId '%s'", ref)
			}
		}
		name = rest
	}
	if strings.HasPrefix(name, "alias/") && aliases {
		id, ok := s.aliases[name]
		if !ok {
			return "", errNotFound("Alias %s is not found.", s.aliasARN(name))
		}
		return id, nil
	}
	if !uuidPattern.MatchString(name) {
		return "", errNotFound("Invalid keyId '%s'", ref)
	}
	if _, ok := s.keys[name]; !ok {
		return "", errNotFound("Key '%s' does not exist", s.keyARN(name))
	}
	return name, nil
}

// sweepLocked deletes the keys whose deletion date has passed, with their
// aliases. s.mu must be held.
func (s *Server) sweepLocked() {
	now := s.cfg.Now()
	var gone []string
	for _, id := range s.order {
		k := s.keys[id]
		if k.state == statePendingDeletion && !now.Before(k.deletion) {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 || s.closed {
		return
	}
	oldKeys, oldOrder, oldAliases := s.keys, s.order, s.aliases
	s.keys = make(map[string]*key, len(oldKeys))
	s.order = nil
	s.aliases = map[string]string{}
	for _, id := range oldOrder {
		if !contains(gone, id) {
			s.keys[id] = oldKeys[id]
			s.order = append(s.order, id)
		}
	}
	for name, id := range oldAliases {
		if _, ok := s.keys[id]; ok {
			s.aliases[name] = id
		}
	}
	if err := s.saveLocked(); err != nil {
		// Keep the keys; the next request tries again.
		s.keys, s.order, s.aliases = oldKeys, oldOrder, oldAliases
		s.log.Error("kmssim: delete expired keys", "err", err)
		return
	}
	for _, id := range gone {
		s.log.Info("kmssim: key deleted at the end of its waiting period", "key_id", id)
	}
}

// update applies change to a copy of key id and persists the result; the
// in-memory state changes only if the state file was written.
func (s *Server) update(id string, change func(k *key) *apiError) (key, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.keys[id]
	if !ok {
		return key{}, errNotFound("Key '%s' does not exist", s.keyARN(id))
	}
	k := *old
	if aerr := change(&k); aerr != nil {
		return key{}, aerr
	}
	if s.closed {
		s.log.Error("kmssim: state change after Close", "key_id", id)
		return key{}, errInternal()
	}
	s.keys[id] = &k
	if err := s.saveLocked(); err != nil {
		s.keys[id] = old
		s.log.Error("kmssim: save state", "key_id", id, "err", err)
		return key{}, errInternal()
	}
	return k, nil
}

// usable checks that k may be used in cryptographic operations.
func (s *Server) usable(k *key) *apiError {
	switch k.state {
	case stateEnabled:
		return nil
	case stateDisabled:
		return errDisabled(s.keyARN(k.id))
	default:
		return errPendingDeletion(s.keyARN(k.id))
	}
}

// authorize evaluates k's key policy for the caller and action ("kms:Op").
// doc is the verified Recipient document, if any.
func (s *Server) authorize(c *call, action string, k *key, doc *attest.Document) *apiError {
	arn := s.keyARN(k.id)
	d, reason := k.policy.Evaluate(policyRequest(c, action, arn, doc))
	if d == kmspolicy.Allow {
		return nil
	}
	s.log.Info("kmssim: access denied", "method", c.op, "key_id", k.id, "principal", c.principal, "reason", reason)
	return errAccessDenied(c.principal, action, arn, d == kmspolicy.ExplicitDeny, "resource-based")
}

// accountPolicy authorizes operations that name no key.
type accountPolicy struct {
	policy *kmspolicy.Policy // nil allows everything
}

func parseAccountPolicy(doc []byte) (*accountPolicy, error) {
	if len(doc) == 0 {
		return &accountPolicy{}, nil
	}
	p, err := kmspolicy.Parse(doc)
	if err != nil {
		return nil, err
	}
	return &accountPolicy{policy: p}, nil
}

// authorizeAccount evaluates [Config.AccountPolicy] for an operation that
// names no key (resource "*").
func (s *Server) authorizeAccount(c *call, action string, doc *attest.Document) *apiError {
	if s.account.policy == nil {
		return nil
	}
	d, reason := s.account.policy.Evaluate(policyRequest(c, action, "*", doc))
	if d == kmspolicy.Allow {
		return nil
	}
	s.log.Info("kmssim: access denied", "method", c.op, "principal", c.principal, "reason", reason)
	return errAccessDenied(c.principal, action, "*", d == kmspolicy.ExplicitDeny, "identity-based")
}

func policyRequest(c *call, action, resource string, doc *attest.Document) kmspolicy.Request {
	r := kmspolicy.Request{Principal: c.principal, Action: action, Resource: resource}
	if doc != nil {
		r.Attestation = &kmspolicy.Attestation{PCRs: doc.PCRs}
	}
	return r
}

// defaultPolicy is the key policy KMS gives a key created through the API
// without one: the account (through IAM) has full access.
func defaultPolicy(account string) string {
	return fmt.Sprintf(`{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {
        "AWS": "arn:aws:iam::%s:root"
      },
      "Action": "kms:*",
      "Resource": "*"
    }
  ]
}`, account)
}
