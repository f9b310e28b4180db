package main

import (
	"context"
	"strconv"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const (
	freezeSynopsis   = "nitrosigner [global flags] freeze --reason TEXT | freeze status"
	unfreezeSynopsis = "nitrosigner [global flags] unfreeze --yes"
)

const freezeHelp = `Stop all signing, with every key, at once: Sign and SignBatch then fail with
FailedPrecondition ("signing is frozen since TIME: REASON"). Keys can still be
created, read, disabled, rotated and deleted, and attestation still works.
The state is kept in the blob store: it survives restarts and reaches every
parent sharing the store within its --freeze-poll interval. Freezing a frozen
service keeps its first reason and time. "freeze status" shows the state.`

const unfreezeHelp = `Let signing resume after a freeze. Requires --yes.`

// freeze runs freeze --reason TEXT and freeze status.
func (c *cli) freeze(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "status" {
		fs := newFlagSet("freeze status")
		if err := parseFlags(fs, args[1:], c.stdout, freezeSynopsis, freezeHelp); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usagef(freezeSynopsis, "freeze status: takes no arguments")
		}
		return c.withClient(func(client signerv1.SignerServiceClient) error {
			r, err := client.GetFreezeState(ctx, &signerv1.GetFreezeStateRequest{})
			if err != nil {
				return err
			}
			return c.printFreeze(r.GetState())
		})
	}
	fs := newFlagSet("freeze")
	reason := fs.String("reason", "", "why signing is frozen, shown to operators and clients (required; at most 256 bytes, no control characters)")
	if err := parseFlags(fs, args, c.stdout, freezeSynopsis, freezeHelp); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef(freezeSynopsis, "freeze: unexpected argument %q (quote a reason with spaces)", fs.Arg(0))
	}
	if err := limits.CheckFreezeReason(*reason); err != nil {
		return usagef(freezeSynopsis, "freeze: --reason: %v", err)
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		r, err := client.Freeze(ctx, &signerv1.FreezeRequest{Reason: *reason})
		if err != nil {
			return err
		}
		return c.printFreeze(r.GetState())
	})
}

// unfreeze runs unfreeze --yes.
func (c *cli) unfreeze(ctx context.Context, args []string) error {
	fs := newFlagSet("unfreeze")
	yes := fs.Bool("yes", false, "confirm that signing is to resume")
	if err := parseFlags(fs, args, c.stdout, unfreezeSynopsis, unfreezeHelp); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef(unfreezeSynopsis, "unfreeze: takes no arguments")
	}
	if !*yes {
		return usagef(unfreezeSynopsis, "unfreeze lets every key sign again; add --yes to confirm")
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		r, err := client.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
		if err != nil {
			return err
		}
		return c.printFreeze(r.GetState())
	})
}

// printFreeze prints a freeze state: with --json as one object with the
// .proto's field names.
func (c *cli) printFreeze(st *signerv1.FreezeState) error {
	if c.cfg.json {
		return c.writeJSON(map[string]any{
			"frozen": st.GetFrozen(), "reason": st.GetReason(), "changed_at_unix_ms": st.GetChangedAtUnixMs(),
		})
	}
	pairs := []string{"frozen", strconv.FormatBool(st.GetFrozen())}
	if st.GetFrozen() {
		pairs = append(pairs, "reason", st.GetReason())
	}
	if ms := st.GetChangedAtUnixMs(); ms > 0 {
		pairs = append(pairs, "since", time.UnixMilli(ms).UTC().Format(time.RFC3339))
	}
	return c.fields(pairs...)
}
