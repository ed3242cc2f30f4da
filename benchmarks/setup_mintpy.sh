#!/usr/bin/env bash
# Create benchmarks/.venv-mintpy with MintPy from PyPI, for the comparison runs of `make bench`.
# MintPy gets its own venv so its pins (numpy, h5py, dask, ...) never touch mtinsar's.
# Everything MintPy needs for the steps the benchmarks run comes from PyPI wheels; GDAL
# (needed only by MintPy's GeoTIFF/HyP3 loaders) is not, so the benchmarks skip load_data and
# hand MintPy HDF5 inputs exported by mtinsar instead (see README.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-mintpy"
version="${MINTPY_VERSION:-1.6.4}"
python="${PYTHON:-python3}"
stamp="$venv/.installed-$version"

if [[ -f "$stamp" ]]; then
    echo "MintPy $version already set up in $venv"
    exit 0
fi
test -x "$venv/bin/python" || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mintpy==$version"
# Smoke test: the entry points the benchmarks call import and run.
"$venv/bin/python" -c "import mintpy, h5py, scipy; print('MintPy', mintpy.__version__)"
"$venv/bin/ifgram_inversion.py" --help > /dev/null
"$venv/bin/smallbaselineApp.py" --help > /dev/null
touch "$stamp"
