// dataset.streaming: examples featurised step by step from clips decoded from disk on demand, so
// host and GPU memory grow with the batch instead of the collection. The same plans, windows,
// permutations and Philox keys as the in-memory path give the same examples. Internal to the
// trainer (host/train/).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clip_prefetch.h"
#include "examples.h"
#include "genrelab/dataset.h"
#include "genrelab/dist.h"
#include "genrelab/nn/network.h"

namespace genrelab {

// The start-up check of a streamed run: every clip of `dataset` decoded once and dropped, each
// rank decoding only its shard of the files; the ranks then share what they skipped, so every
// rank returns the same usable clips (without samples) and skipped files, in the dataset's order.
// Warnings (one line per bad file) come from rank 0. Without a communicator: load_dataset.
LoadedDataset check_dataset_sharded(const Dataset& dataset, LoadOptions options, dist::Communicator* comm);

// A clip of a streamed step or evaluation that no longer decodes, on this rank or another. The
// ranks agree on it before any of them queues the step, so all of them stop at the same place.
struct StreamedDecodeError : RuntimeError {
  using RuntimeError::RuntimeError;
};

// One streamed training step's input, in backend memory: x (rows, n_mels, n_frames), y (rows,).
struct StreamedBatch {
  const float* x = nullptr;
  const int32_t* y = nullptr;
  int64_t rows = 0;
};

class StreamingSet {
 public:
  // paths[i], labels[i]: clip i of this set (all decode to clip_samples samples).
  // decode_threads: threads decoding one request (0 = all cores).
  StreamingSet(ExampleBuilder& builder, std::vector<std::string> paths, std::vector<int32_t> labels,
               const DecodeOptions& decode, int64_t clip_samples, int decode_threads);
  ~StreamingSet();
  int64_t clips() const { return int64_t(labels_.size()); }
  int64_t windows_per_clip() const { return per_; }
  const std::vector<int32_t>& labels() const { return labels_; }

  // Mel band statistics of the clean windows of every clip (features.standardize). Data
  // parallel: each rank featurises its shard of the clips and the ranks merge their partial
  // statistics in rank order, so every rank gets the same result.
  MelBandStats band_stats(dist::Communicator* comm);

  // Training: steps [first_step, steps) of an epoch over the examples of `plan` (one per entry and
  // window; plan sources index this set). rows_of_step(b) = the examples this rank trains on at
  // step b. Decoding runs kLookahead steps ahead, from this call on: the trainer starts the next
  // epoch before it evaluates this one, so the next epoch's first steps decode meanwhile. Requests
  // still pending from an epoch that ended early are waited for and dropped.
  void start_epoch(std::vector<AugmentedExample> plan, std::function<std::vector<int64_t>(int64_t)> rows_of_step,
                   int64_t first_step, int64_t steps);
  // Step b (the next one), featurised into one of two input slots that take turns. `stream` is the
  // network's (cuda; null on cpu), on which every step loaded before this one has been queued. On
  // cuda the featurisation runs on the builder's own stream and is complete on return, while the
  // previous step may still be training: only the step before that (the last reader of this slot)
  // is waited for, through the communicator when there is one (NCCL: a dead peer ends the wait
  // after train.comm_timeout_s). Data parallel: the ranks then agree that every rank's clips
  // decoded, after the previous step's collectives, so a broken file stops every rank here with
  // a StreamedDecodeError carrying the failing rank's message.
  StreamedBatch load_step(int64_t b, CUstream_st* stream, dist::Communicator* comm);

  // Evaluation: window probabilities of every clip's windows, (clips · windows_per_clip, classes)
  // host, in clip order. Data-parallel: each rank featurises and predicts its shard of the clips
  // and the sum over ranks gives every rank all of them. A clip that no longer decodes: a
  // StreamedDecodeError on every rank.
  std::vector<float> predict(nn::Network& net, int64_t classes, int64_t batch, dist::Communicator* comm);

  static constexpr int kLookahead = 2;

 private:
  // The distinct clips behind `rows` of plan_ and, for featurize, a plan over them.
  struct StepInput {
    std::vector<int64_t> clips;          // clips: (distinct,) indices into this set
    std::vector<AugmentedExample> plan;  // plan: the rows' entries, sources renumbered into clips
    std::vector<int64_t> rows;           // rows: (n,) examples of `plan`
    std::vector<int32_t> labels;         // labels: (n,)
  };
  StepInput step_input(const std::vector<int64_t>& rows) const;
  // Requests the epoch's next steps from prefetch_ until kLookahead are queued.
  void request_ahead();
  // This rank's clips (all without a communicator).
  dist::Shard my_clips(const dist::Communicator* comm) const;
  // Decodes clips [first, end) in chunks of `chunk` clips, kLookahead chunks ahead, and calls
  // fn(the chunk's first clip, its decoded clips) in order. A chunk that fails to decode ends the
  // calls; the rest is still taken from the prefetcher, and the first failure's message returned
  // ("" when every chunk decoded).
  std::string for_each_chunk(int64_t first, int64_t end, int64_t chunk,
                             const std::function<void(int64_t, const std::vector<std::vector<float>>&)>& fn);
  // Every rank's `error` ("" = none) compared: throws StreamedDecodeError with the first failing
  // rank's message, on every rank, when any failed. Without a communicator: throws when `error`
  // is set.
  static void agree_on_decode(const std::string& error, dist::Communicator* comm);

  ExampleBuilder& builder_;
  std::vector<int32_t> labels_;
  int64_t per_ = 1;
  ClipPrefetcher prefetch_;
  // The epoch being trained.
  std::vector<AugmentedExample> plan_;
  std::function<std::vector<int64_t>(int64_t)> rows_of_step_;
  std::deque<StepInput> queued_;  // inputs of the steps requested from prefetch_, oldest first
  int64_t next_step_ = 0, next_request_ = 0, steps_ = 0;
  // Two input slots taking turns, so that a step is featurised while the one before it trains.
  struct Slot;
  std::array<std::unique_ptr<Slot>, 2> slots_;
  int64_t loads_ = 0;  // steps loaded so far (all epochs): slot loads_ % 2 is the next
};

}  // namespace genrelab
