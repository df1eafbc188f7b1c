#!/usr/bin/env bash
# Packaging: install into a scratch prefix, then check the SONAME, that only
# public mbx_* symbols are exported, that a program builds against the
# installed library through pkg-config and through find_package(mbx), and
# that the README's example (its first C block) compiles and runs as shown.
#
#   bash tests/cli/install.sh <build-dir>
set -uo pipefail
build=$(cd "${1:-build}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@" >"$tmp/out" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/  /' "$tmp/out"
  fi
}

prefix=$tmp/prefix
check install cmake --install "$build" --prefix "$prefix"
lib=$(find "$prefix" -name 'libmbx.so.*.*' | head -1)
libdir=$(dirname "$lib")

soname_is_major() { objdump -p "$lib" | grep -q 'SONAME *libmbx.so.0$'; }
check soname soname_is_major

only_public_symbols() {
  local bad
  bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^mbx_' |
        grep -v '^_' || true)
  bad+=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep '^mbx__' || true)
  [ -z "$bad" ] || { echo "unexpected exports: $bad"; return 1; }
  # (grep -q would stop reading early: nm's SIGPIPE fails the pipeline)
  nm -D --defined-only "$lib" | grep ' mbx_send$' >/dev/null
}
check exports only_public_symbols

cat >"$tmp/app.c" <<'C'
#include <mbx/mbx.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    mbx_id box;
    mbx_msg *m = mbx_msg_new("K", "hi", 2);
    if (mbx_create(&box, NULL) || mbx_send(box, &m, 0) || mbx_recv(box, &m, 0))
        return 1;
    printf("%s %s\n", mbx_version(), mbx_msg_kind(m));
    mbx_msg_free(m);
    return strcmp(mbx_version(), MBX_VERSION_STRING) != 0;
}
C
with_pkg_config() {
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  cc -std=c11 -Wall -Werror "$tmp/app.c" -o "$tmp/app-pc" \
     $(pkg-config --cflags --libs mbx) &&
  LD_LIBRARY_PATH=$libdir "$tmp/app-pc" | grep -q '^0\.1\.0 K$'
}
check pkg-config with_pkg_config

with_find_package() {
  mkdir -p "$tmp/proj"
  cp "$tmp/app.c" "$tmp/proj/app.c"
  cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(app C)
find_package(mbx 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE mbx::mbx)
CM
  cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$prefix" &&
  cmake --build "$tmp/proj/build" &&
  LD_LIBRARY_PATH=$libdir "$tmp/proj/build/app" | grep -q '^0\.1\.0 K$'
}
check find_package with_find_package

readme_example() {
  # The first C block is the program; later ones are fragments.
  awk '/^```c$/ && !done {on=1; next} /^```$/ && on {on=0; done=1} on' \
    "$src/README.md" >"$tmp/readme.c"
  [ -s "$tmp/readme.c" ] || { echo "no C example in README.md"; return 1; }
  cc -std=c11 -Wall -Werror -I"$prefix/include" "$tmp/readme.c" \
     -o "$tmp/readme" -L"$libdir" -lmbx -lpthread &&
  LD_LIBRARY_PATH=$libdir "$tmp/readme" >"$tmp/readme.out" &&
  printf 'HELLO: world\nBYE: \n' | diff - "$tmp/readme.out"
}
check readme_example readme_example

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
