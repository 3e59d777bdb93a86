// StreamingSet: per-step example inputs, decode requests kept kLookahead steps ahead, and
// sharded evaluation.
#include "streaming.h"

#include <algorithm>
#include <iostream>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/nvtx.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/memory.h"
#endif

namespace genrelab {

namespace {

std::vector<const std::vector<float>*> pointers(const std::vector<std::vector<float>>& audio) {
  std::vector<const std::vector<float>*> p;
  for (const auto& a : audio) p.push_back(&a);
  return p;
}

}  // namespace

LoadedDataset check_dataset_sharded(const Dataset& dataset, LoadOptions options, dist::Communicator* comm) {
  options.keep_samples = false;
  if (!comm || comm->size() == 1) return load_dataset(dataset, options);
  const dist::Shard mine = dist::shard_of(int64_t(dataset.clips.size()), comm->rank(), comm->size());
  Dataset part = dataset;
  part.clips.assign(dataset.clips.begin() + mine.first, dataset.clips.begin() + mine.first + mine.count);
  LoadOptions quiet = options;
  quiet.warn = false;
  quiet.require_usable = false;
  const LoadedDataset checked = part.clips.empty() ? LoadedDataset{} : load_dataset(part, quiet);
  // Every rank's skipped files, [[index, reason], ...], broadcast by each rank in turn.
  nlohmann::json mine_skipped = nlohmann::json::array();
  {
    size_t k = 0;
    for (int64_t i = 0; i < mine.count && k < checked.skipped.size(); ++i)
      if (checked.skipped[k].path == part.clips[size_t(i)].path)
        mine_skipped.push_back({mine.first + i, checked.skipped[k++].reason});
  }
  std::vector<std::string> reason(dataset.clips.size());  // "" = usable
  for (int r = 0; r < comm->size(); ++r) {
    const std::string theirs = comm->broadcast_string(r == comm->rank() ? mine_skipped.dump() : std::string(), r);
    for (const auto& e : nlohmann::json::parse(theirs)) reason[e.at(0).get<size_t>()] = e.at(1).get<std::string>();
  }
  LoadedDataset out;
  out.classes = dataset.classes;
  LoadOptions report = options;
  report.warn = options.warn && comm->rank() == 0;
  for (size_t i = 0; i < dataset.clips.size(); ++i) {
    if (reason[i].empty()) out.clips.push_back({dataset.clips[i], {}, {}});
    else add_skipped_clip(dataset.clips[i], reason[i], report, out);
  }
  require_usable_clips(dataset, out, options);
  return out;
}

// One input slot: the step's features and labels, and (cuda) an event recorded on the network's
// stream once the step that reads them has been queued there.
struct StreamingSet::Slot {
  explicit Slot(Device device) : x(device), y(device) {}
  BackendArray<float> x;    // x: (rows, n_mels, n_frames)
  BackendArray<int32_t> y;  // y: (rows,)
#if GENRELAB_HAVE_CUDA
  std::unique_ptr<cuda::Event> read;  // made on first use: the cpu backend never touches CUDA
#endif
  bool being_read = false;  // `read` is recorded and not yet waited for

  // The step reading this slot is queued on `stream` (with everything before it).
  void mark_read(CUstream_st* stream) {
#if GENRELAB_HAVE_CUDA
    if (!stream) return;
    if (!read) read = std::make_unique<cuda::Event>(false, true);  // blocking sync: a wait sleeps
    read->record(stream);
    being_read = true;
#else
    (void)stream;
#endif
  }
  // Waits until that step has run, through the communicator when it can wait (its timeout).
  void wait_until_read(dist::Communicator* comm) {
#if GENRELAB_HAVE_CUDA
    if (!being_read) return;
    if (!(comm && comm->wait_event(read->get()))) read->synchronize();
    being_read = false;
#else
    (void)comm;
#endif
  }
};

StreamingSet::StreamingSet(ExampleBuilder& builder, std::vector<std::string> paths, std::vector<int32_t> labels,
                           const DecodeOptions& decode, int64_t clip_samples, int decode_threads)
    : builder_(builder),
      labels_(std::move(labels)),
      per_(builder.windows_per_clip(clip_samples)),
      prefetch_(std::move(paths), decode, decode_threads) {
  GENRELAB_CHECK(decode.length && *decode.length == clip_samples, "streaming needs a fixed clip length");
  for (auto& s : slots_) s = std::make_unique<Slot>(builder.device());
}

StreamingSet::~StreamingSet() = default;

void StreamingSet::agree_on_decode(const std::string& error, dist::Communicator* comm) {
  if (!comm || comm->size() == 1) {
    if (!error.empty()) throw StreamedDecodeError(error);
    return;
  }
  std::vector<int64_t> failed(size_t(comm->size()), 0);  // failed: (ranks,) 1 where a clip did not decode
  failed[size_t(comm->rank())] = !error.empty();
  comm->all_reduce_sum_host(failed.data(), int64_t(failed.size()), dist::DType::i64);
  const auto first = std::find_if(failed.begin(), failed.end(), [](int64_t f) { return f > 0; });
  if (first == failed.end()) return;
  const int r = int(first - failed.begin());
  const std::string message = comm->broadcast_string(r == comm->rank() ? error : std::string(), r);
  throw StreamedDecodeError(r == comm->rank() ? message : "rank " + std::to_string(r) + ": " + message);
}

dist::Shard StreamingSet::my_clips(const dist::Communicator* comm) const {
  return comm ? dist::shard_of(clips(), comm->rank(), comm->size()) : dist::Shard{0, clips()};
}

std::string StreamingSet::for_each_chunk(
    int64_t first, int64_t end, int64_t chunk,
    const std::function<void(int64_t, const std::vector<std::vector<float>>&)>& fn) {
  auto request = [&](int64_t start) {
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(start + chunk, end); ++i) idx.push_back(i);
    prefetch_.request(std::move(idx));
  };
  for (int64_t start = first; start < end && start < first + kLookahead * chunk; start += chunk) request(start);
  for (int64_t start = first; start < end; start += chunk) {
    std::vector<std::vector<float>> audio;
    try {
      audio = prefetch_.take();
    } catch (const std::exception& e) {
      prefetch_.drop_pending();  // the chunks still being decoded
      return e.what();
    }
    if (start + kLookahead * chunk < end) request(start + kLookahead * chunk);
    fn(start, audio);
  }
  return "";
}

MelBandStats StreamingSet::band_stats(dist::Communicator* comm) {
  const int n_mels = static_cast<int>(builder_.n_mels());
  MelBandStatsAccumulator acc(n_mels);
  const dist::Shard mine = my_clips(comm);
  const std::string error = for_each_chunk(mine.first, mine.first + mine.count, 16,
                                           [&](int64_t, const std::vector<std::vector<float>>& audio) {
                                             builder_.accumulate_band_stats(pointers(audio), acc);
                                           });
  agree_on_decode(error, comm);
  if (comm && comm->size() > 1) {
    // (count, mean, m2) per band from each rank in turn, merged in rank order (Chan's update).
    MelBandStatsAccumulator all(n_mels);
    for (int r = 0; r < comm->size(); ++r) {
      std::vector<double> part(size_t(3 * n_mels));
      if (r == comm->rank())
        for (int m = 0; m < n_mels; ++m) {
          part[size_t(3 * m)] = acc.count(m);
          part[size_t(3 * m + 1)] = acc.mean(m);
          part[size_t(3 * m + 2)] = acc.m2(m);
        }
      comm->broadcast_host(part.data(), int64_t(part.size() * sizeof(double)), r);
      for (int m = 0; m < n_mels; ++m)
        if (part[size_t(3 * m)] > 0)
          all.add_row(m, part[size_t(3 * m)], part[size_t(3 * m + 1)], part[size_t(3 * m + 2)]);
    }
    acc = all;
  }
  const auto r = acc.finish();
  return MelBandStats{r.mean, r.std};
}

StreamingSet::StepInput StreamingSet::step_input(const std::vector<int64_t>& rows) const {
  StepInput in;
  std::vector<int64_t> entries;  // plan_ indices of the rows' entries, in order of first use
  for (int64_t e : rows) {
    const int64_t k = e / per_;
    GENRELAB_CHECK(e >= 0 && k < int64_t(plan_.size()), "example ", e, " is outside the epoch's plan");
    int64_t local = std::find(entries.begin(), entries.end(), k) - entries.begin();
    if (local == int64_t(entries.size())) {
      entries.push_back(k);
      AugmentedExample ex = plan_[size_t(k)];
      const int64_t clip = ex.source;
      GENRELAB_CHECK(clip >= 0 && clip < clips(), "plan source out of range");
      int64_t j = std::find(in.clips.begin(), in.clips.end(), clip) - in.clips.begin();
      if (j == int64_t(in.clips.size())) in.clips.push_back(clip);
      ex.source = j;
      in.plan.push_back(std::move(ex));
    }
    in.rows.push_back(local * per_ + e % per_);
    in.labels.push_back(labels_[size_t(plan_[size_t(k)].source)]);
  }
  return in;
}

void StreamingSet::start_epoch(std::vector<AugmentedExample> plan,
                               std::function<std::vector<int64_t>(int64_t)> rows_of_step, int64_t first_step,
                               int64_t steps) {
  prefetch_.drop_pending();  // requests left by an epoch that ended early
  queued_.clear();
  plan_ = std::move(plan);
  rows_of_step_ = std::move(rows_of_step);
  next_step_ = next_request_ = first_step;
  steps_ = steps;
  request_ahead();  // the epoch's first steps decode from now on
}

void StreamingSet::request_ahead() {
  while (next_request_ < steps_ && int64_t(queued_.size()) < kLookahead) {
    queued_.push_back(step_input(rows_of_step_(next_request_++)));
    prefetch_.request(queued_.back().clips);
  }
}

StreamedBatch StreamingSet::load_step(int64_t b, CUstream_st* stream, dist::Communicator* comm) {
  GENRELAB_CHECK(b == next_step_, "streaming steps are loaded in order: asked for ", b, ", next is ", next_step_);
  GENRELAB_CHECK(!queued_.empty(), "streaming step ", b, " was not requested (start_epoch first)");
  const StepInput in = std::move(queued_.front());
  queued_.pop_front();
  std::string error;
  std::vector<std::vector<float>> audio;
  try {
    audio = prefetch_.take();
  } catch (const std::exception& e) {
    error = e.what();
  }
  ++next_step_;
  request_ahead();  // the next steps decode while this one is featurised and trained
  // Every step queued on `stream` so far includes the one reading the other slot (the last load's).
  if (loads_ > 0) slots_[size_t((loads_ + 1) % 2)]->mark_read(stream);
  Slot& slot = *slots_[size_t(loads_ % 2)];
  const int64_t rows = int64_t(in.rows.size());
  if (error.empty() && rows > 0) {
    GENRELAB_CHECK(audio.size() == in.clips.size(), "decoded ", audio.size(), " clips for ", in.clips.size());
    slot.wait_until_read(comm);  // the step two back, this slot's last reader
    slot.x.resize(size_t(rows * builder_.feature_size()));
    slot.y.resize(size_t(rows));
    builder_.featurize(pointers(audio), in.plan, in.rows, slot.x.data());
    slot.y.upload(0, in.labels.data(), in.labels.size());
  }
  ++loads_;
  // Data parallel, the ranks' host collective runs alone: after the previous step's collectives.
  if (comm && comm->size() > 1 && stream) comm->wait(stream);
  agree_on_decode(error, comm);
  return StreamedBatch{slot.x.data(), slot.y.data(), rows};
}

std::vector<float> StreamingSet::predict(nn::Network& net, int64_t classes, int64_t batch, dist::Communicator* comm) {
  NvtxRange range("streaming evaluation");
  GENRELAB_CHECK(prefetch_.pending() == 0, "evaluation while training steps are still queued");
  std::vector<float> probs(size_t(clips() * per_ * classes), 0.0f);
  const dist::Shard mine = my_clips(comm);
  // Clips featurised together: about a rank's share of a batch, as a training step holds.
  const int64_t share = comm ? ceil_div<int64_t>(batch, comm->size()) : batch;
  const int64_t per_chunk = std::max<int64_t>(1, share / per_);
  BackendArray<float> x(net.device());  // x: (per_chunk · windows_per_clip, n_mels, n_frames)
  x.resize(size_t(per_chunk * per_ * builder_.feature_size()));
  const std::string error = for_each_chunk(
      mine.first, mine.first + mine.count, per_chunk, [&](int64_t first, const std::vector<std::vector<float>>& audio) {
        const int64_t n_clips = int64_t(audio.size()), n_rows = n_clips * per_;
        std::vector<int64_t> rows(static_cast<size_t>(n_rows));
        for (int64_t r = 0; r < n_rows; ++r) rows[size_t(r)] = r;
        std::vector<AugmentedExample> plan = identity_plan(n_clips);
        for (int64_t c = 0; c < n_clips; ++c) plan[size_t(c)].clip_key = uint32_t(first + c);
        builder_.featurize(pointers(audio), plan, rows, x.data());
        for (int64_t r = 0; r < n_rows; r += batch)
          net.predict(x.data() + r * builder_.feature_size(), std::min(batch, n_rows - r),
                      probs.data() + (first * per_ + r) * classes);
      });
  agree_on_decode(error, comm);
  if (comm) comm->all_reduce_sum_host(probs.data(), int64_t(probs.size()), dist::DType::f32);
  return probs;
}

}  // namespace genrelab
