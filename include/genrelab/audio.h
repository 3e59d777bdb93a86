// Audio decoding and writing through libsndfile: any format it reads (WAV, AU, FLAC, OGG, MP3)
// → float32 mono (channels averaged) at a requested rate (windowed-sinc resampling), optionally
// cut or zero-padded to a fixed length. Every failure is an AudioError naming the file and reason.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "genrelab/common.h"

namespace genrelab {

// A file that cannot be used as audio. `what()` is "PATH: REASON"; the reasons (tests check them):
//   missing file               "no such file"
//   a folder                   "is a folder, not an audio file"
//   0 bytes                    "is empty (0 bytes)"
//   not audio / cut in header  "not a readable audio file (<libsndfile's reason>)"; where that reason
//                              would mislead, "not a readable audio file" (bytes named .mp3 that are
//                              no MPEG stream) or "... (no audio header)" (bytes named .au or .snd)
//   0 channels in the header   "the header declares 0 channels"
//   rate <= 0 or > 1 MHz       "the header declares an absurd sample rate (N Hz)"
//   header-only (0 samples)    "holds no audio samples (header only): as unusable as an empty file"
//   data shorter than declared "truncated: the header declares N frames but the file holds only M"
//                              (a WAV cut inside its data, or a header that lies about its length)
//   undecodable from the start "cannot decode: <libsndfile's reason>"
//   read error mid-file        "truncated or corrupt after N of M frames: <libsndfile's reason>"
//   NaN/Inf in a float file    "contains a NaN or infinite sample (at frame N)"
// The largest sample magnitude a decoded clip may hold (full scale is 1; float files may exceed it,
// up to integer ranges): beyond it the features overflow float32.
inline constexpr float kMaxSampleMagnitude = 1e10f;

struct AudioError : RuntimeError {
  AudioError(const std::string& path, const std::string& reason)
      : RuntimeError(path + ": " + reason), path(path), reason(reason) {}
  std::string path, reason;
};

struct AudioInfo {
  int64_t frames = 0;  // samples per channel, as the header says
  int sample_rate = 0;
  int channels = 0;
  std::string format;  // e.g. "WAV PCM_16", "FLAC PCM_16"
  double seconds() const { return sample_rate > 0 ? double(frames) / sample_rate : 0.0; }
};

struct DecodeOptions {
  int sample_rate = 22050;               // output rate; other rates are resampled (0 = the file's own rate)
  std::optional<int64_t> length;         // cut or zero-pad to this many samples (after resampling)
  std::optional<int64_t> max_input_frames;  // read at most this many input frames (speed: a cut clip)
};

struct Audio {
  std::vector<float> samples;  // samples: (n,) mono
  int sample_rate = 0;
  AudioInfo source;            // what the file held
};

// Reads only the header.
AudioInfo probe_audio(const std::string& path);

// Decodes a whole file (or its first frames), mixes to mono, resamples, cuts/pads.
Audio decode_audio(const std::string& path, const DecodeOptions& options = {});

// Decodes from memory (libsndfile virtual I/O); `name` labels errors.
Audio decode_audio_memory(const void* data, size_t size, const std::string& name, const DecodeOptions& options = {});

enum class WavEncoding { pcm16, float32 };

// Writes mono samples as WAV (atomically: NAME.tmp then rename). float32 keeps values beyond ±1.
void write_wav(const std::string& path, const std::vector<float>& samples, int sample_rate,
               WavEncoding encoding = WavEncoding::float32);

// File extensions (lower case, with dot) that the dataset scanner treats as audio.
const std::vector<std::string>& audio_extensions();

}  // namespace genrelab
