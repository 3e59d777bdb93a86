// A deterministic synthetic 10-genre collection (the project's demo data): short clips whose
// genres differ in tempo, pitch range, timbre and rhythm, with per-clip random tempo, key, gain
// and noise, written in the Kaggle GTZAN layout (genres_original/<genre>/<genre>.000NN.wav).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace genrelab {

struct SynthOptions {
  int clips_per_genre = 30;
  double seconds = 3.0;
  uint64_t seed = 0;
  int sample_rate = 22050;
};

// The ten GTZAN genre names, sorted: blues classical country disco hiphop jazz metal pop reggae rock.
const std::vector<std::string>& gtzan_genres();

// One clip: samples: (round(seconds * sample_rate),) in [-1, 1]. Depends only on (genre, index,
// seed, seconds, sample_rate).
std::vector<float> synth_clip(int genre, int index, const SynthOptions& options);

// Writes OUT/genres_original/<genre>/<genre>.000NN.wav (16-bit PCM); returns the number of files.
int64_t write_synth_collection(const std::string& out_dir, const SynthOptions& options, int threads = 0);

}  // namespace genrelab
