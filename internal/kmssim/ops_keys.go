//go:build !nosim

package kmssim

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// handler runs one operation on an authenticated request body and returns
// the JSON answer.
type handler func(s *Server, c *call, body []byte) ([]byte, *apiError)

// operations are the KMS operations the simulator implements, by
// X-Amz-Target suffix.
var operations = map[string]handler{
	"CreateKey":                       (*Server).opCreateKey,
	"DescribeKey":                     (*Server).opDescribeKey,
	"ListKeys":                        (*Server).opListKeys,
	"EnableKey":                       (*Server).opEnableKey,
	"DisableKey":                      (*Server).opDisableKey,
	"ScheduleKeyDeletion":             (*Server).opScheduleKeyDeletion,
	"CancelKeyDeletion":               (*Server).opCancelKeyDeletion,
	"GetKeyPolicy":                    (*Server).opGetKeyPolicy,
	"PutKeyPolicy":                    (*Server).opPutKeyPolicy,
	"CreateAlias":                     (*Server).opCreateAlias,
	"DeleteAlias":                     (*Server).opDeleteAlias,
	"ListAliases":                     (*Server).opListAliases,
	"Encrypt":                         (*Server).opEncrypt,
	"Decrypt":                         (*Server).opDecrypt,
	"ReEncrypt":                       (*Server).opReEncrypt,
	"GenerateDataKey":                 (*Server).opGenerateDataKey,
	"GenerateDataKeyWithoutPlaintext": (*Server).opGenerateDataKeyWithoutPlaintext,
	"GenerateRandom":                  (*Server).opGenerateRandom,
}

// Operations returns the names of the KMS operations the simulator
// implements, sorted.
func Operations() []string {
	names := make([]string, 0, len(operations))
	for name := range operations {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// epoch marshals a time as KMS does: seconds since the epoch, as a JSON
// number with millisecond precision.
type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(time.Time(e).UnixMilli())/1000, 'f', -1, 64), nil
}

// keyMetadata is KMS's KeyMetadata for a symmetric encryption key.
type keyMetadata struct {
	AWSAccountId                string
	Arn                         string
	CreationDate                epoch
	CurrentKeyMaterialId        string
	CustomerMasterKeySpec       string
	DeletionDate                *epoch `json:",omitempty"`
	Description                 string
	Enabled                     bool
	EncryptionAlgorithms        []string
	KeyId                       string
	KeyManager                  string
	KeySpec                     string
	KeyState                    string
	KeyUsage                    string
	MultiRegion                 bool
	Origin                      string
	PendingDeletionWindowInDays int32 `json:",omitempty"`
}

func (s *Server) metadata(k *key) keyMetadata {
	m := keyMetadata{
		AWSAccountId:          s.cfg.Account,
		Arn:                   s.keyARN(k.id),
		CreationDate:          epoch(k.created),
		CurrentKeyMaterialId:  k.materialID,
		CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
		Description:           k.description,
		Enabled:               k.state == stateEnabled,
		EncryptionAlgorithms:  []string{"SYMMETRIC_DEFAULT"},
		KeyId:                 k.id,
		KeyManager:            "CUSTOMER",
		KeySpec:               "SYMMETRIC_DEFAULT",
		KeyState:              k.state,
		KeyUsage:              "ENCRYPT_DECRYPT",
		Origin:                "AWS_KMS",
	}
	if k.state == statePendingDeletion {
		d := epoch(k.deletion)
		m.DeletionDate = &d
		m.PendingDeletionWindowInDays = k.pendingDays
	}
	return m
}

// answer marshals an operation's output.
func answer(v any) ([]byte, *apiError) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errInternal()
	}
	return b, nil
}

// needKeyID checks a required KeyId-like member.
func needKeyID(ref *string, member string) (string, *apiError) {
	if ref == nil {
		return "", errNull(member)
	}
	return *ref, nil
}

type createKeyRequest struct {
	Policy                         *string
	Description                    string
	KeyUsage                       string
	KeySpec                        string
	CustomerMasterKeySpec          string
	Origin                         string
	CustomKeyStoreId               string
	XksKeyId                       string
	BypassPolicyLockoutSafetyCheck bool
	MultiRegion                    bool
}

func (s *Server) opCreateKey(c *call, body []byte) ([]byte, *apiError) {
	var req createKeyRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if len(req.Description) > 8192 {
		return nil, errLength("description", 0, 8192)
	}
	if aerr := checkKeyShape(&req); aerr != nil {
		return nil, aerr
	}
	if aerr := s.authorizeAccount(c, "kms:CreateKey", nil); aerr != nil {
		return nil, aerr
	}
	policyText := defaultPolicy(s.cfg.Account)
	if req.Policy != nil {
		policyText = *req.Policy
	}
	// The key's ARN is not known yet; "*" matches what a policy for a new
	// key can name.
	policy, aerr := s.checkPolicy(c, policyText, "*", req.BypassPolicyLockoutSafetyCheck)
	if aerr != nil {
		return nil, aerr
	}
	k, err := s.createKey(req.Description, policyText, policy, "")
	if err != nil {
		s.log.Error("kmssim: create key", "err", err)
		return nil, errInternal()
	}
	c.keyID = k.id
	return answer(struct{ KeyMetadata keyMetadata }{s.metadata(k)})
}

// checkKeyShape refuses every kind of key but symmetric encryption keys
// with KMS-generated material.
func checkKeyShape(req *createKeyRequest) *apiError {
	spec := req.KeySpec
	if spec == "" {
		spec = req.CustomerMasterKeySpec
	}
	switch {
	case req.KeySpec != "" && req.CustomerMasterKeySpec != "":
		return errValidation("You cannot specify KeySpec and CustomerMasterKeySpec in the same request.")
	case spec != "" && spec != "SYMMETRIC_DEFAULT":
		return errUnsupported("kmssim supports only SYMMETRIC_DEFAULT keys, not %s.", spec)
	case req.KeyUsage != "" && req.KeyUsage != "ENCRYPT_DECRYPT":
		return errUnsupported("kmssim supports only ENCRYPT_DECRYPT keys, not %s.", req.KeyUsage)
	case req.Origin != "" && req.Origin != "AWS_KMS":
		return errUnsupported("kmssim supports only keys with origin AWS_KMS, not %s.", req.Origin)
	case req.MultiRegion:
		return errUnsupported("kmssim does not support multi-Region keys.")
	case req.CustomKeyStoreId != "" || req.XksKeyId != "":
		return errUnsupported("kmssim does not support custom key stores.")
	}
	return nil
}

// checkPolicy parses a key policy and, unless bypass, applies KMS's policy
// lockout safety check: the caller must still be allowed to call
// PutKeyPolicy under the new policy.
func (s *Server) checkPolicy(c *call, text, resource string, bypass bool) (*kmspolicy.Policy, *apiError) {
	if len(text) == 0 || len(text) > kmspolicy.MaxPolicySize {
		return nil, errLength("policy", 1, kmspolicy.MaxPolicySize)
	}
	p, err := kmspolicy.Parse([]byte(text))
	if err != nil {
		return nil, errMalformedPolicy("%v", err)
	}
	if !bypass {
		d, _ := p.Evaluate(kmspolicy.Request{Principal: c.principal, Action: "kms:PutKeyPolicy", Resource: resource})
		if d != kmspolicy.Allow {
			return nil, errMalformedPolicy("The new key policy will not allow you to update the key policy in the future.")
		}
	}
	return p, nil
}

// createKey makes a new enabled key with fresh material, optionally under
// an alias, and persists it.
func (s *Server) createKey(description, policyText string, policy *kmspolicy.Policy, alias string) (*key, error) {
	id, err := newUUID(s.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	material := make([]byte, 32)
	if _, err := io.ReadFull(s.cfg.Rand, material); err != nil {
		return nil, fmt.Errorf("key material: %w", err)
	}
	materialID := make([]byte, 32)
	if _, err := io.ReadFull(s.cfg.Rand, materialID); err != nil {
		return nil, fmt.Errorf("key material id: %w", err)
	}
	k := &key{
		id:          id,
		created:     s.cfg.Now().UTC(),
		description: description,
		state:       stateEnabled,
		policyText:  policyText,
		policy:      policy,
		material:    material,
		materialID:  hex.EncodeToString(materialID),
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("server closed")
	}
	if alias != "" {
		if _, taken := s.aliases[alias]; taken {
			return nil, fmt.Errorf("alias %s already exists", alias)
		}
		s.aliases[alias] = id
	}
	s.keys[id] = k
	s.order = append(s.order, id)
	if err := s.saveLocked(); err != nil {
		delete(s.keys, id)
		delete(s.aliases, alias)
		s.order = s.order[:len(s.order)-1]
		return nil, err
	}
	return k, nil
}

type keyIDRequest struct {
	KeyId       *string
	GrantTokens []string
}

func (s *Server) opDescribeKey(c *call, body []byte) ([]byte, *apiError) {
	var req keyIDRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.keyFor(c, req.KeyId, "keyId", true, "kms:DescribeKey")
	if aerr != nil {
		return nil, aerr
	}
	return answer(struct{ KeyMetadata keyMetadata }{s.metadata(&k)})
}

// keyFor resolves a required key reference and authorizes action on it
// (without attestation).
func (s *Server) keyFor(c *call, ref *string, member string, aliases bool, action string) (key, *apiError) {
	k, aerr := s.callKey(c, ref, member, aliases)
	if aerr != nil {
		return key{}, aerr
	}
	return k, s.authorize(c, action, &k, nil)
}

// callKey resolves a required key reference and records the key as the
// call's (for the request log); the caller authorizes.
func (s *Server) callKey(c *call, ref *string, member string, aliases bool) (key, *apiError) {
	r, aerr := needKeyID(ref, member)
	if aerr != nil {
		return key{}, aerr
	}
	k, aerr := s.resolve(r, member, aliases)
	if aerr != nil {
		return key{}, aerr
	}
	c.keyID = k.id
	return k, nil
}

type listRequest struct {
	KeyId  *string
	Limit  *int32
	Marker *string
}

// page applies Limit and Marker (the id of the first item to return) to
// ids.
func page(ids []string, req *listRequest) (out []string, next string, aerr *apiError) {
	limit := 100
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > 1000 {
			return nil, "", errRange("limit", int64(*req.Limit), 1, 1000)
		}
		limit = int(*req.Limit)
	}
	start := 0
	if req.Marker != nil {
		i := slices.Index(ids, *req.Marker)
		if i < 0 {
			return nil, "", errInvalidMarker()
		}
		start = i
	}
	end := min(start+limit, len(ids))
	if end < len(ids) {
		next = ids[end]
	}
	return ids[start:end], next, nil
}

type listKeysEntry struct {
	KeyArn string
	KeyId  string
}

func (s *Server) opListKeys(c *call, body []byte) ([]byte, *apiError) {
	var req listRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := s.authorizeAccount(c, "kms:ListKeys", nil); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	s.sweepLocked()
	ids := slices.Clone(s.order)
	s.mu.Unlock()
	ids, next, aerr := page(ids, &req)
	if aerr != nil {
		return nil, aerr
	}
	out := struct {
		Keys       []listKeysEntry
		NextMarker string `json:",omitempty"`
		Truncated  bool
	}{Keys: []listKeysEntry{}, NextMarker: next, Truncated: next != ""}
	for _, id := range ids {
		out.Keys = append(out.Keys, listKeysEntry{KeyArn: s.keyARN(id), KeyId: id})
	}
	return answer(out)
}

func (s *Server) opEnableKey(c *call, body []byte) ([]byte, *apiError) {
	return s.setState(c, body, "kms:EnableKey", stateEnabled)
}

func (s *Server) opDisableKey(c *call, body []byte) ([]byte, *apiError) {
	return s.setState(c, body, "kms:DisableKey", stateDisabled)
}

// setState enables or disables a key; keys pending deletion refuse both.
func (s *Server) setState(c *call, body []byte, action, state string) ([]byte, *apiError) {
	var req keyIDRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.keyFor(c, req.KeyId, "keyId", false, action)
	if aerr != nil {
		return nil, aerr
	}
	_, aerr = s.update(k.id, func(k *key) *apiError {
		if k.state == statePendingDeletion {
			return errPendingDeletion(s.keyARN(k.id))
		}
		k.state = state
		return nil
	})
	if aerr != nil {
		return nil, aerr
	}
	return []byte("{}"), nil
}

type scheduleKeyDeletionRequest struct {
	KeyId               *string
	PendingWindowInDays *int32
}

func (s *Server) opScheduleKeyDeletion(c *call, body []byte) ([]byte, *apiError) {
	var req scheduleKeyDeletionRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	days := int32(30)
	if req.PendingWindowInDays != nil {
		days = *req.PendingWindowInDays
		if days < 7 || days > 30 {
			return nil, errRange("pendingWindowInDays", int64(days), 7, 30)
		}
	}
	k, aerr := s.keyFor(c, req.KeyId, "keyId", false, "kms:ScheduleKeyDeletion")
	if aerr != nil {
		return nil, aerr
	}
	k, aerr = s.update(k.id, func(k *key) *apiError {
		if k.state == statePendingDeletion {
			return errPendingDeletion(s.keyARN(k.id))
		}
		k.state = statePendingDeletion
		k.pendingDays = days
		k.deletion = s.cfg.Now().UTC().Add(time.Duration(days) * 24 * time.Hour)
		return nil
	})
	if aerr != nil {
		return nil, aerr
	}
	return answer(struct {
		DeletionDate        epoch
		KeyId               string
		KeyState            string
		PendingWindowInDays int32
	}{epoch(k.deletion), s.keyARN(k.id), k.state, k.pendingDays})
}

func (s *Server) opCancelKeyDeletion(c *call, body []byte) ([]byte, *apiError) {
	var req keyIDRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.keyFor(c, req.KeyId, "keyId", false, "kms:CancelKeyDeletion")
	if aerr != nil {
		return nil, aerr
	}
	_, aerr = s.update(k.id, func(k *key) *apiError {
		if k.state != statePendingDeletion {
			return errInvalidState("%s is not pending deletion.", s.keyARN(k.id))
		}
		// As in KMS, a key whose deletion is cancelled comes back disabled.
		k.state = stateDisabled
		k.deletion, k.pendingDays = time.Time{}, 0
		return nil
	})
	if aerr != nil {
		return nil, aerr
	}
	return answer(struct{ KeyId string }{s.keyARN(k.id)})
}

type keyPolicyRequest struct {
	KeyId                          *string
	PolicyName                     *string
	Policy                         *string
	BypassPolicyLockoutSafetyCheck bool
}

// checkPolicyName accepts only the one policy name KMS supports.
func checkPolicyName(name *string) *apiError {
	if name != nil && *name != "default" {
		return errNotFound("No such policy exists: %s", *name)
	}
	return nil
}

func (s *Server) opGetKeyPolicy(c *call, body []byte) ([]byte, *apiError) {
	var req keyPolicyRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.keyFor(c, req.KeyId, "keyId", false, "kms:GetKeyPolicy")
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkPolicyName(req.PolicyName); aerr != nil {
		return nil, aerr
	}
	return answer(struct{ Policy, PolicyName string }{k.policyText, "default"})
}

func (s *Server) opPutKeyPolicy(c *call, body []byte) ([]byte, *apiError) {
	var req keyPolicyRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if req.Policy == nil {
		return nil, errNull("policy")
	}
	k, aerr := s.keyFor(c, req.KeyId, "keyId", false, "kms:PutKeyPolicy")
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkPolicyName(req.PolicyName); aerr != nil {
		return nil, aerr
	}
	policy, aerr := s.checkPolicy(c, *req.Policy, s.keyARN(k.id), req.BypassPolicyLockoutSafetyCheck)
	if aerr != nil {
		return nil, aerr
	}
	_, aerr = s.update(k.id, func(k *key) *apiError {
		k.policyText, k.policy = *req.Policy, policy
		return nil
	})
	if aerr != nil {
		return nil, aerr
	}
	return []byte("{}"), nil
}
