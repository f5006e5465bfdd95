// Run an edgemtl ONNX bundle with the ONNX Runtime C/C++ API, reading manifest.json (nlohmann/json).
//   ort_run BUNDLE_DIR
// Feeds zeros of each input's manifest dtype and shape (replace with your preprocessed sample: see the manifest's
// `preprocess`), then decodes every output as the manifest says. Build: see README.md. Not compiled in CI.
#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using json = nlohmann::json;

int main(int argc, char** argv) {
  if (argc != 2) { std::cerr << "usage: ort_run BUNDLE_DIR\n"; return 2; }
  const std::string dir = argv[1];
  json manifest = json::parse(std::ifstream(dir + "/manifest.json"));
  if (manifest["format"] != "onnx") { std::cerr << "not an ONNX bundle\n"; return 2; }

  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "edgemtl");
  Ort::SessionOptions options;  // the configuration the parity gate verified (manifest `runtime`)
  options.SetIntraOpNumThreads(manifest["runtime"].value("threads", 1));
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  Ort::Session session(env, (dir + "/" + manifest["file"].get<std::string>()).c_str(), options);
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);

  std::vector<std::string> in_names, out_names;
  std::vector<std::vector<uint8_t>> buffers;  // one zero-filled buffer per input, typed below
  std::vector<Ort::Value> inputs;
  for (const auto& entry : manifest["inputs"]) {
    std::vector<int64_t> shape = {1};  // batch 1; the manifest's shape has the batch first (null: any)
    for (size_t d = 1; d < entry["shape"].size(); ++d) shape.push_back(entry["shape"][d].get<int64_t>());
    size_t count = 1;
    for (int64_t d : shape) count *= static_cast<size_t>(d);
    const std::string dtype = entry["dtype"];
    const size_t width = dtype == "uint8" ? 1 : dtype == "int64" ? 8 : 4;  // uint8 pixels, float32, int32/int64 ids
    buffers.emplace_back(count * width, 0);
    void* data = buffers.back().data();
    if (dtype == "uint8")
      inputs.push_back(Ort::Value::CreateTensor<uint8_t>(memory, static_cast<uint8_t*>(data), count, shape.data(), shape.size()));
    else if (dtype == "int32")
      inputs.push_back(Ort::Value::CreateTensor<int32_t>(memory, static_cast<int32_t*>(data), count, shape.data(), shape.size()));
    else if (dtype == "int64")
      inputs.push_back(Ort::Value::CreateTensor<int64_t>(memory, static_cast<int64_t*>(data), count, shape.data(), shape.size()));
    else
      inputs.push_back(Ort::Value::CreateTensor<float>(memory, static_cast<float*>(data), count, shape.data(), shape.size()));
    in_names.push_back(entry["name"]);
  }
  for (const auto& out : manifest["outputs"]) out_names.push_back(out["task"]);

  std::vector<const char*> in_ptrs, out_ptrs;
  for (auto& n : in_names) in_ptrs.push_back(n.c_str());
  for (auto& n : out_names) out_ptrs.push_back(n.c_str());
  auto results = session.Run(Ort::RunOptions{nullptr}, in_ptrs.data(), inputs.data(), inputs.size(), out_ptrs.data(),
                             out_ptrs.size());

  for (size_t i = 0; i < results.size(); ++i) {  // decode: argmax | threshold | value (manifest outputs[].decode)
    const auto& out = manifest["outputs"][i];
    const float* p = results[i].GetTensorData<float>();
    const size_t width = results[i].GetTensorTypeAndShapeInfo().GetElementCount();
    std::cout << out["task"].get<std::string>() << ": ";
    if (out["decode"] == "argmax") {
      size_t best = 0;
      for (size_t k = 1; k < width; ++k) if (p[k] > p[best]) best = k;
      std::cout << out["labels"][best].get<std::string>() << " (" << p[best] << ")\n";
    } else if (out["decode"] == "threshold") {
      const float t = out["threshold"];
      for (size_t k = 0; k < width; ++k) if (p[k] >= t) std::cout << out["labels"][width == 1 ? 1 : k].get<std::string>() << " ";
      std::cout << "\n";
    } else {
      std::cout << p[0] << "\n";
    }
  }
  return 0;
}
