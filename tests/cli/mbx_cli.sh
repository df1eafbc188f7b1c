#!/usr/bin/env bash
# The mbx command-line tool against real host mailslots: listen/send/ls/call
# round trips, body printing (text and hex), error messages and exit
# statuses, --help, and a clean stop on SIGINT/SIGTERM.
#
#   bash tests/cli/mbx_cli.sh <build-dir>
#
# Runs in its own runtime directory (MBX_RUNTIME_DIR) with names of its own,
# so it may run beside other tests. Readiness is awaited by polling `mbx ls`
# (at most 5 s), never by sleeping for a guessed time. Stops at the first
# failure and says what differed; the last line is "N passed, 0 failed".
set -euo pipefail

build=$(cd "${1:-build}" && pwd)
mbx=$build/tools/mbx/mbx
if [ ! -x "$mbx" ]; then
  echo "FAIL: no executable $mbx"
  exit 1
fi

tmp=$(mktemp -d)
MBX_RUNTIME_DIR=$(mktemp -d)
export MBX_RUNTIME_DIR
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp" "$MBX_RUNTIME_DIR"
}
trap cleanup EXIT

passed=0
tab=$'\t'
tag=cli$$ # a prefix for this run's names
# The timestamp listen prints: local ISO-8601 time with milliseconds and
# the UTC offset.
time_re='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}([+-][0-9]{2}:[0-9]{2})? '

pass() {
  echo "PASS $1"
  passed=$((passed + 1))
}

# Prints why the test failed, with any files named after the message, and
# stops the script.
fail() {
  local msg=$1 f
  shift
  echo "FAIL: $msg"
  for f in "$@"; do
    echo "  --- $f:"
    if [ -s "$f" ]; then sed 's/^/  | /' "$f"; else echo "  | (empty)"; fi
  done
  exit 1
}

# run CMD...: runs a command, keeping its stdout in $tmp/out, its stderr in
# $tmp/err and its exit status in $status. A command that hangs is killed
# after 20 s (status 124), so a regression fails instead of blocking.
run() {
  status=0
  timeout --kill-after=5 20 "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
}

# expect_status WANT WHAT: checks the status of the last `run`.
expect_status() {
  if [ "$status" -ne "$1" ]; then
    fail "$2: exit status $status, expected $1" "$tmp/out" "$tmp/err"
  fi
}

# expect_file FILE EXPECTED WHAT: FILE's content equals EXPECTED exactly.
expect_file() {
  if ! diff -u <(printf '%s' "$2") "$1" >"$tmp/diff"; then
    fail "$3: output differs (- expected, + actual)" "$tmp/diff"
  fi
}

# expect_err_line REGEX WHAT: stderr of the last `run` is one line matching
# REGEX (extended).
expect_err_line() {
  if [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -Eq -- "$1" "$tmp/err"; then
    fail "$2: stderr is not one line matching /$1/" "$tmp/err"
  fi
}

# expect_listened FILE EXPECTED WHAT: a listener's output FILE, with each
# line's timestamp replaced by "T", equals EXPECTED; every line must start
# with a well-formed timestamp. A call from another process may carry the
# caller's private reply address (//./.reply/PID.ID) as its sender: that
# prints as "-" here, as a call without one does.
expect_listened() {
  if grep -Evq "$time_re" "$1"; then
    fail "$3: a line has no ISO-8601 timestamp" "$1"
  fi
  sed -E -e "s/$time_re/T /" \
    -e 's,^(T [^ ]+) //\./\.reply/[0-9]+\.[0-9a-f]+( |$),\1 -\2,' \
    "$1" >"$1.masked"
  expect_file "$1.masked" "$2" "$3"
}

# start_listener NAME OUT ARGS...: starts `mbx listen NAME ARGS...` in the
# background with stdout in OUT and stderr in OUT.err, sets $listener to its
# pid and waits until `mbx ls` shows the name read by that pid.
start_listener() {
  local name=$1 out=$2
  shift 2
  "$mbx" listen "$name" "$@" >"$out" 2>"$out.err" &
  listener=$!
  pids+=("$listener")
  wait_listed "$name" "$listener" "$out.err"
}

# wait_listed NAME PID ERRFILE: polls `mbx ls --json` until NAME appears
# with reader PID, at most 5 s; fails early if PID exits.
wait_listed() {
  local name=$1 pid=$2 i json
  for ((i = 0; i < 100; i++)); do
    json=$("$mbx" ls --json)
    if grep -Fq "{\"name\":\"$name\",\"pid\":$pid," <<<"$json"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || true
      fail "listener of $name exited before it was listed" "$3"
    fi
    sleep 0.05
  done
  fail "$name did not appear in mbx ls within 5 s" "$3"
}

# finish PID WHAT: waits for a background process (at most 10 s, then kills
# it) and sets $status to its exit status.
finish() {
  local pid=$1 i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" || true
    fail "$2: still running after 10 s"
  fi
  status=0
  wait "$pid" || status=$?
}

# not_listed NAME: `mbx ls` (table and JSON) does not show NAME.
not_listed() {
  run "$mbx" ls
  expect_status 0 "mbx ls"
  if awk -v n="$1" 'NR > 1 && $1 == n { found = 1 } END { exit !found }' \
    "$tmp/out"; then
    fail "mbx ls still shows $1" "$tmp/out"
  fi
  run "$mbx" ls --json
  if grep -Fq "\"name\":\"$1\"" "$tmp/out"; then
    fail "mbx ls --json still shows $1" "$tmp/out"
  fi
}

# --- listen --count 3: two sends, one of them from stdin ---------------------
name=$tag-basic
start_listener "$name" "$tmp/basic" --count 3
run "$mbx" send "$name" --urgent --kind GREETING hello "big   world"
expect_status 0 "send with TEXT"
slot_bs="\\\\.\\mailslot\\$name" # the Windows form: \\.\mailslot\NAME
status=0
printf 'line one\n\tline two\n' |
  "$mbx" send "$slot_bs" --from "//./$tag-reply" \
    >"$tmp/out" 2>"$tmp/err" || status=$?
expect_status 0 "send from stdin"
finish "$listener" "listen --count 3"
expect_status 0 "listen --count 3"
expect_listened "$tmp/basic" "T GREETING - hello big   world
T - //./$tag-reply line one
T - //./$tag-reply ${tab}line two
" "listen --count 3"
pass "listen --count 3 prints kind, sender and body of each message"
not_listed "$name"
pass "a listener that exited is no longer listed"

# --- bodies: text, UTF-8, hex ----------------------------------------------
name=$tag-bodies
start_listener "$name" "$tmp/bodies" --count 6
status=0
printf '\x01\x02\xff\nh\xc3\xa9llo w\xc3\xb6rld\n\n\xc0\xaf\nhex:41\ncr\r\n' |
  "$mbx" send "//./$name" >"$tmp/out" 2>"$tmp/err" || status=$?
expect_status 0 "send binary lines"
finish "$listener" "listen bodies"
expect_status 0 "listen bodies"
expect_listened "$tmp/bodies" "T - - hex:0102ff
T - - héllo wörld
T - -
T - - hex:c0af
T - - hex:6865783a3431
T - - hex:63720d
" "body printing"
pass "bodies print as text (UTF-8, tabs) or hex (binary, controls, hex:)"

# --- ls ------------------------------------------------------------------------
name=$tag-ls
start_listener "$name" "$tmp/ls" --mode 0660 --ring-size 64K
run "$mbx" ls
expect_status 0 "mbx ls"
if ! head -1 "$tmp/out" | grep -Eq '^NAME +PID +QUEUED +BYTES +RING +MODE$'; then
  fail "mbx ls header" "$tmp/out"
fi
if ! grep -Eq "^$name +$listener +0 +0 +65536 +0660\$" "$tmp/out"; then
  fail "mbx ls does not show $name with pid $listener, ring 65536, mode 0660" \
    "$tmp/out"
fi
run "$mbx" ls --json
expect_status 0 "mbx ls --json"
want="{\"name\":\"$name\",\"pid\":$listener,\"queued\":0,\"bytes\":0,\"ring\":65536,\"mode\":\"0660\",\"dropped\":0}"
if ! grep -Fxq "$want" "$tmp/out"; then
  fail "mbx ls --json has no line $want" "$tmp/out"
fi
pass "ls shows the listener with its pid, ring size and mode"

# --- SIGINT / SIGTERM: clean exit, the name is free again ----------------------
kill -INT "$listener"
finish "$listener" "listen after SIGINT"
expect_status 0 "listen after SIGINT"
not_listed "$name"
start_listener "$name" "$tmp/again" --count 1
run "$mbx" send "$name" again
expect_status 0 "send to the second listener"
finish "$listener" "second listen"
expect_status 0 "second listen"
expect_listened "$tmp/again" "T - - again
" "second listen"
pass "SIGINT stops a listener with status 0 and frees its name"

start_listener "$name" "$tmp/term"
kill -TERM "$listener"
finish "$listener" "listen after SIGTERM"
expect_status 0 "listen after SIGTERM"
not_listed "$name"
pass "SIGTERM stops a listener with status 0"

# --- call ----------------------------------------------------------------------
name=$tag-echo
start_listener "$name" "$tmp/echo" --echo
echo_pid=$listener
run "$mbx" call "$name" --kind PING are you there
expect_status 0 "call against listen --echo"
expect_file "$tmp/out" "are you there
" "call reply"
run "$mbx" call "//./$name" --timeout 2000 -- -x
expect_status 0 "call with a dash word"
expect_file "$tmp/out" "-x
" "call reply"
pass "call prints the reply of listen --echo"

# A second reader of the same name is refused (the timeout only bounds the
# test if it were not).
run "$mbx" listen "$name" --timeout 5000
expect_status 1 "second listen on a live name"
expect_err_line "^mbx listen: //\./$name: .+ \(MBX_EEXIST\)\$" \
  "second listen on a live name"
pass "listen on a name already read exits 1 with MBX_EEXIST"

kill -INT "$echo_pid"
finish "$echo_pid" "listen --echo"
expect_status 0 "listen --echo after SIGINT"
expect_listened "$tmp/echo" "T PING - are you there
T - - -x
" "listen --echo output"
pass "listen --echo prints the calls it answers"

# A call that the reader leaves unanswered ends at once, not at the timeout.
name=$tag-mute
start_listener "$name" "$tmp/mute" --count 1
run "$mbx" call "$name" --timeout 60000 hello
expect_status 1 "call left unanswered"
expect_err_line "^mbx call: //\./$name: .+ \(MBX_ECLOSED\)\$" \
  "call left unanswered"
finish "$listener" "listen without --echo"
expect_status 0 "listen without --echo"
expect_listened "$tmp/mute" "T - - hello
" "listen without --echo"
pass "a call left unanswered fails with MBX_ECLOSED"

# While a call waits, the caller's reply mailslot (.reply/...) is listed by
# ls --all only. The reader is stopped so that the call stays pending.
name=$tag-stopped
start_listener "$name" "$tmp/stopped" --count 1
reader=$listener
kill -STOP "$reader"
"$mbx" call "$name" --timeout 20000 wait >"$tmp/caller" 2>"$tmp/caller.err" &
caller=$!
pids+=("$caller")
for ((i = 0; ; i++)); do
  json=$("$mbx" ls --all --json)
  grep -Eq "^\{\"name\":\"\.reply/[^\"]+\",\"pid\":$caller," <<<"$json" && break
  [ "$i" -lt 100 ] || fail "no .reply/ mailslot of pid $caller in ls --all" \
    <(echo "$json")
  sleep 0.05
done
run "$mbx" ls
if grep -q '^\.reply/' "$tmp/out"; then
  fail "mbx ls without --all shows a .reply/ mailslot" "$tmp/out"
fi
run "$mbx" ls --all
grep -Eq "^\.reply/[^ ]+ +$caller " "$tmp/out" ||
  fail "mbx ls --all does not show the .reply/ mailslot of $caller" "$tmp/out"
kill -CONT "$reader"
finish "$caller" "call to a stopped reader"
expect_status 1 "call left unanswered by a resumed reader"
finish "$reader" "resumed reader"
expect_status 0 "resumed reader"
not_listed "$name"
run "$mbx" ls --all --json
[ ! -s "$tmp/out" ] || fail "mailslots left after the call" "$tmp/out"
pass "a pending caller's .reply/ mailslot shows with ls --all only"

# --- errors ----------------------------------------------------------------------
name=$tag-missing
run "$mbx" send "$name" hello
expect_status 1 "send to a missing name"
expect_err_line "^mbx send: //\./$name: .+ \(MBX_ENOENT\)\$" \
  "send to a missing name"
run "$mbx" call "$name" hello
expect_status 1 "call to a missing name"
expect_err_line "^mbx call: //\./$name: .+ \(MBX_ENOENT\)\$" \
  "call to a missing name"
pass "send and call to a missing name exit 1 with MBX_ENOENT"

run "$mbx" listen "$tag-quiet" --timeout 200
expect_status 1 "listen --timeout"
expect_err_line "^mbx listen: //\./$tag-quiet: .+ \(MBX_ETIMEDOUT\)\$" \
  "listen --timeout"
not_listed "$tag-quiet"
pass "listen --timeout exits 1 with MBX_ETIMEDOUT and frees the name"

# usage_error WHAT CMD...: CMD exits 2 with a message and the usage on
# stderr, and nothing on stdout.
usage_error() {
  local what=$1
  shift
  run "$@"
  expect_status 2 "$what"
  if [ -s "$tmp/out" ] || ! grep -q '^usage: mbx' "$tmp/err"; then
    fail "$what: expected the usage on stderr only" "$tmp/out" "$tmp/err"
  fi
}
usage_error "no command" "$mbx"
usage_error "unknown command" "$mbx" bogus
usage_error "unknown global option" "$mbx" --bogus
usage_error "send: unknown option" "$mbx" send "$name" --bogus hi
usage_error "send: no name" "$mbx" send
usage_error "send: bad timeout" "$mbx" send "$name" --timeout soon hi
usage_error "send: kind too long" "$mbx" send "$name" \
  --kind "$(printf 'k%.0s' {1..256})" hi
usage_error "listen: unknown short option" "$mbx" listen "$name" -z
usage_error "listen: missing argument" "$mbx" listen "$name" --count
usage_error "listen: count 0" "$mbx" listen "$name" --count 0
usage_error "listen: bad mode" "$mbx" listen "$name" --mode 0644
usage_error "listen: ring too small" "$mbx" listen "$name" --ring-size 1K
usage_error "listen: no name" "$mbx" listen
usage_error "listen: two names" "$mbx" listen a b
usage_error "ls: unknown option" "$mbx" ls --long
usage_error "ls: argument" "$mbx" ls extra
usage_error "ls: unknown short option" "$mbx" ls -aq
usage_error "call: no text" "$mbx" call "$name"
usage_error "call: unknown option" "$mbx" call "$name" --urgent hi
# expect_first_err LINE: the first line of stderr says what was wrong.
expect_first_err() {
  if [ "$(head -n 1 "$tmp/err")" != "$1" ]; then
    fail "stderr does not start with: $1" "$tmp/err"
  fi
}
run "$mbx" send "$name" --bogus hi
expect_first_err "mbx send: unknown option --bogus"
run "$mbx" listen "$name" --count
expect_first_err "mbx listen: option --count needs an argument"
run "$mbx" ls -x
expect_first_err "mbx ls: unknown option -x"
pass "bad command lines exit 2 with the usage on stderr"

for cmd in listen send ls call; do
  run "$mbx" "$cmd" --help
  expect_status 0 "mbx $cmd --help"
  if ! grep -q "^usage: mbx $cmd" "$tmp/out" || [ -s "$tmp/err" ]; then
    fail "mbx $cmd --help: expected its usage on stdout only" \
      "$tmp/out" "$tmp/err"
  fi
done
run "$mbx" --help
expect_status 0 "mbx --help"
for cmd in listen send ls call; do
  grep -Eq "^  $cmd " "$tmp/out" || fail "mbx --help does not list $cmd" \
    "$tmp/out"
done
run "$mbx" --version
expect_status 0 "mbx --version"
grep -Eq '^mbx [0-9]+\.[0-9]+\.[0-9]+' "$tmp/out" ||
  fail "mbx --version" "$tmp/out"
pass "--help for mbx and each command, and --version, exit 0"

# Every listener is gone and nothing was left behind in the listing.
run "$mbx" ls --all --json
expect_status 0 "final mbx ls"
[ ! -s "$tmp/out" ] || fail "mailslots left after the test" "$tmp/out"
pass "no mailslot left"

echo "$passed passed, 0 failed"
