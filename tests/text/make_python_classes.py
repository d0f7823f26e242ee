#!/usr/bin/env python3
"""Writes python_classes.txt: the code points that Python's `re` matches with \\w and with \\s
(str patterns), as ranges, so that the C++ tokenizer's ICU definitions are checked against the
reference tokenizer's own. Run: python3 tests/text/make_python_classes.py > tests/text/python_classes.txt"""
import re
import sys
import unicodedata

def ranges(pattern):
    regex = re.compile(pattern)
    out, start = [], None
    for cp in range(0x110000 + 1):
        hit = cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF and regex.match(chr(cp)) is not None
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            out.append((start, cp - 1))
            start = None
    return out

print(f"# python {sys.version.split()[0]}, unicode {unicodedata.unidata_version}")
for name, pattern in (("w", r"\w"), ("s", r"\s")):
    for a, b in ranges(pattern):
        print(f"{name} {a:x} {b:x}")
