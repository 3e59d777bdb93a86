// CPU recurrent layers (Keras semantics): GRU with reset_after=True (gates z, r, h) and LSTM
// (gates i, f, c, o), tanh / sigmoid, over the w (time) axis of an (h, w, c) input read as w steps
// of h·c features (see nn/model.h); optional backward direction concatenated after the forward
// one. The input projections of all steps are one GEMM; the recurrence runs step by step; the
// backward pass is plain backpropagation through time over the states cached by forward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_layers_impl.h"
#include "genrelab/parallel_for.h"

namespace genrelab::nn {

namespace {

template <typename T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <typename T>
class Recurrent final : public CpuLayer<T> {
 public:
  explicit Recurrent(const LayerDesc& d) : CpuLayer<T>(d) {
    gru_ = d.type == "gru";
    G_ = gru_ ? 3 : 4;
    U_ = d.spec["units"].get<int64_t>();
    dirs_ = d.spec["bidirectional"].get<bool>() ? 2 : 1;
    seq_ = d.spec["return_sequences"].get<bool>();
    bias_ = d.spec["use_bias"].get<bool>();
    T_ = d.in.w;
    F_ = d.in.h * d.in.c;
    cache_.resize(size_t(dirs_));
  }

  void forward(const T* x, T* y, int64_t n, bool, const StepKey&) override {
    gather_sequence(x, n);
    const int64_t GU = G_ * U_, OC = this->desc_.out.c;
    for (int dir = 0; dir < dirs_; ++dir) {
      Cache& cc = cache_[size_t(dir)];
      const T* W = param(dir, 0);
      const T* Ur = param(dir, 1);
      const T* b = bias_ ? param(dir, 2) : nullptr;
      // xw: (n, T, G·U) = seq · W + input bias.
      cc.xw.resize(size_t(n * T_ * GU));
      cpu_gemm<T>(false, false, n * T_, GU, F_, seq_buf_.data(), W, cc.xw.data(), false);
      if (b) for (int64_t r = 0; r < n * T_; ++r)
          for (int64_t j = 0; j < GU; ++j) cc.xw[size_t(r * GU + j)] += b[j];
      cc.gates.assign(size_t(n * T_ * GU), T(0));  // activated gates per processing step s
      cc.hs.assign(size_t(n * (T_ + 1) * U_), T(0));  // hs[e][s] = state before step s
      if (!gru_) cc.cs.assign(size_t(n * (T_ + 1) * U_), T(0));
      if (gru_) cc.hzh.assign(size_t(n * T_ * U_), T(0));
      std::vector<T> hprev(size_t(n * U_)), hu(size_t(n * GU));
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = dir ? T_ - 1 - s : s;
        for (int64_t e = 0; e < n; ++e)
          std::copy_n(&cc.hs[size_t((e * (T_ + 1) + s) * U_)], U_, &hprev[size_t(e * U_)]);
        cpu_gemm<T>(false, false, n, GU, U_, hprev.data(), Ur, hu.data(), false);  // hu: (n, G·U)
        for (int64_t e = 0; e < n; ++e) {
          const T* xw = &cc.xw[size_t((e * T_ + t) * GU)];
          const T* h_u = &hu[size_t(e * GU)];
          T* g = &cc.gates[size_t((e * T_ + s) * GU)];
          const T* hp = &hprev[size_t(e * U_)];
          T* hn = &cc.hs[size_t((e * (T_ + 1) + s + 1) * U_)];
          for (int64_t k = 0; k < U_; ++k) {
            if (gru_) {
              const T rb = b ? b[GU + 2 * U_ + k] : T(0);
              const T zb = b ? b[GU + k] : T(0), rrb = b ? b[GU + U_ + k] : T(0);
              const T z = sigmoid(xw[k] + h_u[k] + zb);
              const T r = sigmoid(xw[U_ + k] + h_u[U_ + k] + rrb);
              const T hzh = h_u[2 * U_ + k] + rb;
              const T hh = std::tanh(xw[2 * U_ + k] + r * hzh);
              g[k] = z;
              g[U_ + k] = r;
              g[2 * U_ + k] = hh;
              cc.hzh[size_t((e * T_ + s) * U_ + k)] = hzh;
              hn[k] = z * hp[k] + (T(1) - z) * hh;
            } else {
              const T i = sigmoid(xw[k] + h_u[k]);
              const T f = sigmoid(xw[U_ + k] + h_u[U_ + k]);
              const T c = std::tanh(xw[2 * U_ + k] + h_u[2 * U_ + k]);
              const T o = sigmoid(xw[3 * U_ + k] + h_u[3 * U_ + k]);
              g[k] = i;
              g[U_ + k] = f;
              g[2 * U_ + k] = c;
              g[3 * U_ + k] = o;
              const T cp = cc.cs[size_t((e * (T_ + 1) + s) * U_ + k)];
              const T cn = f * cp + i * c;
              cc.cs[size_t((e * (T_ + 1) + s + 1) * U_ + k)] = cn;
              hn[k] = o * std::tanh(cn);
            }
          }
          if (seq_) std::copy_n(hn, U_, y + (e * T_ + t) * OC + dir * U_);
          else if (s == T_ - 1) std::copy_n(hn, U_, y + e * OC + dir * U_);
        }
      }
    }
  }

  void backward(const T*, const T*, const T* dy, T* dx, int64_t n, const StepKey&) override {
    const int64_t GU = G_ * U_, OC = this->desc_.out.c;
    std::vector<T> dseq(size_t(n * T_ * F_), T(0));
    for (int dir = 0; dir < dirs_; ++dir) {
      Cache& cc = cache_[size_t(dir)];
      const T* W = param(dir, 0);
      const T* Ur = param(dir, 1);
      T* dW = grad(dir, 0);
      T* dU = grad(dir, 1);
      T* db = bias_ ? grad(dir, 2) : nullptr;
      std::vector<T> dxw(size_t(n * T_ * GU), T(0));  // d(input projection): (n, T, G·U), by time t
      std::vector<T> dh(size_t(n * U_), T(0)), dc(size_t(n * U_), T(0)), da(size_t(n * GU)), dhu(size_t(n * GU)),
          hprev(size_t(n * U_)), dhp(size_t(n * U_));
      for (int64_t s = T_ - 1; s >= 0; --s) {
        const int64_t t = dir ? T_ - 1 - s : s;
        for (int64_t e = 0; e < n; ++e) {
          for (int64_t k = 0; k < U_; ++k) {
            if (seq_) dh[size_t(e * U_ + k)] += dy[(e * T_ + t) * OC + dir * U_ + k];
            else if (s == T_ - 1) dh[size_t(e * U_ + k)] += dy[e * OC + dir * U_ + k];
          }
          std::copy_n(&cc.hs[size_t((e * (T_ + 1) + s) * U_)], U_, &hprev[size_t(e * U_)]);
          const T* g = &cc.gates[size_t((e * T_ + s) * GU)];
          T* a = &da[size_t(e * GU)];   // d pre-activation, input side
          T* ah = &dhu[size_t(e * GU)];  // d pre-activation, recurrent side (h·U + b_rec)
          for (int64_t k = 0; k < U_; ++k) {
            const T dhk = dh[size_t(e * U_ + k)], hp = hprev[size_t(e * U_ + k)];
            if (gru_) {
              const T z = g[k], r = g[U_ + k], hh = g[2 * U_ + k];
              const T hzh = cc.hzh[size_t((e * T_ + s) * U_ + k)];
              const T dhh = dhk * (T(1) - z) * (T(1) - hh * hh);
              const T dz = dhk * (hp - hh) * z * (T(1) - z);
              const T dr = dhh * hzh * r * (T(1) - r);
              a[k] = dz;
              a[U_ + k] = dr;
              a[2 * U_ + k] = dhh;
              ah[k] = dz;
              ah[U_ + k] = dr;
              ah[2 * U_ + k] = dhh * r;
              dhp[size_t(e * U_ + k)] = dhk * z;
            } else {
              const T i = g[k], f = g[U_ + k], c = g[2 * U_ + k], o = g[3 * U_ + k];
              const T cn = cc.cs[size_t((e * (T_ + 1) + s + 1) * U_ + k)];
              const T cp = cc.cs[size_t((e * (T_ + 1) + s) * U_ + k)];
              const T tc = std::tanh(cn);
              const T dcn = dc[size_t(e * U_ + k)] + dhk * o * (T(1) - tc * tc);
              a[k] = dcn * c * i * (T(1) - i);
              a[U_ + k] = dcn * cp * f * (T(1) - f);
              a[2 * U_ + k] = dcn * i * (T(1) - c * c);
              a[3 * U_ + k] = dhk * tc * o * (T(1) - o);
              for (int64_t q = 0; q < 4; ++q) ah[q * U_ + k] = a[q * U_ + k];
              dc[size_t(e * U_ + k)] = dcn * f;
              dhp[size_t(e * U_ + k)] = T(0);
            }
          }
          std::copy_n(a, GU, &dxw[size_t((e * T_ + t) * GU)]);
          if (db && gru_)
            for (int64_t j = 0; j < GU; ++j) db[GU + j] += ah[j];
        }
        cpu_gemm<T>(true, false, U_, GU, n, hprev.data(), dhu.data(), dU, true);  // dU += hprevᵀ · dhu
        cpu_gemm<T>(false, true, n, U_, GU, dhu.data(), Ur, dhp.data(), true);    // dh_prev += dhu · Uᵀ
        dh.swap(dhp);
      }
      cpu_gemm<T>(true, false, F_, GU, n * T_, seq_buf_.data(), dxw.data(), dW, true);  // dW += seqᵀ · dxw
      if (db)
        for (int64_t r = 0; r < n * T_; ++r)
          for (int64_t j = 0; j < GU; ++j) db[j] += dxw[size_t(r * GU + j)];
      if (dx) cpu_gemm<T>(false, true, n * T_, F_, GU, dxw.data(), W, dseq.data(), true);  // dseq += dxw · Wᵀ
    }
    if (dx) scatter_sequence(dseq.data(), dx, n);
  }

 private:
  struct Cache {
    std::vector<T> xw, gates, hs, cs, hzh;
  };
  int64_t per_dir() const { return bias_ ? 3 : 2; }
  const T* param(int dir, int j) const { return this->params_[size_t(dir * per_dir() + j)].data(); }
  T* grad(int dir, int j) { return this->grads_[size_t(dir * per_dir() + j)].data(); }

  // seq (n, T, F): seq[e][t][hh·C + c] = x[e][hh][t][c].
  void gather_sequence(const T* x, int64_t n) {
    const Shape3 in = this->desc_.in;
    seq_buf_.resize(size_t(n * T_ * F_));
    T* seq = seq_buf_.data();
    const int64_t Tn = T_, F = F_;
    cpu_for_1d(n * T_ * F_, [=](int64_t i) {
      const int64_t f = i % F, t = (i / F) % Tn, e = i / (F * Tn);
      const int64_t hh = f / in.c, c = f % in.c;
      seq[i] = x[((e * in.h + hh) * in.w + t) * in.c + c];
    });
  }
  void scatter_sequence(const T* dseq, T* dx, int64_t n) const {
    const Shape3 in = this->desc_.in;
    const int64_t Tn = T_, F = F_;
    cpu_for_1d(n * in.size(), [=](int64_t i) {
      const int64_t c = i % in.c, t = (i / in.c) % in.w, hh = (i / (in.c * in.w)) % in.h, e = i / in.size();
      dx[i] = dseq[(e * Tn + t) * F + hh * in.c + c];
    });
  }

  bool gru_ = true, seq_ = false, bias_ = true;
  int64_t G_ = 3, U_ = 0, T_ = 0, F_ = 0;
  int dirs_ = 1;
  std::vector<T> seq_buf_;
  std::vector<Cache> cache_;
};

}  // namespace

template <typename T>
std::unique_ptr<CpuLayer<T>> make_cpu_rnn(const LayerDesc& desc) {
  return std::make_unique<Recurrent<T>>(desc);
}
template std::unique_ptr<CpuLayer<float>> make_cpu_rnn<float>(const LayerDesc&);
template std::unique_ptr<CpuLayer<double>> make_cpu_rnn<double>(const LayerDesc&);

}  // namespace genrelab::nn
