// Run an edgemtl micro bundle with TensorFlow Lite Micro: the minimal calls.
//
// model_data.cc / model_data.h come from the bundle (RUN/exports/<model>-micro-int8/); model_settings.h from
// `python examples/micro/gen_settings.py BUNDLE > model_settings.h`. Build it inside a TFLM tree or a firmware
// project that has TFLM (see README.md); it is not compiled in CI, since no package registry ships TFLM's headers.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "model_data.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t tensor_arena[kArenaBytes];  // the smallest arena the export measured this model in

int8_t quantize(float x, float scale, int zero_point) {  // the manifest's input quantization
  long q = std::lround(x / scale) + zero_point;
  return static_cast<int8_t>(q < -128 ? -128 : q > 127 ? 127 : q);
}
}  // namespace

int main() {
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return 1;

  static tflite::MicroMutableOpResolver<kOpCount> resolver;  // exactly the ops manifest.json lists
  EDGEMTL_ADD_OPS(resolver);

  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaBytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 2;
  std::printf("arena used: %u of %d bytes\n", static_cast<unsigned>(interpreter.arena_used_bytes()), kArenaBytes);

  // Fill every input as model_settings.h describes it (kInput<i>*, in the model's input order): an image input is
  // int8, q = pixel / scale + zero point (scale 1, zero point -128: pixel - 128); a sequence or numeric input is
  // int8 of the raw values, q = value / scale + zero point (the model standardises each channel itself); an audio
  // input is int16 PCM (q = sample * 32768); a text input takes int32 token ids from the bundle's vocabulary file.
  TfLiteTensor* input = interpreter.input(0);
  if (input->type == kTfLiteInt8) {
    for (size_t i = 0; i < input->bytes; ++i) {
      float value = 0.0f;  // your sensor's value (a pixel 0..255, a feature in its recipe units)
      input->data.int8[i] = quantize(value, kInput0Scale, kInput0ZeroPoint);
    }
  } else if (input->type == kTfLiteInt16) {
    for (size_t i = 0; i < input->bytes / sizeof(int16_t); ++i) input->data.i16[i] = 0;  // microphone PCM
  }
  if (interpreter.Invoke() != kTfLiteOk) return 3;

  // Output 0: dequantize, then decode as the manifest says (argmax over the labels for a multiclass task).
  const TfLiteTensor* out = interpreter.output(0);
  int best = 0;
  float best_p = -1.0f;
  for (int k = 0; k < kOutput0Width; ++k) {
    float p = (out->data.int8[k] - kOutput0ZeroPoint) * kOutput0Scale;
    if (p > best_p) best = k, best_p = p;
  }
  std::printf("%s (%.2f)\n", kOutput0Labels[best], best_p);
  return 0;
}
