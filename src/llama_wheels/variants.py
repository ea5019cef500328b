"""``nox -s index -- --variants``: PEP 825 wheel-variant copies of the CUDA wheels, in ``index/variants/``.

Each CUDA flavour's newest wheel is copied under the public version (``0.3.36``: variants of one
version differ by their variant label, here the flavour's local label ``cu130.sm90``) and turned into a
variant with variantlib's own ``make-variant``. Properties, from the catalogue (the manifest, measured):
``nvidia :: cuda_version_lower_bound :: 13.0``, ``nvidia :: cuda_version_upper_bound :: 14``, one
``nvidia :: sm_arch :: <N>_real`` per cubin and ``<N>_virtual`` per PTX (the NVIDIA provider's values;
it has no ``a``/``f`` forms, so ``sm_120a`` is written ``120_real``). The provider is NVIDIA's
``nvidia-variant-provider`` plugin, resolved by the installer; its properties are not checked against
the plugin here (it is not on PyPI), but every wheel is read back with ``variantlib analyze-wheel`` and
``variantlib generate-index-json`` writes ``{name}-{version}-variants.json``. Plain indexes never list
these files: they live in ``variants/files/`` and only ``variants/<project>/`` links them.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from llama_wheels import cmd, manifest, selector, wheels
from llama_wheels.digest import sha256_file
from llama_wheels.errors import ToolNotFound, VariantError
from llama_wheels.log import Logger

FOLDER = "variants"
PROVIDER = """\
[variant.default-priorities]
namespace = ["nvidia"]

[variant.providers.nvidia]
requires = ["nvidia-variant-provider>=0.0.1,<1.0.0"]
plugin-api = "nvidia_variant_provider.plugin:NvidiaVariantPlugin"
"""
_PROP = re.compile(r"^(\w+) :: (\w+) :: ([\w.]+)$", re.M)


def properties(entry: Mapping[str, Any]) -> list[str]:
    """The variant properties of a catalogue flavour (see the module docstring)."""
    major, minor = selector.parse_cuda(str(entry["cuda"]))
    out = [f"nvidia :: cuda_version_lower_bound :: {major}.{minor}",
           f"nvidia :: cuda_version_upper_bound :: {major + 1}"]
    for key, kind in (("sass", "real"), ("ptx", "virtual")):
        numbers = sorted({selector.parse_code(c)[1] for c in entry.get(key, [])})
        out += [f"nvidia :: sm_arch :: {n}_{kind}" for n in numbers]
    return out


def variantlib() -> list[str]:
    here = shutil.which("variantlib", path=str(Path(sys.executable).parent))
    if here is None and shutil.which("variantlib") is None:
        raise ToolNotFound("variantlib is not installed", "nox -s index_variants installs it; "
                           "elsewhere: pip install --group variants (variantlib==0.2.2)")
    return [here or "variantlib"]


def make_variant(wheel: Path, label: str, props: list[str], dest: Path, work: Path) -> Path:
    """A variant copy of ``wheel`` under its public version, labelled ``label``, into ``dest``."""
    root = wheels.unpack(wheel, work / "unpacked")
    version = wheels.dist_info(root).name.split("-", 1)[1].removesuffix(".dist-info")
    wheels.relabel(root, Version(version).public)
    plain = wheels.pack(root, work / "plain")
    toml = work / "pyproject.toml"
    toml.write_text(PROVIDER, encoding="utf-8")
    args = [a for p in props for a in ("-p", p)]
    cmd.run([*variantlib(), "make-variant", "-f", str(plain), "-o", str(dest), *args, "--skip-plugin-validation",
             "--pyproject-toml", str(toml), "--variant-label", label], capture=True)
    made = dest / f"{plain.name[:-4]}-{label}.whl"
    if not made.exists():
        raise VariantError(f"variantlib made no {made.name}", "see its output above")
    return made


def analyze(variant: Path) -> set[str]:
    """The properties variantlib reads back from the wheel's variant.json."""
    out = cmd.run([*variantlib(), "analyze-wheel", "-i", str(variant)], capture=True, quiet=True).stdout
    return {" :: ".join(m) for m in _PROP.findall(out)}


def publish(wheelhouse: Path, *, base_url: str | None, env: Mapping[str, str], log: Logger) -> dict[str, Any]:
    """Variant copies of every CUDA flavour in the catalogue into index/variants/; validated; returns a summary.
    Under the wheelhouse lock, like the rest of the index."""
    with manifest.lock(wheelhouse):
        return _publish(wheelhouse, base_url=base_url, log=log)


def _publish(wheelhouse: Path, *, base_url: str | None, log: Logger) -> dict[str, Any]:
    root = wheelhouse / "index"
    cat = json.loads((root / selector.CATALOGUE).read_text(encoding="utf-8"))
    files = root / FOLDER / "files"
    files.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[str]] = {}
    for flavour, entry in sorted(cat["flavours"].items()):
        if entry.get("kind") != "cuda" or entry.get("catalogue_only") or not entry.get("wheels"):
            continue
        wheel = max(entry["wheels"], key=lambda w: Version(w["version"]))
        label = Version(wheel["version"]).local
        if not label:
            log.warning(f"{flavour}: {wheel['filename']} has no local label to name its variant; skipped")
            continue
        props = properties(entry)
        existing = [p for p in files.glob(f"*-{label}.whl")]
        if existing:  # a published file never changes
            variant = existing[0]
        else:
            with tempfile.TemporaryDirectory(dir=root / FOLDER) as tmp:
                variant = make_variant(root / "files" / wheel["filename"], label, props, files, Path(tmp))
        got = analyze(variant)
        if got != set(props):
            raise VariantError(f"{variant.name}: variantlib reads {sorted(got)}, expected {sorted(props)}",
                               "delete index/variants/ and run nox -s index -- --variants again")
        made[variant.name] = props
        log.info(f"variant {variant.name}: {', '.join(p.split(' :: ', 1)[1] for p in props)}")
    for old in files.glob("*-variants.json"):
        old.unlink()  # regenerated from the wheels below
    res = cmd.run([*variantlib(), "generate-index-json", "-d", str(files)], capture=True, quiet=True)
    if re.search(r" - (ERROR|WARNING) - ", res.stdout):
        raise VariantError(f"variantlib generate-index-json: {res.stdout.strip().splitlines()[-1]}",
                           "two flavours with the same GPU code? give them different arch sets")
    indexes = sorted(files.glob("*-variants.json"))
    for idx in indexes:
        listed = json.loads(idx.read_text(encoding="utf-8"))["variants"]
        name_ver = idx.name.removesuffix("-variants.json")
        want = {n.rsplit("-", 1)[1][:-4] for n in made if n.startswith(name_ver + "-")}
        if set(listed) != want:
            raise VariantError(f"{idx.name} lists {sorted(listed)}, the wheels are {sorted(want)}",
                               "delete index/variants/ and run nox -s index -- --variants again")
    _write_pages(root / FOLDER, sorted(p for p in files.iterdir() if p.suffix in (".whl", ".json")), base_url)
    return {"variants": sorted(made), "indexes": [p.name for p in indexes]}


def _write_pages(folder: Path, items: list[Path], base_url: str | None) -> None:
    projects: dict[str, list[Path]] = {}
    for p in items:
        projects.setdefault(str(canonicalize_name(p.name.split("-", 1)[0])), []).append(p)
    links = "".join(f'    <a href="{p}/">{p}</a><br/>\n' for p in sorted(projects))
    (folder / "index.html").write_text(_page("llama-wheels variants index", links), encoding="utf-8")
    for project, paths in sorted(projects.items()):
        (folder / project).mkdir(exist_ok=True)
        rows = []
        for p in paths:
            url = f"{base_url.rstrip('/')}/{FOLDER}/files/{p.name}" if base_url else f"../files/{p.name}"
            rows.append(f'    <a href="{html.escape(url)}#sha256={sha256_file(p)}">{html.escape(p.name)}</a><br/>\n')
        (folder / project / "index.html").write_text(_page(f"Links for {project}", "".join(rows)), encoding="utf-8")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html>\n  <head>\n    <title>{html.escape(title)}</title>\n  </head>\n"
            f"  <body>\n    <h1>{html.escape(title)}</h1>\n{body}  </body>\n</html>\n")
