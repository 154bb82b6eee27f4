#!/usr/bin/env bash
# Makes DejaVuSans-kd-subset.ttf, the font kd's plots embed: DejaVu Sans 2.37 (Debian's
# fonts-dejavu-core) cut down to Latin-1, general punctuation, arrows, ± × ≤ ≥ and the Greek
# letters used in loss names — 5 % of the full font's size.
#   apt-get install fonts-dejavu-core && pip install fonttools==4.60.1 && ./make_subset.sh
set -euo pipefail
cd "$(dirname "$0")"
pyftsubset /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
  --unicodes="U+0020-007E,U+00A0-00FF,U+2010-2027,U+2030-203A,U+2190-2195,U+2212,U+2260-2265,U+0391-03A9,U+03B1-03C9" \
  --layout-features="kern" --no-hinting --desubroutinize \
  --output-file=DejaVuSans-kd-subset.ttf
