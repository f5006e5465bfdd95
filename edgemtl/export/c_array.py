"""A .tflite model as a C source/header pair (aligned byte array + length) for TFLite Micro style firmware."""
from pathlib import Path


def write_c_array(model: bytes, folder: Path, name: str) -> list[Path]:
    symbol = "".join(c if c.isalnum() else "_" for c in name)
    header = folder / f"{name}.h"
    source = folder / f"{name}.cc"  # C++ (alignas), as TFLite Micro is
    guard = f"{symbol.upper()}_H_"
    header.write_text(f"#ifndef {guard}\n#define {guard}\n\nextern const unsigned char {symbol}[];\n"
                      f"extern const unsigned int {symbol}_len;\n\n#endif  // {guard}\n")
    rows = [", ".join(f"0x{b:02x}" for b in model[i:i + 12]) for i in range(0, len(model), 12)]
    body = ",\n  ".join(rows)
    source.write_text(f'#include "{name}.h"\n\n// TFLite flatbuffers must be 16-byte aligned.\n'
                      f"alignas(16) const unsigned char {symbol}[] = {{\n  {body}\n}};\n"
                      f"const unsigned int {symbol}_len = {len(model)};\n")
    return [header, source]
