"""A .tflite model as a C source/header pair (aligned byte array + length) for TFLite Micro style firmware.

The source is valid C11 and C++11 (`gcc -x c -std=c11` and `g++ -std=c++11`, -Wall -Wextra -pedantic clean): C takes
`alignas` from <stdalign.h>, C++ has it as a keyword, and the header declares the symbols extern "C" so a C++
firmware links the array compiled either way."""
from pathlib import Path


def write_c_array(model: bytes, folder: Path, name: str) -> list[Path]:
    symbol = "".join(c if c.isalnum() else "_" for c in name)
    header = folder / f"{name}.h"
    source = folder / f"{name}.cc"  # C++ by its suffix, as TFLite Micro is; compiles as C11 too (gcc -x c)
    guard = f"{symbol.upper()}_H_"
    header.write_text(f"#ifndef {guard}\n#define {guard}\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
                      f"extern const unsigned char {symbol}[];\nextern const unsigned int {symbol}_len;\n\n"
                      f"#ifdef __cplusplus\n}}\n#endif\n\n#endif  /* {guard} */\n")
    rows = [", ".join(f"0x{b:02x}" for b in model[i:i + 12]) for i in range(0, len(model), 12)]
    body = ",\n  ".join(rows)
    source.write_text(f'#include "{name}.h"\n\n#ifndef __cplusplus\n#include <stdalign.h>  /* C11: alignas */\n'
                      f"#endif\n\n/* TFLite flatbuffers must be 16-byte aligned. */\n"
                      f"alignas(16) const unsigned char {symbol}[] = {{\n  {body}\n}};\n"
                      f"const unsigned int {symbol}_len = {len(model)};\n")
    return [header, source]
