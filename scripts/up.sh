#!/usr/bin/env bash
# `make up`: build lab (Pulumi stack) $1 — or finish it after an interrupted `pulumi up` (kill -9, power loss):
# `acklab recover` first clears a stale lock whose pulumi process is provably dead, drops interrupted creates
# from the checkpoint and removes what they left in the kernel; then `pulumi up` completes the lab.
# Run from the project folder with the Pulumi environment of the Makefile (backend, passphrase, PATH).
set -euo pipefail
lab=${1:?usage: scripts/up.sh LAB}
pulumi stack select --create "$lab"
acklab recover --lab "$lab"
pulumi up --yes --stack "$lab"
