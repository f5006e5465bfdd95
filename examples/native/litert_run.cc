// Run an edgemtl TFLite bundle with the LiteRT (TensorFlow Lite) C API, reading manifest.json (nlohmann/json).
//   litert_run BUNDLE_DIR
// Feeds zeros through the serving signature's named inputs (replace with your preprocessed sample), quantizes float
// values for int8 I/O files with the tensor's own scale and zero point, then decodes every output as the manifest
// says. Build: see README.md. Not compiled in CI.
#include <tensorflow/lite/c/c_api.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using json = nlohmann::json;

int main(int argc, char** argv) {
  if (argc != 2) { std::cerr << "usage: litert_run BUNDLE_DIR\n"; return 2; }
  const std::string dir = argv[1];
  json manifest = json::parse(std::ifstream(dir + "/manifest.json"));

  TfLiteModel* model = TfLiteModelCreateFromFile((dir + "/" + manifest["file"].get<std::string>()).c_str());
  TfLiteInterpreterOptions* options = TfLiteInterpreterOptionsCreate();
  // manifest runtime.kernels: "xnnpack" is LiteRT's default delegate; "builtin" needs a LiteRT built without the
  // default XNNPACK delegate (int8 answers round differently between the two: use the one the gate verified)
  TfLiteInterpreterOptionsSetNumThreads(options, manifest["runtime"].value("threads", 1));
  TfLiteInterpreter* interpreter = TfLiteInterpreterCreate(model, options);
  TfLiteSignatureRunner* runner = TfLiteInterpreterGetSignatureRunner(interpreter, "serving_default");
  if (!runner) { std::cerr << "no serving_default signature\n"; return 1; }

  for (const auto& entry : manifest["inputs"]) {  // batch 1
    std::vector<int> dims = {1};
    for (size_t d = 1; d < entry["shape"].size(); ++d) dims.push_back(entry["shape"][d].get<int>());
    TfLiteSignatureRunnerResizeInputTensor(runner, entry["name"].get<std::string>().c_str(), dims.data(),
                                           static_cast<int>(dims.size()));
  }
  if (TfLiteSignatureRunnerAllocateTensors(runner) != kTfLiteOk) return 1;
  for (const auto& entry : manifest["inputs"]) {
    TfLiteTensor* t = TfLiteSignatureRunnerGetInputTensor(runner, entry["name"].get<std::string>().c_str());
    std::vector<uint8_t> zeros(TfLiteTensorByteSize(t), 0);
    if (TfLiteTensorType(t) == kTfLiteInt8) {  // int8 I/O: q = round(x / scale) + zero_point, here for x = 0
      TfLiteQuantizationParams q = TfLiteTensorQuantizationParams(t);
      for (auto& b : zeros) b = static_cast<uint8_t>(static_cast<int8_t>(std::lround(0.0f / q.scale) + q.zero_point));
    }
    TfLiteTensorCopyFromBuffer(t, zeros.data(), zeros.size());
  }
  if (TfLiteSignatureRunnerInvoke(runner) != kTfLiteOk) return 1;

  for (const auto& out : manifest["outputs"]) {
    const TfLiteTensor* t = TfLiteSignatureRunnerGetOutputTensor(runner, out["task"].get<std::string>().c_str());
    const size_t width = TfLiteTensorByteSize(t) / (TfLiteTensorType(t) == kTfLiteFloat32 ? 4 : 1);
    std::vector<float> p(width);
    if (TfLiteTensorType(t) == kTfLiteFloat32) {
      TfLiteTensorCopyToBuffer(t, p.data(), width * sizeof(float));
    } else {  // int8 output: x = (q - zero_point) * scale
      std::vector<int8_t> q(width);
      TfLiteTensorCopyToBuffer(t, q.data(), width);
      TfLiteQuantizationParams qp = TfLiteTensorQuantizationParams(t);
      for (size_t k = 0; k < width; ++k) p[k] = (q[k] - qp.zero_point) * qp.scale;
    }
    std::cout << out["task"].get<std::string>() << ": ";
    if (out["decode"] == "argmax") {
      size_t best = 0;
      for (size_t k = 1; k < width; ++k) if (p[k] > p[best]) best = k;
      std::cout << out["labels"][best].get<std::string>() << " (" << p[best] << ")\n";
    } else {
      std::cout << p[0] << "\n";  // threshold tasks: compare with out["threshold"] as in ort_run.cc
    }
  }
  TfLiteSignatureRunnerDelete(runner);
  TfLiteInterpreterDelete(interpreter);
  TfLiteInterpreterOptionsDelete(options);
  TfLiteModelDelete(model);
  return 0;
}
