// libFuzzer target: arbitrary bytes as a checkpoint file for nn::load_checkpoint (magic, version,
// JSON header, tensor table, checksum). RuntimeError is the expected outcome; anything else is a
// finding (including allocations driven by sizes in the header). The last 8 bytes of every input
// are replaced by the correct checksum (for the format version the input names), so mutations
// reach the header and tensor-table checks behind it (a checksum mismatch alone is covered by the
// unit tests).
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_temp.h"
#include "genrelab/common.h"
#include "genrelab/nn/checkpoint.h"

namespace {

const std::string& temp_file() {
  static const std::string path = genrelab::fuzz::fuzz_temp("ckpt", false);
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  if (bytes.size() >= 32) {
    const uint32_t version =
        uint32_t(bytes[8]) | uint32_t(bytes[9]) << 8 | uint32_t(bytes[10]) << 16 | uint32_t(bytes[11]) << 24;
    const uint64_t sum = genrelab::nn::checkpoint_checksum(version, bytes.data(), bytes.size() - 8);
    for (size_t i = 0; i < 8; ++i) bytes[bytes.size() - 8 + i] = uint8_t(sum >> (8 * i));
  }
  {
    std::ofstream out(temp_file(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  try {
    genrelab::nn::Checkpoint ckpt = genrelab::nn::load_checkpoint(temp_file());
    (void)ckpt;
  } catch (const genrelab::RuntimeError&) {
  }
  return 0;
}
