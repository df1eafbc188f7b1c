#!/usr/bin/env bash
# The mbx command-line tool against real host mailslots: listen/send/ls/call
# round trips, body printing (text and hex), error messages and exit
# statuses, --help, and a clean stop on SIGINT/SIGTERM; and against network
# mailslots on the loopback interface: keygen, listen (text and JSON) with
# and without a key, send, call, spy.
#
#   bash tests/cli/mbx_cli.sh <build-dir>
#
# Runs in its own runtime directory (MBX_RUNTIME_DIR) with names of its own,
# so it may run beside other tests; network traffic uses a multicast group,
# port and domain of its own. Readiness is awaited by polling `mbx ls`, or a
# listener's "listening" line (at most 5 s), never by sleeping for a guessed
# time. Stops at the first
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

# expect_listened FILE EXPECTED WHAT [sort]: a listener's output FILE, with
# each line's timestamp replaced by "T", equals EXPECTED; every line must
# start with a well-formed timestamp. A call from another process may carry
# the caller's private reply address (//./.reply/PID.ID) as its sender: that
# prints as "-" here, as a call without one does. With "sort", the lines are
# compared in sorted order (EXPECTED is given sorted): network messages from
# different processes may arrive in either order.
expect_listened() {
  if grep -Evq "$time_re" "$1"; then
    fail "$3: a line has no ISO-8601 timestamp" "$1"
  fi
  sed -E -e "s/$time_re/T /" \
    -e 's,^(T [^ ]+) //\./\.reply/[0-9]+\.[0-9a-f]+( |$),\1 -\2,' \
    "$1" >"$1.masked"
  if [ "${4:-}" = sort ]; then
    LC_ALL=C sort -o "$1.masked" "$1.masked"
  fi
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

# --- network mailslots ---------------------------------------------------------
# Traffic stays on the loopback interface, in a group, port and domain of
# this run's own, so that runs in parallel do not see each other's messages.
export MBX_IFACE=lo
export MBX_GROUP=239.254.$((($$ >> 8) % 256)).$(($$ % 256))
export MBX_PORT=$((20000 + $$ % 30000))
export MBX_DOMAIN=$tag
unset MBX_KEY_FILE MBX_HOSTNAME

# --- keygen ---
key=$tmp/key
run "$mbx" keygen "$key"
expect_status 0 "keygen"
[ "$(stat -c %a "$key")" = 600 ] || fail "keygen: mode $(stat -c %a "$key")"
grep -Eqx '[0-9a-f]{64}' "$key" || fail "keygen: not 64 hex digits" "$key"
cp "$key" "$tmp/key.before"
run "$mbx" keygen "$key"
expect_status 1 "keygen over an existing file"
expect_err_line "^mbx keygen: $key: .+ \(MBX_EEXIST\)\$" \
  "keygen over an existing file"
cmp -s "$key" "$tmp/key.before" || fail "keygen overwrote $key"
run "$mbx" keygen "$tmp/no/such/dir/key"
expect_status 1 "keygen in a missing directory"
pass "keygen writes a 0600 key and refuses to overwrite a file"

# start_net_listener OUT ARGS...: starts `mbx listen ARGS...` in the
# background with stdout in OUT and stderr in OUT.err, sets $listener to
# its pid and waits until it says on stderr that it listens.
start_net_listener() {
  local out=$1
  shift
  "$mbx" listen "$@" >"$out" 2>"$out.err" &
  listener=$!
  pids+=("$listener")
  wait_line "$out.err" '^mbx listen: listening on ' "$listener"
}

# wait_line FILE REGEX PID: polls until FILE has a line matching REGEX
# (extended), at most 5 s; fails early if PID exits first.
wait_line() {
  local i
  for ((i = 0; i < 100; i++)); do
    grep -Eqs -- "$2" "$1" && return 0
    if ! kill -0 "$3" 2>/dev/null; then
      grep -Eqs -- "$2" "$1" && return 0
      wait "$3" || true
      fail "pid $3 exited before writing /$2/" "$1"
    fi
    sleep 0.05
  done
  fail "no line /$2/ within 5 s" "$1"
}

# net_send HOST ARGS...: `mbx send ARGS...` as host HOST, with stdin.
net_send() {
  local host=$1
  shift
  status=0
  MBX_HOSTNAME=$host "$mbx" send "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
  expect_status 0 "send $*"
  [ ! -s "$tmp/err" ] || fail "send $*: unexpected stderr" "$tmp/err"
}

# count_lines FILE REGEX: how many lines of FILE match REGEX.
count_lines() {
  grep -Ec -- "$2" "$1" || true
}

plain_re='^mbx [a-z]+: no key \(--key or MBX_KEY_FILE\): network traffic is plain'

# --- listen on a network name, text lines ---
name=$tag-log
start_net_listener "$tmp/net" "//*/$name" --count 4
net_send "$tag-a" "//*/$name" --kind INFO hello world
printf 'bin\001\377\n' | net_send "$tag-b" "\\\\*\\mailslot\\$name" --kind ERROR
net_send "$tag-c" "//$tag/$name" --from "//$tag-c/back" to the domain
echo | net_send "$tag-d" "//*/$name" --urgent
finish "$listener" "listen //*/$name --count 4"
expect_status 0 "listen on a network name"
expect_listened "$tmp/net" "T $tag-a INFO - hello world
T $tag-b ERROR - hex:62696e01ff
T $tag-c - //$tag-c/back to the domain
T $tag-d - -
" "listen on a network name" sort
[ "$(count_lines "$tmp/net.err" "$plain_re")" -eq 1 ] ||
  fail "no single plain-traffic notice without a key" "$tmp/net.err"
[ "$(wc -l <"$tmp/net.err")" -eq 2 ] ||
  fail "listen stderr: more than the notice and the listening line" \
    "$tmp/net.err"
pass "listen on //*/NAME prints time, host, kind, sender and body"
pass "without a key, listen says once that the traffic is plain"

# --- listen --json ---
name=$tag-json
start_net_listener "$tmp/json" "\\\\*\\mailslot\\$name" --json --count 4
net_send "$tag-a" "//*/$name" --kind NOTE 'say "hi" \ now'
printf 'tab\there\001\r\n' | net_send "$tag-b" "//*/$name"
printf 'h\xc3\xa9 \xff\xc0\n' | net_send "$tag-c" "//*/$name" --from //x/y
echo | net_send "$tag-d" "//*/$name" --kind ''
finish "$listener" "listen --json --count 4"
expect_status 0 "listen --json"
json_time='"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}([+-][0-9]{2}:[0-9]{2})?"'
if grep -Evq "^\{$json_time," "$tmp/json"; then
  fail "listen --json: a line has no ISO-8601 time" "$tmp/json"
fi
sed -E "s/^\{$json_time,/{\"time\":\"T\",/" "$tmp/json" |
  LC_ALL=C sort >"$tmp/json.masked"
n="\"name\":\"\\\\\\\\*\\\\mailslot\\\\$name\""
expect_file "$tmp/json.masked" "{\"time\":\"T\",\"host\":\"$tag-a\",$n,\"kind\":\"NOTE\",\"from\":null,\"size\":14,\"body\":\"say \\\"hi\\\" \\\\ now\"}
{\"time\":\"T\",\"host\":\"$tag-b\",$n,\"kind\":\"\",\"from\":null,\"size\":10,\"body\":\"tab\\there\\u0001\\r\"}
{\"time\":\"T\",\"host\":\"$tag-c\",$n,\"kind\":\"\",\"from\":\"//x/y\",\"size\":6,\"body\":\"hé \\ufffd\\ufffd\",\"hex\":\"68c3a920ffc0\"}
{\"time\":\"T\",\"host\":\"$tag-d\",$n,\"kind\":\"\",\"from\":null,\"size\":0,\"body\":\"\"}
" "listen --json"
if command -v python3 >/dev/null; then
  python3 -c 'import json, sys
for line in sys.stdin:
    json.loads(line)' <"$tmp/json" || fail "listen --json: not JSON" "$tmp/json"
fi
pass "listen --json prints one JSON object per message, escaped"

# --- keys ---
# Two readers of one name, one with the key and one without; the key only
# on the second of three senders. Each reader exits after the messages it
# should get: one it should have dropped would take the place of one of
# them.
name=$tag-sealed
start_net_listener "$tmp/keyed" "//*/$name" --count 1 --key "$key"
keyed=$listener
start_net_listener "$tmp/plain" "//*/$name" --count 2
plain=$listener
net_send "$tag-a" "//*/$name" plain one
MBX_KEY_FILE=$key net_send "$tag-b" "//*/$name" sealed
net_send "$tag-c" "//*/$name" plain two
finish "$keyed" "listen --key"
expect_status 0 "listen --key"
finish "$plain" "listen without a key"
expect_status 0 "listen without a key"
expect_listened "$tmp/keyed" "T $tag-b - - sealed
" "listen --key"
expect_listened "$tmp/plain" "T $tag-a - - plain one
T $tag-c - - plain two
" "listen without a key" sort
if grep -Eq "$plain_re" "$tmp/keyed.err"; then
  fail "listen --key says the traffic is plain" "$tmp/keyed.err"
fi
grep -q ', sealed)$' "$tmp/keyed.err" ||
  fail "listen --key does not say it is sealed" "$tmp/keyed.err"
pass "with a key, only sealed messages arrive; without, only plain ones"

# --- call across the network ---
name=$tag-echo
start_net_listener "$tmp/necho" "//*/$name" --echo --count 1 --key "$key"
run "$mbx" call "//*/$name" --key "$key" --kind PING are you there
expect_status 0 "call over the network"
expect_file "$tmp/out" "are you there
" "call over the network"
finish "$listener" "listen --echo on the network"
expect_status 0 "listen --echo on the network"
pass "call over the network gets the reply of listen --echo"

# --- SIGINT ---
start_net_listener "$tmp/nint" "//*/$tag-int"
kill -INT "$listener"
finish "$listener" "network listen after SIGINT"
expect_status 0 "network listen after SIGINT"
pass "SIGINT stops a network listener with status 0"

# --- spy ---
"$mbx" spy --once 3 >"$tmp/spy" 2>"$tmp/spy.err" &
spy=$!
pids+=("$spy")
wait_line "$tmp/spy.err" '^mbx spy: spying ' "$spy"
printf 'a\nbb\nccc\n' | net_send "$tag-s1" "//*/$tag-spy" --kind K
net_send "$tag-s2" "//*/$tag-spy" --kind K dddd
net_send "$tag-s1" "//other/$tag-spy2" e
finish "$spy" "spy --once"
expect_status 0 "spy --once"
head -n 3 "$tmp/spy" | tail -n 1 |
  grep -Eq '^ADDRESS +DOMAIN +KIND +COUNT +RATE +AVG +HOSTS$' ||
  fail "spy --once: table header" "$tmp/spy"
hosts="($tag-s1,$tag-s2|$tag-s2,$tag-s1)"
grep -Eq "^//\*/$tag-spy +$tag +K +4 +[0-9.]+ +3 +$hosts\$" \
  "$tmp/spy" || fail "spy --once: no row for //*/$tag-spy with 4 messages" \
  "$tmp/spy"
grep -Eq "^//other/$tag-spy2 +$tag +- +1 +[0-9.]+ +1 +$tag-s1\$" "$tmp/spy" ||
  fail "spy --once: no row for //other/$tag-spy2" "$tmp/spy"
[ "$(count_lines "$tmp/spy.err" "$plain_re")" -eq 1 ] ||
  fail "spy: no plain-traffic notice" "$tmp/spy.err"
pass "spy --once shows each address with its count, size and hosts"

# --- network errors ---
run "$mbx" send "//*/$tag-x" --iface "no$tag" hi
expect_status 1 "send --iface to a missing interface"
expect_err_line "no such network interface" "send --iface missing"
cp "$key" "$tmp/key.open"
chmod 0644 "$tmp/key.open"
run "$mbx" listen "//*/$tag-x" --key "$tmp/key.open"
expect_status 1 "listen with a key readable by others"
expect_err_line "^mbx listen: key file $tmp/key.open: .+\(MBX_EPERM\)\$" \
  "listen with a key readable by others"
run "$mbx" send "//*/$tag-x" --group 10.1 hi
expect_status 1 "send --group 10.1"
grep -q '(MBX_EINVAL)$' "$tmp/err" || fail "send --group 10.1" "$tmp/err"
pass "bad network settings exit 1 and say what is wrong"
unset MBX_IFACE MBX_GROUP MBX_PORT MBX_DOMAIN

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
usage_error "keygen: no file" "$mbx" keygen
usage_error "keygen: two files" "$mbx" keygen a b
usage_error "keygen: unknown option" "$mbx" keygen --force a
usage_error "listen: --mode on a network name" "$mbx" listen "//*/$name" \
  --mode 0660
usage_error "listen: --key on a host name" "$mbx" listen "$name" --key k
usage_error "send: --domain on a host name" "$mbx" send "$name" --domain d hi
usage_error "send: port 0" "$mbx" send "//*/$name" --port 0 hi
usage_error "call: --group on a host name" "$mbx" call "$name" --group g hi
usage_error "spy: argument" "$mbx" spy extra
usage_error "spy: once 0" "$mbx" spy --once 0
usage_error "spy: interval too short" "$mbx" spy --interval 1
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

for cmd in listen send ls call spy keygen; do
  run "$mbx" "$cmd" --help
  expect_status 0 "mbx $cmd --help"
  if ! grep -q "^usage: mbx $cmd" "$tmp/out" || [ -s "$tmp/err" ]; then
    fail "mbx $cmd --help: expected its usage on stdout only" \
      "$tmp/out" "$tmp/err"
  fi
done
run "$mbx" --help
expect_status 0 "mbx --help"
for cmd in listen send ls call spy keygen; do
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
