// trtfast's engine container: a small checked header in front of a TensorRT plan. Checked before
// TensorRT sees the plan, so a foreign, truncated or corrupt file fails with a sentence, not a
// crash. Bare TensorRT plans (trtexec, TensorRT's Python API) are recognised and read too.
//
// Layout of format version 1 (integers little-endian):
//   offset size
//        0    8  magic "\x89TRTFAST" (the high first byte catches 7-bit and text-mode copies)
//        8    4  format version
//       12    4  header size: bytes before the plan, a multiple of 64 so the plan is aligned
//       16    4  CRC-32 of the header, computed with these four bytes zero
//   --- the first 20 bytes stay the same in every format version ---
//       20    4  flags: bit 0 = the plan embeds host code; other bits zero
//       24    8  plan size
//       32    4  CRC-32 of the plan
//       36    2  compute capability, major
//       38    2  compute capability, minor
//       40    1  edition: 1 standard, 2 rtx
//       41    3  zero
//       44       five strings, each a 4-byte length and UTF-8 bytes: TensorRT version, GPU name,
//                model SHA-256 (hex, or empty), plan SHA-256 (hex), metadata (JSON)
//                then zeros up to the header size
//   header size  the plan, to the end of the file
//
// Binary fields hold what C++ needs to decide whether a plan can be loaded here (versions,
// edition, GPU, host code, sizes, checksums), so the core can check an engine without a JSON
// parser. The IO signature and build options are nested and open-ended (build options hold any
// JSON value), so they travel as one JSON text that this layer only frames and checksums;
// trtfast.engine_file parses and validates it.
//
// Integrity: CRC-32 over header and plan catches every truncation and every corrupted byte, and
// is checked on every load at memory speed. The plan's SHA-256 is its identity (cache keys,
// `inspect`, equal to `sha256sum` of the exported bare plan); it is computed when encoding and
// not recomputed when reading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

inline constexpr std::uint32_t kEngineFormatVersion = 1;

enum class Edition : std::uint8_t { Unknown = 0, Standard = 1, Rtx = 2 };

// "standard", "rtx", or "" for Unknown.
const char* to_string(Edition edition) noexcept;
// Throws std::invalid_argument for anything but "standard" or "rtx".
Edition parse_edition(const std::string& name);

struct EngineFileInfo {
  std::uint32_t format_version = 0;  // 0 for a raw plan
  bool raw_plan = false;             // a bare TensorRT plan, no trtfast header
  std::string tensorrt_version;      // "11.4.0"; from the plan's own header for a raw plan
  Edition edition = Edition::Unknown;
  std::string gpu_name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  bool host_code = false;
  std::string model_sha256;   // 64 lowercase hex digits, or empty
  std::string plan_sha256;    // 64 lowercase hex digits; empty for a raw plan (not computed)
  std::string metadata_json;  // IO signature and build options; empty for a raw plan
  std::uint64_t plan_offset = 0;
  std::uint64_t plan_size = 0;
  std::uint32_t plan_crc32 = 0;  // unused for a raw plan
};

// The header for `plan`: computes plan size, CRC-32 and SHA-256 from the plan and takes every
// other field from `info` (raw_plan, format_version and plan_* fields are ignored). The file is
// this header followed by the plan. Throws std::invalid_argument naming an invalid field.
std::string encode_engine_header(const EngineFileInfo& info, const void* plan,
                                 std::size_t plan_size);

// Identifies and parses an engine held in memory. `name` says what it is in messages. With
// check_plan the plan's CRC-32 is verified too. Throws EngineFormatError.
EngineFileInfo parse_engine(const void* data, std::size_t size, const std::string& name,
                            bool check_plan);

// The same for an open file (read with pread; the file offset is left alone). Reads only the
// header unless check_plan, which streams the plan through its CRC-32 without keeping it.
EngineFileInfo read_engine_info(int fd, const std::string& name, bool check_plan);

// Reads the plan of `info` (from read_engine_info on the same file) into `destination`, which
// holds info.plan_size bytes, and verifies its CRC-32. Throws EngineFormatError if the file
// changed size or the plan does not match its checksum.
//
// File functions throw std::system_error when the operating system fails a read.
void read_engine_plan(int fd, const std::string& name, const EngineFileInfo& info,
                      void* destination);

// Checksums exposed for tests and tools: CRC-32 (IEEE, as zlib) and SHA-256 as lowercase hex.
std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;
std::string sha256_hex(const void* data, std::size_t size);

}  // namespace trtfast

#pragma GCC visibility pop
