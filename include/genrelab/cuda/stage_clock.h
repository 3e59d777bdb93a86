// Device time by stage: StageClock keeps a pair of timing events around each stage of some queued
// work (a training step's layers, an augmentation's phase-vocoder passes), recorded on the work's
// stream and read after it; StageRange is an NVTX range that is also such a stage when given a clock.
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "genrelab/cuda/memory.h"
#include "genrelab/nvtx.h"

namespace genrelab::cuda {

// Events are made on first use (never inside a CUDA-graph capture: time eager work only) and
// reused after clear(); the marks grow until then.
class StageClock {
 public:
  // Stage `name` starts now on stream s (`name` must outlive the reading), with `bytes` of work for
  // the reader (0 where nobody counts them); returns its slot for stop().
  size_t start(const std::string* name, cudaStream_t s, double bytes = 0) {
    if (used_ == marks_.size()) marks_.emplace_back();
    Mark& m = marks_[used_];
    m.name = name;
    m.bytes = bytes;
    m.start.record(s);
    return used_++;
  }
  // Not throwing (called from StageRange's destructor): a failed record surfaces at the next
  // synchronisation with its own error.
  void stop(size_t slot, cudaStream_t s) { (void)cudaEventRecord(marks_[slot].stop.get(), s); }
  void clear() { used_ = 0; }
  // f(name, milliseconds, bytes) for each recorded stage in order, waiting for each (the stages
  // may sit on different streams).
  template <typename F>
  void read(F&& f) const {
    for (size_t i = 0; i < used_; ++i) {
      marks_[i].stop.synchronize();
      f(*marks_[i].name, double(marks_[i].stop.ms_since(marks_[i].start)), marks_[i].bytes);
    }
  }

 private:
  struct Mark {
    const std::string* name = nullptr;
    double bytes = 0;
    Event start{true}, stop{true};
  };
  std::vector<Mark> marks_;
  size_t used_ = 0;
};

// An NVTX range that is also a stage of `clock` (when non-null) on stream s, moving `bytes`.
class StageRange {
 public:
  StageRange(const std::string& name, StageClock* clock, cudaStream_t s, double bytes = 0)
      : range_(name.c_str()), clock_(clock), s_(s) {
    if (clock_) slot_ = clock_->start(&name, s_, bytes);
  }
  ~StageRange() {
    if (clock_) clock_->stop(slot_, s_);
  }
  StageRange(const StageRange&) = delete;
  StageRange& operator=(const StageRange&) = delete;

 private:
  NvtxRange range_;
  StageClock* clock_;
  cudaStream_t s_;
  size_t slot_ = 0;
};

}  // namespace genrelab::cuda
