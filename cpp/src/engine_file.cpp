#include "trtfast/engine_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "trtfast/error.hpp"

namespace trtfast {

namespace {

constexpr char kMagic[] = "\x89TRTFAST";
constexpr std::size_t kMagicSize = 8;
// Bytes 0..19 (magic, format version, header size, header CRC) are the same in every version.
constexpr std::size_t kPrefixSize = 20;
constexpr std::size_t kHeaderCrcOffset = 16;
constexpr std::size_t kFixedFieldsEnd = 44;  // format version 1: the strings start here
constexpr std::size_t kHeaderAlignment = 64;
// A header beyond this is corrupt; checked before anything is allocated for it.
constexpr std::uint64_t kMaxHeaderSize = 64ull << 20;
constexpr std::uint32_t kFlagHostCode = 1u;

// TensorRT's own plan header: the 32-bit tag "ftrt" ("vtrt" from TensorRT-RTX), then a layout
// version; with layout 0 bytes 24..27 hold the version of TensorRT that built it (major, minor,
// patch, build).
constexpr char kPlanTag[] = "ftrt";
constexpr char kRtxPlanTag[] = "vtrt";
constexpr std::size_t kPlanTagSize = 4;
constexpr std::size_t kPlanHeaderSize = 28;
constexpr std::size_t kPlanVersionOffset = 24;

constexpr std::size_t kProbeSize = 64;
constexpr std::size_t kStreamChunk = 1u << 20;

const std::string kExpected =
    "trtfast engines start with the bytes \\x89TRTFAST, TensorRT plans with 'ftrt', TensorRT-RTX "
    "plans with 'vtrt'";

// --- checksums ---------------------------------------------------------------------------------

// Slice-by-8 tables for the reflected IEEE polynomial (zlib's CRC-32).
struct Crc32Tables {
  std::array<std::array<std::uint32_t, 256>, 8> table{};
  Crc32Tables() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int bit = 0; bit < 8; ++bit) {
        c = (c & 1u) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      }
      table[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i) {
      for (std::size_t t = 1; t < 8; ++t) {
        table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFFu];
      }
    }
  }
};

const Crc32Tables& crc_tables() {
  static const Crc32Tables tables;
  return tables;
}

std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

std::uint64_t load_le64(const std::uint8_t* p) noexcept {
  const std::uint64_t high = load_le32(p + 4);
  return high << 32 | load_le32(p);
}

std::uint16_t load_le16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | p[1] << 8);
}

class Sha256 {
 public:
  void update(const std::uint8_t* data, std::size_t size) {
    total_ += size;
    if (buffered_ > 0) {
      const std::size_t take = std::min(size, block_.size() - buffered_);
      std::memcpy(block_.data() + buffered_, data, take);
      buffered_ += take;
      data += take;
      size -= take;
      if (buffered_ < block_.size()) {
        return;
      }
      compress(block_.data());
      buffered_ = 0;
    }
    for (; size >= block_.size(); data += block_.size(), size -= block_.size()) {
      compress(data);
    }
    std::memcpy(block_.data(), data, size);
    buffered_ = size;
  }

  std::string hex_digest() {
    const std::uint64_t bits = total_ * 8;
    const std::uint8_t one = 0x80;
    update(&one, 1);
    const std::uint8_t zero = 0;
    while (buffered_ != 56) {
      update(&zero, 1);
    }
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i) {
      length[i] = static_cast<std::uint8_t>(bits >> (56 - 8 * i));
    }
    update(length, 8);
    static const char digits[] = "0123456789abcdef";
    std::string hex;
    for (std::uint32_t word : state_) {
      for (int shift = 28; shift >= 0; shift -= 4) {
        hex.push_back(digits[(word >> shift) & 0xFu]);
      }
    }
    return hex;
  }

 private:
  static std::uint32_t rotr(std::uint32_t x, int n) noexcept { return (x >> n) | (x << (32 - n)); }

  void compress(const std::uint8_t* chunk) {
    static constexpr std::array<std::uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    std::array<std::uint32_t, 64> w{};
    for (std::size_t i = 0; i < 16; ++i) {
      const std::uint8_t* p = chunk + 4 * i;
      w[i] = static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
             static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
    }
    for (std::size_t i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
    std::uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
    for (std::size_t i = 0; i < 64; ++i) {
      const std::uint32_t t1 =
          h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const std::uint32_t t2 =
          (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
    state_[4] += e;
    state_[5] += f;
    state_[6] += g;
    state_[7] += h;
  }

  std::array<std::uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::uint8_t, 64> block_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;
};

// --- where the bytes come from -----------------------------------------------------------------

class Source {
 public:
  virtual ~Source() = default;
  virtual std::uint64_t size() const = 0;
  // Reads exactly `count` bytes at `offset`; the caller has checked the range against size().
  virtual void read(std::uint64_t offset, void* destination, std::size_t count) const = 0;
  const std::string& name() const noexcept { return name_; }

 protected:
  explicit Source(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};

class MemorySource final : public Source {
 public:
  MemorySource(const void* data, std::size_t size, std::string name)
      : Source(std::move(name)), data_(static_cast<const std::uint8_t*>(data)), size_(size) {}
  std::uint64_t size() const override { return size_; }
  void read(std::uint64_t offset, void* destination, std::size_t count) const override {
    std::memcpy(destination, data_ + offset, count);
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

class FileSource final : public Source {
 public:
  FileSource(int fd, std::string name) : Source(std::move(name)), fd_(fd) {
    struct stat status{};
    if (fstat(fd_, &status) != 0) {
      throw std::system_error(errno, std::generic_category(), "cannot stat " + this->name());
    }
    size_ = static_cast<std::uint64_t>(status.st_size);
  }
  std::uint64_t size() const override { return size_; }
  void read(std::uint64_t offset, void* destination, std::size_t count) const override {
    auto* out = static_cast<std::uint8_t*>(destination);
    while (count > 0) {
      const ssize_t got = pread(fd_, out, count, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) {
          continue;
        }
        throw std::system_error(errno, std::generic_category(), "cannot read " + name());
      }
      if (got == 0) {
        throw EngineFormatError(name() + " is truncated: it ended at byte " +
                                std::to_string(offset) +
                                " while being read (was it being written to?)");
      }
      out += got;
      offset += static_cast<std::uint64_t>(got);
      count -= static_cast<std::size_t>(got);
    }
  }

 private:
  int fd_;
  std::uint64_t size_ = 0;
};

// --- messages ----------------------------------------------------------------------------------

std::string hex_bytes(const std::uint8_t* data, std::size_t count) {
  static const char digits[] = "0123456789abcdef";
  std::string text;
  for (std::size_t i = 0; i < count; ++i) {
    if (i > 0) {
      text.push_back(' ');
    }
    text.push_back(digits[data[i] >> 4]);
    text.push_back(digits[data[i] & 0xFu]);
  }
  return text;
}

std::string hex32(std::uint32_t value) {
  static const char digits[] = "0123456789abcdef";
  std::string text = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) {
    text.push_back(digits[(value >> shift) & 0xFu]);
  }
  return text;
}

[[noreturn]] void corrupt(const Source& source, const std::string& what) {
  throw EngineFormatError(source.name() + " is a corrupt trtfast engine: " + what);
}

bool starts_with(const std::uint8_t* data, std::size_t size, const char* prefix,
                 std::size_t prefix_size) {
  return size >= prefix_size && std::memcmp(data, prefix, prefix_size) == 0;
}

// A few formats people hand to an engine loader by mistake, named so the message helps.
std::string guess_format(const Source& source, const std::uint8_t* probe, std::size_t size) {
  auto has = [&](const char* prefix, std::size_t n) { return starts_with(probe, size, prefix, n); };
  if (has("\x89PNG", 4)) {
    return "a PNG image";
  }
  if (has("\xff\xd8\xff", 3)) {
    return "a JPEG image";
  }
  if (has("PK\x03\x04", 4)) {
    return "a ZIP archive (such as a PyTorch checkpoint)";
  }
  if (has("\177ELF", 4)) {
    return "an ELF binary";
  }
  if (has("\x1f\x8b", 2)) {
    return "gzip-compressed data: decompress it first";
  }
  // ONNX ModelProto: field 1 (ir_version, a small varint) first, then another field.
  if (size >= 3 && probe[0] == 0x08 && probe[1] < 0x80) {
    switch (probe[2]) {
      case 0x12:
      case 0x1a:
      case 0x22:
      case 0x28:
      case 0x32:
      case 0x3a:
      case 0x42:
        return "an ONNX model: build an engine from it first";
      default:
        break;
    }
  }
  // Ultralytics' .engine: a 4-byte JSON length, the JSON, then the plan.
  if (size >= 5 && probe[4] == '{') {
    const std::uint64_t json_size = load_le32(probe);
    const std::uint64_t plan_at = 4 + json_size;
    if (plan_at + kPlanTagSize <= source.size()) {
      std::uint8_t tag[kPlanTagSize];
      source.read(plan_at, tag, kPlanTagSize);
      if (std::memcmp(tag, kPlanTag, kPlanTagSize) == 0) {
        return "an Ultralytics engine: " + std::to_string(json_size) +
               " bytes of JSON metadata precede the TensorRT plan at offset " +
               std::to_string(plan_at) + "; strip them or export a bare plan";
      }
    }
  }
  bool text = true;
  for (std::size_t i = 0; i < size; ++i) {
    const std::uint8_t c = probe[i];
    text = text && (c == '\n' || c == '\r' || c == '\t' || (c >= 0x20 && c < 0x7f));
  }
  if (text) {
    return "text";
  }
  return "";
}

// --- validation helpers ------------------------------------------------------------------------

bool is_utf8(const std::string& text) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t c = p[i];
    std::size_t extra = 0;
    std::uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      code = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      code = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      code = c & 0x07u;
    } else {
      return false;
    }
    if (n - i <= extra) {
      return false;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        return false;
      }
      code = (code << 6) | (p[i + k] & 0x3Fu);
    }
    static constexpr std::uint32_t kMinimum[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[extra] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool is_sha256_hex(const std::string& text) {
  if (text.size() != 64) {
    return false;
  }
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// Reads fields of a header held in memory; every read is checked against the end.
class Cursor {
 public:
  Cursor(const Source& source, const std::vector<std::uint8_t>& header, std::size_t position)
      : source_(source), header_(header), position_(position) {}

  std::size_t position() const noexcept { return position_; }

  std::string string(const char* field) {
    if (header_.size() - position_ < 4) {
      corrupt(source_, std::string("the header ends inside the length of the ") + field);
    }
    const std::size_t length = load_le32(header_.data() + position_);
    position_ += 4;
    if (length > header_.size() - position_) {
      corrupt(source_, std::string("the ") + field + " is " + std::to_string(length) +
                           " bytes long but only " + std::to_string(header_.size() - position_) +
                           " bytes of header are left");
    }
    std::string value(reinterpret_cast<const char*>(header_.data() + position_), length);
    position_ += length;
    if (!is_utf8(value)) {
      corrupt(source_, std::string("the ") + field + " is not UTF-8");
    }
    return value;
  }

 private:
  const Source& source_;
  const std::vector<std::uint8_t>& header_;
  std::size_t position_;
};

std::uint32_t header_crc(const std::uint8_t* header, std::size_t size) {
  const std::uint8_t zeros[4] = {0, 0, 0, 0};
  std::uint32_t crc = crc32(header, kHeaderCrcOffset);
  crc = crc32(zeros, 4, crc);
  return crc32(header + kHeaderCrcOffset + 4, size - kHeaderCrcOffset - 4, crc);
}

std::size_t align_up(std::size_t value) {
  return (value + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment;
}

// --- parsing -----------------------------------------------------------------------------------

EngineFileInfo parse_raw_plan(const Source& source, const std::uint8_t* probe, std::size_t size,
                              Edition edition) {
  if (size < kPlanHeaderSize) {
    const char* tag =
        edition == Edition::Rtx ? "TensorRT-RTX's plan tag 'vtrt'" : "TensorRT's plan tag 'ftrt'";
    throw EngineFormatError(source.name() + " is truncated: it starts with " + tag +
                            " but has only " + std::to_string(size) +
                            " bytes, fewer than a plan header (" + std::to_string(kPlanHeaderSize) +
                            ")");
  }
  EngineFileInfo info;
  info.raw_plan = true;
  info.edition = edition;
  info.plan_offset = 0;
  info.plan_size = source.size();
  if (load_le32(probe + kPlanTagSize) == 0 && probe[kPlanVersionOffset] != 0) {
    const std::uint8_t* v = probe + kPlanVersionOffset;
    info.tensorrt_version =
        std::to_string(v[0]) + "." + std::to_string(v[1]) + "." + std::to_string(v[2]);
  }
  return info;
}

EngineFileInfo parse_trtfast(const Source& source, const std::uint8_t* probe) {
  const std::uint64_t file_size = source.size();
  if (file_size < kPrefixSize) {
    throw EngineFormatError(source.name() + " is truncated: it has " + std::to_string(file_size) +
                            " bytes, fewer than the " + std::to_string(kPrefixSize) +
                            " every trtfast engine header starts with");
  }
  const std::uint32_t format_version = load_le32(probe + 8);
  const std::uint32_t header_size = load_le32(probe + 12);
  const std::uint32_t stored_crc = load_le32(probe + kHeaderCrcOffset);
  if (header_size < kFixedFieldsEnd || header_size % kHeaderAlignment != 0 ||
      header_size > kMaxHeaderSize) {
    corrupt(source, "its header size (" + std::to_string(header_size) +
                        " bytes) is not a multiple of 64 between 64 and " +
                        std::to_string(kMaxHeaderSize));
  }
  if (header_size > file_size) {
    throw EngineFormatError(source.name() + " is truncated: its header needs " +
                            std::to_string(header_size) + " bytes but the file has " +
                            std::to_string(file_size));
  }
  std::vector<std::uint8_t> header(header_size);
  source.read(0, header.data(), header.size());
  const std::uint32_t computed_crc = header_crc(header.data(), header.size());
  if (computed_crc != stored_crc) {
    corrupt(source, "the header's CRC-32 is " + hex32(computed_crc) + ", not the stored " +
                        hex32(stored_crc));
  }
  if (format_version != kEngineFormatVersion) {
    if (format_version > kEngineFormatVersion) {
      throw EngineFormatError(source.name() + " was written by a newer trtfast (engine format " +
                              std::to_string(format_version) + "; this trtfast reads format " +
                              std::to_string(kEngineFormatVersion) + "): upgrade trtfast");
    }
    corrupt(source, "unknown engine format version " + std::to_string(format_version));
  }

  const std::uint8_t* h = header.data();
  EngineFileInfo info;
  info.format_version = format_version;
  const std::uint32_t flags = load_le32(h + 20);
  if ((flags & ~kFlagHostCode) != 0) {
    corrupt(source, "unknown flags " + hex32(flags));
  }
  info.host_code = (flags & kFlagHostCode) != 0;
  info.plan_size = load_le64(h + 24);
  info.plan_crc32 = load_le32(h + 32);
  info.compute_capability_major = load_le16(h + 36);
  info.compute_capability_minor = load_le16(h + 38);
  const std::uint8_t edition = h[40];
  if (edition != static_cast<std::uint8_t>(Edition::Standard) &&
      edition != static_cast<std::uint8_t>(Edition::Rtx)) {
    corrupt(source, "unknown TensorRT edition " + std::to_string(edition));
  }
  info.edition = static_cast<Edition>(edition);
  if (h[41] != 0 || h[42] != 0 || h[43] != 0) {
    corrupt(source, "reserved header bytes 41..43 are not zero");
  }

  Cursor cursor(source, header, kFixedFieldsEnd);
  info.tensorrt_version = cursor.string("TensorRT version");
  info.gpu_name = cursor.string("GPU name");
  info.model_sha256 = cursor.string("model SHA-256");
  info.plan_sha256 = cursor.string("plan SHA-256");
  info.metadata_json = cursor.string("metadata");
  if (!info.model_sha256.empty() && !is_sha256_hex(info.model_sha256)) {
    corrupt(source, "the model SHA-256 is not 64 lowercase hex digits");
  }
  if (!is_sha256_hex(info.plan_sha256)) {
    corrupt(source, "the plan SHA-256 is not 64 lowercase hex digits");
  }
  if (align_up(cursor.position()) != header_size) {
    corrupt(source, "its fields end at byte " + std::to_string(cursor.position()) +
                        ", which does not match the header size " + std::to_string(header_size));
  }
  for (std::size_t i = cursor.position(); i < header_size; ++i) {
    if (h[i] != 0) {
      corrupt(source, "header padding byte " + std::to_string(i) + " is not zero");
    }
  }

  if (info.plan_size == 0) {
    corrupt(source, "it holds no plan");
  }
  info.plan_offset = header_size;
  const std::uint64_t after_header = file_size - header_size;
  if (after_header < info.plan_size) {
    throw EngineFormatError(source.name() + " is truncated: its plan should have " +
                            std::to_string(info.plan_size) + " bytes but only " +
                            std::to_string(after_header) + " follow the header");
  }
  if (after_header > info.plan_size) {
    corrupt(source,
            std::to_string(after_header - info.plan_size) + " unexpected bytes follow the plan");
  }
  return info;
}

EngineFileInfo identify(const Source& source) {
  const std::uint64_t file_size = source.size();
  if (file_size == 0) {
    throw EngineFormatError(source.name() +
                            " is empty: expected a trtfast engine or a TensorRT plan");
  }
  std::uint8_t probe[kProbeSize];
  const std::size_t probe_size =
      static_cast<std::size_t>(std::min<std::uint64_t>(file_size, kProbeSize));
  source.read(0, probe, probe_size);

  const std::size_t magic_checked = std::min(probe_size, kMagicSize);
  if (std::memcmp(probe, kMagic, magic_checked) == 0) {
    if (probe_size < kMagicSize) {
      throw EngineFormatError(source.name() + " is truncated: it has " +
                              std::to_string(probe_size) +
                              " bytes, the start of a trtfast engine header");
    }
    return parse_trtfast(source, probe);
  }
  const std::size_t tag_checked = std::min(probe_size, kPlanTagSize);
  if (std::memcmp(probe, kPlanTag, tag_checked) == 0) {
    return parse_raw_plan(source, probe, probe_size, Edition::Unknown);
  }
  if (std::memcmp(probe, kRtxPlanTag, tag_checked) == 0) {
    return parse_raw_plan(source, probe, probe_size, Edition::Rtx);
  }
  const std::string guess = guess_format(source, probe, probe_size);
  throw EngineFormatError(source.name() +
                          " is neither a trtfast engine nor a TensorRT plan: it starts with " +
                          hex_bytes(probe, std::min<std::size_t>(probe_size, 8)) +
                          (guess.empty() ? "" : " (" + guess + ")") + "; " + kExpected);
}

void check_plan_crc(const Source& source, const EngineFileInfo& info, std::uint32_t computed) {
  if (computed != info.plan_crc32) {
    corrupt(source, "the plan's CRC-32 is " + hex32(computed) + ", not the stored " +
                        hex32(info.plan_crc32));
  }
}

void stream_plan_crc(const Source& source, const EngineFileInfo& info) {
  if (info.raw_plan) {
    return;
  }
  std::vector<std::uint8_t> chunk(kStreamChunk);
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < info.plan_size;) {
    const std::size_t count =
        static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), info.plan_size - done));
    source.read(info.plan_offset + done, chunk.data(), count);
    crc = crc32(chunk.data(), count, crc);
    done += count;
  }
  check_plan_crc(source, info, crc);
}

void put_le32(std::string& out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
  }
}

void store_le32(std::string& out, std::size_t offset, std::uint32_t value) {
  for (std::size_t i = 0; i < 4; ++i) {
    out[offset + i] = static_cast<char>((value >> (8 * i)) & 0xFFu);
  }
}

void put_string(std::string& out, const std::string& value, const char* field) {
  if (!is_utf8(value)) {
    throw std::invalid_argument(std::string(field) + " must be UTF-8 text");
  }
  put_le32(out, static_cast<std::uint32_t>(value.size()));
  out += value;
}

}  // namespace

const char* to_string(Edition edition) noexcept {
  switch (edition) {
    case Edition::Standard:
      return "standard";
    case Edition::Rtx:
      return "rtx";
    case Edition::Unknown:
      break;
  }
  return "";
}

Edition parse_edition(const std::string& name) {
  if (name == "standard") {
    return Edition::Standard;
  }
  if (name == "rtx") {
    return Edition::Rtx;
  }
  throw std::invalid_argument("edition must be 'standard' or 'rtx', not '" + name + "'");
}

std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc) noexcept {
  const auto& t = crc_tables().table;
  const auto* p = static_cast<const std::uint8_t*>(data);
  crc = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    const std::uint32_t low = load_le32(p) ^ crc;
    const std::uint32_t high = load_le32(p + 4);
    crc = t[7][low & 0xFFu] ^ t[6][(low >> 8) & 0xFFu] ^ t[5][(low >> 16) & 0xFFu] ^
          t[4][low >> 24] ^ t[3][high & 0xFFu] ^ t[2][(high >> 8) & 0xFFu] ^
          t[1][(high >> 16) & 0xFFu] ^ t[0][high >> 24];
  }
  for (; size > 0; ++p, --size) {
    crc = t[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
  }
  return ~crc;
}

std::string sha256_hex(const void* data, std::size_t size) {
  Sha256 sha;
  sha.update(static_cast<const std::uint8_t*>(data), size);
  return sha.hex_digest();
}

std::string encode_engine_header(const EngineFileInfo& info, const void* plan,
                                 std::size_t plan_size) {
  if (plan_size == 0) {
    throw std::invalid_argument("the plan is empty");
  }
  if (info.edition == Edition::Unknown) {
    throw std::invalid_argument("edition must be 'standard' or 'rtx'");
  }
  for (const auto& [value, field] : {std::pair{info.compute_capability_major, "major"},
                                     std::pair{info.compute_capability_minor, "minor"}}) {
    if (value < 0 || value > 0xFFFF) {
      throw std::invalid_argument(std::string("compute capability ") + field +
                                  " must be in 0..65535, not " + std::to_string(value));
    }
  }
  if (!info.model_sha256.empty() && !is_sha256_hex(info.model_sha256)) {
    throw std::invalid_argument("model_sha256 must be empty or 64 lowercase hex digits, not '" +
                                info.model_sha256 + "'");
  }

  std::string header(kMagic, kMagicSize);
  put_le32(header, kEngineFormatVersion);
  put_le32(header, 0);  // header size, stored below
  put_le32(header, 0);  // header CRC-32, stored below
  put_le32(header, info.host_code ? kFlagHostCode : 0u);
  put_le32(header, static_cast<std::uint32_t>(plan_size & 0xFFFFFFFFu));
  put_le32(header, static_cast<std::uint32_t>(static_cast<std::uint64_t>(plan_size) >> 32));
  put_le32(header, crc32(plan, plan_size));
  const auto major = static_cast<std::uint32_t>(info.compute_capability_major);
  const auto minor = static_cast<std::uint32_t>(info.compute_capability_minor);
  put_le32(header, major | minor << 16);
  put_le32(header, static_cast<std::uint32_t>(info.edition));
  put_string(header, info.tensorrt_version, "tensorrt_version");
  put_string(header, info.gpu_name, "gpu_name");
  put_string(header, info.model_sha256, "model_sha256");
  put_string(header, sha256_hex(plan, plan_size), "plan_sha256");
  put_string(header, info.metadata_json, "metadata");
  const std::size_t header_size = align_up(header.size());
  if (header_size > kMaxHeaderSize) {
    throw std::invalid_argument("the header would take " + std::to_string(header_size) +
                                " bytes; at most " + std::to_string(kMaxHeaderSize) +
                                " are allowed");
  }
  header.resize(header_size, '\0');
  store_le32(header, 12, static_cast<std::uint32_t>(header_size));
  store_le32(header, kHeaderCrcOffset,
             header_crc(reinterpret_cast<const std::uint8_t*>(header.data()), header.size()));
  return header;
}

EngineFileInfo parse_engine(const void* data, std::size_t size, const std::string& name,
                            bool check_plan) {
  const MemorySource source(data, size, name);
  EngineFileInfo info = identify(source);
  if (check_plan && !info.raw_plan) {
    const auto* plan = static_cast<const std::uint8_t*>(data) + info.plan_offset;
    check_plan_crc(source, info, crc32(plan, static_cast<std::size_t>(info.plan_size)));
  }
  return info;
}

EngineFileInfo read_engine_info(int fd, const std::string& name, bool check_plan) {
  const FileSource source(fd, name);
  EngineFileInfo info = identify(source);
  if (check_plan) {
    stream_plan_crc(source, info);
  }
  return info;
}

void read_engine_plan(int fd, const std::string& name, const EngineFileInfo& info,
                      void* destination) {
  const FileSource source(fd, name);
  if (source.size() != info.plan_offset + info.plan_size) {
    throw EngineFormatError(name + " changed while being read: it now has " +
                            std::to_string(source.size()) + " bytes, not " +
                            std::to_string(info.plan_offset + info.plan_size));
  }
  source.read(info.plan_offset, destination, static_cast<std::size_t>(info.plan_size));
  if (!info.raw_plan) {
    check_plan_crc(source, info, crc32(destination, static_cast<std::size_t>(info.plan_size)));
  }
}

}  // namespace trtfast
