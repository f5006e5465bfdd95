"""Draw a bundle's box and mask answers on the image (a PNG), with edgemtl.runtime only (no TensorFlow). `predict`
itself draws nothing: it returns {"boxes": [{"label", "score", "box"}]} and {"mask", "labels", "areas"}; this shows
what they mean.

    python examples/draw_predictions.py BUNDLE out.png --image canvas.png [--audio spoken.wav] [--NAME VALUE ...]
    python examples/draw_predictions.py BUNDLE out.png --answers answers.json --image canvas.png

The mask's classes are tinted (class 0, the background, left as it is) and every task's boxes drawn with its label
and score; the other tasks' answers are written under the image.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgemtl.errors import EdgemtlError

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)], np.uint8)
BOX_COLOURS = ["#ff3030", "#30ff30", "#3080ff", "#ffff30"]
SCALE = 4  # a 96x96 canvas is small: draw at 4x


def draw(image: Image.Image, answers: dict) -> Image.Image:
    """The image with every mask answer tinted and every boxes answer drawn; other answers as text below."""
    base = np.asarray(image.convert("RGB"), np.float32)
    for ans in answers.values():
        if "mask" in ans:
            classes = np.asarray(ans["mask"])
            if classes.shape != base.shape[:2]:
                classes = np.asarray(Image.fromarray(classes.astype(np.uint8)).resize(image.size, Image.NEAREST))
            tint = PALETTE[classes % len(PALETTE)].astype(np.float32)
            fg = (classes > 0)[..., None]
            base = np.where(fg, 0.45 * base + 0.55 * tint, base)
    out = Image.fromarray(base.astype(np.uint8)).resize((image.width * SCALE, image.height * SCALE), Image.NEAREST)
    lines = []
    canvas = Image.new("RGB", (out.width, out.height + 14 * (len(answers) + 1)), "white")
    canvas.paste(out, (0, 0))
    pen = ImageDraw.Draw(canvas)
    for i, (task, ans) in enumerate(answers.items()):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        if "boxes" in ans:
            for b in ans["boxes"]:
                x0, y0, x1, y1 = (v * SCALE for v in b["box"])
                pen.rectangle([x0, y0, x1, y1], outline=colour, width=2)
                pen.text((x0 + 2, max(0, y0 - 11)), f"{task}:{b['label']} {b['score']:.2f}", fill=colour)
            lines.append(f"{task}: {len(ans['boxes'])} box(es)")
        elif "mask" in ans:
            lines.append(f"{task}: areas " + ", ".join(f"{k}={v}" for k, v in ans["areas"].items()))
        elif "label" in ans:
            lines.append(f"{task}: {ans['label']} ({ans['score']:.2f})")
        elif "labels" in ans:
            lines.append(f"{task}: {', '.join(ans['labels']) or '-'}")
        elif "value" in ans:
            lines.append(f"{task}: {ans['value']:.4g}")
    for j, line in enumerate(lines):
        pen.text((4, out.height + 2 + 14 * j), line, fill="black")
    return canvas


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--image", required=True, help="the image the boxes and mask are drawn on")
    ap.add_argument("--answers", help="predict's JSON output for this image (else the bundle is run)")
    args, extra = ap.parse_known_args(argv)
    try:
        if args.answers:
            answers = json.loads(Path(args.answers).read_text())
        else:
            from edgemtl.runtime import load

            model = load(args.bundle)
            raw = dict(zip([a.lstrip("-") for a in extra[::2]], extra[1::2]))
            image_inputs = [n for n, p in model.inputs.items() if p.modality.name == "image"]
            raw.update({n: args.image for n in image_inputs if n not in raw})
            answers = model.predict(**raw)
        draw(Image.open(args.image), answers).save(args.out)
    except EdgemtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
