// CPU pooling: max / average over 2-D windows with Keras padding (padded cells never count: a
// max ignores them, an average divides by the in-bounds cells, like TensorFlow), and global
// average pooling. Forward and average backward are gather loops (one output element per call);
// max backward scatters each window's gradient to its argmax, one example per thread.
#include <algorithm>
#include <limits>

#include "cpu_layers_impl.h"
#include "genrelab/common.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
class Pool2d final : public CpuLayer<T> {
 public:
  explicit Pool2d(const LayerDesc& d) : CpuLayer<T>(d), g_(window_of(d)), max_(d.type == "maxpool2d") {}

  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    const Shape3 in = this->desc_.in, out = this->desc_.out;
    const Window2d g = g_;
    const bool is_max = max_;
    cpu_for_1d(n * out.size(), [=](int64_t i) {
      const int64_t c = i % out.c, ow = (i / out.c) % out.w, oh = (i / (out.c * out.w)) % out.h, e = i / out.size();
      const int64_t h0 = std::max<int64_t>(oh * g.sh - g.pad_top, 0), h1 = std::min(oh * g.sh - g.pad_top + g.kh, in.h);
      const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pad_left, 0), w1 = std::min(ow * g.sw - g.pad_left + g.kw, in.w);
      T acc = is_max ? -std::numeric_limits<T>::infinity() : T(0);
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) {
          const T v = x[((e * in.h + ih) * in.w + iw) * in.c + c];
          acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
      y[i] = is_max ? acc : acc / T((h1 - h0) * (w1 - w0));
    });
  }

  // Average: dx[e, ih, iw, c] = Σ over the windows covering (ih, iw) of dy / cells (a gather).
  // Max: each window's dy goes to its first maximum in row-major order (TensorFlow's choice);
  // examples are independent, so threads take whole examples and scatter without races.
  void backward(const T* x, const T* y, const T* dy, T* dx, int64_t n, const StepKey&) override {
    if (!dx) return;
    const Shape3 in = this->desc_.in, out = this->desc_.out;
    const Window2d g = g_;
    if (max_) {
#pragma omp parallel for schedule(static) if (n * out.size() > 4096)
      for (int64_t e = 0; e < n; ++e) {
        T* dxe = dx + e * in.size();
        const T* xe = x + e * in.size();
        std::fill(dxe, dxe + in.size(), T(0));
        for (int64_t oh = 0; oh < out.h; ++oh)
          for (int64_t ow = 0; ow < out.w; ++ow) {
            const int64_t h0 = std::max<int64_t>(oh * g.sh - g.pad_top, 0), h1 = std::min(oh * g.sh - g.pad_top + g.kh, in.h);
            const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pad_left, 0), w1 = std::min(ow * g.sw - g.pad_left + g.kw, in.w);
            const int64_t o = ((e * out.h + oh) * out.w + ow) * out.c;
            for (int64_t c = 0; c < in.c; ++c) {
              int64_t best = (h0 * in.w + w0) * in.c + c;
              for (int64_t hh = h0; hh < h1; ++hh)
                for (int64_t ww = w0; ww < w1; ++ww) {
                  const int64_t idx = (hh * in.w + ww) * in.c + c;
                  if (xe[idx] > xe[best]) best = idx;
                }
              dxe[best] += dy[o + c];
            }
          }
      }
      return;
    }
    cpu_for_1d(n * in.size(), [=](int64_t i) {
      const int64_t c = i % in.c, iw = (i / in.c) % in.w, ih = (i / (in.c * in.w)) % in.h, e = i / in.size();
      // Covering outputs: oh·sh − pt ≤ ih < oh·sh − pt + kh.
      const int64_t oh0 = std::max<int64_t>(0, ceil_div<int64_t>(std::max<int64_t>(ih + g.pad_top - g.kh + 1, 0), g.sh));
      const int64_t oh1 = std::min<int64_t>(out.h - 1, (ih + g.pad_top) / g.sh);
      const int64_t ow0 = std::max<int64_t>(0, ceil_div<int64_t>(std::max<int64_t>(iw + g.pad_left - g.kw + 1, 0), g.sw));
      const int64_t ow1 = std::min<int64_t>(out.w - 1, (iw + g.pad_left) / g.sw);
      T acc = T(0);
      for (int64_t oh = oh0; oh <= oh1; ++oh)
        for (int64_t ow = ow0; ow <= ow1; ++ow) {
          const int64_t h0 = std::max<int64_t>(oh * g.sh - g.pad_top, 0), h1 = std::min(oh * g.sh - g.pad_top + g.kh, in.h);
          const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pad_left, 0), w1 = std::min(ow * g.sw - g.pad_left + g.kw, in.w);
          acc += dy[((e * out.h + oh) * out.w + ow) * out.c + c] / T((h1 - h0) * (w1 - w0));
        }
      dx[i] = acc;
    });
  }

 private:
  Window2d g_;
  bool max_;
};

template <typename T>
class GlobalAvgPool final : public CpuLayer<T> {
 public:
  using CpuLayer<T>::CpuLayer;
  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    const Shape3 in = this->desc_.in;
    cpu_for_1d(n * in.c, [=](int64_t i) {
      const int64_t e = i / in.c, c = i % in.c;
      T s = T(0);
      for (int64_t p = 0; p < in.h * in.w; ++p) s += x[(e * in.h * in.w + p) * in.c + c];
      y[i] = s / T(in.h * in.w);
    });
  }
  void backward(const T*, const T*, const T* dy, T* dx, int64_t n, const StepKey&) override {
    if (!dx) return;
    const Shape3 in = this->desc_.in;
    cpu_for_1d(n * in.size(), [=](int64_t i) { dx[i] = dy[(i / in.size()) * in.c + i % in.c] / T(in.h * in.w); });
  }
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_pool(const LayerDesc& desc) {
  if (desc.type == "global_avgpool") return std::make_unique<GlobalAvgPool<T>>(desc);
  return std::make_unique<Pool2d<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_pool<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_pool<double>(const LayerDesc&);

}  // namespace genrelab::nn
