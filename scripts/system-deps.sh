#!/usr/bin/env bash
# System packages the tests need beside the Python ones: a PostgreSQL server (service tests
# run against SQLite and PostgreSQL) and Chromium (the web map's browser tests). Installs
# what is missing with apt-get (as root, or through sudo); does nothing when both are there.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "error: ${missing[*]} missing and not root: install them with apt (Debian/Ubuntu)" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
