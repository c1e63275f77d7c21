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

# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" when -fuzztime runs out, having found nothing
# (golang/go#75804, fixed in Go 1.27). A real finding always writes its
# input first ("Failing input written to"), so only that bare failure is
# retried, at most twice.
fuzz() { # fuzz PKG TARGET
	local out attempt
	for attempt in 1 2 3; do
		if out=$(go test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" "$1" 2>&1); then
			printf '%s\n' "$out"
			return 0
		fi
		printf '%s\n' "$out"
		if ! grep -q 'context deadline exceeded' <<<"$out" || grep -q 'Failing input written to' <<<"$out"; then
			return 1
		fi
		echo "== $1 $2: the coordinator's end-of-run race (golang/go#75804), nothing found; again ($attempt of 3)"
	done
	return 1
}

n=0
while read -r pkg target; do
	[ -n "$target" ] || continue
	echo "== $pkg $target ($FUZZTIME)"
	fuzz "$pkg" "$target"
	n=$((n + 1))
done <<< "$targets"
echo "fuzzed $n targets for $FUZZTIME each"
