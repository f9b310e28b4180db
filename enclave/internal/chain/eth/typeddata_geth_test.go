package eth_test

// EIP-712 hashes must equal go-ethereum's apitypes (tests only).

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
)

// testKey signs typed data in tests where only the digest matters.
const testKey = "0xc85ef7d79691fe79573b1a7064c19c1a9819ebdbd1faaab1a8ec92344438aaf4"

// gethTypedDataHash returns go-ethereum's EIP-712 digest, or an error when it
// refuses the input (or panics on it, which it does for some malformed data).
func gethTypedDataHash(s string) (digest []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-ethereum panicked: %v", r)
		}
	}()
	var td apitypes.TypedData
	if err := json.Unmarshal([]byte(s), &td); err != nil {
		return nil, err
	}
	digest, _, err = apitypes.TypedDataAndHash(td)
	return digest, err
}

func typedDataDigest(t testing.TB, s string) ([]byte, error) {
	t.Helper()
	priv, pub := keyPair(t, testKey)
	r, err := eth.SignTypedData(sign.Secp256k1{}, priv, pub, s)
	if err != nil {
		return nil, err
	}
	return ethSummary(t, r).GetDigest(), nil
}

func TestTypedDataMailMatchesGeth(t *testing.T) {
	var v mailExample
	readJSON(t, "eip712_mail_example.json", &v)
	want, err := gethTypedDataHash(string(v.TypedData))
	require.NoError(t, err)
	got, err := typedDataDigest(t, string(v.TypedData))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, unhex(t, v.Digest), got)
}

// tdGen builds random typed data: a DAG of struct types with nested
// structs, arrays (dynamic, fixed-size, nested) and every atomic type, and a
// message that fits them.
type tdGen struct {
	r     *rand.Rand
	types map[string][]map[string]string
}

var structNames = []string{"Order", "Item", "Asset", "Fee", "Leg", "Permit", "Zone", "Batch"}

func (g *tdGen) atomicType() string {
	switch g.r.IntN(8) {
	case 0:
		return "address"
	case 1:
		return "bool"
	case 2:
		return "string"
	case 3:
		return "bytes"
	case 4:
		return fmt.Sprintf("bytes%d", 1+g.r.IntN(32))
	case 5:
		return fmt.Sprintf("uint%d", 8*(1+g.r.IntN(32)))
	case 6:
		return fmt.Sprintf("int%d", 8*(1+g.r.IntN(32)))
	default:
		return []string{"uint256", "int256"}[g.r.IntN(2)]
	}
}

// build defines struct names[i], which may reference names[i+1:], and
// returns a value for it.
func (g *tdGen) defineStructs(names []string) {
	for i, name := range names {
		var fields []map[string]string
		for j := range g.r.IntN(5) {
			base := g.atomicType()
			if i+1 < len(names) && g.r.IntN(3) == 0 {
				base = names[i+1+g.r.IntN(len(names)-i-1)]
			}
			for range g.r.IntN(3) {
				if g.r.IntN(2) == 0 {
					base += "[]"
				} else {
					base += fmt.Sprintf("[%d]", 1+g.r.IntN(3))
				}
			}
			fields = append(fields, map[string]string{"name": fmt.Sprintf("f%d_%d", i, j), "type": base})
		}
		g.types[name] = fields
	}
}

func (g *tdGen) value(typ string) any {
	if strings.HasSuffix(typ, "]") {
		open := strings.LastIndexByte(typ, '[')
		n := 0
		if inner := typ[open+1 : len(typ)-1]; inner != "" {
			fmt.Sscan(inner, &n)
		} else {
			n = g.r.IntN(4)
		}
		arr := make([]any, n)
		for i := range arr {
			arr[i] = g.value(typ[:open])
		}
		return arr
	}
	if fields, ok := g.types[typ]; ok {
		obj := map[string]any{}
		for _, f := range fields {
			obj[f["name"]] = g.value(f["type"])
		}
		return obj
	}
	switch {
	case typ == "address":
		a := common.BytesToAddress(randBytes(g.r, 20))
		if g.r.IntN(2) == 0 {
			return strings.ToLower(a.Hex())
		}
		return a.Hex()
	case typ == "bool":
		return g.r.IntN(2) == 0
	case typ == "string":
		return []string{"", "hello", "Ether Mail ✉", strings.Repeat("long ", 30)}[g.r.IntN(4)]
	case typ == "bytes":
		return "0x" + hex.EncodeToString(randBytes(g.r, g.r.IntN(70)))
	case strings.HasPrefix(typ, "bytes"):
		var n int
		fmt.Sscan(typ[5:], &n)
		return "0x" + hex.EncodeToString(randBytes(g.r, n))
	}
	signed := strings.HasPrefix(typ, "int")
	bits := 256
	if digits := strings.TrimLeft(typ, "uint"); digits != "" {
		fmt.Sscan(digits, &bits)
	}
	var x *big.Int
	if signed {
		x = randBig(g.r, bits-1)
		if g.r.IntN(2) == 0 {
			x.Neg(x)
			if g.r.IntN(8) == 0 { // the most negative value
				x.Lsh(big.NewInt(-1), uint(bits-1))
			}
		}
	} else {
		x = randBig(g.r, bits)
	}
	switch {
	case x.IsInt64() && x.CmpAbs(big.NewInt(1<<53)) < 0 && g.r.IntN(3) == 0:
		return json.Number(x.String())
	case x.Sign() >= 0 && g.r.IntN(2) == 0:
		return "0x" + x.Text(16)
	}
	return x.String()
}

func (g *tdGen) domain() (fields []map[string]string, value map[string]any) {
	value = map[string]any{}
	all := []struct {
		name, typ string
		v         any
	}{
		{"name", "string", "Test App"},
		{"version", "string", "2"},
		{"chainId", "uint256", []any{json.Number("1"), "137", "0xaa36a7"}[g.r.IntN(3)]},
		{"verifyingContract", "address", common.BytesToAddress(randBytes(g.r, 20)).Hex()},
		{"salt", "bytes32", "0x" + hex.EncodeToString(randBytes(g.r, 32))},
	}
	g.r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, f := range all[:1+g.r.IntN(len(all))] {
		fields = append(fields, map[string]string{"name": f.name, "type": f.typ})
		value[f.name] = f.v
	}
	return fields, value
}

func TestRandomTypedDataMatchesGeth(t *testing.T) {
	for i := range 150 {
		g := &tdGen{r: rand.New(rand.NewPCG(7, uint64(i))), types: map[string][]map[string]string{}}
		names := append([]string(nil), structNames...)
		g.r.Shuffle(len(names), func(a, b int) { names[a], names[b] = names[b], names[a] })
		names = names[:1+g.r.IntN(len(names))]
		g.defineStructs(names)
		domainFields, domain := g.domain()
		types := map[string]any{"EIP712Domain": domainFields}
		for n, f := range g.types {
			if f == nil {
				f = []map[string]string{}
			}
			types[n] = f
		}
		doc, err := json.Marshal(map[string]any{
			"types": types, "primaryType": names[0], "domain": domain, "message": g.value(names[0]),
		})
		require.NoError(t, err)
		want, err := gethTypedDataHash(string(doc))
		require.NoError(t, err, "go-ethereum refused %s", doc)
		got, err := typedDataDigest(t, string(doc))
		require.NoError(t, err, "%s", doc)
		require.Equal(t, want, got, "%s", doc)
	}
}

// TestRecursiveTypeMatchesGeth: a type may contain itself through a dynamic
// array (finite data ends with empty arrays); go-ethereum hashes it too.
func TestRecursiveTypeMatchesGeth(t *testing.T) {
	want, err := gethTypedDataHash(recursiveDoc)
	require.NoError(t, err)
	got, err := typedDataDigest(t, recursiveDoc)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

const recursiveDoc = `{
	  "types": {
	    "EIP712Domain": [{"name": "name", "type": "string"}],
	    "Node": [{"name": "label", "type": "string"}, {"name": "children", "type": "Node[]"}, {"name": "meta", "type": "Meta"}],
	    "Meta": [{"name": "owner", "type": "address"}, {"name": "refs", "type": "Node[][1]"}]
	  },
	  "primaryType": "Node",
	  "domain": {"name": "tree"},
	  "message": {
	    "label": "root",
	    "meta": {"owner": "0x0000000000000000000000000000000000000001", "refs": [[]]},
	    "children": [
	      {"label": "a", "children": [], "meta": {"owner": "0x0000000000000000000000000000000000000002", "refs": [[
	        {"label": "ref", "children": [], "meta": {"owner": "0x0000000000000000000000000000000000000003", "refs": [[]]}}
	      ]]}},
	      {"label": "b", "children": [], "meta": {"owner": "0x0000000000000000000000000000000000000004", "refs": [[]]}}
	    ]
	  }
	}`
