//go:build !nosim

package kmssim

import (
	"fmt"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// The methods in this file are the operator's side door: they act on the
// state directly, without SigV4, key policies or the policy lockout safety
// check. The command uses them to set up its initial key; tests use them
// to arrange state.

// KeyOptions describes a key for [Server.CreateKey].
type KeyOptions struct {
	// Description is the key's description.
	Description string

	// Alias, if set, is an alias name ("alias/NAME") pointing at the new
	// key. It must not exist yet.
	Alias string

	// Policy is the key policy. Empty selects KMS's default policy (the
	// account has full access through IAM, which the simulator treats as
	// every principal of the account).
	Policy []byte
}

// CreateKey creates an enabled symmetric encryption key and returns its
// ARN. It fails if the policy or alias is invalid or the alias exists.
func (s *Server) CreateKey(opts KeyOptions) (string, error) {
	text := string(opts.Policy)
	if text == "" {
		text = defaultPolicy(s.cfg.Account)
	}
	policy, err := kmspolicy.Parse([]byte(text))
	if err != nil {
		return "", fmt.Errorf("kmssim: key policy: %w", err)
	}
	if opts.Alias != "" {
		if aerr := checkAliasName(&opts.Alias); aerr != nil {
			return "", fmt.Errorf("kmssim: alias: %s", aerr.msg)
		}
	}
	k, err := s.createKey(opts.Description, text, policy, opts.Alias)
	if err != nil {
		return "", fmt.Errorf("kmssim: create key: %w", err)
	}
	return s.keyARN(k.id), nil
}

// KeyARN returns the ARN of the key that ref (key id, key ARN, alias name
// or alias ARN) names, or an error wrapping [ErrKeyNotFound].
func (s *Server) KeyARN(ref string) (string, error) {
	k, aerr := s.resolve(ref, "keyId", true)
	if aerr != nil {
		return "", fmt.Errorf("%w: %s", ErrKeyNotFound, aerr.msg)
	}
	return s.keyARN(k.id), nil
}

// KeyARNs returns the ARNs of all keys, oldest first.
func (s *Server) KeyARNs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	arns := make([]string, 0, len(s.order))
	for _, id := range s.order {
		arns = append(arns, s.keyARN(id))
	}
	return arns
}

// SetKeyPolicy replaces the policy of the key ref names. It returns an
// error wrapping [ErrKeyNotFound] for an unknown key and reports whether
// the policy changed.
func (s *Server) SetKeyPolicy(ref string, policy []byte) (changed bool, err error) {
	p, err := kmspolicy.Parse(policy)
	if err != nil {
		return false, fmt.Errorf("kmssim: key policy: %w", err)
	}
	k, aerr := s.resolve(ref, "keyId", true)
	if aerr != nil {
		return false, fmt.Errorf("%w: %s", ErrKeyNotFound, aerr.msg)
	}
	if k.policyText == string(policy) {
		return false, nil
	}
	if _, aerr := s.update(k.id, func(k *key) *apiError {
		k.policyText, k.policy = string(policy), p
		return nil
	}); aerr != nil {
		return false, fmt.Errorf("kmssim: set key policy: %s", aerr.msg)
	}
	return true, nil
}
