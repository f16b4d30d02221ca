#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fabtests' own driver over the pagewire provider, in its documented form
# with host names: runfabtests.sh -t quick -f pagewire.exclude pagewire
# 127.0.0.1 127.0.0.1. Both "hosts" are this machine: an ssh found first
# in PATH (ssh-local/) runs the commands here instead of through an sshd.
#
#   runfabtests.sh PROVIDER_DIR FABTESTS_PREFIX
#
# Passes when no test fails and every test that passed over pagewire when
# this was written still passes (a test that turned Notrun is a loss too).
# Exit: 0 passed, 77 skipped (no fabtests build), 1 failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
provdir=$1 prefix=$2
want_pass=64
if [ ! -x "$prefix/bin/runfabtests.sh" ]; then
	echo "SKIP: no fabtests in $prefix (set FABTESTS=PREFIX or provide ../shared/scripts/build-fabtests.sh)"
	exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export FI_PROVIDER_PATH=$provdir
export PATH=$here/ssh-local:$prefix/bin:$PATH
timeout 1500 runfabtests.sh -v -t quick -T 60 -f "$here/pagewire.exclude" \
	pagewire 127.0.0.1 127.0.0.1 >"$log" 2>&1
rc=$?
cat "$log"
pass=$(sed -n 's/^# Total Pass *\([0-9]*\)$/\1/p' "$log")
fail=$(sed -n 's/^# Total Fail *\([0-9]*\)$/\1/p' "$log")
if [ $rc != 0 ] || [ "${fail:-x}" != 0 ]; then
	echo "FAIL: runfabtests.sh exited $rc, ${fail:-?} failed"
	exit 1
fi
if [ "${pass:-0}" -lt $want_pass ]; then
	echo "FAIL: $pass passed, want $want_pass (a test that passed no longer runs)"
	exit 1
fi
echo "PASS: runfabtests.sh -t quick: $pass passed, 0 failed"
