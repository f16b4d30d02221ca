#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replace the text between <!-- NAME:begin --> and <!-- NAME:end --> of a
markdown file with standard input: the benchmark scripts' tables in
BENCHMARKS.md.

    md_section.py FILE NAME < table

Exit 0 with a note on stderr when the markers are missing (nothing
written), so that a run is not lost over its report.
"""
import sys


def main():
    md, name = sys.argv[1], sys.argv[2]
    table = sys.stdin.read().rstrip("\n")
    b, e = "<!-- %s:begin -->" % name, "<!-- %s:end -->" % name
    text = open(md).read()
    if b not in text or e not in text:
        sys.stderr.write("md_section.py: no %s markers in %s; table not written\n" % (name, md))
        return 0
    head, rest = text.split(b, 1)
    _, tail = rest.split(e, 1)
    open(md, "w").write(head + b + "\n" + table + "\n" + e + tail)
    sys.stderr.write("md_section.py: updated the %s table of %s\n" % (name, md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
