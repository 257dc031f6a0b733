#!/usr/bin/env bash
# `make up`'s Pulumi step: build lab (Pulumi stack) $1 — or finish it after an interrupted `pulumi up` (kill -9,
# power loss). `acklab recover` goes first, because a kill can leave the stack unreadable to every pulumi
# command: it clears a stale lock whose pulumi process is provably dead, repairs an interrupted checkpoint
# write, drops interrupted creates from the checkpoint and removes what they left in the kernel; then
# `pulumi up` completes the lab. Run from the project folder with the Makefile's Pulumi environment.
set -euo pipefail
lab=${1:?usage: scripts/up.sh LAB}
acklab recover --lab "$lab"
pulumi stack select --create "$lab"
pulumi up --yes --stack "$lab"
