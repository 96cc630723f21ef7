#!/bin/sh
# Reproduce the Letta peer setup used by bench_letta.py (Debian 12, Python 3.11, root).
set -eu
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
H="${LETTA_PEER_DIR:-$ROOT/target/letta-peer}"
mkdir -p "$H"
cp "$(dirname "$0")"/*.py "$H"/
cd "$H"
# 1. Letta server. `letta` >= 0.32 on PyPI is "Letta Code" (a Node CLI in a wheel);
#    0.16.8 is the last server release. Resolve dependencies as of its upload
#    (May 2026): today's pydantic 2.14 breaks the mcp 1.12 it pins.
python3 -m venv venv
venv/bin/pip install -q --upgrade pip
venv/bin/pip install 'letta[server,sqlite,postgres]==0.16.8' --uploaded-prior-to 2026-05-16T00:00:00Z
# 2. PostgreSQL 15 (Debian) + pgvector 0.8.0 built from Debian trixie's source package
#    (bookworm has no pgvector package). 0.16.8 has no SQLite backend any more.
apt-get install -y postgresql postgresql-server-dev-15
mkdir -p apt/srcparts apt/lists/partial apt/cache/archives/partial apt/src
cat > apt/srcparts/trixie.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
A="-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$H/apt/srcparts -o Dir::State::Lists=$H/apt/lists -o Dir::Cache=$H/apt/cache"
apt-get $A update
(cd apt/src && apt-get $A source --download-only pgvector && tar xzf pgvector_0.8.0.orig.tar.gz)
make -C apt/src/pgvector-0.8.0 PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config OPTFLAGS=""
make -C apt/src/pgvector-0.8.0 PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config install
# 3. A private cluster on 127.0.0.1:55432 (trust auth), role letta (superuser, for CREATE EXTENSION).
mkdir -p pg && chown postgres:postgres pg
su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $H/pg/data -U postgres --auth=trust -E UTF8"
su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $H/pg/data -o '-p 55432 -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200' -l $H/pg/pg.log start"
psql -h 127.0.0.1 -p 55432 -U postgres -c "create user letta password 'letta' superuser"
# 4. Kelpie's fake LLM.
(cd "$ROOT" && cargo build --release -p kelpie-llm --features fake --bin fake-llm && cargo build --release -p kelpie-server)
# 5. Run (creates fresh databases letta_bench / letta_bench_empty and their schema each time):
#    venv/bin/python bench_letta.py --scale 0.25 --fake-llm "$ROOT/target/release/fake-llm"
