#!/bin/sh
# #18 on the GPU machine: index the wheelhouse (plus catalogue-only cpu and universal entries), serve it on
# loopback, let the selector pick and install from it in a venv with nothing but Python, then smoke.
set -u
python3 -m nox -s index -- --extra-catalogue tests/fixtures/catalogue/extra-cpu-universal.json || exit 1
python3 -m http.server 8765 --bind 127.0.0.1 --directory wheelhouse/index >/tmp/http.log 2>&1 & pid=$!
sleep 1
rm -rf /tmp/sel && env -u PYTHONPATH python3 -m venv /tmp/sel
env -u PYTHONPATH /tmp/sel/bin/python wheelhouse/index/llama-wheels-select.py --index http://127.0.0.1:8765/ --json > wheelhouse/reports/select-h100.json
cat wheelhouse/reports/select-h100.json
env -u PYTHONPATH /tmp/sel/bin/python wheelhouse/index/llama-wheels-select.py --index http://127.0.0.1:8765/ --index-only --install; rc=$?
env -u PYTHONPATH /tmp/sel/bin/python src/llama_wheels/_probe.py import
kill $pid
exit $rc
