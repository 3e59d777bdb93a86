// libFuzzer target: arbitrary bytes through decode_audio_memory (libsndfile virtual I/O, mono mix,
// resampling, cut/pad). AudioError/RuntimeError are expected outcomes; anything else is a finding.
#include <cstddef>
#include <cstdint>

#include "genrelab/common.h"
#include "genrelab/audio.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first byte picks the options, so the resampler and the cut/pad paths are fuzzed too.
  genrelab::DecodeOptions options;
  if (size > 0) {
    const uint8_t mode = data[0];
    static const int kRates[4] = {0, 22050, 8000, 16000};
    options.sample_rate = kRates[mode & 3];
    if (mode & 4) options.length = 1000;
    if (mode & 8) options.max_input_frames = 4096;
  }
  try {
    genrelab::Audio audio = genrelab::decode_audio_memory(data, size, "fuzz-input", options);
    (void)audio;
  } catch (const genrelab::RuntimeError&) {
  }
  return 0;
}
