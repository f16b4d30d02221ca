#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Removes what one `cmake --install` put in place, as its manifest lists it
# (under DESTDIR), then the directories of ours that are
# left empty. Directories shared with other software are never removed.
set -euo pipefail
# The manifest lists paths without DESTDIR: give the same DESTDIR as the
# install's (the Makefile passes its own).
manifest=${1:?usage: uninstall.sh install_manifest.txt [DESTDIR]}
destdir=${2:-}
n=0
while IFS= read -r f || [ -n "$f" ]; do
	[ -n "$f" ] || continue
	f=$destdir$f
	if [ -e "$f" ] || [ -L "$f" ]; then
		rm -f -- "$f"
		n=$((n + 1))
	fi
	# only our own directories (.../pagewire and below), deepest first
	d=$(dirname -- "$f")
	while [[ "$d" == */pagewire || "$d" == */pagewire/* ]]; do
		[ "$d" != "$destdir" ] || break
		rmdir -- "$d" 2>/dev/null || break
		d=$(dirname -- "$d")
	done
done < "$manifest"
echo "uninstall: removed $n files listed in $manifest"
