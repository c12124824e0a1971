"""Screenshots of the web page for the README, at a phone's and a desktop's size.

    PYTHONPATH=src python docs/img/screenshots.py --db out/demo-index --query examples/queries/leopard.jpg

Starts the server on 127.0.0.1 (as the browser test does), opens the page in Debian's headless
Chromium and writes ``page-desktop.png`` (1440x900, a search) and ``page-phone.png`` (390x844,
the collection) next to this file, shrunk to at most 1080 pixels wide and 256 colours.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from live_server import serve  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


def shrink(png: bytes, target: Path, width: int = 1080) -> None:
    """At most ``width`` pixels wide, 256 colours: small enough for a README."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--query", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    with serve(args.db) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for name, size, search in (
            ("page-desktop", (1440, 900), True),
            ("page-phone", (390, 844), False),
        ):
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(url)
            page.wait_for_selector("#browse-grid .tile img")
            if search:
                page.set_input_files("#file-input", str(args.query))
                page.wait_for_selector("#results .card")
            page.wait_for_load_state("networkidle")
            shrink(page.screenshot(), args.out / f"{name}.png")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
