#!/usr/bin/env bash
# `buf breaking`: fails when proto/ as it is in the working tree breaks compatibility with the
# contract as it was at a base commit, under the rules in proto/buf.yaml (FILE: no field,
# message, enum value, RPC or file removed, renamed or renumbered; no type changed).
#
# The base is, in order:
#   1. $BUF_BREAKING_AGAINST (any git ref), when set;
#   2. the merge-base of HEAD with main (or origin/main) when HEAD is not on main: the whole of
#      a branch's change is checked, however many commits it has;
#   3. HEAD~1: on main (and in CI's clone of it) the commit that just landed is checked.
# A shallow clone lacks HEAD~1: the script fetches one more commit of history (git fetch
# --deepen=1) and fails if it still cannot find it, rather than pass without checking. Only
# when HEAD is the repository's first commit, or proto/ did not exist at the base, is there
# nothing to compare against: it says so and passes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-clients/node/node_modules/.bin/buf}

resolve() { git rev-parse --verify --quiet "$1^{commit}"; }

base=""
if [[ -n "${BUF_BREAKING_AGAINST:-}" ]]; then
  base=$(resolve "$BUF_BREAKING_AGAINST") || { echo "buf-breaking: BUF_BREAKING_AGAINST=$BUF_BREAKING_AGAINST is not a commit" >&2; exit 2; }
  why="BUF_BREAKING_AGAINST=$BUF_BREAKING_AGAINST"
else
  head=$(git rev-parse HEAD)
  for main in main origin/main; do
    if resolve "$main" >/dev/null && merge_base=$(git merge-base HEAD "$main" 2>/dev/null) \
      && [[ "$merge_base" != "$head" ]]; then
      base=$merge_base
      why="the merge-base of HEAD with $main"
      break
    fi
  done
  if [[ -z "$base" ]]; then
    if ! base=$(resolve HEAD~1) && [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
      echo "buf-breaking: shallow clone without HEAD~1; fetching one more commit"
      git fetch --quiet --deepen=1 2>/dev/null || true
      base=$(resolve HEAD~1) || {
        echo "buf-breaking: HEAD~1 is not in this shallow clone and could not be fetched;" \
          "fetch more history or set BUF_BREAKING_AGAINST to a ref" >&2
        exit 1
      }
    fi
    if [[ -z "$base" ]]; then
      echo "buf-breaking: HEAD is the first commit: no earlier contract to break (skipped)"
      exit 0
    fi
    why="HEAD~1"
  fi
fi

if ! git cat-file -e "$base:proto/buf.yaml" 2>/dev/null; then
  echo "buf-breaking: proto/ did not exist at $why ($(git rev-parse --short "$base")): nothing to compare (skipped)"
  exit 0
fi
against=$(mktemp -d)
trap 'rm -rf "$against"' EXIT
git archive "$base" proto | tar -x -C "$against"
echo "buf-breaking: proto/ against $why ($(git rev-parse --short "$base"))"
"$BUF" breaking proto --against "$against/proto"
