"""Which code blocks of the built site overflow their column at 1280 px.

    make docs-build && python scripts/check_site_overflow.py site

Copies the site, adds a script to every page that measures each ``pre`` and ``pre > code``
(scroll width against its box), loads every page in headless Chromium (the Debian package
``chromium``) at 1280 x 900, and prints the pages with an overflowing block; exits 1 if there
is one. Not part of CI (it needs Chromium); run it after changing the site's CSS or its longest
code blocks. On 2026-12-06: 0 of the site's code blocks overflow with
docs/stylesheets/site.css, 42 without it.
"""

import functools
import glob
import html
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading

SCRIPT = """<script>
window.addEventListener('load', () => { setTimeout(() => {
  const bad = [];
  document.querySelectorAll('pre, pre > code').forEach((el) => {
    if (el.offsetParent === null) return;
    if (el.scrollWidth > el.clientWidth + 1) {
      bad.push(el.textContent.slice(0, 60).replace(/\\s+/g, ' '));
    }
  });
  const out = document.createElement('div');
  out.id = 'overflow-report';
  out.textContent = 'REPORT ' + JSON.stringify({bad: bad});
  document.body.appendChild(out);
}, 300); });
</script>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900", "--virtual-time-budget=4000", "--dump-dom"]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main(site: str) -> int:
    copy = tempfile.mkdtemp()
    shutil.copytree(site, copy, dirs_exist_ok=True)
    pages = sorted(glob.glob(os.path.join(copy, "**", "index.html"), recursive=True))
    for page in pages:
        text = open(page, encoding="utf-8").read()
        open(page, "w", encoding="utf-8").write(text.replace("</body>", SCRIPT + "</body>"))
    server = socketserver.TCPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=copy))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    total = 0
    for page in pages:
        rel = os.path.relpath(page, copy)
        profile = tempfile.mkdtemp()
        url = f"http://127.0.0.1:{server.server_address[1]}/{rel}"
        shown = subprocess.run(["chromium", *FLAGS, f"--user-data-dir={profile}", url],
                               capture_output=True, text=True, timeout=120).stdout
        shutil.rmtree(profile, ignore_errors=True)
        found = re.search(r"REPORT (\{.*?\})</div>", shown)
        if not found:
            print("no report from", rel)
            continue
        bad = json.loads(html.unescape(found.group(1)))["bad"]
        if bad:
            total += len(bad)
            print(rel, "overflowing:", len(bad), bad[:3])
    print("pages", len(pages), "overflowing code blocks", total)
    server.shutdown()
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "site"))
