// Decoding clips from disk ahead of their use, for dataset.streaming: the training loop asks for
// the clips of the next steps, background threads decode them, and each request is taken back
// in the order it was made. Internal to the trainer (host/train/).
#pragma once

#include <cstdint>
#include <deque>
#include <future>
#include <string>
#include <vector>

#include "genrelab/audio.h"

namespace genrelab {

class ClipPrefetcher {
 public:
  // paths: every clip the loop may ask for; each request is decoded by up to `threads` threads
  // (0 = std::thread::hardware_concurrency()).
  ClipPrefetcher(std::vector<std::string> paths, DecodeOptions decode, int threads);
  ~ClipPrefetcher();  // waits for the requests still being decoded
  ClipPrefetcher(const ClipPrefetcher&) = delete;
  ClipPrefetcher& operator=(const ClipPrefetcher&) = delete;

  // Starts decoding clips `idx` (indices into paths) in the background.
  void request(std::vector<int64_t> idx);
  // The oldest request's clips, in its order: (idx.size(),) each (samples,). Waits for it. A file
  // that no longer decodes is a RuntimeError naming it (and how many others of the request failed).
  std::vector<std::vector<float>> take();
  size_t pending() const { return queue_.size(); }
  // Drops every request still queued (waiting for their decoding to finish; their errors too).
  void drop_pending();

 private:
  std::vector<std::string> paths_;
  DecodeOptions decode_;
  int threads_;
  std::deque<std::future<std::vector<std::vector<float>>>> queue_;
};

}  // namespace genrelab
