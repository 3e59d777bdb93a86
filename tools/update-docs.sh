#!/usr/bin/env bash
# Regenerates the key table in experiments/README.md from the schema (genrelab config keys).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="${GENRELAB:-$root/build/genrelab}"
readme="$root/experiments/README.md"
table=$("$bin" config keys --markdown)
python3 - "$readme" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- keys:begin -->", "<!-- keys:end -->"
a, b = text.index(begin) + len(begin), text.index(end)
open(path, "w").write(text[:a] + "\n" + table + "\n" + text[b:])
PY
echo "updated $readme" >&2
