"""Box task (`type: boxes`): anchor-free detection, CenterNet style (Zhou et al. 2019, "Objects as Points").

The head reads a stride-4 or -8 feature map of an image encoder and outputs one map per row, [grid_h, grid_w,
classes + 4], every channel a sigmoid (int8-friendly: one [0, 1] range): a heatmap per class (a box's centre cell is
1, a gaussian around it), then the centre's offset inside its cell (x, y, in cells) and the box size (w, h) as a
fraction of the image side. No peak extraction or NMS is in the model, so it converts to TFLite/ONNX int8 with
builtin ops; decoding (3x3 max-pool peaks, top-k, score threshold) is numpy here, shared by scoring, the parity
gate and the runtime.

Labels: a JSON list of [x0, y0, x1, y1, class] in pixels of the recipe's image size (x1, y1 exclusive), or a path
to a .json file holding that list (relative to the manifest). Encoded labels are [rows, max_boxes, 5] in grid-cell
units (pixels / stride), padding rows class -1, a row without a label NaN. Normalised score: mAP@0.5.
"""
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import EdgemtlError
from .base import TaskKind, as_label, describe, is_missing, sorted_classes

MAP_MIN_SCORE = 0.01  # detections scored for mAP: every peak of the top-k above this
IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))  # mAP@[.5:.95] (COCO)
SIZE_WEIGHT, OFFSET_WEIGHT = 5.0, 1.0  # L1 on sizes (fractions of the image) and offsets (cells)
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0
HEAT_PRIOR_BIAS = -2.19  # sigmoid = 0.1: the heatmap starts near "no object" (CenterNet's focal-loss prior)
AGREE_IOU = 0.5


# --- labels ------------------------------------------------------------------------------------------------------
def parse_boxes(value, where: str = "boxes") -> list[list[float]]:
    """A label cell (JSON text, a list, or a path to a .json file) -> [[x0, y0, x1, y1, class], ...]."""
    if isinstance(value, (str, Path)) and not str(value).lstrip().startswith("["):
        try:
            value = Path(value).read_text()
        except OSError as e:
            raise EdgemtlError(f"{where}: box file {describe(value)} not readable ({e.__class__.__name__})") from None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise EdgemtlError(f"{where}: {value[:60]!r} is not a JSON list of [x0, y0, x1, y1, class]") from None
    if not isinstance(value, list):
        raise EdgemtlError(f"{where}: expected a list of [x0, y0, x1, y1, class], got {type(value).__name__}")
    boxes = []
    for i, b in enumerate(value):
        if not (isinstance(b, list) and len(b) == 5 and all(isinstance(v, (int, float, str)) for v in b)):
            raise EdgemtlError(f"{where}: box {i} is {str(b)[:60]}, not [x0, y0, x1, y1, class]")
        try:
            x0, y0, x1, y1 = (float(v) for v in b[:4])
        except ValueError:
            raise EdgemtlError(f"{where}: box {i} has coordinates that are not numbers") from None
        if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
            raise EdgemtlError(f"{where}: box {i} {b[:4]} is empty or inverted (x1 > x0 and y1 > y0 needed)")
        boxes.append([x0, y0, x1, y1, as_label(b[4])])
    return boxes


def resolve_label_paths(table, column: str) -> list:
    """A label column's cells with relative file paths resolved against the manifest's folder."""
    out = []
    for v in table.columns[column]:
        if isinstance(v, str) and not is_missing(v) and not v.lstrip().startswith("["):
            v = str(table.base / v)
        out.append(v)
    return out


# --- target maps and decoding (numpy; the loss builds the same maps in TF) ----------------------------------------
def sigma(size_cells):
    """The gaussian's spread for a box side in cells (TTFNet's 0.54 / 6 of the side; at least half a cell)."""
    return np.maximum(0.54 * np.asarray(size_cells) / 6.0, 0.5)


def encode_targets(boxes: np.ndarray, grid: tuple, n_classes: int) -> np.ndarray:
    """One row's boxes [M, 5] in cells (class -1: padding) -> the target map [gh, gw, n_classes + 4]: what a perfect
    head outputs (heatmap peaks of exactly 1 at centre cells, offsets and sizes there)."""
    gh, gw = grid
    out = np.zeros((gh, gw, n_classes + 4), np.float32)
    ys, xs = np.mgrid[0:gh, 0:gw]
    for x0, y0, x1, y1, c in boxes:
        if not c >= 0:
            continue
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(int(cx), gw - 1), min(int(cy), gh - 1)
        g = np.exp(-((xs - ix) ** 2 / (2 * sigma(x1 - x0) ** 2) + (ys - iy) ** 2 / (2 * sigma(y1 - y0) ** 2)))
        out[..., int(c)] = np.maximum(out[..., int(c)], g)
        out[iy, ix, n_classes:] = [cx - ix, cy - iy, (x1 - x0) / gw, (y1 - y0) / gh]
    return out


def peaks(heat: np.ndarray) -> np.ndarray:
    """Heatmap [gh, gw, C] with every value that is not the maximum of its 3x3 neighbourhood zeroed."""
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    gh, gw = heat.shape[:2]
    neighbourhood = np.max([padded[dy:dy + gh, dx:dx + gw] for dy in range(3) for dx in range(3)], axis=0)
    return np.where(heat >= neighbourhood, heat, 0.0)


def decode(output: np.ndarray, n_classes: int, top_k: int, min_score: float) -> np.ndarray:
    """One row's output [gh, gw, C + 4] -> detections [K, 6]: x0, y0, x1, y1 (cells), class, score; best first."""
    output = np.asarray(output, dtype=np.float64)
    gh, gw = output.shape[:2]
    heat = peaks(output[..., :n_classes])
    flat = heat.reshape(-1)
    k = min(top_k, flat.size)
    best = np.argpartition(-flat, k - 1)[:k]
    best = best[np.argsort(-flat[best], kind="stable")]
    best = best[flat[best] >= min_score]
    cell, cls = np.divmod(best, n_classes)
    iy, ix = np.divmod(cell, gw)
    ox, oy, w, h = (output[iy, ix, n_classes + j] for j in range(4))
    cx, cy, w, h = ix + ox, iy + oy, w * gw, h * gh
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cls, flat[best]], axis=-1).reshape(-1, 6)


# --- mAP ---------------------------------------------------------------------------------------------------------
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N, 4+] with every box in b [M, 4+] (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def average_precision(truth: list, detections: list, iou_threshold: float) -> float | None:
    """AP of one class: truth and detections per image ([N, 4] and [K, 5] with the score last). Greedy matching by
    score (each truth box at most once, VOC/COCO rule), all-point interpolation of the precision envelope. None when
    the class has no truth box."""
    n_truth = sum(len(t) for t in truth)
    if n_truth == 0:
        return None
    scored = []  # (score, true positive)
    for t, d in zip(truth, detections):
        if len(d) == 0:
            continue
        d = d[np.argsort(-d[:, 4], kind="stable")]
        used = np.zeros(len(t), bool)
        ious = iou_matrix(d, t) if len(t) else np.zeros((len(d), 0))
        for j in range(len(d)):
            candidates = np.where(~used, ious[j], -1.0) if len(t) else np.array([])
            hit = len(t) > 0 and candidates.max() >= iou_threshold
            if hit:
                used[int(candidates.argmax())] = True
            scored.append((d[j, 4], hit))
    if not scored:
        return 0.0
    scored.sort(key=lambda s: -s[0])
    tp = np.cumsum([s[1] for s in scored])
    fp = np.cumsum([not s[1] for s in scored])
    recall, precision = tp / n_truth, tp / np.maximum(tp + fp, 1e-12)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def mean_average_precision(truth: list, detections: list, n_classes: int, iou_threshold: float) -> float | None:
    """mAP over the classes that have a truth box. truth: per image [N, 5] (x0, y0, x1, y1, class); detections: per
    image [K, 6] (..., class, score)."""
    aps = []
    for c in range(n_classes):
        t = [np.asarray(x)[np.asarray(x)[:, 4] == c, :4] if len(x) else np.zeros((0, 4)) for x in truth]
        d = [np.asarray(x)[np.asarray(x)[:, 4] == c][:, [0, 1, 2, 3, 5]] if len(x) else np.zeros((0, 5))
             for x in detections]
        ap = average_precision(t, d, iou_threshold)
        if ap is not None:
            aps.append(ap)
    return float(np.mean(aps)) if aps else None


def _matched(ref: np.ndarray, got: np.ndarray) -> bool:
    """Two rows' thresholded detections agree: as many boxes, each of ref matched by one of got of its class."""
    if len(ref) != len(got):
        return False
    if len(ref) == 0:
        return True
    ious = iou_matrix(ref, got)
    same = ref[:, None, 4] == got[None, :, 4]
    used = np.zeros(len(got), bool)
    for i in range(len(ref)):
        candidates = np.where(same[i] & ~used, ious[i], -1.0)
        if candidates.max() < AGREE_IOU:
            return False
        used[int(candidates.argmax())] = True
    return True


class BoxesKind(TaskKind):
    name = "boxes"
    decode_rule = "peaks"
    dense = True
    shared_reader = "{task}_gate"  # models/dense.py: the gate reads the shared vector
    metric_names = ("map50", "map")  # score() also says n_boxes: the truth boxes scored
    primary_metric = "map50"
    score_meaning = "mAP@0.5 for boxes"
    min_classes = 1
    unseen_effect = "their boxes are left out of training and scoring"

    # -- labels ---------------------------------------------------------------------------------------------------
    def label_column(self, table, column: str) -> list:
        return resolve_label_paths(table, column)

    def learn_labels(self, spec, values: list) -> dict:
        rows = [parse_boxes(v, f"tasks.{spec.name}") for v in values if not is_missing(v)]
        classes = sorted_classes({b[4] for r in rows for b in r})
        return {"type": self.name, "classes": classes, "max_boxes": max([1, *map(len, rows)]),
                "stride": spec.stride}

    def encode_labels(self, label_info: Mapping, values: list, separator: str = "|") -> np.ndarray:
        index = {c: i for i, c in enumerate(label_info["classes"])}
        stride, m = label_info["stride"], label_info["max_boxes"]
        out = np.full((len(values), m, 5), -1.0, np.float32)
        out[..., :4] = 0.0
        for r, v in enumerate(values):
            if is_missing(v):
                out[r] = np.nan
                continue
            boxes = parse_boxes(v, f"boxes label of row {r + 1}")[:m]
            for j, (x0, y0, x1, y1, c) in enumerate(boxes):
                out[r, j] = [x0 / stride, y0 / stride, x1 / stride, y1 / stride, index.get(c, -1)]
        return out

    def n_outputs(self, label_info: Mapping):
        """Numbers per row: the grid follows the image size, which the task's labels do not hold (None: the
        manifest's width check leaves it to the shape the runtime reads)."""
        return None

    def label_problems(self, spec, label_info: Mapping, where: str) -> list[str]:
        if not label_info.get("classes"):
            return [f"{where}: column '{spec.column}' has no box in the training split"]
        return []

    def covering_rows(self, y: np.ndarray) -> list[int]:
        cls = np.where(np.isfinite(y[..., 4]), y[..., 4], -1)
        return sorted({int(np.argmax((cls == c).any(axis=1))) for c in np.unique(cls[cls >= 0])})

    # -- outputs --------------------------------------------------------------------------------------------------
    def detections(self, output: np.ndarray, min_score: float, top_k: int = 100) -> list[np.ndarray]:
        """Per row: decoded detections [K, 6] in cells (the classes read from the output's channels)."""
        output = np.asarray(output)
        n = output.shape[-1] - 4
        return [decode(o, n, top_k, min_score) for o in output]

    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """The boxes scoring at least threshold: [rows, most boxes in a row, 6] (x0, y0, x1, y1 in cells, class,
        score), rows with fewer padded with NaN."""
        found = self.detections(output, threshold)
        out = np.full((len(found), max([1, *map(len, found)]), 6), np.nan)
        for i, d in enumerate(found):
            out[i, :len(d)] = d
        return out

    def score(self, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0) -> dict:
        """mAP@0.5 and mAP@[.5:.95] over the labelled rows, every top-k peak above MAP_MIN_SCORE scored (the
        threshold only decides what an answer lists)."""
        y_true = np.asarray(y_true)
        labelled = np.isfinite(y_true[:, 0, 0])
        n_classes = np.asarray(output).shape[-1] - 4
        truth = [t[t[:, 4] >= 0] for t in y_true[labelled]]
        detections = self.detections(np.asarray(output)[labelled], MAP_MIN_SCORE)
        n_boxes = int(sum(len(t) for t in truth))
        if not n_boxes:
            from .base import no_score
            return no_score(self.metric_names, int(labelled.sum()))
        per_iou = [mean_average_precision(truth, detections, n_classes, t) for t in IOU_THRESHOLDS]
        metrics = {"map50": per_iou[0], "map": float(np.mean(per_iou)), "n_boxes": n_boxes}
        return {**metrics, "score": self.normalised(metrics), "n": int(labelled.sum())}

    def normalised(self, metrics: Mapping, std: float = 1.0) -> float:
        return metrics["map50"]

    def format_primary(self, metrics: Mapping) -> str:
        value = metrics.get("map50")
        return "" if value is None else f"mAP@.5 {value:.4f}"

    def output_entry(self, spec, label_info: Mapping) -> dict:
        return {**super().output_entry(spec, label_info), "threshold": spec.threshold,
                "params": {"stride": label_info["stride"], "top_k": spec.top_k}}

    def answer(self, entry: Mapping, output: np.ndarray) -> dict:
        """{"boxes": [{"label", "score", "box": [x0, y0, x1, y1] in pixels}]}, best first: the top_k peaks whose
        score reaches the entry's threshold."""
        params, labels = entry["params"], entry["labels"]
        found = decode(output, len(labels), int(params["top_k"]), float(entry["threshold"]))
        stride = float(params["stride"])
        return {"boxes": [{"label": labels[int(d[4])], "score": float(d[5]),
                           "box": [round(float(v) * stride, 2) for v in d[:4]]} for d in found]}

    # -- parity ---------------------------------------------------------------------------------------------------
    def agreement(self, ref: np.ndarray, got: np.ndarray, threshold: float = 0.5) -> float:
        """Share of rows whose answered boxes (above the threshold) match: same count, each of its class at IoU
        >= 0.5."""
        pairs = zip(self.detections(ref, threshold), self.detections(got, threshold))
        return float(np.mean([_matched(r, g) for r, g in pairs]))

    # -- TF half --------------------------------------------------------------------------------------------------
    def head(self, x, spec, label_info: Mapping, match=None, features=None):
        from ..models.dense import dense_head
        from ..tfk import keras

        channels = len(label_info["classes"]) + 4
        z = dense_head(features, x, spec.stride, channels, spec.name, bias=HEAT_PRIOR_BIAS)
        return keras.layers.Activation("sigmoid", name=spec.name)(z)

    def loss(self, spec, label_info: Mapping):
        """Focal loss on the heatmaps (penalty-reduced near centres, CenterNet) + L1 on offsets and sizes at the
        centre cells, normalised by the number of boxes in the batch."""
        from ..tfk import tf

        n_classes = len(label_info["classes"])

        def boxes(y, p):
            heat_t, centre, reg_t = target_maps(y, p, n_classes)
            heat = tf.clip_by_value(p[..., :n_classes], 1e-6, 1 - 1e-6)
            pos = tf.cast(heat_t >= 1.0 - 1e-6, tf.float32)
            focal = (pos * tf.pow(1 - heat, FOCAL_ALPHA) * tf.math.log(heat)
                     + (1 - pos) * tf.pow(1 - heat_t, FOCAL_BETA) * tf.pow(heat, FOCAL_ALPHA) * tf.math.log(1 - heat))
            labelled = tf.cast(tf.math.is_finite(y[:, 0, 0]), tf.float32)[:, None, None, None]
            n_pos = tf.maximum(tf.reduce_sum(pos * labelled), 1.0)
            reg = tf.abs(p[..., n_classes:] - reg_t) * centre[..., None] * labelled
            weights = tf.constant([OFFSET_WEIGHT, OFFSET_WEIGHT, SIZE_WEIGHT, SIZE_WEIGHT])
            return (-tf.reduce_sum(focal * labelled) + tf.reduce_sum(reg * weights)) / n_pos
        return boxes

    def soft_loss(self, spec, label_info: Mapping, temperature: float):
        """Distillation, dense soft targets: the teacher's maps, read the way the decoder reads them.

        Heatmaps: a Bernoulli KL per cell and class between the temperature-softened teacher and student heat
        (each heat value is an independent sigmoid, as a multilabel output is; KL rather than squared distance
        because near 0 and 1 -- the peaks and the background -- a squared distance of probabilities has almost no
        gradient), times T^2, summed per image like the hard focal loss (a mean over the mostly empty cells would
        shrink it by the grid size). Offsets and sizes: L1 (as in the hard loss) only at the teacher's peaks (3x3
        maxima, decode's rule), weighted by their heat: elsewhere they are never decoded and the teacher's values
        there mean nothing."""
        from ..tfk import tf
        from .base import probability_logits

        n_classes, t2 = len(label_info["classes"]), temperature ** 2
        weights = tf.constant([OFFSET_WEIGHT, OFFSET_WEIGHT, SIZE_WEIGHT, SIZE_WEIGHT])

        def boxes(t, s):
            th = tf.sigmoid(probability_logits(t[..., :n_classes], softmax=False) / temperature)
            sh = tf.sigmoid(probability_logits(s[..., :n_classes], softmax=False) / temperature)
            th, sh = (tf.clip_by_value(v, 1e-6, 1 - 1e-6) for v in (th, sh))
            kl = th * tf.math.log(th / sh) + (1 - th) * tf.math.log((1 - th) / (1 - sh))
            heat = t2 * tf.reduce_sum(kl) / tf.cast(tf.maximum(tf.shape(t)[0], 1), tf.float32)
            peak = tf.reduce_max(t[..., :n_classes], axis=-1, keepdims=True)  # [B, gh, gw, 1]
            is_peak = tf.cast(peak >= tf.nn.max_pool2d(peak, 3, 1, "SAME"), tf.float32)
            w = peak * is_peak
            reg = tf.reduce_sum(w * tf.abs(s[..., n_classes:] - t[..., n_classes:]) * weights)
            return heat + reg / tf.maximum(tf.reduce_sum(w), 1.0)
        return boxes

def target_maps(y, p, n_classes: int):
    """TF: encode_targets for a batch: (heatmap targets [B, gh, gw, C], centre cells [B, gh, gw] (1 where a box's
    centre is), offset/size targets [B, gh, gw, 4]) from boxes y [B, M, 5] in cells, on p's grid."""
    from ..tfk import tf

    gh, gw = p.shape[1], p.shape[2]
    y = tf.where(tf.math.is_finite(y), y, tf.constant([0.0, 0.0, 0.0, 0.0, -1.0]))
    x0, y0, x1, y1, c = (y[..., i] for i in range(5))  # [B, M]
    valid = tf.cast(c >= 0, tf.float32)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ix = tf.minimum(tf.floor(cx), gw - 1.0)
    iy = tf.minimum(tf.floor(cy), gh - 1.0)
    sx = tf.maximum(0.54 * (x1 - x0) / 6.0, 0.5)
    sy = tf.maximum(0.54 * (y1 - y0) / 6.0, 0.5)
    xs = tf.range(gw, dtype=tf.float32)[None, None, None, :]
    ys = tf.range(gh, dtype=tf.float32)[None, None, :, None]
    e = lambda v: v[..., None, None]  # noqa: E731  [B, M] -> [B, M, 1, 1]
    g = tf.exp(-(tf.square(xs - e(ix)) / (2 * tf.square(e(sx))) + tf.square(ys - e(iy)) / (2 * tf.square(e(sy)))))
    g = g * e(valid)  # [B, M, gh, gw]
    onehot = tf.one_hot(tf.cast(tf.maximum(c, 0), tf.int32), n_classes) * valid[..., None]  # [B, M, C]
    heat = tf.reduce_max(g[..., None] * onehot[:, :, None, None, :], axis=1)  # [B, gh, gw, C]
    at_centre = tf.cast(tf.equal(xs, e(ix)) & tf.equal(ys, e(iy)), tf.float32) * e(valid)  # [B, M, gh, gw]
    reg = tf.stack([cx - ix, cy - iy, (x1 - x0) / gw, (y1 - y0) / gh], axis=-1)  # [B, M, 4]
    centre = tf.minimum(tf.reduce_sum(at_centre, axis=1), 1.0)
    reg_t = tf.einsum("bmhw,bmk->bhwk", at_centre, reg) / tf.maximum(centre, 1.0)[..., None]
    return heat, centre, reg_t
