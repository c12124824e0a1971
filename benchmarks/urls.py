"""Indexing images by URL against indexing the same files, with network latency.

    python benchmarks/urls.py [--images 300] [--latency 0.1] [--out benchmarks/results/urls.json]

A local HTTP server (127.0.0.1, in a child process so its CPU is not counted) serves
``--images`` Caltech-101 photos (manifest order, every 30th) with ETags, each answer held
back ``--latency`` seconds to stand for a distant server. Then, in one run:

* **files**: the photos indexed from disk into a fresh index (the baseline);
* **URLs, first run** (``UrlParams.workers`` downloads in flight): fetched, embedded, stored;
* **URLs, re-run**: every URL asked with its ETag (304, nothing embedded), with the default
  pool and with one download at a time: what the pool saves is the latency.

Wall seconds, URLs (or files) per second and CPU ms per image of this process.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402

import lookalike  # noqa: E402
from lookalike.settings import Settings, UrlParams  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(paths: list[Path], latency: float, port) -> None:  # noqa: ANN001 - a shared Value
    files = {f"/{i}.jpg": p.read_bytes() for i, p in enumerate(paths)}
    tags = {k: '"' + hashlib.sha1(v).hexdigest() + '"' for k, v in files.items()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            time.sleep(latency)
            body, tag = files.get(self.path), tags.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            same = self.headers.get("If-None-Match") == tag
            self.send_response(304 if same else 200)
            self.send_header("ETag", tag)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "0" if same else str(len(body)))
            self.end_headers()
            if not same:
                self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port.value = server.server_address[1]
    server.serve_forever()


def timed(label: str, n: int, run) -> dict:  # noqa: ANN001
    wall, cpu = time.perf_counter(), cpu_seconds()
    report = run()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    row = {"run": label, "images": n, "wall_s": round(wall, 2), "per_s": round(n / wall, 1),
           "cpu_ms_per_image": round(1000 * cpu / n, 2), "embedded": report.embedded,
           "urls": report.urls or None}
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/urls.json"))
    args = parser.parse_args(argv)
    paths = caltech.manifest()[0][::30][: args.images]
    port = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=serve, args=(paths, args.latency, port), daemon=True)
    server.start()
    while not port.value:
        time.sleep(0.05)
    urls = [f"http://127.0.0.1:{port.value}/{i}.jpg" for i in range(len(paths))]
    pooled = Settings(urls=UrlParams(allow_private=True))
    serial = Settings(urls=UrlParams(allow_private=True, workers=1))
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="lookalike-urls-") as work:
            work = Path(work)
            photos = caltech.link_tree(paths, work / "photos")
            with lookalike.Index.open(work / "files") as index:
                index.add([photos])  # build the model once, outside the timings
            with lookalike.Index.open(work / "files2") as index:
                rows.append(timed("files", len(paths), lambda: index.add([photos])))
            with lookalike.Index.open(work / "urls", settings=pooled) as index:
                rows.append(timed("URLs, first run", len(urls), lambda: index.add(urls=urls)))
                rows.append(timed("URLs, re-run", len(urls), lambda: index.add(urls=urls)))
            with lookalike.Index.open(work / "urls", settings=serial) as index:
                rows.append(timed("URLs, re-run, 1 download at a time", len(urls),
                                  lambda: index.add(urls=urls)))
    finally:
        server.terminate()
        server.join()
    report = {**caltech.run_info(argv), "latency_s": args.latency,
              "workers": UrlParams().workers, "rows": rows}
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
