package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// sealedKeys measures creating keys on a freshly started enclave and
// loading them again after a restart (issue 3): with o.clients clients over
// all the keys, then with one client over a few, whose latencies are free of
// queueing.
func sealedKeys(ctx context.Context, st *stack, conns []*grpc.ClientConn, o options, rep *report) error {
	// A fresh enclave: the count of KMS calls below starts from its first
	// KEK.
	if err := st.restartEnclave(ctx, conns[0]); err != nil {
		return err
	}
	ids, err := createKeys(ctx, st, conns, o, rep)
	if err != nil {
		return err
	}
	if err := st.restartEnclave(ctx, conns[0]); err != nil {
		return err
	}
	fmt.Printf("enclave restarted (parent up):\n")
	if err := coldWarm(ctx, st, conns, o.clients, ids, o.kekMaxKeys, rep); err != nil {
		return err
	}
	if err := st.restartEnclave(ctx, conns[0]); err != nil {
		return err
	}
	fmt.Printf("enclave restarted again:\n")
	return coldWarm(ctx, st, conns, 1, ids[:min(len(ids), singleClientKeys)], o.kekMaxKeys, rep)
}

// singleClientKeys is how many keys the one-client cold and warm passes use.
const singleClientKeys = 500

// createKeys creates o.createKeys secp256k1 keys with o.clients clients.
func createKeys(ctx context.Context, st *stack, conns []*grpc.ClientConn, o options, rep *report) ([]string, error) {
	f0, err := st.enclaveFigures()
	if err != nil {
		return nil, err
	}
	n := o.createKeys
	ids := make([]string, n)
	start := time.Now()
	lat, err := each(ctx, conns, o.clients, n, func(ctx context.Context, cl signerv1.SignerServiceClient, i int) error {
		r, err := cl.CreateKey(ctx, &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
		if err != nil {
			return fmt.Errorf("create key: %w", err)
		}
		ids[i] = r.GetKey().GetKeyId()
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return nil, err
	}
	f1, err := st.enclaveFigures()
	if err != nil {
		return nil, err
	}
	slices.Sort(lat)
	calls := f1.kmsCalls - f0.kmsCalls
	want := float64((n + o.kekMaxKeys - 1) / o.kekMaxKeys)
	v := rep.check("3", fmt.Sprintf("create %d keys: KMS calls", n), fmt.Sprintf("%.0f", calls),
		fmt.Sprintf("= new KEKs (%.0f)", want), calls == want)
	fmt.Printf("create %d keys on a fresh enclave (%d clients): %.2f s, %.0f keys/s, p50 %.1f ms, p99 %.1f ms; KMS calls %.0f (expected %.0f: one KEK per %d keys) %s; enclave holds %.0f keys, %.0f KEKs\n",
		n, o.clients, elapsed.Seconds(), float64(n)/elapsed.Seconds(), lat.pct(50)/1e6, lat.pct(99)/1e6, calls, want, o.kekMaxKeys, v, f1.keys, f1.keks)
	rep.info("3", fmt.Sprintf("create %d keys, %d clients", n, o.clients), fmt.Sprintf("%.2f s (%.0f keys/s)", elapsed.Seconds(), float64(n)/elapsed.Seconds()))
	return ids, nil
}

// coldWarm expects an enclave that has just started. It signs once with
// each key, each first sign making the parent hand the enclave the key's
// sealed blobs, then once more, and reports time, latency and KMS calls of
// both passes.
func coldWarm(ctx context.Context, st *stack, conns []*grpc.ClientConn, clients int, ids []string, kekMaxKeys int, rep *report) error {
	f0, err := st.enclaveFigures()
	if err != nil {
		return err
	}
	pass := func(round uint64) (latencies, time.Duration, error) {
		start := time.Now()
		lat, err := each(ctx, conns, clients, len(ids), func(ctx context.Context, cl signerv1.SignerServiceClient, i int) error {
			_, err := cl.Sign(ctx, digestRequest(ids[i], round<<32|uint64(i)))
			return err
		})
		elapsed := time.Since(start)
		slices.Sort(lat)
		return lat, elapsed, err
	}
	cold, coldWall, err := pass(1)
	if err != nil {
		return fmt.Errorf("cold pass: %w", err)
	}
	f1, err := st.enclaveFigures()
	if err != nil {
		return err
	}
	warm, warmWall, err := pass(2)
	if err != nil {
		return fmt.Errorf("warm pass: %w", err)
	}
	f2, err := st.enclaveFigures()
	if err != nil {
		return err
	}

	n := len(ids)
	coldCalls, warmCalls := f1.kmsCalls-f0.kmsCalls, f2.kmsCalls-f1.kmsCalls
	wantKEKs := float64((n + kekMaxKeys - 1) / kekMaxKeys)
	what := fmt.Sprintf("%d keys, %d clients", n, clients)
	if clients == 1 {
		what = fmt.Sprintf("%d keys, 1 client", n)
	}
	vCold := rep.check("3", "cold load "+what+": KMS calls", fmt.Sprintf("%.0f (KEKs %.0f)", coldCalls, f1.keks),
		fmt.Sprintf("= KEKs (%.0f)", wantKEKs), coldCalls == f1.keks && f1.keks == wantKEKs)
	vWarm := rep.check("3", "warm pass "+what+": KMS calls", fmt.Sprintf("%.0f", warmCalls), "0", warmCalls == 0)
	fmt.Printf("  cold, %-22s %6.2f s (%6.0f keys/s)   first sign p50 %7.1f µs  p99 %7.1f µs  KMS calls %.0f, KEKs unwrapped %.0f (expected %.0f) %s; keys loaded %.0f\n",
		what+":", coldWall.Seconds(), float64(n)/coldWall.Seconds(), cold.pct(50)/1e3, cold.pct(99)/1e3, coldCalls, f1.keks, wantKEKs, vCold, f1.keys)
	fmt.Printf("  warm, %-22s %6.2f s (%6.0f signs/s)  warm sign  p50 %7.1f µs  p99 %7.1f µs  KMS calls %.0f (expected 0) %s\n",
		what+":", warmWall.Seconds(), float64(n)/warmWall.Seconds(), warm.pct(50)/1e3, warm.pct(99)/1e3, warmCalls, vWarm)
	rep.info("3", "cold load "+what, fmt.Sprintf("%.2f s (%.0f keys/s)", coldWall.Seconds(), float64(n)/coldWall.Seconds()))
	rep.info("3", "first / warm sign p50, "+what, fmt.Sprintf("%.0f / %.0f µs", cold.pct(50)/1e3, warm.pct(50)/1e3))
	rep.info("3", "first / warm sign p99, "+what, fmt.Sprintf("%.0f / %.0f µs", cold.pct(99)/1e3, warm.pct(99)/1e3))
	return nil
}
