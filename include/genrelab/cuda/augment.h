// GPU execution of augmentation plans (genrelab/augment.h) on device batches: the ops/augment.h
// functors launched with launch_2d, cuFFT for the phase-vocoder STFTs, Thrust for the phase scan.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "genrelab/augment.h"
#include "genrelab/cuda/memory.h"
#include "genrelab/ops/resample.h"

namespace genrelab::cuda {

// y[i] = stream.normal(i) for i < n. y: (n,) device
void fill_normal(const PhiloxStream& stream, float* y, int64_t n, cudaStream_t s);

// The pitch shift's per-row polyphase filters (ops/resample.h PolyphaseBankFunctor): bank
// (batch, phases + 1, 2 · half) from table (resample_table(design), device) and scale (batch,)
// device, the same bits as make_polyphase_bank.
void build_polyphase_banks(const ResampleFilterDesign& design, const float* table, const double* scale, int64_t batch,
                           int phases, int half, float* bank, cudaStream_t s);

// Holds the workspaces and cuFFT plans of a batch pipeline so that repeated batches reuse them.
class Augmenter {
 public:
  Augmenter();
  ~Augmenter();
  Augmenter(const Augmenter&) = delete;
  Augmenter& operator=(const Augmenter&) = delete;

  // Applies each example's waveform steps (chain order) to its row. x: (batch, n) device,
  // y: (batch, n) device (distinct from x); batch = examples.size().
  void apply(const std::vector<AugmentedExample>& examples, const AugmentSettings& s, const float* x, float* y,
             int64_t n, cudaStream_t stream);
  // SpecAugment in place on the rows whose example has a spec_mask step. mel: (batch, n_mels, n_frames)
  void spec_mask(const std::vector<AugmentedExample>& examples, const AugmentSettings& s, float* mel,
                 int64_t n_mels, int64_t n_frames, cudaStream_t stream);

  // librosa time stretch of every row: x: (batch, n) → y: (batch, stride), row b stretched by
  // rate[b] with istft length length[b] (zeros after it, up to stride).
  void stretch(const float* x, int64_t batch, int64_t n, const std::vector<double>& rate,
               const std::vector<int64_t>& length, int64_t stride, int n_fft, int hop, float* y, cudaStream_t stream);
  // Pitch shift of every row by semitones[b]. x: (batch, n) → y: (batch, n), distinct buffers.
  void pitch_shift(const float* x, int64_t batch, int64_t n, const std::vector<double>& semitones, int n_fft, int hop,
                   float* y, cudaStream_t stream);

  // Stage timing (`genrelab bench --what augment`): while on, each pass of the work queued (the
  // rows' gather and scatter, the phase vocoder's framing, FFTs, polar form, phase advance, phase
  // scan, synthesis and overlap-add, the filter upload and the resampler, the element-wise steps) is
  // timed on the device between a pair of events. Every pass is an NVTX range either way.
  struct StageTime {
    std::string name;
    double ms = 0;     // device time, summed over the passes of this name
    double bytes = 0;  // what those passes read and write at least (their buffers' sizes)
    int64_t passes = 0;
  };
  void set_stage_timing(bool on);
  // The stages timed since the last call, summed by name in order of first appearance
  // (synchronises with the stream of the last one).
  std::vector<StageTime> take_stage_times();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace genrelab::cuda
