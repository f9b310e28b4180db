//go:build !nosim

package kmssim

import (
	"slices"
	"strings"
)

type aliasRequest struct {
	AliasName   *string
	TargetKeyId *string
}

// checkAliasName validates an alias name as KMS does.
func checkAliasName(name *string) *apiError {
	switch {
	case name == nil:
		return errNull("aliasName")
	case !aliasPattern.MatchString(*name):
		return errValidation("1 validation error detected: Value '%s' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$", *name)
	case strings.HasPrefix(*name, "alias/aws/"):
		return errValidation("Alias names starting with alias/aws/ are reserved for AWS managed keys.")
	}
	return nil
}

func (s *Server) opCreateAlias(c *call, body []byte) ([]byte, *apiError) {
	var req aliasRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAliasName(req.AliasName); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.keyFor(c, req.TargetKeyId, "targetKeyId", false, "kms:CreateAlias")
	if aerr != nil {
		return nil, aerr
	}
	name := *req.AliasName
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.keys[k.id]
	switch {
	case !ok:
		return nil, errNotFound("Key '%s' does not exist", s.keyARN(k.id))
	case cur.state == statePendingDeletion:
		return nil, errPendingDeletion(s.keyARN(k.id))
	case s.aliases[name] != "":
		return nil, errAlreadyExists("An alias with the name %s already exists", s.aliasARN(name))
	case s.closed:
		return nil, errInternal()
	}
	s.aliases[name] = k.id
	if err := s.saveLocked(); err != nil {
		delete(s.aliases, name)
		s.log.Error("kmssim: save state", "err", err)
		return nil, errInternal()
	}
	return []byte("{}"), nil
}

func (s *Server) opDeleteAlias(c *call, body []byte) ([]byte, *apiError) {
	var req aliasRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAliasName(req.AliasName); aerr != nil {
		return nil, aerr
	}
	name := *req.AliasName
	k, aerr := s.resolve(name, "aliasName", true)
	if aerr != nil {
		return nil, aerr
	}
	c.keyID = k.id
	if aerr := s.authorize(c, "kms:DeleteAlias", &k, nil); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.aliases[name]
	if !ok {
		return nil, errNotFound("Alias %s is not found.", s.aliasARN(name))
	}
	if s.closed {
		return nil, errInternal()
	}
	delete(s.aliases, name)
	if err := s.saveLocked(); err != nil {
		s.aliases[name] = id
		s.log.Error("kmssim: save state", "err", err)
		return nil, errInternal()
	}
	return []byte("{}"), nil
}

type aliasEntry struct {
	AliasArn    string
	AliasName   string
	TargetKeyId string
}

func (s *Server) opListAliases(c *call, body []byte) ([]byte, *apiError) {
	var req listRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := s.authorizeAccount(c, "kms:ListAliases", nil); aerr != nil {
		return nil, aerr
	}
	var filter string
	if req.KeyId != nil {
		k, aerr := s.resolve(*req.KeyId, "keyId", false)
		if aerr != nil {
			return nil, aerr
		}
		filter = k.id
	}
	s.mu.Lock()
	s.sweepLocked()
	var names []string
	targets := map[string]string{}
	for name, id := range s.aliases {
		if filter == "" || id == filter {
			names = append(names, name)
			targets[name] = id
		}
	}
	s.mu.Unlock()
	slices.Sort(names)
	names, next, aerr := page(names, &req)
	if aerr != nil {
		return nil, aerr
	}
	out := struct {
		Aliases    []aliasEntry
		NextMarker string `json:",omitempty"`
		Truncated  bool
	}{Aliases: []aliasEntry{}, NextMarker: next, Truncated: next != ""}
	for _, name := range names {
		out.Aliases = append(out.Aliases, aliasEntry{AliasArn: s.aliasARN(name), AliasName: name, TargetKeyId: targets[name]})
	}
	return answer(out)
}
