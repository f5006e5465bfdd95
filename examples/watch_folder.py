"""An on-device style integration: watch a folder and answer for every new sample, with edgemtl.runtime only
(no TensorFlow). A sample is a group of files sharing a name stem, one per model input, chosen by modality:

    image: .png .jpg .jpeg .bmp    audio: .wav .flac .ogg    text: .txt (its content)    numeric: .json (a list)
    sequence: .json (a list of time steps), .npy or .csv (a window file)

    python examples/watch_folder.py runs/av_digits/exports/teacher-tflite-int8 incoming/ [--once]

e.g. incoming/s1.wav + incoming/s1.png -> "s1: digit: 7 (0.998), speaker: theo (0.973)".
"""
import argparse
import json
import sys
import time
from pathlib import Path

from edgemtl.errors import EdgemtlError
from edgemtl.runtime import load
from edgemtl.runtime.predict_cli import format_answers


def sample_files(folder: Path, inputs: dict) -> dict:
    """{stem: {input name: path}} for stems that have one file for every input."""
    found: dict = {}
    for path in folder.iterdir():
        for name, prep in inputs.items():
            if path.suffix.lower() in prep.modality.file_suffixes:
                found.setdefault(path.stem, {})[name] = path
    return {stem: files for stem, files in found.items() if len(files) == len(inputs)}


def read_input(path: Path, modality):
    """JSON numbers are passed as their values, a media file as its path, text as the file's content."""
    if modality.json_value and path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    if modality.media:
        return str(path)
    return path.read_text().strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("folder")
    ap.add_argument("--once", action="store_true", help="answer for the files there now, then exit")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the folder")
    args = ap.parse_args()
    try:
        model = load(args.bundle)
    except EdgemtlError as e:
        sys.exit(f"error: {e}")
    folder, done = Path(args.folder), set()
    print(f"{model!r}: watching {folder}", file=sys.stderr)
    while True:
        for stem, files in sorted(sample_files(folder, model.inputs).items()):
            if stem in done:
                continue
            done.add(stem)
            try:
                raw = {n: read_input(p, model.inputs[n].modality) for n, p in files.items()}
                start = time.perf_counter()
                answers = model.predict(**raw)
                ms = (time.perf_counter() - start) * 1000
                print(f"{stem}: {format_answers(answers, ', ')}  [{ms:.1f} ms]", flush=True)
            except EdgemtlError as e:  # one bad sample is reported and skipped; the watcher keeps going
                print(f"{stem}: error: {e}", flush=True)
        if args.once:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
