// dense on cuBLAS, then the fused bias + activation functor (or the row softmax). cuBLAS is
// column-major: a row-major (r, c) matrix is the column-major (c, r) matrix with leading
// dimension c, i.e. its transpose, so every product below is written for the transposes:
//   y  (n, units) = x (n, in) · W (in, units)   ⇔  yᵀ (units, n) = Wᵀ (units, in) · xᵀ (in, n)
//   dx (n, in) = dz (n, units) · Wᵀ             ⇔  dxᵀ (in, n)   = op_T(Wᵀ) · dzᵀ (units, n)
//   dW (in, units) += xᵀ · dz                   ⇔  dWᵀ (units, in) += dzᵀ (units, n) · op_T(xᵀ)
// TF32 (train.precision = tf32) comes from the handle's math mode (CUBLAS_TF32_TENSOR_OP_MATH).
// bf16/fp16: x, W and dz are cast to 16-bit copies (ops::ToHalf) and multiplied by cublasGemmEx
// with float32 C and CUBLAS_COMPUTE_32F (float accumulation, float results: nothing rounded after).
#include "gpu_layers.h"

#include "genrelab/cuda/launch.cuh"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::cuda::nn {

namespace {

int narrow(int64_t v) {
  GENRELAB_CHECK(v > 0 && v < (int64_t(1) << 31), "dense dimension ", v, " too large for cuBLAS");
  return int(v);
}

class DenseLayer final : public GpuLayer {
 public:
  DenseLayer(const LayerDesc& d, GpuContext& ctx)
      : GpuLayer(d, ctx),
        act_(int(genrelab::nn::activation_of(d))),
        alpha_(float(genrelab::nn::activation_alpha(d))),
        has_bias_(d.params.size() > 1),
        half_(ctx.half_format()) {}

  void set_logits_output(bool on) override { logits_ = on; }

  void forward(const float* x, float* y, int64_t n, bool, const StepKey&) override {
    const int units = narrow(desc_.out.c), in = narrow(desc_.in.size()), nb = narrow(n);
    const bool softmax = act_ == ops::kActSoftmax && !logits_;
    float* z = y;  // pre-activation (n, units); a separate buffer only when a softmax follows
    if (softmax) {
      if (size_t(n * units) > z_.size()) ctx_.resize_tracked(z_, size_t(n * units));
      z = z_.data();
    }
    const float one = 1.0f, zero = 0.0f;
    // zᵀ (units, n) = Wᵀ (units, in) · xᵀ (in, n)
    if (half_) {
      const void* w16 = to_half(param(0), int64_t(in) * units, w16_);
      const void* x16 = to_half(x, n * in, x16_);
      gemm16(CUBLAS_OP_N, CUBLAS_OP_N, units, nb, in, w16, units, x16, in, 0.0f, z, units);
    } else {
      GENRELAB_CUDA_CHECK(cublasSgemm(ctx_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, units, nb, in, &one, param(0), units, x,
                                      in, &zero, z, units));
    }
    const int act = act_ == ops::kActSoftmax ? ops::kActNone : act_;
    bias_activation(z, has_bias_ ? param(1) : nullptr, n * units, units, act, alpha_, ctx_.stream());
    if (softmax) launch_1d(n * units, ops::SoftmaxRows<float>{z, y, units}, ctx_.stream());
  }

  void backward(const float* x, const float* y, const float* dy, float* dx, int64_t n, const StepKey&) override {
    const int units = narrow(desc_.out.c), in = narrow(desc_.in.size()), nb = narrow(n);
    const int64_t count = n * units;
    // dz (n, units): gradient before the activation (dy itself for logits and no activation).
    const float* dz = dy;
    if (act_ == ops::kActSoftmax && !logits_) {
      float* s = ctx_.scratch(0, count);
      launch_1d(count, ops::SoftmaxRowsBackward<float>{y, dy, s, units}, ctx_.stream());
      dz = s;
    } else if (act_ != ops::kActSoftmax && act_ != ops::kActNone) {
      float* s = ctx_.scratch(0, count);
      activation_backward(y, dy, s, count, act_, alpha_, ctx_.stream());
      dz = s;
    }
    if (has_bias_) add_bias_grad(ctx_, dz, grad(1), n, units);
    const float one = 1.0f, zero = 0.0f;
    if (half_) {  // follows a training forward: x16_ and w16_ hold this x and W
      const void* dz16 = to_half(dz, count, dz16_);
      // dWᵀ (units, in) += dzᵀ (units, n) · (xᵀ)ᵀ (n, in)
      gemm16(CUBLAS_OP_N, CUBLAS_OP_T, units, in, nb, dz16, units, x16_.data(), in, 1.0f, grad(0), units);
      // dxᵀ (in, n) = (Wᵀ)ᵀ (in, units) · dzᵀ (units, n)
      if (dx) gemm16(CUBLAS_OP_T, CUBLAS_OP_N, in, nb, units, w16_.data(), units, dz16, units, 0.0f, dx, in);
      return;
    }
    // dWᵀ (units, in) += dzᵀ (units, n) · (xᵀ)ᵀ (n, in)
    GENRELAB_CUDA_CHECK(cublasSgemm(ctx_.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, units, in, nb, &one, dz, units, x, in,
                                    &one, grad(0), units));
    if (!dx) return;
    // dxᵀ (in, n) = (Wᵀ)ᵀ (in, units) · dzᵀ (units, n)
    GENRELAB_CUDA_CHECK(cublasSgemm(ctx_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, in, nb, units, &one, param(0), units, dz,
                                    units, &zero, dx, in));
  }

 private:
  int act_;
  float alpha_;
  bool has_bias_;
  bool logits_ = false;
  // src (count) cast to 16 bits into buf (grown as needed); returns buf's data.
  const void* to_half(const float* src, int64_t count, DeviceBuffer<uint16_t>& buf) {
    if (size_t(count) > buf.size()) ctx_.resize_tracked(buf, size_t(count));
    launch_1d(count, ops::ToHalf{src, buf.data(), half_}, ctx_.stream());
    return buf.data();
  }

  // C (m, n) = alpha · op(A) · op(B) + beta · C, column-major, A and B 16-bit, C float32,
  // float32 accumulation.
  void gemm16(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* A, int lda, const void* B,
              int ldb, float beta, float* C, int ldc) {
    const cudaDataType_t t = half_ == ops::kHalfFp16 ? CUDA_R_16F : CUDA_R_16BF;
    const float alpha = 1.0f;
    GENRELAB_CUDA_CHECK(cublasGemmEx(ctx_.cublas(), ta, tb, m, n, k, &alpha, A, t, lda, B, t, ldb, &beta, C, CUDA_R_32F,
                                     ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }

  int half_;                                // ops::kHalf*: 16-bit operands under bf16/fp16
  DeviceBuffer<uint16_t> x16_, w16_, dz16_;  // bf16/fp16: x (n, in), W (in, units), dz (n, units)
  DeviceBuffer<float> z_;  // (n, units) logits before the softmax (softmax layers outside the head)
};

}  // namespace

std::unique_ptr<GpuLayer> make_dense_layer(const LayerDesc& desc, GpuContext& ctx) {
  return std::make_unique<DenseLayer>(desc, ctx);
}

}  // namespace genrelab::cuda::nn
