"""The typed recipe: every key, its type, default and meaning, declared once as a field of a frozen dataclass.

The validator (spec.py), the Markdown reference and the JSON Schema (reference.py) are generated from these classes.
"""
import re
from collections.abc import Mapping
from typing import Any

from ..errors import did_you_mean
from ..names import BACKBONES, BENCH_BACKENDS, FORMATS, MODALITIES, PRECISIONS, STAGES, TASK_TYPES
from .spec import REQUIRED, Spec, key, spec, variant


def _positive(v):
    return None if v > 0 else f"must be > 0, got {v}"


def _non_negative(v):
    return None if v >= 0 else f"must be >= 0, got {v}"


def _fraction(v):
    return None if 0 <= v < 1 else f"must be in [0, 1), got {v}"


def _unit_interval(v):
    return None if 0 <= v <= 1 else f"must be in [0, 1], got {v}"


def _name(v):
    if len(v) > 64:
        return f"a name of {len(v)} characters; at most 64 (it names files and folders)"
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) else \
        f"{v!r} is not a valid name (letters, digits and _; not starting with a digit)"


def _positive_list(v):
    ok = v and all(isinstance(x, int) and x > 0 for x in v)
    return None if ok else f"must be a list of positive integers, got {v}"


def _scalars(v):
    bad = [x for x in v if isinstance(x, (list, dict)) or (isinstance(x, float) and x != x)]
    return None if not bad else f"values are compared as text: plain strings or numbers, got {str(bad[0])[:60]}"


def _bench_backends(v):
    bad = [str(b) for b in v if b not in BENCH_BACKENDS]
    return None if not bad else \
        f"unknown backend '{bad[0]}' (one of {', '.join(BENCH_BACKENDS)}){did_you_mean(bad[0], BENCH_BACKENDS)}"


def _size(v):
    return None if len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v) else \
        f"must be [height, width] in pixels, got {v}"


def _opset(v):
    return None if 7 <= v <= 21 else f"must be an ONNX opset from 7 to 21, got {v}"


def _one_or_many(v):
    return [v] if isinstance(v, str) else v


# ---- encoders: one class per (modality, type), registered by modality -------------------------------------------

@spec
class EncoderSpec(Spec):
    type: str = key(REQUIRED, "encoder type")
    weights: str | None = key(None, "a local .keras model (e.g. an earlier run's model) whose layers of this encoder "
                              "(same layer names) initialise it; nothing is downloaded")
    trainable: bool = key(True, "false freezes the encoder (use with weights for transfer learning)")
    dropout: float = key(0.0, "dropout on the encoder's output vector", check=_fraction)


def _pooling():
    return key("avg", "how the last feature map becomes a vector: avg (global average; any size) or flatten (keeps "
               "positions; best for small inputs such as 28x28 digits or short spectrograms)",
               choices=("avg", "flatten"))


def _stem_stride():
    return key(1, "stride of the first block's conv: 2 does a quarter of the work in every block (a cheap student "
               "on the teacher's input size; the weights still fit the teacher's)", choices=(1, 2))


def _embedding_dim():
    return key(64, check=_positive)


IMAGE_ENCODERS: dict = {}
TEXT_ENCODERS: dict = {}
AUDIO_ENCODERS: dict = {}
NUMERIC_ENCODERS: dict = {}
SEQUENCE_ENCODERS: dict = {}
ENCODERS = {"image": IMAGE_ENCODERS, "text": TEXT_ENCODERS, "audio": AUDIO_ENCODERS, "numeric": NUMERIC_ENCODERS,
            "sequence": SEQUENCE_ENCODERS}


@variant(IMAGE_ENCODERS, "cnn")
class ImageCnnEncoder(EncoderSpec):
    filters: tuple[int, ...] = key((32, 64, 128), "filters of each conv block (conv-bn-relu-maxpool)",
                                   check=_positive_list)
    pooling: str = _pooling()
    stem_stride: int = _stem_stride()


@variant(IMAGE_ENCODERS, "mobilenet")
class ImageMobilenetEncoder(EncoderSpec):
    filters: tuple[int, ...] = key((32, 64, 128, 256), "filters of each depthwise-separable block (stride 2)",
                                   check=_positive_list)
    width: float = key(1.0, "width multiplier applied to every block's filters", check=_positive)
    pooling: str = _pooling()


@variant(IMAGE_ENCODERS, "resnet")
class ImageResnetEncoder(EncoderSpec):
    filters: tuple[int, ...] = key((32, 64, 128), "filters of each residual stage (stride 2 between stages)",
                                   check=_positive_list)
    blocks: int = key(1, "residual blocks per stage", check=_positive)
    pooling: str = _pooling()


@variant(IMAGE_ENCODERS, "backbone")
class ImageBackboneEncoder(EncoderSpec):
    name: str = key(REQUIRED, "the tf_keras.applications family, built without its classifier; preprocessing is "
                    "part of the graph, so the model takes raw pixels like every image input; `weights`: a local "
                    "weights file of this family (docs/recipes.md: Pretrained image backbones)", choices=BACKBONES)
    weights: str | None = key(None, "a local weights file of this family (`.h5`, written by `save_weights` on a "
                              "machine with internet; docs/recipes.md shows how) read as weights only; without it "
                              "the backbone starts from random weights; nothing is downloaded")
    alpha: float = key(1.0, "mobilenet_v3_*: width multiplier (the weights file must have the same); other "
                       "families: 1.0 only", check=_positive)


@variant(TEXT_ENCODERS, "conv1d")
class TextConv1dEncoder(EncoderSpec):
    embedding_dim: int = _embedding_dim()
    filters: int = key(128, "filters per kernel size", check=_positive)
    kernel_sizes: tuple[int, ...] = key((1, 2, 3), "parallel Conv1D branches, each max-pooled over time",
                                        check=_positive_list)


@variant(TEXT_ENCODERS, "lstm")
class TextLstmEncoder(EncoderSpec):
    embedding_dim: int = _embedding_dim()
    units: int = key(64, check=_positive)
    bidirectional: bool = key(False)


@variant(TEXT_ENCODERS, "gru")
class TextGruEncoder(EncoderSpec):
    embedding_dim: int = _embedding_dim()
    units: int = key(64, check=_positive)
    bidirectional: bool = key(False)


@variant(TEXT_ENCODERS, "transformer")
class TextTransformerEncoder(EncoderSpec):
    embedding_dim: int = _embedding_dim()
    heads: int = key(2, check=_positive)
    layers: int = key(1, check=_positive)
    ff_dim: int = key(128, check=_positive)


@variant(AUDIO_ENCODERS, "cnn")
class AudioCnnEncoder(EncoderSpec):
    filters: tuple[int, ...] = key((32, 64, 128), "filters of each conv block over the log-mel image",
                                   check=_positive_list)
    pooling: str = _pooling()
    stem_stride: int = _stem_stride()


@variant(NUMERIC_ENCODERS, "mlp")
class NumericMlpEncoder(EncoderSpec):
    units: tuple[int, ...] = key((64,), "dense layers", check=_positive_list)


@variant(SEQUENCE_ENCODERS, "conv1d")
class SequenceConv1dEncoder(EncoderSpec):
    filters: tuple[int, ...] = key((64, 64), "filters of each Conv1D block", check=_positive_list)
    kernel_size: int = key(5, check=_positive)


@variant(SEQUENCE_ENCODERS, "gru")
class SequenceGruEncoder(EncoderSpec):
    units: int = key(64, check=_positive)
    bidirectional: bool = key(False)


def _encoder(modality: str, default):
    return key(default, f"{modality} encoder; type: {' | '.join(ENCODERS[modality])}", variants=ENCODERS[modality])


# ---- inputs: one class per modality --------------------------------------------------------------------------------

INPUTS: dict = {}


@spec
class AugmentSpec(Spec):
    flip: bool = key(False, "random horizontal flip")
    rotation: float = key(0.0, "max random rotation, in fractions of a full turn", check=_fraction)
    crop: float = key(0.0, "random crop of up to this fraction of each side, resized back", check=_fraction)


@spec
class InputSpec(Spec):
    name: str = key(REQUIRED, "feature name: the model input's name", check=_name, example="image")
    type: str = key(REQUIRED, "modality; one of " + ", ".join(MODALITIES))
    optional: bool = key(False, "a row (or a request) may lack this input (an empty cell): it trains and answers "
                         "with the modality marked absent (a `<name>_present` model input, 0 or 1, and a learned "
                         "absent vector in place of the encoder's); never the only input")
    # every modality declares its own `encoder` (an EncoderSpec of that modality's registry)


@variant(INPUTS, "image")
class ImageInput(InputSpec):
    column: str = key(REQUIRED, "manifest column holding the image path (relative to the manifest)")
    size: tuple[int, int] = key((64, 64), "[height, width] the image is resized to", check=_size)
    channels: int = key(3, "1 = grayscale, 3 = RGB", choices=(1, 3))
    augment: AugmentSpec = key(AugmentSpec, "training-time augmentation (never exported)")
    encoder: EncoderSpec = _encoder("image", ImageCnnEncoder)


@variant(INPUTS, "text")
class TextInput(InputSpec):
    column: str = key(REQUIRED, "manifest column holding the text")
    vocab_size: int = key(10000, "most frequent training-split words kept (+ pad and unknown)", check=_positive)
    max_length: int = key(32, "tokens per text; longer texts are cut, shorter padded", check=_positive)
    lowercase: bool = key(True)
    encoder: EncoderSpec = _encoder("text", TextConv1dEncoder)


@variant(INPUTS, "audio")
class AudioInput(InputSpec):
    column: str = key(REQUIRED, "manifest column holding the WAV path")
    sample_rate: int = key(16000, "rate the model takes; other rates are resampled", check=_positive)
    clip_seconds: float = key(1.0, "clips are padded with silence or cut to this length", check=_positive)
    n_mels: int = key(40, "log-mel bands of the in-graph front-end", check=_positive)
    frame_length: int = key(256, "STFT window in samples (a power of two)", check=_positive)
    frame_step: int = key(128, "STFT hop in samples", check=_positive)
    encoder: EncoderSpec = _encoder("audio", AudioCnnEncoder)


@variant(INPUTS, "numeric")
class NumericInput(InputSpec):
    columns: tuple[str, ...] = key(REQUIRED, "manifest columns, one value each; normalised in the graph with "
                                   "training-split mean and variance")
    encoder: EncoderSpec = _encoder("numeric", NumericMlpEncoder)


@variant(INPUTS, "sequence")
class SequenceInput(InputSpec):
    column: str = key(REQUIRED, "npz array name, or manifest column holding a .npy path, of shape [length, channels]")
    length: int = key(REQUIRED, "time steps per window", check=_positive)
    channels: int = key(REQUIRED, "signals per time step", check=_positive)
    encoder: EncoderSpec = _encoder("sequence", SequenceConv1dEncoder)


# ---- tasks, data -------------------------------------------------------------------------------------------------

@spec
class TaskSpec(Spec):
    name: str = key(REQUIRED, "task name: the model output's name", check=_name, example="digit")
    type: str = key(REQUIRED, "what the head predicts", choices=TASK_TYPES, example="multiclass")
    column: str | None = key(None, "label column (default: the task name)")
    loss: str = key("auto", "auto = crossentropy for classes, mse for regression",
                    choices=("auto", "crossentropy", "mse", "mae", "huber"))
    label_smoothing: float = key(0.0, "for multiclass crossentropy", check=_fraction)
    weight: float = key(1.0, "weight of this task's loss in the combination", check=_positive)
    metrics: tuple[str, ...] = key((), "metrics shown in report.md, the first also in each epoch's log line; default "
                                   "[accuracy, macro_f1] for classes, [mae, rmse] for regression (metrics.json "
                                   "always has all)")
    separator: str = key("|", "multilabel: separator between labels in one cell",
                         check=lambda v: None if v else "must not be empty")
    threshold: float = key(0.5, "binary/multilabel decision threshold; boxes: the lowest score of an answered box",
                           check=_fraction)
    auxiliary: bool = key(False, "trains but is not exported")
    match_labels: str | None = key(None, "a text input whose words may spell this task's class names (multiclass, "
                                   "multilabel): adds two learned logit weights shared by all classes, for the "
                                   "fraction of a name's words present and for a whole name present", example="title")
    unmatched_weight: float = key(0.0, "with match_labels: also train the head's own logits alone (the match left "
                                  "out) with this weight on their loss, so the head still answers from the other "
                                  "inputs when the text names no class; the exported head is unchanged",
                                  check=_non_negative)
    min: float | None = key(None, "regression: lowest value answered, in label units (the de-standardised output is "
                            "clipped to it, in float, also in int8 artifacts)", example=0)
    max: float | None = key(None, "regression: highest value answered, in label units (a clip like min)",
                            example=120)
    labels: tuple[str, ...] | None = key(None, "class tasks whose column holds integer codes: the name of each code "
                                         "(code 0 is the first name); the classes keep this order",
                                         example=["walking", "sitting"])
    labels_array: str | None = key(None, "like labels, the names read from this metadata array of the .npz "
                                   "(data.source)", example="class_names")
    positive: str | None = key(None, "binary: the label of the positive class (the one the sigmoid output gives the "
                               "probability of, compared with threshold; quote a number: '1'); default: the second "
                               "class in sorted order", example="fall")
    input: str | None = key(None, "boxes/mask: the image input whose encoder's feature maps the head reads (default: "
                            "the recipe's only image input)", example="image")
    stride: int = key(4, "boxes: input pixels per cell of the detection maps (the encoder's feature map it starts "
                      "from)", choices=(4, 8))
    top_k: int = key(20, "boxes: the most boxes decoded per image (the highest heatmap peaks; the answer keeps those "
                     "scoring at least threshold)", check=_positive)


@spec
class SplitSpec(Spec):
    column: str | None = key(None, "column naming each row's split; if unset, ratios are used")
    group: str | None = key(None, "with ratios: a column (subject, session, product) whose rows always share one "
                            "split, so no group is both trained and tested on; groups are shuffled with seed and "
                            "filled into train, val, test by the ratios of rows", example="subject")
    train: str = key("train", "value of the split column for training rows")
    val: str | None = key(None, "value for validation rows; if unset or no row has it, val_fraction of train is "
                          "held out")
    test: str = key("test", "value for test rows")
    ratios: tuple[float, ...] = key((0.8, 0.1, 0.1), "train/val/test fractions when there is no split column")
    val_fraction: float = key(0.1, "fraction of train held out for validation when there is no val value",
                              check=_fraction)
    seed: int = key(0, "seed of the random split", check=_non_negative)
    train_on_val: bool = key(False, "also train on the validation rows, as a baseline fitted on train + val does; "
                             "the monitor then reads rows the model learns from, so it only picks the epoch")


@spec
class FilterSpec(Spec):
    column: str = key(REQUIRED)
    in_: tuple[Any, ...] | None = key(None, "keep rows whose value is in this list", yaml="in", check=_scalars)
    not_in: tuple[Any, ...] | None = key(None, "drop rows whose value is in this list", check=_scalars)
    not_empty: bool = key(False, "drop rows where this column is empty")


@spec
class DataSpec(Spec):
    source: str = key(REQUIRED, "CSV or JSONL manifest (media paths relative to it) or .npz of named arrays; "
                      "relative to the recipe file", example="../demo/av_digits/pairs.csv")
    format: str = key("auto", "auto picks by file extension", choices=("auto", "csv", "jsonl", "npz"))
    split: SplitSpec = key(SplitSpec, "how rows are split into train / val / test")
    filters: tuple[FilterSpec, ...] = key((), "row filters, applied before splitting")
    limit: int | None = key(None, "use only the first N rows after filtering (quick runs)", check=_positive)
    on_bad_row: str = key("error", "a row whose media file is missing or unreadable: stop with an error naming it, "
                          "or skip it and count it", choices=("error", "skip"))
    streaming: str = key("auto", "where image and audio files are decoded: `stream` decodes them inside the tf.data "
                         "pipeline, batch by batch (parallel, nothing held in memory: data larger than RAM trains); "
                         "`memory` decodes every row into memory first (faster for small data); `auto` streams when "
                         "the decoded media would exceed data.stream_above_mb", choices=("auto", "stream", "memory"))
    stream_above_mb: int = key(1024, "data.streaming auto: stream when the decoded media of the splits used exceed "
                               "this many MB (docs/recipes.md, Streaming)", check=_positive)
    cache: str = key("none", "streaming only: keep decoded rows after the first epoch: none (decode every epoch), "
                     "memory (in RAM: as large as the decoded data), disk (files under RUN/preprocess/cache; training "
                     "rows are then shuffled within a window of 4096 rows after the first epoch)",
                     choices=("none", "memory", "disk"))


# ---- model body, training ----------------------------------------------------------------------------------------

@spec
class FusionSpec(Spec):
    type: str = key("concat", "how encoder vectors are combined",
                    choices=("concat", "average", "weighted", "gated", "attention"))
    units: int = key(128, "every encoder vector is projected to this size first (not for concat)", check=_positive)
    heads: int = key(2, "attention fusion heads", check=_positive)
    modality_dropout: float = key(0.0, "chance that one modality is dropped for a training row: its vector is "
                                  "replaced by the learned absent vector (the state of a missing optional input), so "
                                  "each modality also learns to answer alone (ModDrop); nothing changes at inference",
                                  check=_fraction)


@spec
class TrunkSpec(Spec):
    type: str = key("shared", "shared (dense layers every task reads), mmoe (multi-gate mixture of experts, Ma et al. "
                    "2018: each expert is the units stack, each task mixes them through its own softmax gate) or ple "
                    "(progressive layered extraction, Tang et al. 2020: one level per units entry, each with "
                    "`experts` shared and `task_experts` per-task experts and a gate per task; one level is CGC)",
                    choices=("shared", "mmoe", "ple"))
    units: tuple[int, ...] = key((128,), "shared dense layers after fusion (mmoe: each expert's layers; ple: each "
                                 "level's expert width)", check=lambda v: None if all(
        isinstance(x, int) and x > 0 for x in v) else f"must be a list of positive integers, got {v}")
    experts: int = key(4, "mmoe: experts; ple: shared experts per level", check=_positive)
    task_experts: int = key(1, "ple: experts of each task per level", check=_positive)
    dropout: float = key(0.2, check=_fraction)
    l1: float = key(0.0, check=_non_negative)
    l2: float = key(0.0, check=_non_negative)


@spec
class EarlyStoppingSpec(Spec):
    monitor: str = key("val_mean_score", "val_mean_score: after each epoch the model predicts the validation rows and "
                       "each task is scored by its type: multiclass and binary accuracy over the labelled rows (binary "
                       "at the task's threshold; a class training never saw counts as wrong), multilabel accuracy "
                       "per row and label at the threshold, regression 1 - MAE/std (MAE in label units of the "
                       "clipped output, std of the training labels); the plain mean over the tasks (auxiliary ones "
                       "too, task weights not applied, a task without a scorable row left out); higher is better. "
                       "Or val_loss, or val_<task>_<metric>")
    patience: int | None = key(5, "epochs without improvement before stopping; null disables",
                                check=_non_negative)


@spec
class LossCombinationSpec(Spec):
    type: str = key("sum", "sum (weighted), max (largest weighted task loss), uncertainty (Kendall et al. 2018), "
                    "dwa (Liu et al. 2019); gradient methods, which see each task's gradient of the shared "
                    "variables and so cost one backward pass per task (an epoch took 2-5x as long on fashion): "
                    "pcgrad (Yu et al. 2020: conflicting gradients projected, in a random order each step), "
                    "gradnorm (Chen et al. 2018: weights that equalise the tasks' gradient norms at the last "
                    "shared layer), cagrad (Liu et al. 2021: the update that maximises the worst task's "
                    "improvement within c of the mean gradient)",
                    choices=("sum", "max", "uncertainty", "dwa", "pcgrad", "gradnorm", "cagrad"))
    temperature: float = key(2.0, "dwa temperature", check=_positive)
    alpha: float = key(1.5, "gradnorm: the restoring force (0: equal gradient norms; larger pulls slower-learning "
                       "tasks up harder)", check=_non_negative)
    gradnorm_lr: float = key(0.025, "gradnorm: gradient-descent rate of the task weights on the GradNorm loss "
                             "(divided by the mean gradient norm, so scale-free)", check=_positive)
    c: float = key(0.5, "cagrad: radius of the ball around the mean gradient, relative to its norm (0: the mean "
                   "gradient)", check=_non_negative)


FROM_RUN_PARTS = ("encoders", "fusion", "trunk", "heads")


@spec
class FromRunSpec(Spec):
    run: str | None = key(None, "an earlier run directory whose teacher this recipe's teacher starts from (`train "
                          "--from RUN` sets it): every layer of RUN's teacher with the same name and shapes "
                          "(encoders, fusion, trunk, the heads of the tasks RUN has) is copied; a task RUN lacks gets "
                          "a fresh head. The inputs, fusion and trunk must be RUN's, a kept task keeps RUN's classes "
                          "and text vocabularies are RUN's (docs/recipes.md: Incremental training); the teacher "
                          "only, single-task baselines start fresh", example="runs/fashion")
    freeze: tuple[str, ...] = key((), "the copied parts that stay fixed (bit-identical: no gradient, BatchNorm "
                                  "statistics kept) while this run trains; the others are fine-tuned. Layers new "
                                  "here (a new task's head, its MMoE gate) always train", choices=FROM_RUN_PARTS,
                                  example=["encoders", "trunk", "heads"])


@spec
class TrainingSpec(Spec):
    optimizer: str = key("adam", choices=("adam", "adamw", "sgd", "rmsprop"))
    learning_rate: float = key(1e-3, check=_positive)
    schedule: str = key("constant", "learning-rate schedule over all steps",
                        choices=("constant", "cosine", "exponential"))
    weight_decay: float = key(1e-4, "adamw only", check=_non_negative)
    epochs: int = key(20, check=_positive)
    batch_size: int = key(64, check=_positive)
    early_stopping: EarlyStoppingSpec = key(EarlyStoppingSpec)
    loss_combination: LossCombinationSpec = key(LossCombinationSpec)
    distribute: str = key("none", "tf.distribute strategy", choices=("none", "mirrored", "multi_worker"))
    checkpoint_every: int = key(50, "steps between resumable checkpoints (for --resume)", check=_positive)
    from_run: FromRunSpec = key(FromRunSpec, "incremental training: start the teacher from an earlier run's teacher, "
                                "e.g. to add a task (docs/recipes.md: Incremental training)")


# ---- compress, export, bench -------------------------------------------------------------------------------------

PRUNE_SKIP = ("embedding", "first_conv", "heads")


@spec
class StudentSpec(Spec):
    preset: str = key("small", "none keeps the teacher's widths; small halves every width (filters, units, embedding "
                      "sizes; about 1/4 of the parameters); tiny quarters them (about 1/16)",
                      choices=("none", "small", "tiny"))
    inputs: Mapping[str, Mapping[str, Any]] = key({}, "per input: encoder keys replacing the scaled teacher's; a "
                                                  "different type starts from that type's defaults",
                                                  example={"title": {"embedding_dim": 16}})
    fusion: Mapping[str, Any] = key({}, "fusion keys replacing the scaled teacher's")
    trunk: Mapping[str, Any] = key({}, "trunk keys replacing the scaled teacher's")
    keep_auxiliary: bool = key(False, "keep the auxiliary tasks (they are never exported)")
    init: str = key("teacher", "where the distilled student starts: teacher (weight selection: each layer takes the "
                    "same-named teacher layer's weights, cut to the student's width) or random",
                    choices=("teacher", "random"))
    target_ms: float | None = key(None, "a latency budget in ms: before any training, students of this architecture "
                                  "at other widths (x0.5 to x2) and stem strides, and with the encoders below, are "
                                  "built with random weights, converted to each TFLite precision the recipe exports "
                                  "and timed on this machine (one thread, batch 1, the fastest file counting); the "
                                  "largest (most parameters) within the budget becomes the student",
                                  check=_positive)
    target_speedup: float | None = key(None, "a latency budget relative to the teacher, instead of target_ms: the "
                                       "same search, with the teacher's fp32 TFLite file timed beside the "
                                       "candidates; the budget is its call time divided by this (10: a student ten "
                                       "times faster), so one recipe asks the same of every CPU",
                                       check=_positive)
    encoders: Mapping[str, tuple[Mapping[str, Any], ...]] = key(
        {}, "with target_ms or target_speedup, per input: other encoders the search also tries, each written as in "
        "inputs (keys replacing the student's encoder; a different type starts from that type's defaults) and scaled "
        "like it",
        example={"image": [{"type": "cnn", "filters": [8, 16, 32], "stem_stride": 2}]})
    over_budget: str = key("error", "with target_ms or target_speedup, when no candidate is within the budget on "
                           "this machine: error (stop before training the student, saying what the fastest takes) "
                           "or fastest (train the fastest candidate; compress says by how much it misses the budget)",
                           choices=("error", "fastest"))


@spec
class DistillTaskSpec(Spec):
    temperature: float | None = key(None, check=_positive)
    alpha: float | None = key(None, check=_unit_interval)


@spec
class DistillSpec(Spec):
    temperature: float = key(2.0, "softens both distributions; the soft loss is scaled by T^2", check=_positive)
    alpha: float = key(0.5, "weight of the teacher's soft targets; 1 - alpha goes to the labels",
                       check=_unit_interval)
    tasks: Mapping[str, DistillTaskSpec] = key({}, "per task: temperature and/or alpha replacing the global ones",
                                               example={"season": {"alpha": 0.9}})
    hint: float = key(0.0, "weight of feature distillation: the student's shared representation, through a learned "
                      "projection, regresses onto the teacher's (0 = off)", check=_non_negative)
    mixup: float = key(0.0, "weight of function matching: the student also matches the teacher's soft targets on "
                       "pairs of training rows blended together (images and audio mixed, text from the larger share), "
                       "inputs no label covers; costs a second student pass per step (0 = off)", check=_non_negative)
    mixup_epochs: float = key(1.0, "fraction of the epochs that run the mixup pass, spread evenly (1 = every epoch, "
                              "0.5 = every other one): the pass costs about one more student step",
                              check=_unit_interval)


@spec
class PruneSpec(Spec):
    enabled: bool = key(True)
    sparsity: float = key(0.5, "fraction of each pruned layer's weights set to zero", check=_fraction)
    structured: bool = key(False, "2:4 sparsity (2 zeros in every 4 weights, 50 %) on Conv/Dense layers whose input "
                           "channels divide by 4; magnitude pruning to `sparsity` elsewhere")
    layers: tuple[str, ...] | None = key(None, "names of the layers to prune (default: every Conv/Dense/Embedding/"
                                         "recurrent layer except those in skip)")
    skip: tuple[str, ...] = key(PRUNE_SKIP, f"kinds of layers left dense by default: {', '.join(PRUNE_SKIP)}",
                                choices=PRUNE_SKIP)
    epochs: int = key(6, "fine-tuning epochs; sparsity ramps up over the first two thirds", check=_positive)
    learning_rate: float = key(3e-4, check=_positive)


@spec
class QatSpec(Spec):
    enabled: bool = key(True)
    epochs: int = key(3, check=_positive)
    learning_rate: float = key(1e-4, check=_positive)


@spec
class CompressSpec(Spec):
    teacher: str = key("teacher", "the run's model that is distilled")
    student: StudentSpec = key(StudentSpec, "the student: same inputs and exported tasks as the teacher, smaller "
                               "parts")
    training: Mapping[str, Any] = key({}, "training keys for the students (epochs, learning_rate, ...) replacing the "
                                      "teacher's", example={"epochs": 30})
    distill: DistillSpec = key(DistillSpec, "knowledge distillation, teacher frozen")
    scratch: bool = key(True, "also train the same student from labels only (student-scratch), for comparison")
    start: str = key("auto", "the student that is pruned and trained quantization-aware: student (distilled), "
                     "student-scratch, or auto: of those two, the one with the better validation score",
                     choices=("auto", "student", "student-scratch"))
    prune: PruneSpec = key(PruneSpec, "magnitude pruning of the distilled student (tfmot), then fine-tuning")
    qat: QatSpec = key(QatSpec, "quantization-aware training of the last model (pruned if pruning ran; sparsity is "
                       "kept)")


@spec
class ExportSpec(Spec):
    model: tuple[str, ...] = key(("teacher",), "which model(s) of the run the export stage exports: teacher, "
                                 "student, student-scratch, student-pruned, student-qat, single-<task>; one name or a "
                                 "list, e.g. [teacher, student-qat]", coerce=_one_or_many)
    formats: tuple[str, ...] = key(tuple(f for f in FORMATS if f != "micro"), "tflite, onnx, c (the int8 TFLite "
                                   "model as a C array), micro (TFLite Micro: batch 1, integer I/O, run in TFLM by the "
                                   "gate; needs the [micro] extra, so not in the default)", choices=FORMATS,
                                   min_items=1)
    precisions: tuple[str, ...] = key(PRECISIONS, "fp32, fp16, dynamic (int8 weights), int8 (full integer, float "
                                      "I/O), int8io (TFLite, int8 I/O)", choices=PRECISIONS,
                                      min_items=1)
    calibration_samples: int = key(200, "training rows for int8 calibration, covering every class first",
                                   check=_positive)
    tolerance: Mapping[str, float] = key({}, "per task: largest accepted drop of the test metric (accuracy, or 1 - "
                                         "MAE/std) of a reduced-precision artifact, as a fraction in [0, 1], e.g. "
                                         "{season: 0.01}", example={"season": 0.01}, item_check=_unit_interval)
    default_tolerance: float = key(0.01, "tolerance of tasks not listed in tolerance (0.01 = 1 point)",
                                   check=_unit_interval)
    float_fallback: bool = key(True, "retry an artifact over tolerance with parts kept in float")
    target: str = key("latency", "what the precision search optimises per format: latency (the fastest bundle on "
                      "this machine among those within every task's tolerance; smaller breaks ties), size (the "
                      "smallest; faster breaks ties), none (no timing, no recommendation)",
                      choices=("latency", "size", "none"))
    search: bool = key(False, "with a target: also try int8 with blocks (image stem, encoders, trunk, heads) kept in "
                       "float, one block at a time, keeping each that makes the file faster and still passes the "
                       "gate (one more int8 conversion per block, so off unless asked)")
    opset: int = key(17, "ONNX opset", check=_opset)


@spec
class BenchSpec(Spec):
    backends: tuple[str, ...] = key((), "backends to measure (default: all; those absent here are skipped with the "
                                    "reason): " + ", ".join(BENCH_BACKENDS), check=_bench_backends)
    threads: tuple[int, ...] = key((), "CPU thread counts to measure (default: 1 and all cores)",
                                   check=lambda v: _positive_list(v) if v else None)
    runs: int = key(200, "timed single-sample calls per measurement", check=_positive)
    max_seconds: float = key(5.0, "a measurement stops early once its timed calls pass this many seconds (and at "
                             "least 20 ran): keeps slow baselines such as keras.predict short", check=_positive)
    batch: int = key(32, "batch size of the throughput measurement", check=_positive)
    keras: bool = key(False, "also time the Keras models (the keras, tf-function and tf-gpu backends): the slowest "
                      "rows, off unless asked here, by `edgemtl bench --keras` or by naming such a backend; their "
                      "accuracy, size and FLOPs are reported either way")


# ---- the recipe --------------------------------------------------------------------------------------------------

@spec
class Recipe(Spec):
    name: str = key(REQUIRED, "run name", check=_name, example="av_digits")
    seed: int = key(0, check=_non_negative)
    stages: tuple[str, ...] = key(("check", "train", "evaluate", "export", "report"),
                                  "stages of 'edgemtl run', in order", choices=STAGES)
    data: DataSpec = key(REQUIRED)
    inputs: tuple[InputSpec, ...] = key(REQUIRED, "model inputs, one per feature; type: " + " | ".join(MODALITIES),
                                        variants=INPUTS, min_items=1)
    fusion: FusionSpec = key(FusionSpec)
    trunk: TrunkSpec = key(TrunkSpec)
    tasks: tuple[TaskSpec, ...] = key(REQUIRED, "model outputs, one head each", min_items=1)
    training: TrainingSpec = key(TrainingSpec)
    compress: CompressSpec = key(CompressSpec, "`edgemtl compress` and the compress stage: student, student-scratch, "
                                 "student-pruned, student-qat")
    export: ExportSpec = key(ExportSpec, "what `edgemtl export` and the export stage produce")
    bench: BenchSpec = key(BenchSpec, "what `edgemtl bench` and the bench stage measure; the command's flags "
                           "override it")

    def input(self, name: str) -> InputSpec:
        for inp in self.inputs:
            if inp.name == name:
                return inp
        raise KeyError(f"no input {name!r}{did_you_mean(name, [i.name for i in self.inputs])}")

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r}{did_you_mean(name, [t.name for t in self.tasks])}")
