// Package deploy has no Go code of its own: it holds the tests of the shell
// scripts, systemd units and configuration templates in this directory, which
// set up an AWS Nitro parent instance and run nitrosigner on it.
//
// The tests run every script with --help and --dry-run (with stand-ins for
// aws, nitro-cli, systemctl and the other tools on PATH, which fail if a
// dry run calls them), run run-enclave.sh and kms-setup.sh for real against
// scripted stand-ins of nitro-cli and aws, and run shellcheck on every .sh
// file under scripts/. shellcheck and jq must be installed.
//
// How to use the scripts is in docs/deployment.md; what they protect and what
// they do not, in docs/security-model.md.
package deploy
