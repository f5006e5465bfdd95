"""Build a sensor-style .npz from the spoken-digit recordings of av_digits: each recording becomes a window of 50
time steps (20 ms frames of a 1 s clip at 8 kHz) by 16 channels (the log energy of 16 equal-width frequency bands,
0-4 kHz), the way a wearable's firmware hands over framed multichannel features. No model makes these numbers: they
are the recordings' own spectra.

    python scripts/make_sensor_npz.py [--source ../shared/data/av_digits/pairs.csv] [--out runs/data/bands.npz]
                                      [--takes N]

Arrays, one entry per row (a recording): `window` [N, 50, 16] float16, `digit` int64 codes 0-9, `speaker`, `take`,
`recording`. Metadata (not one entry per row): `channels` (16 channel names), `digit_names` (the names of codes 0-9),
`frame_rate` (0-d, frames per second) and `sample_rate` (0-d, Hz of the recordings). recipes/sensor_digits.yaml
reads it with a split by speaker (data.split.group), so its test speaker is never heard in training.

--takes N keeps takes 0..N-1 of every speaker and digit (tests/data/sensor_digits/bands.npz: --takes 4, from the
embedded demo's recordings). Audio: Free Spoken Digit Dataset, CC BY-SA 4.0 (tests/data/sensor_digits/README.md).
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgemtl.kinds.audio import load_audio  # noqa: E402  (the decoder training and the runtime share)

RATE, FRAME, BANDS = 8000, 160, 16  # 20 ms frames, 50 per 1 s clip
FFT = 256  # zero-padded frame: 129 bins, 8 per band (the Nyquist bin left out)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def band_energies(samples: np.ndarray) -> np.ndarray:
    """[RATE] samples -> [50, BANDS] log10 band energies (float32)."""
    frames = samples.reshape(-1, FRAME) * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, FFT)) ** 2
    bands = power[:, :128].reshape(len(frames), BANDS, -1).sum(axis=2)
    return np.log10(bands + 1e-6).astype(np.float32)


def recordings(manifest: Path, takes: int | None) -> list[dict]:
    """One row per distinct recording of the manifest (pairs.csv lists some twice, with two images)."""
    seen, rows = set(), []
    with open(manifest, newline="") as f:
        for r in csv.DictReader(f):
            digit, speaker, take = Path(r["audio"]).stem.split("_")
            if r["audio"] in seen or (takes is not None and int(take) >= takes):
                continue
            seen.add(r["audio"])
            rows.append({"file": r["audio"], "digit": int(digit), "speaker": speaker, "take": int(take)})
    return sorted(rows, key=lambda r: (r["speaker"], r["digit"], r["take"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="../shared/data/av_digits/pairs.csv")
    ap.add_argument("--out", default="runs/data/bands.npz")
    ap.add_argument("--takes", type=int, default=None, help="keep takes 0..N-1 of every speaker and digit")
    args = ap.parse_args()
    source, out = Path(args.source), Path(args.out)
    rows = recordings(source, args.takes)
    windows = np.stack([band_energies(load_audio(source.parent / r["file"], RATE, RATE)) for r in rows])
    step = RATE // 2 // BANDS
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, window=windows.astype(np.float16), digit=np.array([r["digit"] for r in rows], dtype=np.int64),
        speaker=np.array([r["speaker"] for r in rows]), take=np.array([r["take"] for r in rows]),
        recording=np.array([r["file"] for r in rows]),
        channels=np.array([f"band{b}_{b * step}-{(b + 1) * step}Hz" for b in range(BANDS)]),
        digit_names=np.array(DIGITS), frame_rate=np.array(RATE / FRAME), sample_rate=np.array(RATE))
    speakers = sorted({r["speaker"] for r in rows})
    print(f"{out}: {len(rows)} windows [{windows.shape[1]}, {windows.shape[2]}] from {source}, speakers "
          f"{', '.join(speakers)}; {out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
