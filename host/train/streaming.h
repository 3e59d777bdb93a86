// dataset.streaming: examples featurised step by step from clips decoded from disk on demand, so
// host and GPU memory grow with the batch instead of the collection. The same plans, windows,
// permutations and Philox keys as the in-memory path give the same examples. Internal to the
// trainer (host/train/).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
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

class StreamingSet {
 public:
  // paths[i], labels[i]: clip i of this set (all decode to clip_samples samples).
  // decode_threads: threads decoding one request (0 = all cores).
  StreamingSet(ExampleBuilder& builder, std::vector<std::string> paths, std::vector<int32_t> labels,
               const DecodeOptions& decode, int64_t clip_samples, int decode_threads);
  int64_t clips() const { return int64_t(labels_.size()); }
  int64_t windows_per_clip() const { return per_; }
  const std::vector<int32_t>& labels() const { return labels_; }

  // Mel band statistics of the clean windows of every clip (features.standardize). Data
  // parallel: each rank featurises its shard of the clips and the ranks merge their partial
  // statistics in rank order, so every rank gets the same result.
  MelBandStats band_stats(dist::Communicator* comm);

  // Training: steps [first_step, steps) of an epoch over the examples of `plan` (one per entry and
  // window; plan sources index this set). rows_of_step(b) = the examples this rank trains on at
  // step b. Decoding runs kLookahead steps ahead.
  void start_epoch(std::vector<AugmentedExample> plan, std::function<std::vector<int64_t>(int64_t)> rows_of_step,
                   int64_t first_step, int64_t steps);
  // Step b (the next one): x (rows, n_mels, n_frames) and y (rows,) in backend memory; cuda: the
  // featurisation is queued on `stream` after the work already there and complete on return. With
  // a communicator the wait for that earlier work goes through it (NCCL: a dead peer ends it after
  // train.comm_timeout_s). Returns the number of rows.
  int64_t load_step(int64_t b, float* x, BackendArray<int32_t>& y, CUstream_st* stream, dist::Communicator* comm);

  // Evaluation: window probabilities of every clip's windows, (clips · windows_per_clip, classes)
  // host, in clip order. Data-parallel: each rank featurises and predicts its shard of the clips
  // and the sum over ranks gives every rank all of them.
  std::vector<float> predict(nn::Network& net, int64_t classes, int64_t batch, dist::Communicator* comm);

  static constexpr int kLookahead = 2;

 private:
  // The distinct clips behind `rows` of plan_ and, for featurize, a plan over them.
  struct StepInput {
    std::vector<int64_t> clips;             // clips: (distinct,) indices into this set
    std::vector<AugmentedExample> plan;     // plan: the rows' entries, sources renumbered into clips
    std::vector<int64_t> rows;              // rows: (n,) examples of `plan`
    std::vector<int32_t> labels;            // labels: (n,)
  };
  StepInput step_input(const std::vector<int64_t>& rows) const;
  // This rank's clips (all without a communicator).
  dist::Shard my_clips(const dist::Communicator* comm) const;
  // Decodes clips [first, end) in chunks of `chunk` clips, kLookahead chunks ahead, and calls
  // fn(the chunk's first clip, its decoded clips) in order.
  void for_each_chunk(int64_t first, int64_t end, int64_t chunk,
                      const std::function<void(int64_t, const std::vector<std::vector<float>>&)>& fn);

  ExampleBuilder& builder_;
  std::vector<int32_t> labels_;
  int64_t per_ = 1;
  ClipPrefetcher prefetch_;
  // The epoch being trained.
  std::vector<AugmentedExample> plan_;
  std::function<std::vector<int64_t>(int64_t)> rows_of_step_;
  std::deque<StepInput> queued_;  // inputs of the steps requested from prefetch_, oldest first
  int64_t next_step_ = 0, next_request_ = 0, steps_ = 0;
};

}  // namespace genrelab
