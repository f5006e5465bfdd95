"""Rebuild the embedded demo subset demo/av_digits/ from ../shared/data/av_digits (maintainers only; the demo
itself needs nothing outside this repository).

    python scripts/make_av_demo.py [--source ../shared/data/av_digits] [--out demo/av_digits]

Rows: all 300 rows of the official FSDD test split; takes 5-15 of every speaker and digit for training and take 16
for validation. Each training and validation recording appears twice, with its own image and with one more image
of the same digit from MNIST's training half that no other row uses (seed 0): the images are 0.3 KB each, the
recordings 7 KB, so this doubles what the image encoder sees within the repository's 8 MB for the demo.
Files are copied unchanged; README.md (attribution, licence) is kept.
"""
import argparse
import csv
import random
import shutil
from pathlib import Path

TRAIN_TAKES, VAL_TAKE = range(5, 16), 16


def take(row: dict) -> int:
    return int(Path(row["audio"]).stem.rsplit("_", 1)[1])


def demo_rows(rows: list) -> list:
    chosen = [dict(r) for r in rows if r["split"] == "test" or take(r) in TRAIN_TAKES or take(r) == VAL_TAKE]
    for r in chosen:
        if r["split"] == "train" and take(r) == VAL_TAKE:
            r["split"] = "val"
    used = {r["image"] for r in chosen}
    spare = {}
    for r in rows:
        if r["split"] == "train" and r["image"] not in used:
            spare.setdefault(r["digit"], []).append(r)
    rng = random.Random(0)
    for pool in spare.values():
        rng.shuffle(pool)
    out = []
    for r in chosen:
        out.append(r)
        if r["split"] != "test":
            other = spare[r["digit"]].pop()
            out.append({**r, "image": other["image"], "mnist_index": other["mnist_index"]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="../shared/data/av_digits")
    ap.add_argument("--out", default="demo/av_digits")
    args = ap.parse_args()
    source, out = Path(args.source), Path(args.out)
    with open(source / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = demo_rows(rows)
    for sub in ("recordings", "images"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    for r in chosen:
        for col in ("audio", "image"):
            shutil.copyfile(source / r[col], out / r[col])
    with open(out / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    counts = {s: sum(r["split"] == s for r in chosen) for s in ("train", "val", "test")}
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {len(chosen)} rows {counts}, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
