#!/usr/bin/env bash
# Popoto's own test suite (shipped in its sdist), run against one redis-server:
# without the integration, exactly as Popoto ships it, and with
# redis_tenancy.popoto.install() and a registered tenant active for the whole session
# (scripts/popoto_suite_conftest.py). Prints both totals and every test that fails
# only with the integration; exits 1 if there is one. With POPOTO_SUITE_INHERIT=1 a
# third run makes threads inherit the tenant (as Python 3.14 can) and is compared too.
# Then runs this project's tests/test_popoto*.py against the same Popoto version.
#
#   scripts/popoto_suite.sh                 # Popoto 1.9.0, the whole suite (~30 min)
#   POPOTO_VERSION=1.9.0 scripts/popoto_suite.sh -x -k validity   # extra args go to pytest
#
# The suite hard-codes localhost:6379 in places, so the server listens on
# 127.0.0.1:6379; the script stops if that port is taken. Outside default CI: it takes
# minutes. Results stay in $POPOTO_SUITE_DIR (default: a new temp directory).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${POPOTO_VERSION:-1.9.0}
PYTHON=${PYTHON:-python3}
WORK=${POPOTO_SUITE_DIR:-$(mktemp -d -t popoto-suite-XXXXXX)}
PORT=6379
mkdir -p "$WORK"
echo "popoto $VERSION suite; work directory: $WORK"

# -- a virtualenv with this package, Popoto $VERSION and the suite's test dependencies --
VENV="$WORK/venv"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
fi
"$VENV/bin/pip" install --quiet -e "$ROOT[embedded]" "popoto[embeddings]==$VERSION" msgpack-numpy \
    "pytest==9.2.0" "pytest-asyncio==1.5.0"
PY="$VENV/bin/python"

# -- the sdist, which ships tests/ ------------------------------------------------------
SDIST="$WORK/popoto-$VERSION"
if [ ! -d "$SDIST/tests" ]; then
    "$VENV/bin/pip" download --quiet --no-deps --no-binary :all: "popoto==$VERSION" -d "$WORK/dl"
    tar xzf "$WORK/dl/popoto-$VERSION.tar.gz" -C "$WORK"
fi
if [ -e "$SDIST/tests/conftest.py" ]; then
    echo "popoto $VERSION ships a tests/conftest.py: the harness would replace it" >&2
    exit 2
fi
rm -rf "$WORK/without" "$WORK/with"
cp -r "$SDIST" "$WORK/without"
cp -r "$SDIST" "$WORK/with"
cp "$ROOT/scripts/popoto_suite_conftest.py" "$WORK/with/tests/conftest.py"

# -- one redis-server on 127.0.0.1:6379 ----------------------------------------------------
BIN=${REDIS_TENANCY_SERVER_BIN:-$("$PY" -c 'from redis_tenancy._embedded import find_redis_server as f; print(f())')}
if "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) != 0)"; then
    echo "127.0.0.1:$PORT is in use; the suite needs it (it hard-codes localhost:6379)" >&2
    exit 2
fi
mkdir -p "$WORK/redis"
"$BIN" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
    --logfile "$WORK/redis/server.log" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
"$PY" - <<EOF
import time, redis
deadline = time.monotonic() + 10
while True:
    try:
        redis.Redis(port=$PORT).ping()
        break
    except redis.ConnectionError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
EOF
echo "server: $BIN on 127.0.0.1:$PORT ($("$PY" -c "import redis; print(redis.Redis(port=$PORT).info()['redis_version'])"))"

run_suite() {  # $1: run label, $2: directory, $3: thread mode; the rest: pytest args
    local label=$1 dir=$2 threads=$3; shift 3
    "$PY" -c "import redis; redis.Redis(port=$PORT).flushall()"
    local start=$SECONDS
    (
        cd "$WORK/$dir"
        unset REDIS_URL ENV
        env POPOTO_SUITE_URL="redis://127.0.0.1:$PORT/15" \
            POPOTO_SUITE_TRAP_URL="redis://127.0.0.1:$PORT/9" \
            POPOTO_SUITE_REPORT="$WORK/$label.json" POPOTO_SUITE_THREADS="$threads" \
            timeout 3600 "$PY" -m pytest -p no:cacheprovider -o addopts="" -q \
            --junitxml="$WORK/$label.xml" tests "$@" > "$WORK/$label.log" 2>&1 || true
    )
    echo "$label: $(tail -1 "$WORK/$label.log") [$((SECONDS - start)) s wall]"
}

run_suite without without plain "$@"
run_suite with with plain "$@"
status=0
echo "== without vs with:"
"$PY" "$ROOT/scripts/popoto_suite_compare.py" "$WORK/without.xml" "$WORK/with.xml" \
    "$WORK/with.json" || status=$?
if [ "${POPOTO_SUITE_INHERIT:-0}" = 1 ]; then
    run_suite with-inherit with inherit "$@"
    echo "== without vs with, threads inheriting the tenant:"
    "$PY" "$ROOT/scripts/popoto_suite_compare.py" "$WORK/without.xml" \
        "$WORK/with-inherit.xml" "$WORK/with-inherit.json" || status=$?
fi

echo "this project's tests/test_popoto*.py against popoto $VERSION:"
(cd "$ROOT" && "$PY" -m pytest -p no:cacheprovider -q tests/test_popoto.py tests/test_popoto_namespaced.py \
    tests/test_popoto_failover.py 2>&1 | tail -3) || status=1
exit $status
