"""What an index holds, in one dictionary: ``lookalike info``, ``Index.info()`` and the
REST ``/api/info`` show it."""

from __future__ import annotations

from .embed.labels import imagenet_labels
from .index.folder import IndexFolder


def index_info(folder: IndexFolder, rerank: str) -> dict:
    """Counts, model, vector store, the learned descriptor transform, the default query
    pipeline and the re-ranking it resolves to (``rerank``), format version, size on disk
    and the most common labels."""
    catalogue, store, settings = folder.catalogue, folder.store, folder.settings
    names = imagenet_labels()
    size = sum(f.stat().st_size for f in folder.path.iterdir() if f.is_file())
    return {
        "path": str(folder.path),
        "images": catalogue.count_images(),
        "files": catalogue.count_files(),
        "failed_files": len(catalogue.failures()),
        "images_with_local_features": catalogue.count_local_features(),
        "store": store.inner.kind,
        "transform": store.transform.describe(),
        "pipeline": settings.pipeline,
        "rerank": rerank,
        "model": settings.model,
        "model_id": catalogue.get_meta("model_id"),
        "format_version": catalogue.version,
        "bytes_on_disk": size,
        "top_labels": [{"label": names[c], "images": n} for c, n in catalogue.label_histogram()],
    }
