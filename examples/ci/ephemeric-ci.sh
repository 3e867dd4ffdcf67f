#!/usr/bin/env bash
# The testing environment with nothing but bash and curl, over the original Ephemeric REST API:
# publish an archive, wake the instance, ask the app to run its own tests over HTTP, read the TAP or
# JUnit answer, delete the instance. Exit 0 when every test passed, 1 when one failed, 3 when the
# cloud could not run them (publish refused, start failed, no answer).
#
#   EPH_URL=http://127.0.0.1:7070 EPH_USER=<id> EPH_TOKEN=<token> EPH_GATE_URL=http://127.0.0.1:8080 \
#     ./ephemeric-ci.sh app.zip [/tests]
set -uo pipefail

archive=${1:?usage: ephemeric-ci.sh ARCHIVE.zip [TEST_PATH]}
tests_path=${2:-/tests}
: "${EPH_URL:?set EPH_URL}" "${EPH_USER:?set EPH_USER}" "${EPH_TOKEN:?set EPH_TOKEN}" "${EPH_GATE_URL:?set EPH_GATE_URL}"
api="$EPH_URL/api/ephemerics/user/$EPH_USER"
auth="$EPH_USER:$EPH_TOKEN"

say() { printf 'ci: %s\n' "$*" >&2; }

# 1. publish: the answer is the new hostname as a JSON string
host=$(curl -sS --fail-with-body -u "$auth" -F "imageZip=@$archive" "$api") || { say "publish refused: $host"; exit 3; }
host=${host//\"/}
say "published $host"
# Whatever happens next, the instance goes away with this script.
trap 'curl -sS -u "$auth" -X DELETE "$api/$host" >/dev/null && say "deleted $host"' EXIT

# 2. wake: answers once the app accepts connections
running=$(curl -sS --fail-with-body -u "$auth" -X PUT -H 'Content-Type: application/json' -d true "$api/$host/isRunning") \
  || { say "start failed: $running"; exit 3; }
say "running: $running"

# 3. the app runs its tests and answers TAP or JUnit XML
report=$(curl -sS --max-time 600 -H "Host: $host" "$EPH_GATE_URL$tests_path") || { say "no answer from $tests_path"; exit 3; }
printf '%s\n' "$report"

# 4. analyse
if grep -q '<testsuite' <<<"$report"; then
  total=$(grep -o '<testcase' <<<"$report" | wc -l)
  failed=$(grep -oE '<(failure|error)[ />]' <<<"$report" | wc -l)
else
  total=$(grep -cE '^(not )?ok\b' <<<"$report")
  failed=$(grep -E '^not ok\b' <<<"$report" | grep -cv '# TODO')
fi
if [ "$total" -eq 0 ]; then say "no test result in the answer"; exit 3; fi
say "$total tests, $failed failed"
[ "$failed" -eq 0 ] && exit 0 || exit 1
