#!/usr/bin/env bash
# Render the report's index.html with headless Chromium into a PNG for a person to look at.
# usage: tools/screenshot.sh [REPORT_DIR (default: report)] [OUT_PNG (default: REPORT_DIR/screenshot.png)]
#        WIDTH / HEIGHT env vars set the window (default 1200 x 4000).
set -euo pipefail
dir=${1:-report}
out=${2:-$dir/screenshot.png}
page=$(cd "$dir" && pwd)/index.html
[[ -f $page ]] || { echo "screenshot.sh: no index.html in $dir (run: fp8lab report --out $dir)" >&2; exit 2; }
browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[[ -n $browser ]] || { echo "screenshot.sh: chromium not found (apt-get install chromium)" >&2; exit 2; }
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# --no-sandbox: containers and CI runners usually lack the user namespaces the sandbox needs.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --screenshot="$out_abs" --window-size="${WIDTH:-1200},${HEIGHT:-4000}" "file://$page" >/dev/null 2>&1
[[ -s $out_abs ]] || { echo "screenshot.sh: chromium wrote no screenshot" >&2; exit 1; }
echo "$out_abs"
