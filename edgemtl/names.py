"""Names that several parts of edgemtl share, defined once (TF-free, no yaml): the recipe validates against these,
export, bench and the runtime dispatch on them."""

MODALITIES = ("image", "text", "audio", "numeric", "sequence")
TASK_TYPES = ("multiclass", "binary", "multilabel", "regression", "boxes", "mask")
STAGES = ("check", "train", "single_task", "evaluate", "compress", "export", "bench", "report")

# Models a run can hold: the trained teacher, the compress stage's students, and one single-task model per task.
TEACHER = "teacher"
STUDENTS = ("student", "student-scratch", "student-pruned", "student-qat")
SINGLE_TASK_PREFIX = "single-"

# Pretrained image backbones (tf_keras.applications families) an image encoder can be built from.
BACKBONES = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet50")

FORMATS = ("tflite", "onnx", "c", "micro")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int8io")
INT8_PRECISIONS = ("int8", "int8io")  # full-integer precisions; also all a QAT model exports to
FORMAT_PRECISIONS = {  # what each format can be exported in (c wraps the full-int8 TFLite model)
    "tflite": PRECISIONS,
    "onnx": ("fp32", "fp16", "dynamic", "int8"),
    "c": ("int8",),
    "micro": ("int8",),  # TFLite Micro: full int8 with integer I/O at batch 1, judged in TFLM
}

BENCH_BACKENDS = ("litert", "ort-cpu", "ort-cuda", "ort-cuda-graph", "ort-tensorrt", "keras", "tf-function", "tf-gpu")
GPU_BACKENDS = ("ort-cuda", "ort-cuda-graph", "ort-tensorrt", "tf-gpu")
