#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: makes a fabtests build available at PREFIX. Uses FABTESTS when
# set, else builds fabtests 1.17.0 with build-fabtests.sh from the shared
# folder beside the checkout when it is there; otherwise the fabric tests
# skip with the reason.   build_fabtests.sh SRC_DIR PREFIX
set -uo pipefail
src=$1 prefix=$2
if [ -n "${FABTESTS:-}" ] && [ -x "$FABTESTS/bin/fi_msg" ]; then
	mkdir -p "$(dirname "$prefix")"
	ln -sfn "$FABTESTS" "$prefix"
	echo "fabtests from FABTESTS=$FABTESTS"
	exit 0
fi
script=$src/../shared/scripts/build-fabtests.sh
if [ ! -x "$script" ]; then
	echo "no fabtests: FABTESTS unset and no $script (the fabric tests skip)"
	exit 0
fi
"$script" "$prefix"
