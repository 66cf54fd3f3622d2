"""Make the ``asv publish`` dashboard work without internet access.

asv's pages load jQuery, Bootstrap, Flot and two small plugins from CDNs.
This installs the same versions from the npm registry (once, into a cache
folder), copies the files next to the pages and points the pages at them:

    asv publish
    python tools/asv_offline.py            # rewrites .asv/html in place
    asv preview                            # http://127.0.0.1:8080, no network needed

(``stupid-table-plugin`` 1.0.1 is not on npm; 1.1.3, the same plugin API, is used.)
"""

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

# CDN address -> (npm package@version, file inside the package)
VENDORED = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js":
        ("flot@0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        ("flot@0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot@0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot@0.8.3", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin@1.1.3", "stupidtable.js"),
}


def package_dir(cache: Path, spec: str) -> Path:
    return cache / "node_modules" / spec.rsplit("@", 1)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default=".asv/html", type=Path)
    parser.add_argument("--cache", default=".asv/vendor-npm", type=Path)
    args = parser.parse_args()
    pages = sorted(args.html.glob("*.html"))
    if not pages:
        print(f"no pages in {args.html}: run 'asv publish' first", file=sys.stderr)
        return 1
    specs = sorted({spec for spec, _ in VENDORED.values()})
    missing = [s for s in specs if not package_dir(args.cache, s).exists()]
    if missing:
        args.cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix",
                        str(args.cache), *missing], check=True)
    vendor = args.html / "vendor"
    vendor.mkdir(exist_ok=True)
    local = {}
    for url, (spec, path) in VENDORED.items():
        source = package_dir(args.cache, spec) / path
        target = vendor / f"{spec.rsplit('@', 1)[0]}-{Path(path).name}"
        shutil.copyfile(source, target)
        local[url] = f"vendor/{target.name}"
    changed = 0
    for page in pages:
        text = page.read_text()
        new = text
        for url, path in local.items():
            # the tag's integrity hash is the CDN file's; Flot is vendored unminified
            new = re.sub(r"<(script|link)\b[^>]*" + re.escape(url) + r"[^>]*>",
                         lambda tag: re.sub(r'\s(integrity|crossorigin)="[^"]*"', "",
                                            tag.group(0)).replace(url, path), new)
        if new != text:
            page.write_text(new)
            changed += 1
    left = [u for p in pages for u in VENDORED if u in p.read_text()]
    print(f"vendored {len(local)} files into {vendor}, rewrote {changed} pages")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
