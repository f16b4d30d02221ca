#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Lint the mdoc(7) man pages of pagewire.
#
# Usage: lint.sh [MANDIR [HEADER]]
#   MANDIR  directory of the pages (*.1, *.3, *.7); default: this script's
#   HEADER  the public header; default: MANDIR/../../include/pagewire/pagewire.h
#           (relative to this script when MANDIR is not given)
#
# Fails (exit 1, listing every problem) when a page
#  - gets a WARNING, ERROR or UNSUPP message from `mandoc -Tlint -W warning`
#    (STYLE messages, such as "referenced manual not found", are accepted);
#  - has a NAME section lexgrog(1) cannot parse, as source or rendered by
#    `mandoc -Tman` (what is installed);
#  - makes `man --warnings` complain about its rendered form (when man(1)
#    is installed);
#  - has a .Dt other than its file name in upper case, or an .Os with an
#    argument;
# or when a function declared in HEADER is not an .Nm of the NAME section of
# exactly one section-3 page, or a section-3 page names (.Nm) a function the
# header does not declare.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mandir=${1:-$here}
header=${2:-$here/../../include/pagewire/pagewire.h}

fail=0
problem() {
	printf '%s\n' "$*" >&2
	fail=1
}

for tool in mandoc lexgrog; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "lint.sh: $tool not found (Debian packages mandoc, man-db)" >&2
		exit 1
	fi
done
[ -d "$mandir" ] || { echo "lint.sh: no directory $mandir" >&2; exit 1; }
[ -f "$header" ] || { echo "lint.sh: no header $header" >&2; exit 1; }

shopt -s nullglob
pages=("$mandir"/*.[137])
shopt -u nullglob
[ ${#pages[@]} -gt 0 ] || { echo "lint.sh: no pages in $mandir" >&2; exit 1; }

have_man=0
command -v man >/dev/null 2>&1 && have_man=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The names in a page's NAME section (.Nm lines up to the next .Sh).
name_section() {
	awk '
		/^\.Sh[ \t]/ { in_name = ($2 == "NAME"); next }
		in_name && /^\.Nm[ \t]+[A-Za-z_]/ { print $2 }
	' "$1"
}

for page in "${pages[@]}"; do
	file=$(basename "$page")
	base=${file%.*}
	sect=${file##*.}

	# mandoc: anything at WARNING level or above
	set +e
	out=$(mandoc -Tlint -W warning "$page" 2>&1)
	rc=$?
	set -e
	msgs=$(printf '%s\n' "$out" | grep -Ev '^$|: STYLE: |outdated mandoc\.db' || true)
	if [ -n "$msgs" ] || [ "$rc" -ge 2 ]; then
		problem "$file: mandoc -Tlint (exit $rc):"
		if [ -n "$msgs" ]; then problem "$msgs"; fi
	fi

	# header lines
	dt=$(awk '/^\.Dt[ \t]/ { print $2 " " $3; exit }' "$page")
	want="$(printf '%s' "$base" | tr '[:lower:]' '[:upper:]') $sect"
	[ "$dt" = "$want" ] || problem "$file: .Dt is '$dt', expected '$want'"
	grep -Eq '^\.Os[[:space:]]*$' "$page" ||
		problem "$file: no .Os line without argument"

	# NAME: the file's own name must be among its .Nm names
	names=$(name_section "$page")
	if [ -z "$names" ]; then
		problem "$file: no .Nm in the NAME section"
	elif ! printf '%s\n' "$names" | grep -qx -- "$base"; then
		problem "$file: '$base' is not an .Nm of its NAME section"
	fi

	# lexgrog, on the source and on the rendered page
	rendered=$tmp/$file
	if ! mandoc -Tman "$page" >"$rendered" 2>"$tmp/err"; then
		problem "$file: mandoc -Tman failed: $(cat "$tmp/err")"
		continue
	fi
	for src in "$page" "$rendered"; do
		set +e
		lg=$(lexgrog "$src" 2>&1)
		rc=$?
		set -e
		if [ "$rc" -ne 0 ] || printf '%s\n' "$lg" | grep -q 'parse failed'; then
			problem "$file: lexgrog cannot parse the NAME section of $src: $lg"
		fi
	done

	# man --warnings on what gets installed
	if [ "$have_man" = 1 ]; then
		set +e
		warn=$(MANWIDTH=80 man --warnings -P cat -l "$rendered" 2>&1 >/dev/null)
		rc=$?
		set -e
		if [ "$rc" -ne 0 ] || [ -n "$warn" ]; then
			problem "$file: man --warnings (exit $rc): $warn"
		fi
	fi

	if [ "$sect" = 3 ] && [ -n "$names" ]; then
		printf '%s\n' "$names" | sed "s|\$| $file|" >>"$tmp/nm3"
	fi
done
[ "$have_man" = 1 ] || echo "lint.sh: man(1) not found: man --warnings not checked" >&2

# The functions the header declares: identifiers pw_* followed by "(",
# outside comments (macros are upper case and not matched).
tr '\n' ' ' <"$header" |
	sed -E 's#/\*([^*]|\*+[^*/])*\*+/# #g' |
	grep -oE '\bpw_[a-z0-9_]+[[:space:]]*\(' |
	sed -E 's/[[:space:]]*\($//' | sort -u >"$tmp/funcs"
[ -s "$tmp/funcs" ] || problem "no function declarations found in $header"

touch "$tmp/nm3"
while read -r fn; do
	n=$(awk -v f="$fn" '$1 == f' "$tmp/nm3" | wc -l)
	if [ "$n" -eq 0 ]; then
		problem "$fn (declared in $(basename "$header")) is not an .Nm of any section-3 page"
	elif [ "$n" -gt 1 ]; then
		problem "$fn is an .Nm of more than one section-3 page: $(awk -v f="$fn" '$1 == f { print $2 }' "$tmp/nm3" | tr '\n' ' ')"
	fi
done <"$tmp/funcs"
while read -r nm file; do
	grep -qx -- "$nm" "$tmp/funcs" ||
		problem "$file: .Nm $nm is not a function of $(basename "$header")"
done <"$tmp/nm3"

if [ "$fail" -ne 0 ]; then
	echo "lint.sh: man pages in $mandir FAILED" >&2
	exit 1
fi
echo "lint.sh: ${#pages[@]} pages OK ($(wc -l <"$tmp/funcs") functions documented)"
