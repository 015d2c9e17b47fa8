#!/bin/sh
# Installs the system libraries the service needs and a Python venv lacks: Pango/HarfBuzz for
# WeasyPrint, DejaVu fonts (Cyrillic), and with `test` also Debian's Chromium for the browser tests.
# Installs with apt-get when something is missing and we are root; otherwise says what to install.
set -e
PY=${PYTHON:-.venv/bin/python}
need=""
$PY -W error::DeprecationWarning -c "import weasyprint" >/dev/null 2>&1 || need="libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core"
case "$need" in *fonts-dejavu-core*) ;; *) fc-list 2>/dev/null | grep -qi dejavu || need="$need fonts-dejavu-core" ;; esac
if [ "$1" = "test" ]; then
    [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need="$need chromium"
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx"
fi
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "Missing system packages: $need" >&2
    echo "Install them as root: apt-get install --no-install-recommends $need" >&2
    exit 1
fi
echo "Installing system packages: $need"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
