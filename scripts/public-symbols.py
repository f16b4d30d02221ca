#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print the functions the public header declares, one per line, sorted.

The ABI checks compare this list with the linker's version script
(src/libpagewire.map) and with what libpagewire.so.0 exports, so a
function added to the header without being exported (or exported without
being declared) fails the build's tests instead of a user's link.
"""
import re
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "include/pagewire/pagewire.h"
text = open(path, encoding="utf-8").read()
text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)          # comments
text = re.sub(r"^#(?:[^\n]*\\\n)*[^\n]*", "", text, flags=re.M)  # directives
names = set()
for m in re.finditer(r"^[a-z][^;{}()]*?\b(pw_\w+)\s*\(", text, flags=re.M):
    names.add(m.group(1))
print("\n".join(sorted(names)))
