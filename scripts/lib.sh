# Shared by scripts/up and scripts/test: install what is missing, start what is
# not running, reuse what is. Sourced, not executed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.imagegram"          # venv, logs, pid files; never committed
mkdir -p "$STATE/log"

# Pinned. Not 5.2.x: from 5.2.0 its ListParts answers <ListPartsResponse>,
# which the Rust SDK (rightly) refuses; 5.1.22 answers <ListPartsResult>.
MOTO_VERSION=5.1.22
# Which database the local stack runs on: mariadb (the default: Debian's own
# package, installed in ~20 s) or mysql (MySQL 9.7 from Debian unstable in a
# chroot of ours, ~3 min the first time); `scripts/up --mysql` sets it. Each
# has its own port, so the tests run on both side by side.
export IMAGEGRAM_DB=${IMAGEGRAM_DB:-mariadb}
[[ $IMAGEGRAM_DB == mariadb || $IMAGEGRAM_DB == mysql ]] \
  || { echo "error: IMAGEGRAM_DB is mariadb or mysql, not $IMAGEGRAM_DB" >&2; exit 1; }
MARIADB_PORT=${MARIADB_PORT:-3306}
MYSQL_PORT=${MYSQL_PORT:-3307}
if [[ $IMAGEGRAM_DB == mysql ]]; then
  export IMAGEGRAM_DB_PORT=${IMAGEGRAM_DB_PORT:-$MYSQL_PORT}
else
  export IMAGEGRAM_DB_PORT=${IMAGEGRAM_DB_PORT:-$MARIADB_PORT}
fi
export IMAGEGRAM_MOTO_PORT=${IMAGEGRAM_MOTO_PORT:-4566}

# Local-only credentials. moto accepts any keys; the database user is created
# below with this password and can only reach imagegram* databases.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:$IMAGEGRAM_MOTO_PORT}
export DATABASE_URL=${DATABASE_URL:-mysql://imagegram:imagegram@127.0.0.1:$IMAGEGRAM_DB_PORT/imagegram}
export IMAGEGRAM_DEV_JWT_SECRET=${IMAGEGRAM_DEV_JWT_SECRET:-imagegram-local-dev-secret}
export CURSOR_SECRET=${CURSOR_SECRET:-imagegram-local-cursor-secret}

# A failing test prints its assertion and values, not a backtrace tail
# (IMAGEGRAM_BACKTRACE=1 brings them back).
export RUST_BACKTRACE=${IMAGEGRAM_BACKTRACE:-0}

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

# Every line says how long the outermost script has been running, so a
# run's log shows where its time went.
: "${IMAGEGRAM_T0:=$(date +%s)}"
export IMAGEGRAM_T0
log() {
  local t=$(($(date +%s) - IMAGEGRAM_T0))
  printf '\033[1m==> [%d:%02d] %s\033[0m\n' $((t / 60)) $((t % 60)) "$*" >&2
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  log "installing Debian packages: $*"
  if [[ ! -f "$STATE/apt-updated" ]]; then
    $SUDO apt-get update -qq
    touch "$STATE/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >"$STATE/log/apt.log" 2>&1 \
    || { tail -20 "$STATE/log/apt.log"; die "apt-get install $* failed"; }
}

# Waits until "$@" succeeds, at most $1 tenths of a second.
wait_for() {
  local tries=$1; shift
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
  # libjpeg-turbo's x86 SIMD (mozjpeg-sys) is assembled with nasm; without
  # it the build still works, with plain C and slower JPEG decoding.
  if [[ $(uname -m) == x86_64 ]] && ! command -v nasm >/dev/null; then
    apt_install nasm
  fi
  # The tests run through cargo-nextest (a process a test; .config/nextest.toml).
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest (cargo install, ~5 min)"
    cargo install --quiet --locked cargo-nextest >"$STATE/log/nextest-install.log" 2>&1 \
      || { tail -20 "$STATE/log/nextest-install.log"; die "cargo install cargo-nextest failed"; }
  fi
}

# The conversion benchmark's reference and its RSS meter.
ensure_vips() {
  command -v vipsthumbnail >/dev/null && [[ -x /usr/bin/time ]] || apt_install libvips-tools time
}

ensure_mariadb() {
  if ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null \
     && [[ ! -x /usr/sbin/mariadbd ]]; then
    apt_install mariadb-server
  fi
  if ! mariadb-admin --protocol=tcp -h127.0.0.1 -P"$MARIADB_PORT" ping >/dev/null 2>&1; then
    log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
    $SUDO install -d -o mysql -g mysql /run/mysqld
    # No systemd here: mysqld_safe supervises the server; setsid detaches it
    # from this shell so it outlives the script.
    $SUDO setsid mysqld_safe --user=mysql --bind-address=127.0.0.1 --port="$MARIADB_PORT" \
      --max-connections=500 >"$STATE/log/mariadb.log" 2>&1 </dev/null &
    wait_for 600 mariadb-admin --protocol=tcp -h127.0.0.1 -P"$MARIADB_PORT" ping \
      || { cat "$STATE/log/mariadb.log"; die "MariaDB did not start"; }
  fi
  # The seeded benchmark dataset (~1.5 GB with indexes) fits in memory;
  # dynamic, so a server that was already running gets it too.
  mariadb_root -e "SET GLOBAL innodb_buffer_pool_size = 2147483648"
  db_users mariadb_root
}

# Real MySQL (9.7, Debian unstable's mysql-server-core: Debian 12 has none)
# in a chroot of Debian unstable made with debootstrap from Debian's own
# archive. The chroot shares the host's network, so the server listens on
# 127.0.0.1:$MYSQL_PORT like any other; it lives outside the checkout so
# every clone on the machine reuses it.
MYSQL_CHROOT=${MYSQL_CHROOT:-/var/lib/imagegram/mysql-sid}
# Inside the chroot; not MariaDB's path, which a client told the server's
# socket (mysql_async's prefer_socket) would find on the host.
MYSQL_SOCKET=/run/mysqld/imagegram-mysql.sock
mysql_root() { mariadb -uroot -S "$MYSQL_CHROOT$MYSQL_SOCKET" "$@"; }
mariadb_root() { $SUDO mariadb -uroot "$@"; }
# The root client of the database IMAGEGRAM_DB names.
db_root() { if [[ $IMAGEGRAM_DB == mysql ]]; then mysql_root "$@"; else mariadb_root "$@"; fi; }

ensure_mysql() {
  command -v mariadb >/dev/null || apt_install mariadb-client
  local apt_opts="-o Acquire::Check-Valid-Until=false -o Dpkg::Use-Pty=0"
  if [[ ! -x "$MYSQL_CHROOT/usr/sbin/mysqld" ]]; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    log "making a Debian unstable chroot for MySQL in $MYSQL_CHROOT (~3 min, ~800 MB)"
    $SUDO mkdir -p "$MYSQL_CHROOT"
    if [[ ! -x "$MYSQL_CHROOT/usr/bin/apt-get" ]]; then
      $SUDO debootstrap --variant=minbase sid "$MYSQL_CHROOT" http://deb.debian.org/debian \
        >"$STATE/log/debootstrap.log" 2>&1 || { tail -20 "$STATE/log/debootstrap.log"; die "debootstrap failed"; }
    fi
    # The archive's unstable Release file can be weeks old: apt refuses it
    # without Check-Valid-Until=false.
    $SUDO chroot "$MYSQL_CHROOT" sh -c "apt-get $apt_opts -qq update && \
      DEBIAN_FRONTEND=noninteractive apt-get $apt_opts -qq install -y --no-install-recommends \
      mysql-server-core mysql-client-core" >"$STATE/log/mysql-apt.log" 2>&1 \
      || { tail -20 "$STATE/log/mysql-apt.log"; die "installing MySQL in the chroot failed"; }
  fi
  if ! mariadb-admin --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" ping >/dev/null 2>&1; then
    log "starting MySQL on 127.0.0.1:$MYSQL_PORT"
    # mysql-server-core makes no user; the data directory is made once.
    $SUDO chroot "$MYSQL_CHROOT" sh -c '
      id mysql >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mysql
      install -d -o mysql -g mysql /run/mysqld
      if [ ! -d /var/lib/mysql-data/mysql ]; then
        install -d -o mysql -g mysql /var/lib/mysql-data
        mysqld --initialize-insecure --user=mysql --datadir=/var/lib/mysql-data
      fi' >"$STATE/log/mysql-init.log" 2>&1 || { tail -20 "$STATE/log/mysql-init.log"; die "MySQL initialisation failed"; }
    # --secure-file-priv="": without it mysqld aborts (its default
    # directory does not exist in the chroot).
    $SUDO setsid chroot "$MYSQL_CHROOT" mysqld --user=mysql --datadir=/var/lib/mysql-data \
      --port="$MYSQL_PORT" --bind-address=127.0.0.1 --socket="$MYSQL_SOCKET" --mysqlx=OFF \
      --secure-file-priv="" --max-connections=500 --innodb-buffer-pool-size=536870912 \
      >"$STATE/log/mysql.log" 2>&1 </dev/null &
    wait_for 600 mariadb-admin --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" ping \
      || { tail -30 "$STATE/log/mysql.log"; die "MySQL did not start"; }
  fi
  db_users mysql_root
}

# The database IMAGEGRAM_DB names, installed and running.
ensure_database() {
  if [[ $IMAGEGRAM_DB == mysql ]]; then ensure_mysql; else ensure_mariadb; fi
}

# The app users, on the server whose root client is "$1". The OS root
# reaches the server over the unix socket; the app user is for TCP, from
# both host spellings, and may create the per-test databases.
db_users() {
  "$1" <<'SQL'
CREATE USER IF NOT EXISTS 'imagegram'@'127.0.0.1' IDENTIFIED BY 'imagegram';
CREATE USER IF NOT EXISTS 'imagegram'@'localhost' IDENTIFIED BY 'imagegram';
GRANT ALL PRIVILEGES ON `imagegram%`.* TO 'imagegram'@'127.0.0.1';
GRANT ALL PRIVILEGES ON `imagegram%`.* TO 'imagegram'@'localhost';
CREATE DATABASE IF NOT EXISTS imagegram CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
SQL
  # A user whose password holds every character a URL would mangle: the
  # tests log in with it (tests/integration/config.rs).
  "$1" <<'SQL'
CREATE USER IF NOT EXISTS 'imagegram_odd'@'127.0.0.1' IDENTIFIED BY 'p#?/@%:x y';
CREATE USER IF NOT EXISTS 'imagegram_odd'@'localhost' IDENTIFIED BY 'p#?/@%:x y';
GRANT ALL PRIVILEGES ON `imagegram%`.* TO 'imagegram_odd'@'127.0.0.1';
GRANT ALL PRIVILEGES ON `imagegram%`.* TO 'imagegram_odd'@'localhost';
SQL
  # What a deployment's master user is (RDS's admin): the migration
  # handler's tests create the application user with it, and the rotation
  # test a user of its own.
  "$1" <<'SQL'
CREATE USER IF NOT EXISTS 'imagegram_master'@'127.0.0.1' IDENTIFIED BY 'imagegram-master';
CREATE USER IF NOT EXISTS 'imagegram_master'@'localhost' IDENTIFIED BY 'imagegram-master';
GRANT ALL PRIVILEGES ON *.* TO 'imagegram_master'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'imagegram_master'@'localhost' WITH GRANT OPTION;
SQL
}

moto_up() { curl -fs "http://127.0.0.1:$IMAGEGRAM_MOTO_PORT/moto-api/" >/dev/null; }

ensure_moto() {
  local venv="$STATE/venv"
  local installed=""
  [[ -x "$venv/bin/pip" ]] && installed=$("$venv/bin/pip" show moto 2>/dev/null || true)
  if [[ ! -x "$venv/bin/moto_server" ]] || ! grep -qx "Version: $MOTO_VERSION" <<<"$installed"; then
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
      || apt_install python3 python3-venv python3-pip
    command -v curl >/dev/null || apt_install curl ca-certificates
    log "installing moto $MOTO_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
      >"$STATE/log/pip.log" 2>&1 || { tail -20 "$STATE/log/pip.log"; die "pip install moto failed"; }
  fi
  command -v curl >/dev/null || apt_install curl ca-certificates
  # moto through local/moto_server.py (a race of moto's closed); its
  # version and the wrapper's hash say whether the running one is this.
  local build
  build="$MOTO_VERSION $(md5sum <"$ROOT/local/moto_server.py" | cut -c1-12)"
  # ([m] keeps the pattern from matching the commands that carry it.)
  local running="[m]oto_server(\.py)? -H 127.0.0.1 -p $IMAGEGRAM_MOTO_PORT\$"
  # A moto of another version (or wrapper) still running from earlier.
  if moto_up && [[ "$(cat "$STATE/moto.version" 2>/dev/null)" != "$build" ]]; then
    log "restarting moto (version changed)"
    pkill -f "$running" || true
    wait_for 50 bash -c "! pgrep -f '$running' >/dev/null" || die "the old moto did not stop"
  fi
  # A moto that holds the port but does not answer (its checkout deleted
  # under it, say) is stopped first.
  local stale=$running
  if ! moto_up && pkill -f "$stale"; then
    log "stopped a moto on :$IMAGEGRAM_MOTO_PORT that did not answer"
    wait_for 50 bash -c "! pgrep -f '$stale' >/dev/null" || die "the old moto did not stop"
  fi
  if ! moto_up; then
    log "starting moto (S3 + SQS) on 127.0.0.1:$IMAGEGRAM_MOTO_PORT"
    setsid "$venv/bin/python" "$ROOT/local/moto_server.py" -H 127.0.0.1 -p "$IMAGEGRAM_MOTO_PORT" \
      >"$STATE/log/moto.log" 2>&1 </dev/null &
    echo $! >"$STATE/moto.pid"
    echo "$build" >"$STATE/moto.version"
    wait_for 300 moto_up || { cat "$STATE/log/moto.log"; die "moto did not start"; }
  fi
}

export BUCKET=${BUCKET:-imagegram-local}
# Where the local stack writes each function's resolved variables.
export IMAGEGRAM_ENV_FILE=${IMAGEGRAM_ENV_FILE:-$STATE/functions-env.json}
export IMAGEGRAM_API_ADDR=${IMAGEGRAM_API_ADDR:-127.0.0.1:3000}
# The web client, on an origin of its own (CORS as in production).
export IMAGEGRAM_WEB_ADDR=${IMAGEGRAM_WEB_ADDR:-127.0.0.1:8080}
# This checkout's template and web client, named at run time: a binary
# built elsewhere (a shared target directory) must not read another
# checkout's files through a path compiled into it.
export IMAGEGRAM_TEMPLATE=${IMAGEGRAM_TEMPLATE:-$ROOT/template.yaml}
export IMAGEGRAM_WEB_ROOT=${IMAGEGRAM_WEB_ROOT:-$ROOT/web}
# The local gateway serves many requests at once from one process.
export DB_POOL_MAX=${DB_POOL_MAX:-32}

api_up() { curl -fs "http://$IMAGEGRAM_API_ADDR/health" >/dev/null; }

# Builds the release binaries. Always this one set of packages: cargo unifies features per build, so
# another set would rebuild every dependency (~8 min here).
release_build() {
  log "building (release)"
  # Every function too, so `scripts/sam-local --release` finds them all;
  # imagegram-local enables every feature they use, so they change nothing
  # in the unified set.
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" \
    -p imagegram-local -p imagegram-api -p imagegram-bench -p imagegram-cli \
    -p imagegram-converter -p imagegram-finalizer -p imagegram-sweeper -p imagegram-migrator \
    -p imagegram-events
}

# `export K=V` lines of one function's variables, from the running stack.
function_env() {
  python3 - "$IMAGEGRAM_ENV_FILE" "$1" <<'PY'
import json, shlex, sys
for k, v in json.load(open(sys.argv[1]))[sys.argv[2]].items():
    print(f"export {k}={shlex.quote(v)}")
PY
}

# Starts the release gateway (API + pipeline) in the background; build first.
start_gateway() {
  log "starting the API gateway on http://$IMAGEGRAM_API_ADDR"
  setsid "$ROOT/target/release/imagegram-local" serve >"$STATE/log/gateway.log" 2>&1 </dev/null &
  echo $! >"$STATE/gateway.pid"
  wait_for 600 api_up || { tail -30 "$STATE/log/gateway.log"; die "the API did not come up"; }
}

# oha, the outside load generator the benchmark checks itself against
# (crates.io, pinned, built once into .imagegram/oha).
OHA_VERSION=1.16.0
ensure_oha() {
  export OHA="$STATE/oha/bin/oha"
  if [[ ! -x $OHA ]] || [[ $("$OHA" --version) != "oha $OHA_VERSION" ]]; then
    log "installing oha $OHA_VERSION (cargo install)"
    cargo install --quiet --locked oha --version "$OHA_VERSION" --root "$STATE/oha" \
      >"$STATE/log/oha-install.log" 2>&1 || { tail -20 "$STATE/log/oha-install.log"; die "cargo install oha failed"; }
  fi
}

# Seeds the benchmark dataset into scripts/up's database unless it holds it.
seed_unless_seeded() {
  local posts=$1 comments=$2 have
  have=$(mariadb -N -uimagegram -pimagegram -h127.0.0.1 -P"$IMAGEGRAM_DB_PORT" imagegram \
    -e "SELECT COUNT(*) FROM posts WHERE caption LIKE '%#seed'" 2>/dev/null || echo 0)
  if [[ "$have" != "$posts" ]]; then
    log "seeding $posts posts and $comments comments"
    "$ROOT/target/release/imagegram-seed" --posts "$posts" --comments "$comments"
  else
    log "reusing the seeded dataset ($posts posts)"
  fi
}

stop_gateway() {
  if [[ -f "$STATE/gateway.pid" ]]; then
    kill "$(cat "$STATE/gateway.pid")" 2>/dev/null && log "stopped the gateway" || true
    rm -f "$STATE/gateway.pid"
    wait_for 50 bash -c "! curl -fs http://$IMAGEGRAM_API_ADDR/health"
  fi
}

# The API reference rendered from openapi.yaml (Redoc, through Redocly's CLI
# from npm, pinned), for the local stack to serve at /docs.
REDOCLY_VERSION=2.77.0
export IMAGEGRAM_DOCS=${IMAGEGRAM_DOCS:-$ROOT/target/api-docs/index.html}
ensure_redocly() {
  command -v npm >/dev/null || apt_install nodejs npm
  local prefix="$STATE/redocly"
  if [[ ! -x "$prefix/node_modules/.bin/redocly" ]] \
     || ! grep -q "\"version\": \"$REDOCLY_VERSION\"" "$prefix/node_modules/@redocly/cli/package.json" 2>/dev/null; then
    log "installing @redocly/cli $REDOCLY_VERSION"
    mkdir -p "$prefix"
    npm install --silent --no-audit --no-fund --prefix "$prefix" "@redocly/cli@$REDOCLY_VERSION" \
      >"$STATE/log/npm-redocly.log" 2>&1 || { tail -20 "$STATE/log/npm-redocly.log"; die "npm install @redocly/cli failed"; }
  fi
}
build_api_docs() {
  ensure_redocly
  local prefix="$STATE/redocly"
  log "rendering openapi.yaml to $IMAGEGRAM_DOCS"
  mkdir -p "$(dirname "$IMAGEGRAM_DOCS")"
  "$prefix/node_modules/.bin/redocly" build-docs "$ROOT/openapi.yaml" --output "$IMAGEGRAM_DOCS" \
    >"$STATE/log/redocly.log" 2>&1 || { tail -20 "$STATE/log/redocly.log"; die "redocly build-docs failed"; }
}

# A Python tool from PyPI, pinned, in a venv of its own (each pins its own
# dependencies): installed unless that version is there.
ensure_pip_tool() { # VENV PACKAGE VERSION
  local venv=$1 package=$2 version=$3 installed=""
  [[ -x "$venv/bin/pip" ]] && installed=$("$venv/bin/pip" show "$package" 2>/dev/null || true)
  grep -qx "Version: $version" <<<"$installed" && return 0
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv python3-pip
  log "installing $package $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$package==$version" \
    >"$STATE/log/pip-$package.log" 2>&1 || { tail -20 "$STATE/log/pip-$package.log"; die "pip install $package failed"; }
}

# schemathesis (pinned, in a venv of its own), for scripts/schemathesis.
ST_VERSION=4.32.5
export ST_VENV="$STATE/st-venv"
ensure_schemathesis() { ensure_pip_tool "$ST_VENV" schemathesis "$ST_VERSION"; }

# Debian's Chromium, for the web client's end-to-end tests.
ensure_chromium() {
  command -v chromium >/dev/null || apt_install chromium fonts-dejavu-core
  export CHROMIUM=${CHROMIUM:-$(command -v chromium)}
}

# The web client: its npm packages (from the lockfile) and its bundle, which
# the local stack serves on IMAGEGRAM_WEB_ADDR.
ensure_web_packages() {
  command -v npm >/dev/null || apt_install nodejs npm
  local web="$ROOT/web"
  if [[ ! -d "$web/node_modules" || "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
    log "installing the web client's npm packages (npm ci)"
    (cd "$web" && npm ci --silent --no-audit --no-fund) >"$STATE/log/npm-web.log" 2>&1 \
      || { tail -20 "$STATE/log/npm-web.log"; die "npm ci in web/ failed"; }
  fi
  # The stock Uppy pages the browser tests drive, each with its own pinned
  # packages (Uppy 5 and 6 need different @uppy/core majors).
  local v
  for v in v5 v6; do
    if [[ ! -d "$web/uppy/$v/node_modules" || "$web/uppy/$v/package-lock.json" -nt "$web/uppy/$v/node_modules/.package-lock.json" ]]; then
      log "installing Uppy ${v#v}'s npm packages for its test page (npm ci)"
      (cd "$web/uppy/$v" && npm ci --silent --no-audit --no-fund) >"$STATE/log/npm-uppy-$v.log" 2>&1 \
        || { tail -20 "$STATE/log/npm-uppy-$v.log"; die "npm ci in web/uppy/$v failed"; }
    fi
  done
}
build_web() {
  ensure_web_packages
  local web="$ROOT/web"
  log "bundling the web client"
  (cd "$web" && npm run --silent build) >"$STATE/log/web-build.log" 2>&1 \
    || { tail -20 "$STATE/log/web-build.log"; die "npm run build in web/ failed"; }
}

# A local stack of the debug build (which `cargo test` has built) for the
# suite's outside checks, on its own port, names and database, so it never
# touches scripts/up's stack. Stopped when the calling script exits.
TEST_API_ADDR=127.0.0.1:3100
TEST_WEB_ADDR=127.0.0.1:3180
start_test_stack() {
  log "starting a test stack on http://$TEST_API_ADDR"
  if curl -fs "http://$TEST_API_ADDR/health" >/dev/null 2>&1; then
    [[ -f "$STATE/test-stack.pid" ]] && kill "$(cat "$STATE/test-stack.pid")" 2>/dev/null || true
    wait_for 50 bash -c "! curl -fs http://$TEST_API_ADDR/health" \
      || die "$TEST_API_ADDR is taken by something else; stop it first"
  fi
  db_root -e "DROP DATABASE IF EXISTS imagegram_ci;
    CREATE DATABASE imagegram_ci CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
  # Queues and bucket of this run's own: nothing left in flight by an
  # earlier run reaches it.
  local run="imagegram-ci-$(date +%s)"
  TEST_BUCKET=$run
  TEST_ENV_FILE="$STATE/test-functions-env.json"
  rm -f "$TEST_ENV_FILE"
  QUEUE_PREFIX=$run BUCKET=$run IMAGEGRAM_DB_NAME=imagegram_ci IMAGEGRAM_ENV_FILE=$TEST_ENV_FILE \
    IMAGEGRAM_API_ADDR=$TEST_API_ADDR IMAGEGRAM_WEB_ADDR=$TEST_WEB_ADDR \
    setsid "$ROOT/target/debug/imagegram-local" serve >"$STATE/log/test-stack.log" 2>&1 </dev/null &
  TEST_STACK_PID=$!
  echo "$TEST_STACK_PID" >"$STATE/test-stack.pid"
  trap 'kill $TEST_STACK_PID 2>/dev/null || true' EXIT
  wait_for 600 curl -fs "http://$TEST_API_ADDR/health" \
    || { tail -30 "$STATE/log/test-stack.log"; die "the test stack did not come up"; }
}

# aws-sam-cli from PyPI in its own venv (it pins boto3; sharing a venv
# breaks moto). Exports SAM (the command) and SAM_VENV.
SAM_VERSION=1.170.0
ensure_sam() {
  export SAM_VENV="$STATE/sam-venv" SAM="$STATE/sam-venv/bin/sam" SAM_CLI_TELEMETRY=0
  ensure_pip_tool "$SAM_VENV" aws-sam-cli "$SAM_VERSION"
}

# A Docker engine for `sam local`, and DOCKER_HOST pointing at it. Where
# Docker already runs with its usual bridge network, that engine as it is.
# Otherwise (these machines: no bridge network, no registry) test
# infrastructure of the project's own, none of it product:
# - Debian's docker.io, its daemon started by hand on a socket of ours with
#   no bridge, NAT or iptables, data under .imagegram/docker;
# - scripts/sam-docker-proxy in front of it, which gives SAM's Lambda
#   containers the host's network (SAM never sets a network mode);
# - the base image SAM wants, made locally (sam_base_image).
# Exports SAM_DOCKER_OWN=1 in the second case.
ensure_docker() {
  if docker info >/dev/null 2>&1 && docker network inspect bridge >/dev/null 2>&1; then
    log "Docker: using the running engine ($(docker info --format '{{.ServerVersion}}'))"
    export SAM_DOCKER_OWN=0
    return
  fi
  export SAM_DOCKER_OWN=1
  local dir="$STATE/docker"
  mkdir -p "$dir/data" "$dir/exec"
  if ! command -v dockerd >/dev/null || ! command -v busybox >/dev/null; then
    # No service start at install: there is no systemd, and the packaged
    # daemon's defaults want a bridge.
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    apt_install docker.io busybox-static
    [[ -n $made_policy ]] && $SUDO rm -f /usr/sbin/policy-rc.d
  fi
  local engine="unix://$dir/docker.sock"
  if ! DOCKER_HOST=$engine docker info >/dev/null 2>&1; then
    log "starting a Docker engine (no bridge network) on $dir/docker.sock"
    $SUDO setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
      --ip-forward=false --userland-proxy=false --data-root "$dir/data" --exec-root "$dir/exec" \
      --pidfile "$dir/dockerd.pid" -H "$engine" >"$STATE/log/dockerd.log" 2>&1 </dev/null &
    wait_for 300 env DOCKER_HOST="$engine" docker info \
      || { tail -20 "$STATE/log/dockerd.log"; die "dockerd did not start"; }
  fi
  if ! DOCKER_HOST="unix://$dir/sam.sock" docker info >/dev/null 2>&1; then
    setsid "$ROOT/scripts/sam-docker-proxy" "$dir/sam.sock" "$dir/docker.sock" \
      >"$STATE/log/sam-docker-proxy.log" 2>&1 </dev/null &
    wait_for 100 env DOCKER_HOST="unix://$dir/sam.sock" docker info \
      || { tail -20 "$STATE/log/sam-docker-proxy.log"; die "sam-docker-proxy did not start"; }
  fi
  export DOCKER_HOST="unix://$dir/sam.sock"
}

# SAM's base image for provided.al2023 on x86_64, made locally when the
# engine is ours (no registry here): static busybox (SAM's `docker build`
# on top runs /bin/sh, mv and chmod), the C libraries the functions link,
# CA certificates at AL2023's and Debian's paths. Run the functions' own
# binaries only: the image is not Amazon Linux.
SAM_BASE_IMAGE=public.ecr.aws/lambda/provided:al2023-x86_64
sam_base_image() {
  [[ $SAM_DOCKER_OWN == 1 ]] || return 0
  # The recipe's version, as a label: a changed recipe makes the image
  # again (and SAM's image on top of it, which carries the base's id).
  local recipe=2
  [[ $(docker image inspect --format '{{index .Config.Labels "imagegram.recipe"}}' "$SAM_BASE_IMAGE" 2>/dev/null) == "$recipe" ]] \
    && return 0
  log "making $SAM_BASE_IMAGE locally (docker import)"
  local root lib
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,lib64,var/task,var/runtime,opt,tmp,etc/ssl/certs,etc/pki/tls/certs,usr}
  cp /usr/bin/busybox "$root/bin/"
  for applet in sh mv chmod cp ls cat mkdir rm ln env; do ln -s busybox "$root/bin/$applet"; done
  ln -s ../bin "$root/usr/bin"
  for lib in $(ldd "$@" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/pki/tls/certs/ca-bundle.crt"
  echo "root:x:0:0::/root:/bin/sh" >"$root/etc/passwd"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker import --change "LABEL imagegram.recipe=$recipe" - "$SAM_BASE_IMAGE" >/dev/null
  rm -rf "$root"
}

# `sam local --env-vars` for the running stack: what it resolved for each
# function (IMAGEGRAM_ENV_FILE: database, secrets, bucket, queues) plus its
# moto endpoint as LOCAL_ENDPOINT_URL.
write_sam_env_vars() {
  python3 - "$IMAGEGRAM_ENV_FILE" "$AWS_ENDPOINT_URL" >"$1" <<'PY'
import json, sys
functions = json.load(open(sys.argv[1]))
for variables in functions.values():
    variables["LOCAL_ENDPOINT_URL"] = sys.argv[2]
print(json.dumps(functions, indent=1))
PY
}

