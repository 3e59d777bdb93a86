// gru and lstm on cuDNN's RNN API (cudnnRNNForward, cudnnRNNBackwardData_v8,
// cudnnRNNBackwardWeights_v8) with Keras semantics: GRU reset_after=True (cuDNN's GRU is that
// variant: h̃ = tanh(W_h x + b_Wh + r ⊙ (R_h h + b_Rh))), LSTM with one bias (cuDNN's single input
// bias mode), zero initial states, optional backward direction concatenated after the forward one.
// Parameters stay in the canonical Keras layout (model.h); each forward packs them into cuDNN's
// weight space (per gate a (units, in) row-major matrix, gates in cuDNN's order: GRU r, z, h̃;
// LSTM i, f, c̃, o) and backward unpacks the weight gradients into the Keras-layout gradients.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/nn_gpu_extra.h"
#include "gpu_layers.h"

namespace genrelab::cuda::nn {

namespace {

struct FillInt {
  int32_t* p;
  int32_t v;
  __device__ void operator()(int64_t i) const { p[i] = v; }
};

using RnnDesc = CudnnDesc<cudnnRNNDescriptor_t, cudnnCreateRNNDescriptor, cudnnDestroyRNNDescriptor>;
using RnnDataDesc = CudnnDesc<cudnnRNNDataDescriptor_t, cudnnCreateRNNDataDescriptor, cudnnDestroyRNNDataDescriptor>;
using DropoutDesc = CudnnDesc<cudnnDropoutDescriptor_t, cudnnCreateDropoutDescriptor, cudnnDestroyDropoutDescriptor>;

int narrow(int64_t v, const char* what) {
  GENRELAB_CHECK(v > 0 && v < (int64_t(1) << 31), what, " ", v, " too large for cuDNN");
  return int(v);
}

class RnnLayer final : public GpuLayer {
 public:
  RnnLayer(const LayerDesc& d, GpuContext& ctx) : GpuLayer(d, ctx) {
    gru_ = d.type == "gru";
    G_ = gru_ ? 3 : 4;
    U_ = d.spec["units"].get<int64_t>();
    dirs_ = d.spec["bidirectional"].get<bool>() ? 2 : 1;
    seq_ = d.spec["return_sequences"].get<bool>();
    bias_ = d.spec["use_bias"].get<bool>();
    T_ = d.in.w;
    F_ = d.in.h * d.in.c;
    // cuDNN wants a dropout descriptor even without dropout between layers (one layer here).
    size_t state_bytes = 0;
    GENRELAB_CUDA_CHECK(cudnnDropoutGetStatesSize(ctx.cudnn(), &state_bytes));
    dropout_states_.resize(std::max<size_t>(state_bytes, 1));
    GENRELAB_CUDA_CHECK(cudnnSetDropoutDescriptor(dropout_, ctx.cudnn(), 0.0f, dropout_states_.data(), state_bytes, 0));
    const cudnnRNNBiasMode_t bias_mode = !bias_ ? CUDNN_RNN_NO_BIAS
                                         : gru_ ? CUDNN_RNN_DOUBLE_BIAS
                                                : CUDNN_RNN_SINGLE_INP_BIAS;
    const cudnnMathType_t math = ctx.precision() == Precision::tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    GENRELAB_CUDA_CHECK(cudnnSetRNNDescriptor_v8(
        rnn_, CUDNN_RNN_ALGO_STANDARD, gru_ ? CUDNN_GRU : CUDNN_LSTM, bias_mode,
        dirs_ == 2 ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT,
        math, narrow(F_, "features"), narrow(U_, "units"), narrow(U_, "units"), 1, dropout_, 0));
    GENRELAB_CUDA_CHECK(cudnnGetRNNWeightSpaceSize(ctx.cudnn(), rnn_, &wbytes_));
    wspace_.resize(wbytes_ / sizeof(float) + 1);
    dwspace_.resize(wbytes_ / sizeof(float) + 1);
    wspace_.zero(ctx.stream());  // regions no parameter maps to stay zero
    locate_weights();
  }

  void forward(const float* x, float* y, int64_t n, bool training, const StepKey&) override {
    setup(n);
    cudaStream_t s = ctx_.stream();
    pack_weights();
    const int64_t OC = desc_.out.c;
    launch_1d(T_ * n * F_, ops::RnnGatherSequence<float>{x, xseq_.data(), n, desc_.in.h, T_, desc_.in.c}, s);
    const cudnnForwardMode_t mode = training ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE;
    void* ws = ctx_.workspace(training ? work_train_ : work_infer_);
    // yseq (T, n, dirs·units); hy (dirs, n, units): final states (forward: t = T − 1, backward: t = 0)
    GENRELAB_CUDA_CHECK(cudnnRNNForward(ctx_.cudnn(), rnn_, mode, seq_lengths_.data(), xd_, xseq_.data(), yd_,
                                        yseq_.data(), hd_, nullptr, hy_.data(), hd_, nullptr, nullptr, wbytes_,
                                        wspace_.data(), training ? work_train_ : work_infer_, ws,
                                        training ? reserve_bytes_ : 0, training ? reserve_.data() : nullptr));
    if (seq_) {
      // y (n, 1, T, OC) from yseq (T, n, OC)
      launch_1d(n * T_ * OC, ops::RnnScatterSequence<float>{yseq_.data(), y, n, 1, T_, OC}, s);
    } else {
      // y (n, OC) with y[e][d·units + j] = hy[d][e][j]
      for (int d = 0; d < dirs_; ++d)
        launch_1d(n * U_, ops::StridedCopy2d<float>{hy_.data() + d * n * U_, y + d * U_, U_, U_, 1, OC, 1, false}, s);
    }
  }

  // Follows a training forward of the same x (cuDNN's reserve space holds that forward's state).
  void backward(const float*, const float*, const float* dy, float* dx, int64_t n, const StepKey&) override {
    setup(n);
    cudaStream_t s = ctx_.stream();
    const int64_t OC = desc_.out.c;
    const float* dhy = nullptr;
    if (seq_) {
      launch_1d(T_ * n * OC, ops::RnnGatherSequence<float>{dy, dyseq_.data(), n, 1, T_, OC}, s);
    } else {
      // Only the final states feed the output: dyseq = 0, dhy[d][e][j] = dy[e][d·units + j].
      GENRELAB_CUDA_CHECK(cudaMemsetAsync(dyseq_.data(), 0, size_t(T_ * n * OC) * sizeof(float), s));
      for (int d = 0; d < dirs_; ++d)
        launch_1d(n * U_, ops::StridedCopy2d<float>{dy + d * U_, dhy_.data() + d * n * U_, U_, OC, 1, U_, 1, false}, s);
      dhy = dhy_.data();
    }
    void* ws = ctx_.workspace(work_train_);
    // Backward data must precede backward weights (it consumes the reserve space first).
    GENRELAB_CUDA_CHECK(cudnnRNNBackwardData_v8(ctx_.cudnn(), rnn_, seq_lengths_.data(), yd_, yseq_.data(),
                                                dyseq_.data(), xd_, dxseq_.data(), hd_, nullptr, dhy, nullptr, hd_,
                                                nullptr, nullptr, nullptr, wbytes_, wspace_.data(), work_train_, ws,
                                                reserve_bytes_, reserve_.data()));
    GENRELAB_CUDA_CHECK(cudaMemsetAsync(dwspace_.data(), 0, wbytes_, s));
    GENRELAB_CUDA_CHECK(cudnnRNNBackwardWeights_v8(ctx_.cudnn(), rnn_, CUDNN_WGRAD_MODE_ADD, seq_lengths_.data(), xd_,
                                                   xseq_.data(), hd_, nullptr, yd_, yseq_.data(), wbytes_,
                                                   dwspace_.data(), work_train_, ws, reserve_bytes_, reserve_.data()));
    unpack_grads();
    if (dx)
      launch_1d(n * desc_.in.size(), ops::RnnScatterSequence<float>{dxseq_.data(), dx, n, desc_.in.h, T_, desc_.in.c},
                s);
  }

 private:
  // Where one Keras gate block lives in cuDNN's weight space (float offsets; −1: no bias there).
  struct GateSlot {
    int64_t w_in = 0, w_rec = 0, b_in = -1, b_rec = -1;
  };

  // cuDNN's linear-layer id of Keras gate block g (GRU: Keras z, r, h → cuDNN 1, 0, 2).
  int cudnn_gate(int g) const { return gru_ ? (g == 0 ? 1 : g == 1 ? 0 : 2) : g; }

  int64_t per_dir() const { return bias_ ? 3 : 2; }

  void locate_weights() {
    TensorDesc m, b;
    const auto* base = reinterpret_cast<const char*>(wspace_.data());
    for (int d = 0; d < dirs_; ++d)
      for (int g = 0; g < G_; ++g) {
        GateSlot slot;
        for (int rec = 0; rec < 2; ++rec) {
          void* maddr = nullptr;
          void* baddr = nullptr;
          const int id = cudnn_gate(g) + rec * G_;
          GENRELAB_CUDA_CHECK(
              cudnnGetRNNWeightParams(ctx_.cudnn(), rnn_, d, wbytes_, wspace_.data(), id, m, &maddr, b, &baddr));
          // Each matrix must be (units, in) row-major: checked, since the copies below rely on it.
          cudnnDataType_t type;
          int nb = 0, dims[3] = {0, 0, 0}, strides[3] = {0, 0, 0};
          GENRELAB_CUDA_CHECK(cudnnGetTensorNdDescriptor(m, 3, &type, &nb, dims, strides));
          const int64_t in = rec ? U_ : F_;
          int64_t count = 1;
          for (int k = 0; k < std::min(nb, 3); ++k) count *= dims[k];
          GENRELAB_CHECK(maddr && count == U_ * in, "unexpected cuDNN RNN weight matrix for layer ", desc_.index, ": ",
                         nb, " dims (", dims[0], ", ", dims[1], ", ", dims[2], "), expected ", U_, " x ", in);
          const int64_t moff = (reinterpret_cast<const char*>(maddr) - base) / int64_t(sizeof(float));
          const int64_t boff = baddr ? (reinterpret_cast<const char*>(baddr) - base) / int64_t(sizeof(float)) : -1;
          (rec ? slot.w_rec : slot.w_in) = moff;
          (rec ? slot.b_rec : slot.b_in) = boff;
        }
        slots_.push_back(slot);
      }
  }

  // Keras kernel (in, G·units) gate block g ⇄ cuDNN (units, in) matrix: element (j, f) is
  // kernel[f·G·units + g·units + j] and matrix[j·in + f].
  void copy_matrix(float* keras, float* cudnn, int64_t in, int g, bool to_keras) {
    const int64_t GU = G_ * U_;
    if (!to_keras)
      launch_1d(U_ * in, ops::StridedCopy2d<float>{keras + g * U_, cudnn, in, 1, GU, in, 1, false}, ctx_.stream());
    else
      launch_1d(U_ * in, ops::StridedCopy2d<float>{cudnn, keras + g * U_, in, in, 1, 1, GU, true}, ctx_.stream());
  }
  void copy_bias(float* keras, float* cudnn, bool to_keras) {
    if (!to_keras)
      launch_1d(U_, ops::StridedCopy2d<float>{keras, cudnn, U_, 0, 1, 0, 1, false}, ctx_.stream());
    else
      launch_1d(U_, ops::StridedCopy2d<float>{cudnn, keras, U_, 0, 1, 0, 1, true}, ctx_.stream());
  }

  // Keras parameters → weight space. Per direction: kernel, recurrent_kernel[, bias].
  void pack_weights() { transfer(wspace_.data(), false); }
  // Weight-space gradients → Keras-layout gradients (added: gradients accumulate).
  void unpack_grads() { transfer(dwspace_.data(), true); }

  void transfer(float* space, bool to_keras) {
    const int64_t GU = G_ * U_;
    for (int d = 0; d < dirs_; ++d) {
      const size_t p0 = size_t(d * per_dir());
      float* kernel = to_keras ? grad(p0) : param(p0);
      float* recurrent = to_keras ? grad(p0 + 1) : param(p0 + 1);
      float* bias = bias_ ? (to_keras ? grad(p0 + 2) : param(p0 + 2)) : nullptr;
      for (int g = 0; g < G_; ++g) {
        const GateSlot& slot = slots_[size_t(d * G_ + g)];
        copy_matrix(kernel, space + slot.w_in, F_, g, to_keras);
        copy_matrix(recurrent, space + slot.w_rec, U_, g, to_keras);
        if (!bias) continue;
        // GRU bias (2, G·units): row 0 input, row 1 recurrent; LSTM bias (G·units): input only.
        copy_bias(bias + g * U_, space + slot.b_in, to_keras);
        if (gru_) copy_bias(bias + GU + g * U_, space + slot.b_rec, to_keras);
      }
    }
  }

  // Descriptors, sequence buffers and temporary-space sizes for batch n.
  void setup(int64_t n) {
    if (n == n_) return;
    const int N = narrow(n, "batch"), T = narrow(T_, "time steps");
    std::vector<int> lengths(size_t(n), T);
    GENRELAB_CUDA_CHECK(cudnnSetRNNDataDescriptor(xd_, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, T, N,
                                                  narrow(F_, "features"), lengths.data(), nullptr));
    GENRELAB_CUDA_CHECK(cudnnSetRNNDataDescriptor(yd_, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, T, N,
                                                  narrow(dirs_ * U_, "outputs"), lengths.data(), nullptr));
    const int hdims[3] = {dirs_, N, int(U_)}, hstrides[3] = {N * int(U_), int(U_), 1};
    GENRELAB_CUDA_CHECK(cudnnSetTensorNdDescriptor(hd_, CUDNN_DATA_FLOAT, 3, hdims, hstrides));
    seq_lengths_.resize(size_t(n));
    launch_1d(n, FillInt{seq_lengths_.data(), T}, ctx_.stream());
    GENRELAB_CUDA_CHECK(
        cudnnGetRNNTempSpaceSizes(ctx_.cudnn(), rnn_, CUDNN_FWD_MODE_TRAINING, xd_, &work_train_, &reserve_bytes_));
    size_t unused = 0;
    GENRELAB_CUDA_CHECK(
        cudnnGetRNNTempSpaceSizes(ctx_.cudnn(), rnn_, CUDNN_FWD_MODE_INFERENCE, xd_, &work_infer_, &unused));
    reserve_.resize(std::max<size_t>(reserve_bytes_, 1));
    const size_t seq_in = size_t(T_ * n * F_), seq_out = size_t(T_ * n * dirs_ * U_);
    xseq_.resize(seq_in);
    dxseq_.resize(seq_in);
    yseq_.resize(seq_out);
    dyseq_.resize(seq_out);
    hy_.resize(size_t(dirs_ * n * U_));
    dhy_.resize(size_t(dirs_ * n * U_));
    n_ = n;
  }

  bool gru_ = true, seq_ = false, bias_ = true;
  int G_ = 3, dirs_ = 1;
  int64_t U_ = 0, T_ = 0, F_ = 0;
  RnnDesc rnn_;
  DropoutDesc dropout_;
  DeviceBuffer<uint8_t> dropout_states_;
  RnnDataDesc xd_, yd_;
  TensorDesc hd_;  // (dirs, n, units), also the LSTM cell-state descriptor
  size_t wbytes_ = 0, work_train_ = 0, work_infer_ = 0, reserve_bytes_ = 0;
  DeviceBuffer<float> wspace_, dwspace_;  // cuDNN weight space and its gradient
  std::vector<GateSlot> slots_;           // [direction · G + Keras gate]
  int64_t n_ = 0;
  DeviceBuffer<int32_t> seq_lengths_;  // (n) all T
  DeviceBuffer<uint8_t> reserve_;      // forward → backward state of cuDNN
  DeviceBuffer<float> xseq_, dxseq_;   // (T, n, F)
  DeviceBuffer<float> yseq_, dyseq_;   // (T, n, dirs·units)
  DeviceBuffer<float> hy_, dhy_;       // (dirs, n, units)
};

}  // namespace

std::unique_ptr<GpuLayer> make_rnn_layer(const LayerDesc& desc, GpuContext& ctx) {
  return std::make_unique<RnnLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
