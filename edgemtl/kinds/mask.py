"""Mask task (`type: mask`): one class per pixel (semantic segmentation) through a light decoder over the image
encoder's feature maps (upsampling with skips from the encoder, models/dense.py), a softmax per pixel at the image's
size.

Labels: a path per row to a mask PNG (relative to the manifest) whose pixel values are the classes; the classes are
the pixel values seen in the training masks, in numeric order ("0" is the background by convention). The runtime
answers the class map (class indices into the entry's labels) and each class's area in pixels. Normalised score:
mean IoU over the classes present in the truth or the prediction of a split.
"""
from collections.abc import Mapping

import numpy as np
from PIL import Image

from ..errors import EdgemtlError
from .base import MISSING, TaskKind, is_missing, softmax_kl
from .boxes import resolve_label_paths


def read_mask(path, where: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, ValueError) as e:
        raise EdgemtlError(f"{where}: mask '{path}' is not a readable image ({e.__class__.__name__})") from None
    if array.ndim != 2:
        raise EdgemtlError(f"{where}: mask '{path}' has shape {list(array.shape)}; a mask is one channel of class "
                           f"values (a grayscale or palette PNG)")
    return array


def confusion(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """[n, n] pixel counts (truth, prediction) over the pixels with a label (truth >= 0)."""
    keep = truth >= 0
    return np.bincount(truth[keep].astype(np.int64) * n + pred[keep], minlength=n * n).reshape(n, n)


def class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN for a class absent from both truth and prediction."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


class MaskKind(TaskKind):
    name = "mask"
    decode_rule = "argmax_pixels"
    dense = True
    shared_reader = "{task}_gate"  # models/dense.py: the gate reads the shared vector
    metric_names = ("miou", "pixel_accuracy")
    primary_metric = "miou"
    score_meaning = "mean IoU for masks"
    min_classes = 2
    activation = "softmax"
    unseen_effect = "their pixels are left out of training and scoring"

    def label_column(self, table, column: str) -> list:
        return resolve_label_paths(table, column)

    def learn_labels(self, spec, values: list) -> dict:
        seen, size = set(), None
        for v in values:
            if is_missing(v):
                continue
            m = read_mask(v, f"tasks.{spec.name}")
            size = size or list(m.shape)
            seen.update(np.unique(m).tolist())
        return {"type": self.name, "classes": [str(c) for c in sorted(seen)], "size": size}

    def encode_labels(self, label_info: Mapping, values: list, separator: str = "|") -> np.ndarray:
        h, w = label_info["size"]
        lookup = np.full(256 ** 2, MISSING, np.int16)
        for i, c in enumerate(label_info["classes"]):
            lookup[int(c)] = i
        out = np.full((len(values), h, w), MISSING, np.int16)
        for r, v in enumerate(values):
            if is_missing(v):
                continue
            m = read_mask(v, f"mask label of row {r + 1}")
            if list(m.shape) != [h, w]:
                raise EdgemtlError(f"mask label of row {r + 1}: '{v}' is {m.shape[1]}x{m.shape[0]} pixels; the "
                                   f"training masks are {w}x{h}")
            out[r] = lookup[m.astype(np.int64)]
        return out

    def n_outputs(self, label_info: Mapping):
        size = label_info.get("size")
        k = len(label_info["classes"])
        return k * size[0] * size[1] if size else k

    def label_problems(self, spec, label_info: Mapping, where: str) -> list[str]:
        if len(label_info.get("classes", [])) < 2:
            return [f"{where}: the training masks of column '{spec.column}' hold fewer than 2 classes"]
        return []

    def covering_rows(self, y: np.ndarray) -> list[int]:
        present = np.stack([(y == c).any(axis=(1, 2)) for c in range(int(y.max()) + 1)], axis=1)
        return sorted({int(np.argmax(present[:, c])) for c in range(present.shape[1]) if present[:, c].any()})

    # -- outputs --------------------------------------------------------------------------------------------------
    def decide(self, output: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return np.asarray(output).argmax(axis=-1)

    def score(self, y_true: np.ndarray, output: np.ndarray, threshold: float = 0.5, std: float = 1.0) -> dict:
        y_true = np.asarray(y_true)
        labelled = (y_true >= 0).any(axis=(1, 2))
        if not labelled.any():
            from .base import no_score
            return no_score(self.metric_names, 0)
        n = np.asarray(output).shape[-1]
        conf = confusion(y_true[labelled], self.decide(np.asarray(output)[labelled]), n)
        metrics = {"miou": float(np.nanmean(class_iou(conf))),
                   "pixel_accuracy": float(np.trace(conf) / max(conf.sum(), 1))}
        return {**metrics, "score": self.normalised(metrics), "n": int(labelled.sum())}

    def normalised(self, metrics: Mapping, std: float = 1.0) -> float:
        return metrics["miou"]

    def format_primary(self, metrics: Mapping) -> str:
        value = metrics.get("miou")
        return "" if value is None else f"mIoU {value:.4f}"

    def output_entry(self, spec, label_info: Mapping) -> dict:
        return {**super().output_entry(spec, label_info), "params": {"height": label_info["size"][0],
                                                                     "width": label_info["size"][1]}}

    def answer(self, entry: Mapping, output: np.ndarray) -> dict:
        """{"mask": [[class index]] (rows of the image), "labels": the class names, "areas": {class: pixels}}."""
        classes = np.asarray(output).argmax(axis=-1)
        counts = np.bincount(classes.reshape(-1), minlength=len(entry["labels"]))
        return {"mask": classes.tolist(), "labels": list(entry["labels"]),
                "areas": {str(entry["labels"][c]): int(k) for c, k in enumerate(counts) if k}}

    def agreement(self, ref: np.ndarray, got: np.ndarray, threshold: float = 0.5) -> float:
        """Share of pixels whose class an artifact decides as the reference does."""
        return float(np.mean(self.decide(ref) == self.decide(got)))

    # -- TF half --------------------------------------------------------------------------------------------------
    def head(self, x, spec, label_info: Mapping, match=None, features=None):
        from ..models.dense import dense_head
        from ..tfk import keras

        L = keras.layers
        z = dense_head(features, x, 2, len(label_info["classes"]), spec.name)
        z = L.UpSampling2D(2, interpolation="bilinear", name=f"{spec.name}_upsample")(z)
        return L.Softmax(name=spec.name)(z)

    def loss(self, spec, label_info: Mapping):
        """Pixel cross-entropy over the labelled pixels."""
        from ..tfk import tf

        def mask(y, p):
            y = tf.cast(y, tf.int32)
            n = tf.shape(p)[-1]
            ce = -tf.reduce_sum(tf.one_hot(tf.maximum(y, 0), n) * tf.math.log(tf.maximum(p, 1e-7)), axis=-1)
            keep = tf.cast(y >= 0, tf.float32)
            return tf.reduce_sum(ce * keep) / tf.maximum(tf.reduce_sum(keep), 1.0)
        return mask

    def soft_loss(self, spec, label_info: Mapping, temperature: float):
        """Distillation, dense soft targets: per pixel, KL(teacher || student) of the temperature-softened class
        distributions, times T^2, averaged over the pixels (pixel-wise distillation, Liu et al. 2019, "Structured
        Knowledge Distillation for Semantic Segmentation"): each pixel is a softmax over classes, the same case as
        a multiclass head, and the mean over pixels matches the hard loss's pixel cross-entropy in scale."""
        return softmax_kl(temperature)
