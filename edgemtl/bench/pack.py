"""`edgemtl pack RUN OUT`: everything `edgemtl bench` needs to measure a run's bundles on another machine (a device
with only the light install), and nothing more: no Keras models, no training rows.

OUT/run   recipe.yaml (its data.source pointing at OUT/data), preprocess/, exports/ (bundles; C arrays left out)
OUT/data  the manifest and the media files of its test rows, at the same paths relative to it (an .npz whole)
"""
import dataclasses
import os
import shutil
from pathlib import Path

from ..data.dataset import load_table
from ..data.manifest import split_rows
from ..errors import EdgemtlError
from ..recipe.schema import Recipe
from ..rundir import TMP_PREFIX, RunDir, atomic_write_text, kill_point, remove_stale_temporaries, remove_tree
from ..stages import write_recipe
from .run import bundles

MEDIA = ("image", "audio", "sequence")  # inputs whose manifest column holds a file path
PACK_MARKER = ".edgemtl-pack"  # in every OUT pack wrote: the only folders --overwrite replaces


def pack_run(run: RunDir, recipe: Recipe, out: Path, overwrite: bool = False) -> str:
    found = bundles(run)
    if not found:
        raise EdgemtlError(f"{run.root}: no bundles in exports/ to pack; run 'edgemtl export' first")
    check_pack_out(run, recipe, out, overwrite)
    final, out = out, out.parent / f"{TMP_PREFIX}{os.getpid()}-{out.name}"  # built aside, renamed when complete
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    shutil.rmtree(out, ignore_errors=True)
    try:
        summary = _pack_into(run, recipe, found, out, final)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # the earlier pack, if any, is untouched
        raise
    kill_point("pack-before-rename")
    if final.exists():
        remove_tree(final)
    os.replace(out, final)
    return summary


def check_pack_out(run: RunDir, recipe: dict, out: Path, overwrite: bool) -> None:
    """OUT must not be, hold or lie inside the run or the data; an existing OUT is replaced only with --overwrite
    and only when pack made it."""
    target, root = out.resolve(), run.root.resolve()
    if target == root or root in target.parents or target in root.parents:
        raise EdgemtlError(f"{out}: pack cannot write into the run it packs ({run.root}), nor into a folder that "
                           f"holds it: choose an OUT outside it")
    source = Path(recipe.data.source).resolve()
    if target == source or target in source.parents:
        raise EdgemtlError(f"{out}: holds the run's data ({source}): choose another OUT")
    if out.exists() and not out.is_dir():
        raise EdgemtlError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise EdgemtlError(f"{out}: already exists and is not empty (use --overwrite)")
        if not (out / PACK_MARKER).is_file():
            raise EdgemtlError(f"{out}: not a folder 'edgemtl pack' made (no {PACK_MARKER}); --overwrite never "
                               f"deletes other folders: choose another OUT")


def _pack_into(run: RunDir, recipe: dict, found: list, out: Path, final: Path) -> str:
    manifest, n_files = _pack_test_rows(recipe, out / "data", run)
    packed = RunDir(out / "run")
    for aid in found:
        shutil.copytree(run.bundle_dir(aid), packed.bundle_dir(aid))
    shutil.copytree(run.preprocess, packed.preprocess)
    # data.source resolved against the packed recipe.yaml's folder
    source = str(Path("..") / "data" / manifest.name)
    moved = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, source=source))
    write_recipe(packed, moved)
    from .. import __version__

    atomic_write_text(out / PACK_MARKER, f"edgemtl {__version__}\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    return (f"packed {len(found)} bundles and the test split ({n_files} media files) into {final} ({size:.1f} MB); "
            f"on the other machine: edgemtl bench {final / 'run'}")


def _pack_test_rows(recipe: Recipe, to: Path, run: RunDir | None = None):
    """Copy the manifest and its test rows' media files; returns (manifest copy, media files copied)."""
    source = Path(recipe.data.source)
    to.mkdir(parents=True)
    shutil.copy(source, to / source.name)
    if source.suffix.lower() == ".npz":  # the arrays are the data
        return to / source.name, 0
    table = load_table(recipe)
    columns = [i.column for i in recipe.inputs if i.type in MEDIA]
    copied = 0
    saved = run.split if run is not None and run.split.is_file() else None  # the rows the run was split into
    for row in split_rows(table, recipe.data.split, recipe.seed, saved)["test"]:
        for column in columns:
            relative = Path(str(table.columns[column][row]))
            if relative.is_absolute():
                raise EdgemtlError(f"{table.where(row)}: {column} '{relative}' is an absolute path; pack needs media "
                                   f"paths relative to the manifest")
            if not _inside(source.parent / relative, source.parent):  # `../` would copy, and write, outside
                raise EdgemtlError(f"{table.where(row)}: {column} '{relative}' leads outside the manifest's folder "
                                   f"{source.parent}; pack copies only files under it")
            if not (source.parent / relative).is_file():
                if recipe.data.on_bad_row == "skip":  # bench skips that row too
                    continue
                raise EdgemtlError(f"{table.where(row)}: {column} file '{source.parent / relative}' not found")
            (to / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source.parent / relative, to / relative)
            copied += 1
    return to / source.name, copied


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` resolves (links followed) inside `folder`."""
    return path.resolve().is_relative_to(folder.resolve())
