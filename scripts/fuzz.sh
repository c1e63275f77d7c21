#!/usr/bin/env bash
# Runs every native fuzz target in the module for a bounded time each
# (FUZZTIME, default 10s), one after another. The committed corpora under
# */testdata/fuzz/ are replayed by plain `go test` as well; this script looks
# for new inputs. A failing input is written to testdata/fuzz/<Target>/ by Go;
# commit it with the fix so it stays in the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"

targets=$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . |
	while read -r file; do
		pkg="./$(dirname "${file#./}")"
		grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed "s|^func |$pkg |"
	done | sort -u)

n=0
while read -r pkg target; do
	[ -n "$target" ] || continue
	echo "== $pkg $target ($FUZZTIME)"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
	n=$((n + 1))
done <<< "$targets"
echo "fuzzed $n targets for $FUZZTIME each"
