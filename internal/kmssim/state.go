//go:build !nosim

package kmssim

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/fsutil"
	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// Files kept in [Config.StateDir].
const (
	// StateFile holds the keys, their policies, states and key material
	// (JSON, mode 0600).
	StateFile = "state.json"
	// CACertFile is the simulator's TLS CA certificate (PEM, mode 0644).
	// Clients trust it to reach the simulator over HTTPS.
	CACertFile = "ca.pem"
	// CAKeyFile is the TLS CA's private key (PKCS #8 PEM, mode 0600).
	CAKeyFile = "ca-key.pem"
	lockFile  = ".lock"
)

// stateVersion is the version of [StateFile]'s format.
const stateVersion = 1

// Key states, as KMS names them.
const (
	stateEnabled         = "Enabled"
	stateDisabled        = "Disabled"
	statePendingDeletion = "PendingDeletion"
)

// key is one symmetric KMS key. Handlers work on copies; material is
// never modified after creation, so copies may share it.
type key struct {
	id          string
	created     time.Time
	description string
	state       string
	deletion    time.Time // set in PendingDeletion
	pendingDays int32     // set in PendingDeletion
	policyText  string
	policy      *kmspolicy.Policy
	material    []byte // 32-byte AES-256 key; secret
	materialID  string // 64 hex digits, as KMS's KeyMaterialId
}

// stateDoc is the on-disk form of the simulator's state.
type stateDoc struct {
	Version int               `json:"version"`
	Account string            `json:"account"`
	Region  string            `json:"region"`
	Keys    []keyDoc          `json:"keys"`
	Aliases map[string]string `json:"aliases"` // alias name → key id
}

type keyDoc struct {
	ID           string     `json:"id"`
	Created      time.Time  `json:"created"`
	Description  string     `json:"description,omitempty"`
	State        string     `json:"state"`
	DeletionDate *time.Time `json:"deletion_date,omitempty"`
	PendingDays  int32      `json:"pending_window_days,omitempty"`
	Policy       string     `json:"policy"`
	Material     []byte     `json:"material"`
	MaterialID   string     `json:"material_id"`
}

var (
	uuidPattern       = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	materialIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	aliasPattern      = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
)

// loadState reads the state file in dir. A missing file is an empty state.
func loadState(dir, account, region string) (keys map[string]*key, order []string, aliases map[string]string, err error) {
	keys = map[string]*key{}
	aliases = map[string]string{}
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return keys, nil, aliases, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read state: %w", err)
	}
	defer clear(b)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("stat state: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, nil, fmt.Errorf("state file %s has mode %v; it holds key material and must not be accessible by group or others", path, fi.Mode().Perm())
	}
	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, nil, fmt.Errorf("parse state file %s: %w", path, err)
	}
	defer func() {
		for i := range doc.Keys {
			clear(doc.Keys[i].Material)
		}
	}()
	if doc.Version != stateVersion {
		return nil, nil, nil, fmt.Errorf("state file %s has version %d, want %d", path, doc.Version, stateVersion)
	}
	if doc.Account != account || doc.Region != region {
		return nil, nil, nil, fmt.Errorf("state file %s belongs to account %s in %s, not account %s in %s; use another state directory",
			path, doc.Account, doc.Region, account, region)
	}
	for i, kd := range doc.Keys {
		k, err := kd.key()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("state file %s: key %d: %w", path, i, err)
		}
		if _, dup := keys[k.id]; dup {
			return nil, nil, nil, fmt.Errorf("state file %s: key %s appears twice", path, k.id)
		}
		keys[k.id] = k
		order = append(order, k.id)
	}
	for name, id := range doc.Aliases {
		if !aliasPattern.MatchString(name) || keys[id] == nil {
			return nil, nil, nil, fmt.Errorf("state file %s: alias %q names no key", path, name)
		}
		aliases[name] = id
	}
	return keys, order, aliases, nil
}

// key validates a stored key and converts it.
func (kd *keyDoc) key() (*key, error) {
	if !uuidPattern.MatchString(kd.ID) {
		return nil, fmt.Errorf("id %q is not a key id", kd.ID)
	}
	if len(kd.Material) != 32 {
		return nil, fmt.Errorf("%s: key material is %d bytes, want 32", kd.ID, len(kd.Material))
	}
	if !materialIDPattern.MatchString(kd.MaterialID) {
		return nil, fmt.Errorf("%s: malformed material id", kd.ID)
	}
	k := &key{
		id:          kd.ID,
		created:     kd.Created,
		description: kd.Description,
		state:       kd.State,
		pendingDays: kd.PendingDays,
		policyText:  kd.Policy,
		material:    append([]byte(nil), kd.Material...),
		materialID:  kd.MaterialID,
	}
	switch kd.State {
	case stateEnabled, stateDisabled:
	case statePendingDeletion:
		if kd.DeletionDate == nil {
			return nil, fmt.Errorf("%s: pending deletion without a deletion date", kd.ID)
		}
		k.deletion = *kd.DeletionDate
	default:
		return nil, fmt.Errorf("%s: unknown key state %q", kd.ID, kd.State)
	}
	p, err := kmspolicy.Parse([]byte(kd.Policy))
	if err != nil {
		return nil, fmt.Errorf("%s: key policy: %w", kd.ID, err)
	}
	k.policy = p
	return k, nil
}

// saveLocked writes the state file atomically. s.mu must be held.
func (s *Server) saveLocked() error {
	doc := stateDoc{
		Version: stateVersion,
		Account: s.cfg.Account,
		Region:  s.cfg.Region,
		Keys:    make([]keyDoc, 0, len(s.order)),
		Aliases: s.aliases,
	}
	for _, id := range s.order {
		k := s.keys[id]
		kd := keyDoc{
			ID:          k.id,
			Created:     k.created,
			Description: k.description,
			State:       k.state,
			PendingDays: k.pendingDays,
			Policy:      k.policyText,
			Material:    k.material,
			MaterialID:  k.materialID,
		}
		if k.state == statePendingDeletion {
			d := k.deletion
			kd.DeletionDate = &d
		}
		doc.Keys = append(doc.Keys, kd)
	}
	b, err := json.MarshalIndent(&doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	defer clear(b)
	if err := fsutil.WriteFileAtomic(filepath.Join(s.cfg.StateDir, StateFile), b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// newUUID returns a random (version 4) UUID read from rand.
func newUUID(rand io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:]), nil
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func parseUUID(s string) ([16]byte, error) {
	var b [16]byte
	if !uuidPattern.MatchString(s) {
		return b, fmt.Errorf("%q is not a key id", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	_, err := hex.Decode(b[:], []byte(h))
	return b, err
}
