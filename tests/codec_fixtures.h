// The lossy-codec fixture of the decode and dataset tests: 1 s of 44.1 kHz stereo, a 440 Hz tone
// of amplitude 0.5 on the left and a 660 Hz tone of 0.25 on the right, encoded by libsndfile as
// OGG Vorbis or MP3 (MPEG Layer III, through LAME).
#pragma once

#include <sndfile.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"

namespace genrelab::test {

struct LossyFormat {
  const char* ext;
  int format;        // libsndfile's major | subtype
  const char* name;  // AudioInfo::format of a file in it
};
inline const LossyFormat kLossyFormats[] = {
    {".ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, "OGG (OGG Container format) Vorbis"},
    {".mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, "MPEG-1/2 Audio MPEG Layer III"},
};

constexpr int kTonePairRate = 44100, kTonePairFrames = 44100;

// The channel mean of the tone pair at `rate`, sample i: what decode_audio should return.
inline double tone_pair_mono(int64_t i, double rate) {
  const double t = double(i) / rate, pi = 3.14159265358979323846;
  return 0.25 * std::sin(2 * pi * 440 * t) + 0.125 * std::sin(2 * pi * 660 * t);
}

// Writes the tone pair to `path` in `format`; requires that libsndfile can encode it (Debian 12's
// libsndfile 1.2 does both, with libvorbisenc and libmp3lame).
inline void write_tone_pair(const std::string& path, int format) {
  SF_INFO info{};
  info.samplerate = kTonePairRate;
  info.channels = 2;
  info.format = format;
  INFO("libsndfile " << sf_version_string() << " encoding format 0x" << std::hex << format);
  REQUIRE(sf_format_check(&info));
  std::vector<float> frames(size_t(2 * kTonePairFrames));  // frames: (44100, 2) interleaved
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < kTonePairFrames; ++i) {
    frames[size_t(2 * i)] = float(0.5 * std::sin(2 * pi * 440 * i / kTonePairRate));
    frames[size_t(2 * i + 1)] = float(0.25 * std::sin(2 * pi * 660 * i / kTonePairRate));
  }
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  INFO(sf_strerror(nullptr));
  REQUIRE(f != nullptr);
  CHECK(sf_writef_float(f, frames.data(), kTonePairFrames) == kTonePairFrames);
  REQUIRE(sf_close(f) == 0);
}

}  // namespace genrelab::test
