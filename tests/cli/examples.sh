#!/usr/bin/env bash
# Runs every example under <build-dir>/examples/ and checks that it exits 0
# and prints exactly examples/expected/<name>.txt on stdout.
#
#   bash tests/cli/examples.sh <build-dir> [name...]
#
# Each example runs under a time limit (MBX_EXAMPLE_TIMEOUT seconds, default
# 60). Host mailslots live in a fresh MBX_RUNTIME_DIR per example, under a
# temporary directory, so the examples neither see nor disturb the user's
# mailslots (or another run of this script). The network examples keep
# their traffic on the loopback interface, on ports and in domains of their
# own; the network settings of the environment are cleared so that they
# run the same everywhere. The last line is "N passed, N failed"; the exit
# status is non-zero if any example failed.
set -uo pipefail
unset MBX_DOMAIN MBX_HOSTNAME MBX_GROUP MBX_PORT MBX_IFACE MBX_KEY_FILE

if [ $# -lt 1 ]; then
  echo "usage: $0 <build-dir> [name...]" >&2
  exit 2
fi
build=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
expected_dir=$here/../../examples/expected
bin_dir=$build/examples
limit=${MBX_EXAMPLE_TIMEOUT:-60}

if [ ! -d "$bin_dir" ]; then
  echo "examples were not built (no $bin_dir): nothing to check"
  echo "0 passed, 0 failed"
  exit 0
fi

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in "$expected_dir"/*.txt; do
    names+=("$(basename "$f" .txt)")
  done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# Prints why an example failed, with its stderr, and counts it.
fail() {
  echo "FAIL $1: $2"
  if [ -s "$work/stderr" ]; then
    sed 's/^/  stderr: /' "$work/stderr"
  fi
  failed=$((failed + 1))
}

# Prints the pkg-config package an optional example needs, or nothing.
optional_dependency() {
  case $1 in
  libuv_loop | dispatch_libuv) echo libuv ;;
  dispatch_libevent) echo libevent ;;
  esac
}

for name in "${names[@]}"; do
  exe=$bin_dir/$name
  want=$expected_dir/$name.txt
  if [ ! -x "$exe" ]; then
    # The libuv and libevent examples are optional: each is built only
    # when its library is there.
    dep=$(optional_dependency "$name")
    if [ -n "$dep" ] && ! pkg-config --exists "$dep" 2>/dev/null; then
      echo "SKIP $name: $dep is not installed"
      continue
    fi
    : >"$work/stderr"
    fail "$name" "no executable $exe"
    continue
  fi
  if [ ! -f "$want" ]; then
    : >"$work/stderr"
    fail "$name" "no expected output $want"
    continue
  fi
  rundir=$work/run/$name
  mkdir -p "$rundir"
  MBX_RUNTIME_DIR=$rundir timeout --kill-after=5 "$limit" "$exe" \
    >"$work/stdout" 2>"$work/stderr"
  status=$?
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    fail "$name" "did not finish within ${limit}s"
  elif [ $status -ne 0 ]; then
    fail "$name" "exit status $status"
  elif ! diff -u "$want" "$work/stdout" >"$work/diff"; then
    fail "$name" "stdout differs from $want"
    sed 's/^/  /' "$work/diff"
  else
    echo "PASS $name"
    passed=$((passed + 1))
  fi
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
