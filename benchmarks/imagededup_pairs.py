"""imagededup's hashes on a folder, for benchmarks/dupes.py (run with a Python that has
``imagededup`` installed, apart from lookalike's: it pulls PyTorch in).

    /path/to/venv-imagededup/bin/python benchmarks/imagededup_pairs.py FOLDER OUT.json

Writes ``{"<method>@<threshold>": [[file, file], ...]}`` for pHash, dHash, wHash and aHash
at imagededup's default Hamming threshold (10) and at 4, file names relative to FOLDER.
Only the hashing module is loaded: imagededup's package imports its CNN (PyTorch) on import,
so its two sub-packages are registered bare first.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from pathlib import Path

for name in ("imagededup.methods", "imagededup.utils"):
    spec = importlib.util.find_spec(name)
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = module

from imagededup.methods.hashing import AHash, DHash, PHash, WHash  # noqa: E402


def main() -> None:
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    result: dict = {"seconds": {}}
    for method in (PHash, DHash, WHash, AHash):
        hasher = method(verbose=False)
        started = time.perf_counter()
        encodings = hasher.encode_images(image_dir=str(folder), recursive=True, num_enc_workers=0)
        for threshold in (10, 4):
            found = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold,
                                           num_dist_workers=0)
            pairs = sorted({tuple(sorted((a, b))) for a, dupes in found.items() for b in dupes})
            result[f"{method.__name__}@{threshold}"] = pairs
        result["seconds"][method.__name__] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
