"""The recipe schema: every key, its type, default and meaning. The README's recipe reference is generated from it."""
import re

from ..bench.backends import BACKENDS as BENCH_BACKENDS
from .spec import REQUIRED, Field, ListOf, Section, Variant, did_you_mean

MODALITIES = ("image", "text", "audio", "numeric", "sequence")
TASK_TYPES = ("multiclass", "binary", "multilabel", "regression")
STAGES = ("check", "train", "single_task", "evaluate", "compress", "export", "bench", "report")


def _positive(v):
    return None if v > 0 else f"must be > 0, got {v}"


def _non_negative(v):
    return None if v >= 0 else f"must be >= 0, got {v}"


def _fraction(v):
    return None if 0 <= v < 1 else f"must be in [0, 1), got {v}"


def _name(v):
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) else \
        f"{v!r} is not a valid name (letters, digits and _; not starting with a digit)"


def _positive_list(v):
    return None if v and all(isinstance(x, int) and x > 0 for x in v) else f"must be a list of positive integers, got {v}"


def _bench_backends(v):
    bad = [str(b) for b in v if b not in BENCH_BACKENDS]
    return None if not bad else \
        f"unknown backend '{bad[0]}' (one of {', '.join(BENCH_BACKENDS)}){did_you_mean(bad[0], BENCH_BACKENDS)}"


def _size(v):
    return None if len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v) else \
        f"must be [height, width] in pixels, got {v}"


ENCODER_COMMON = {
    "weights": Field((str, type(None)), None, "a local .keras model (e.g. an earlier run's model) whose layers of "
                     "this encoder (same layer names) initialise it; nothing is downloaded"),
    "trainable": Field(bool, True, "false freezes the encoder (use with weights for transfer learning)"),
    "dropout": Field(float, 0.0, "dropout on the encoder's output vector", check=_fraction),
}

IMAGE_ENCODERS = {
    "cnn": {"filters": Field(list, [32, 64, 128], "filters of each conv block (conv-bn-relu-maxpool)",
                             check=_positive_list)},
    "mobilenet": {"filters": Field(list, [32, 64, 128, 256], "filters of each depthwise-separable block (stride 2)",
                                   check=_positive_list),
                  "width": Field(float, 1.0, "width multiplier applied to every block's filters", check=_positive)},
    "resnet": {"filters": Field(list, [32, 64, 128], "filters of each residual stage (stride 2 between stages)",
                                check=_positive_list),
               "blocks": Field(int, 1, "residual blocks per stage", check=_positive)},
}
TEXT_ENCODERS = {
    "conv1d": {"embedding_dim": Field(int, 64, check=_positive),
               "filters": Field(int, 128, "filters per kernel size", check=_positive),
               "kernel_sizes": Field(list, [1, 2, 3], "parallel Conv1D branches, each max-pooled over time",
                                     check=_positive_list)},
    "lstm": {"embedding_dim": Field(int, 64, check=_positive), "units": Field(int, 64, check=_positive),
             "bidirectional": Field(bool, False)},
    "gru": {"embedding_dim": Field(int, 64, check=_positive), "units": Field(int, 64, check=_positive),
            "bidirectional": Field(bool, False)},
    "transformer": {"embedding_dim": Field(int, 64, check=_positive), "heads": Field(int, 2, check=_positive),
                    "layers": Field(int, 1, check=_positive), "ff_dim": Field(int, 128, check=_positive)},
}
AUDIO_ENCODERS = {
    "cnn": {"filters": Field(list, [32, 64, 128], "filters of each conv block over the log-mel image",
                             check=_positive_list)},
}
NUMERIC_ENCODERS = {
    "mlp": {"units": Field(list, [64], "dense layers", check=_positive_list)},
}
SEQUENCE_ENCODERS = {
    "conv1d": {"filters": Field(list, [64, 64], "filters of each Conv1D block", check=_positive_list),
               "kernel_size": Field(int, 5, check=_positive)},
    "gru": {"units": Field(int, 64, check=_positive), "bidirectional": Field(bool, False)},
}
POOLING = Field(str, "avg", "how the last feature map becomes a vector: avg (global average; any size) or flatten "
                "(keeps positions; best for small inputs such as 28x28 digits or short spectrograms)",
                choices=("avg", "flatten"))
STEM_STRIDE = Field(int, 1, "stride of the first block's conv: 2 does a quarter of the work in every block (a cheap "
                    "student on the teacher's input size; the weights still fit the teacher's)", choices=(1, 2))
for _fields in (*IMAGE_ENCODERS.values(), *AUDIO_ENCODERS.values()):
    _fields["pooling"] = POOLING
for _fields in (IMAGE_ENCODERS["cnn"], AUDIO_ENCODERS["cnn"]):
    _fields["stem_stride"] = STEM_STRIDE
ENCODERS = {"image": IMAGE_ENCODERS, "text": TEXT_ENCODERS, "audio": AUDIO_ENCODERS, "numeric": NUMERIC_ENCODERS,
            "sequence": SEQUENCE_ENCODERS}
DEFAULT_ENCODER = {"image": "cnn", "text": "conv1d", "audio": "cnn", "numeric": "mlp", "sequence": "conv1d"}


def _unit_interval(v):
    return None if 0 <= v <= 1 else f"must be in [0, 1], got {v}"


def encoder_spec(modality: str) -> Variant:
    return Variant(ENCODER_COMMON, ENCODERS[modality], DEFAULT_ENCODER[modality],
                   doc=f"{modality} encoder; type: {' | '.join(ENCODERS[modality])}")


INPUT_COMMON = {
    "name": Field(str, REQUIRED, "feature name: the model input's name", check=_name, example="image"),
}
INPUTS = {
    "image": {
        "column": Field(str, REQUIRED, "manifest column holding the image path (relative to the manifest)"),
        "size": Field(list, [64, 64], "[height, width] the image is resized to", check=_size),
        "channels": Field(int, 3, "1 = grayscale, 3 = RGB", choices=(1, 3)),
        "augment": Section({
            "flip": Field(bool, False, "random horizontal flip"),
            "rotation": Field(float, 0.0, "max random rotation, in fractions of a full turn", check=_fraction),
            "crop": Field(float, 0.0, "random crop of up to this fraction of each side, resized back",
                          check=_fraction),
        }, "training-time augmentation (never exported)"),
        "encoder": encoder_spec("image"),
    },
    "text": {
        "column": Field(str, REQUIRED, "manifest column holding the text"),
        "vocab_size": Field(int, 10000, "most frequent training-split words kept (+ pad and unknown)",
                            check=_positive),
        "max_length": Field(int, 32, "tokens per text; longer texts are cut, shorter padded", check=_positive),
        "lowercase": Field(bool, True),
        "encoder": encoder_spec("text"),
    },
    "audio": {
        "column": Field(str, REQUIRED, "manifest column holding the WAV path"),
        "sample_rate": Field(int, 16000, "rate the model takes; other rates are resampled", check=_positive),
        "clip_seconds": Field(float, 1.0, "clips are padded with silence or cut to this length", check=_positive),
        "n_mels": Field(int, 40, "log-mel bands of the in-graph front-end", check=_positive),
        "frame_length": Field(int, 256, "STFT window in samples (a power of two)", check=_positive),
        "frame_step": Field(int, 128, "STFT hop in samples", check=_positive),
        "encoder": encoder_spec("audio"),
    },
    "numeric": {
        "columns": Field(list, REQUIRED, "manifest columns, one value each; normalised in the graph with "
                         "training-split mean and variance"),
        "encoder": encoder_spec("numeric"),
    },
    "sequence": {
        "column": Field(str, REQUIRED, "npz array name, or manifest column holding a .npy path, "
                        "of shape [length, channels]"),
        "length": Field(int, REQUIRED, "time steps per window", check=_positive),
        "channels": Field(int, REQUIRED, "signals per time step", check=_positive),
        "encoder": encoder_spec("sequence"),
    },
}

TASK = Section({
    "name": Field(str, REQUIRED, "task name: the model output's name", check=_name, example="digit"),
    "type": Field(str, REQUIRED, "what the head predicts", choices=TASK_TYPES, example="multiclass"),
    "column": Field((str, type(None)), None, "label column (default: the task name)"),
    "loss": Field(str, "auto", "auto = crossentropy for classes, mse for regression",
                  choices=("auto", "crossentropy", "mse", "mae", "huber")),
    "label_smoothing": Field(float, 0.0, "for multiclass crossentropy", check=_fraction),
    "weight": Field(float, 1.0, "weight of this task's loss in the combination", check=lambda v: _positive(v)),
    "metrics": Field(list, [], "metrics shown in report.md, the first also in each epoch's log line; default "
                     "[accuracy, macro_f1] for classes, [mae, rmse] for regression (metrics.json always has all)"),
    "separator": Field(str, "|", "multilabel: separator between labels in one cell"),
    "threshold": Field(float, 0.5, "binary/multilabel decision threshold", check=_fraction),
    "auxiliary": Field(bool, False, "trains but is not exported"),
    "match_labels": Field((str, type(None)), None, "a text input whose words may spell this task's class names "
                          "(multiclass, multilabel): adds two learned logit weights shared by all classes, "
                          "for the fraction of a name's words present and for a whole name present", example="title"),
    "unmatched_weight": Field(float, 0.0, "with match_labels: also train the head's own logits alone (the match "
                              "left out) with this weight on their loss, so the head still answers from the other "
                              "inputs when the text names no class; the exported head is unchanged",
                              check=_non_negative),
})

DATA = Section({
    "source": Field(str, REQUIRED, "CSV or JSONL manifest (media paths relative to it) or .npz of named arrays; "
                    "relative to the recipe file", example="../demo/av_digits/pairs.csv"),
    "format": Field(str, "auto", "auto picks by file extension", choices=("auto", "csv", "jsonl", "npz")),
    "split": Section({
        "column": Field((str, type(None)), None, "column naming each row's split; if unset, ratios are used"),
        "train": Field(str, "train", "value of the split column for training rows"),
        "val": Field((str, type(None)), None,
                     "value for validation rows; if unset or no row has it, val_fraction of train is held out"),
        "test": Field(str, "test", "value for test rows"),
        "ratios": Field(list, [0.8, 0.1, 0.1], "train/val/test fractions when there is no split column"),
        "val_fraction": Field(float, 0.1, "fraction of train held out for validation when there is no val value",
                              check=_fraction),
        "seed": Field(int, 0, "seed of the random split"),
        "train_on_val": Field(bool, False, "also train on the validation rows, as a baseline fitted on train + val "
                              "does; the monitor then reads rows the model learns from, so it only picks the epoch"),
    }, "how rows are split into train / val / test"),
    "filters": ListOf(Section({
        "column": Field(str, REQUIRED),
        "in": Field((list, type(None)), None, "keep rows whose value is in this list"),
        "not_in": Field((list, type(None)), None, "drop rows whose value is in this list"),
        "not_empty": Field(bool, False, "drop rows where this column is empty"),
    }), "row filters, applied before splitting", default=[]),
    "limit": Field((int, type(None)), None, "use only the first N rows after filtering (quick runs)"),
    "on_bad_row": Field(str, "error", "a row whose media file is missing or unreadable: stop with an error naming "
                        "it, or skip it and count it", choices=("error", "skip")),
})

FUSION = Section({
    "type": Field(str, "concat", "how encoder vectors are combined",
                  choices=("concat", "average", "weighted", "gated", "attention")),
    "units": Field(int, 128, "every encoder vector is projected to this size first (not for concat)",
                   check=_positive),
    "heads": Field(int, 2, "attention fusion heads", check=_positive),
    "modality_dropout": Field(float, 0.0, "chance that one modality's whole vector is zeroed for a training row, so "
                              "each modality also learns to answer alone (ModDrop); nothing changes at inference",
                              check=_fraction),
})

TRUNK = Section({
    "units": Field(list, [128], "shared dense layers after fusion", check=lambda v: None if all(
        isinstance(x, int) and x > 0 for x in v) else f"must be a list of positive integers, got {v}"),
    "dropout": Field(float, 0.2, check=_fraction),
    "l1": Field(float, 0.0, check=_non_negative),
    "l2": Field(float, 0.0, check=_non_negative),
})

TRAINING = Section({
    "optimizer": Field(str, "adam", choices=("adam", "adamw", "sgd", "rmsprop")),
    "learning_rate": Field(float, 1e-3, check=_positive),
    "schedule": Field(str, "constant", "learning-rate schedule over all steps",
                      choices=("constant", "cosine", "exponential")),
    "weight_decay": Field(float, 1e-4, "adamw only"),
    "epochs": Field(int, 20, check=_positive),
    "batch_size": Field(int, 64, check=_positive),
    "early_stopping": Section({
        "monitor": Field(str, "val_mean_score", "val_mean_score (mean of per-task accuracy / -MAE), val_loss, "
                         "or val_<task>_<metric>"),
        "patience": Field((int, type(None)), 5, "epochs without improvement before stopping; null disables"),
    }),
    "loss_combination": Section({
        "type": Field(str, "sum", "sum (weighted), max (largest weighted task loss), uncertainty "
                      "(Kendall et al. 2018), dwa (Liu et al. 2019)", choices=("sum", "max", "uncertainty", "dwa")),
        "temperature": Field(float, 2.0, "dwa temperature", check=_positive),
    }),
    "distribute": Field(str, "none", "tf.distribute strategy", choices=("none", "mirrored", "multi_worker")),
    "checkpoint_every": Field(int, 50, "steps between resumable checkpoints (for --resume)", check=_positive),
})

EXPORT = Section({
    "model": Field((str, list), "teacher", "which model(s) of the run the export stage exports, e.g. "
                   "[teacher, student-qat]"),
    "formats": Field(list, ["tflite", "onnx", "c"], "tflite, onnx, c (the int8 TFLite model as a C array)"),
    "precisions": Field(list, ["fp32", "fp16", "dynamic", "int8", "int8io"],
                        "fp32, fp16, dynamic (int8 weights), int8 (full integer, float I/O), int8io (TFLite, int8 I/O)"),
    "calibration_samples": Field(int, 200, "training rows for int8 calibration, covering every class first",
                                 check=_positive),
    "tolerance": Field(dict, {}, "per task: largest accepted drop of the test metric (accuracy, or 1 - MAE/std) of "
                       "a reduced-precision artifact, as a fraction, e.g. {season: 0.01}", example={"season": 0.01}),
    "default_tolerance": Field(float, 0.01, "tolerance of tasks not listed in tolerance (0.01 = 1 point)"),
    "float_fallback": Field(bool, True, "retry an artifact over tolerance with parts kept in float"),
    "opset": Field(int, 17, "ONNX opset", check=_positive),
}, "what `edgemtl export` and the export stage produce")

PRUNE_SKIP = ("embedding", "first_conv", "heads")
DISTILL_TASK = Section({
    "temperature": Field(float, None, check=_positive),
    "alpha": Field(float, None, check=_unit_interval),
})

COMPRESS = Section({
    "teacher": Field(str, "teacher", "the run's model that is distilled"),
    "student": Section({
        "preset": Field(str, "small", "none keeps the teacher's widths; small halves every width (filters, units, "
                        "embedding sizes; about 1/4 of the parameters); tiny quarters them (about 1/16)",
                        choices=("none", "small", "tiny")),
        "inputs": Field(dict, {}, "per input: encoder keys replacing the scaled teacher's; a different type starts "
                        "from that type's defaults", example={"title": {"embedding_dim": 16}}),
        "fusion": Field(dict, {}, "fusion keys replacing the scaled teacher's"),
        "trunk": Field(dict, {}, "trunk keys replacing the scaled teacher's"),
        "keep_auxiliary": Field(bool, False, "keep the auxiliary tasks (they are never exported)"),
        "init": Field(str, "teacher", "where the distilled student starts: teacher (weight selection: each layer "
                      "takes the same-named teacher layer's weights, cut to the student's width) or random",
                      choices=("teacher", "random")),
    }, "the student: same inputs and exported tasks as the teacher, smaller parts"),
    "training": Field(dict, {}, "training keys for the students (epochs, learning_rate, ...) replacing the "
                      "teacher's", example={"epochs": 30}),
    "distill": Section({
        "temperature": Field(float, 2.0, "softens both distributions; the soft loss is scaled by T^2",
                             check=_positive),
        "alpha": Field(float, 0.5, "weight of the teacher's soft targets; 1 - alpha goes to the labels",
                       check=_unit_interval),
        "tasks": Field(dict, {}, "per task: temperature and/or alpha replacing the global ones",
                       example={"season": {"alpha": 0.9}}),
        "hint": Field(float, 0.0, "weight of feature distillation: the student's shared representation, through a "
                      "learned projection, regresses onto the teacher's (0 = off)",
                      check=_non_negative),
        "mixup": Field(float, 0.0, "weight of function matching: the student also matches the teacher's soft "
                       "targets on pairs of training rows blended together (images and audio mixed, text from the "
                       "larger share), inputs no label covers; costs a second forward pass per step (0 = off)",
                       check=_non_negative),
    }, "knowledge distillation, teacher frozen"),
    "scratch": Field(bool, True, "also train the same student from labels only (student-scratch), for comparison"),
    "start": Field(str, "auto", "the student that is pruned and trained quantization-aware: student (distilled), "
                  "student-scratch, or auto: of those two, the one with the better validation score",
                  choices=("auto", "student", "student-scratch")),
    "prune": Section({
        "enabled": Field(bool, True),
        "sparsity": Field(float, 0.5, "fraction of each pruned layer's weights set to zero", check=_fraction),
        "structured": Field(bool, False, "2:4 sparsity (2 zeros in every 4 weights, 50 %) on Conv/Dense layers "
                            "whose input channels divide by 4; magnitude pruning to `sparsity` elsewhere"),
        "layers": Field((list, type(None)), None, "names of the layers to prune (default: every Conv/Dense/"
                        "Embedding/recurrent layer except those in skip)"),
        "skip": Field(list, list(PRUNE_SKIP), f"kinds of layers left dense by default: {', '.join(PRUNE_SKIP)}"),
        "epochs": Field(int, 6, "fine-tuning epochs; sparsity ramps up over the first two thirds",
                        check=_positive),
        "learning_rate": Field(float, 3e-4, check=_positive),
    }, "magnitude pruning of the distilled student (tfmot), then fine-tuning"),
    "qat": Section({
        "enabled": Field(bool, True),
        "epochs": Field(int, 3, check=_positive),
        "learning_rate": Field(float, 1e-4, check=_positive),
    }, "quantization-aware training of the last model (pruned if pruning ran; sparsity is kept)"),
}, "`edgemtl compress` and the compress stage: student, student-scratch, student-pruned, student-qat")

BENCH = Section({
    "backends": Field(list, [], "backends to measure (default: all; those absent here are skipped with the reason): "
                      + ", ".join(BENCH_BACKENDS), check=_bench_backends),
    "threads": Field(list, [], "CPU thread counts to measure (default: 1 and all cores)",
                     check=lambda v: _positive_list(v) if v else None),
    "runs": Field(int, 200, "timed single-sample calls per measurement", check=_positive),
    "max_seconds": Field(float, 5.0, "a measurement stops early once its timed calls pass this many seconds (and "
                         "at least 20 ran): keeps slow baselines such as keras.predict short", check=_positive),
    "batch": Field(int, 32, "batch size of the throughput measurement", check=_positive),
}, "what `edgemtl bench` and the bench stage measure; the command's flags override it")

RECIPE = Section({
    "name": Field(str, REQUIRED, "run name", check=_name, example="av_digits"),
    "seed": Field(int, 0),
    "stages": Field(list, ["check", "train", "evaluate", "export", "report"], f"stages of 'edgemtl run', in order; "
                    f"from {', '.join(STAGES)}"),
    "data": DATA,
    "inputs": ListOf(Variant(INPUT_COMMON, INPUTS, doc="one per feature; type: " + " | ".join(MODALITIES)),
                     "model inputs", min_items=1),
    "fusion": FUSION,
    "trunk": TRUNK,
    "tasks": ListOf(TASK, "model outputs, one head each", min_items=1),
    "training": TRAINING,
    "compress": COMPRESS,
    "export": EXPORT,
    "bench": BENCH,
})
