"""Build the digits-on-canvas detection + segmentation set from the real av_digits files (seeded, reproducible).

    python scripts/make_canvas.py [--source ../shared/data/av_digits] [--out demo/canvas] [--rows 300]

Each row is one 96x96 grayscale canvas holding 1-4 handwritten MNIST digits (the av_digits PNGs) at random positions
and scales, boxes and masks exact by construction, plus one spoken digit (an FSDD recording from the same folder)
naming one digit on the canvas:

- `image`: canvases/NNNN.png; `mask`: masks/NNNN.png (per pixel: 0 background, digit d -> d + 1)
- `boxes`: JSON list of [x0, y0, x1, y1, class] in pixels (x1, y1 exclusive), class = the digit
- `audio`: recordings/<digit>_<speaker>_<take>.wav, `spoken`: the digit it names
- `spoken_box`: JSON list with the one box of the spoken digit; `spoken_mask`: spoken/NNNN.png (1 = its pixels)
- `count`: how many digits, `largest`: the digit with the largest box, `split`: train | val | test

Test canvases use only the av_digits test rows (their images come from the other half of MNIST, their recordings
are FSDD takes 0-4); validation canvases use a held-out tenth of the training images (by MNIST index) and recordings
(take 5), so no image or recording is shared between splits. A canvas holds each digit class at most once (the
spoken digit names one box) and digits do not overlap (boxes kept 1 pixel apart), so every box is fully visible and
the mask is exact. Rows of the splits are interleaved (data.limit keeps every split). The output is CC BY-SA 4.0
like its sources (README.md written beside it says so).
"""
import argparse
import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 96
SIDE = (22, 44)  # the side of the 28x28 MNIST square once scaled (the digit's box is about 0.7 of it)
INK = 40  # a scaled pixel above this is the digit's (box and mask): MNIST strokes are anti-aliased
FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}

README = """# digits-on-canvas subset (built by `python scripts/make_canvas.py`)

{rows} rows ({counts}) of 96x96 canvases with 1-4 handwritten digits, their boxes and masks, and a spoken digit
naming one of them. Columns: see the docstring of scripts/make_canvas.py or docs/detection.md.

## Attribution and licence
- Audio: Free Spoken Digit Dataset (FSDD), Zohar Jackson and contributors,
  https://github.com/Jakobovski/free-spoken-digit-dataset (commit 26eb9aa), licensed CC BY-SA 4.0.
- Digits: the MNIST database test set, Yann LeCun, Corinna Cortes and Christopher J. C. Burges, licensed CC BY-SA 3.0.
- The canvases, boxes, masks and pairings (seed {seed}) were made for edgemtl from those files.

This folder, as a derivative of both, is distributed under **CC BY-SA 4.0**
(https://creativecommons.org/licenses/by-sa/4.0/).
"""


def take(row: dict) -> int:
    return int(Path(row["audio"]).stem.rsplit("_", 1)[1])


def pools(rows: list) -> dict:
    """split -> (digit -> image paths, digit -> recording paths), disjoint between splits."""
    out = {s: ({}, {}) for s in FRACTIONS}
    for r in rows:
        if r["split"] == "test":
            split_img = split_rec = "test"
        else:
            split_img = "val" if int(r["mnist_index"]) % 10 == 0 else "train"
            split_rec = "val" if take(r) == 5 else "train"
        images, recordings = out[split_img][0], out[split_rec][1]
        images.setdefault(r["digit"], set()).add(r["image"])
        recordings.setdefault(r["digit"], set()).add(r["audio"])
    return {s: ({d: sorted(v) for d, v in i.items()}, {d: sorted(v) for d, v in a.items()})
            for s, (i, a) in out.items()}


def place(rng: random.Random, source: Path, images: dict, n: int):
    """Up to n digits, each class at most once (so a spoken digit names one box), on one canvas:
    (canvas uint8, mask uint8, boxes [[x0, y0, x1, y1, digit]])."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    boxes = []
    for _ in range(n):
        for _attempt in range(30):
            digit = rng.choice(sorted(set(images) - {str(b[4]) for b in boxes}))
            side = rng.randint(*SIDE)
            x, y = rng.randint(0, SIZE - side), rng.randint(0, SIZE - side)
            path = rng.choice(images[digit])
            patch = np.asarray(Image.open(source / path).convert("L").resize((side, side), Image.BILINEAR))
            ys, xs = np.nonzero(patch > INK)
            if len(xs) == 0:
                continue
            box = [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1]
            if any(_near(box, b) for b in boxes):
                continue
            region = canvas[y:y + side, x:x + side]
            np.maximum(region, patch, out=region)
            mask[y:y + side, x:x + side][patch > INK] = int(digit) + 1
            boxes.append([*box, int(digit)])
            break
    return canvas, mask, boxes


def _near(a, b, gap: int = 1) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def build(source: Path, out: Path, n_rows: int, seed: int) -> list:
    with open(source / "pairs.csv", newline="") as f:
        by_split = pools(list(csv.DictReader(f)))
    rng = random.Random(seed)
    for sub in ("canvases", "masks", "spoken", "recordings"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    splits = [s for s, f in FRACTIONS.items() for _ in range(round(f * n_rows))][:n_rows]
    splits += ["train"] * (n_rows - len(splits))
    rng.shuffle(splits)  # interleaved, so the first rows (data.limit) hold every split
    rows = []
    for i, split in enumerate(splits):
        images, recordings = by_split[split]
        canvas, mask, boxes = place(rng, source, images, rng.randint(1, 4))
        spoken = rng.choice(boxes)
        digit = str(spoken[4])
        audio = rng.choice(recordings[digit])
        name = f"{i:04d}.png"
        Image.fromarray(canvas).save(out / "canvases" / name)
        Image.fromarray(mask).save(out / "masks" / name)
        Image.fromarray((mask == spoken[4] + 1).astype(np.uint8) * _inside(spoken)).save(out / "spoken" / name)
        shutil.copyfile(source / audio, out / audio)
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        rows.append({"image": f"canvases/{name}", "mask": f"masks/{name}", "boxes": json.dumps(boxes),
                     "audio": audio, "spoken": digit, "spoken_box": json.dumps([spoken]),
                     "spoken_mask": f"spoken/{name}", "count": len(boxes), "largest": largest[4], "split": split})
    with open(out / "canvas.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = ", ".join(f"{s} {splits.count(s)}" for s in FRACTIONS)
    (out / "README.md").write_text(README.format(rows=n_rows, counts=counts, seed=seed))
    return rows


def _inside(box) -> np.ndarray:
    """1 inside the box, 0 outside: the spoken digit's mask keeps only its own pixels (another digit of the same
    class elsewhere on the canvas is not the spoken one)."""
    keep = np.zeros((SIZE, SIZE), np.uint8)
    keep[box[1]:box[3], box[0]:box[2]] = 1
    return keep


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="../shared/data/av_digits")
    ap.add_argument("--out", default="demo/canvas")
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = build(Path(args.source), Path(args.out), args.rows, args.seed)
    print(f"{len(rows)} rows -> {Path(args.out) / 'canvas.csv'}")


if __name__ == "__main__":
    main()
