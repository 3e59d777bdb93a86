// Core plumbing: the error-check family (status → message naming call, file, line), the backend
// switch, and the RAII owners (round trips on a GPU, [gpu]).
#include <complex>
#include <numeric>

#include "genrelab/common.h"
#include "genrelab/device.h"
#include "genrelab/ops/stft.h"
#include "test_util.h"
#if GENRELAB_HAVE_CUDA
#include "genrelab/cuda/memory.h"
#endif

using namespace genrelab;

TEST_CASE("GENRELAB_CHECK throws with the expression and message", "[core]") {
  try {
    const int batch = 0;
    GENRELAB_CHECK(batch > 0, "batch was ", batch);
    FAIL("no exception");
  } catch (const RuntimeError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("batch > 0") != std::string::npos);
    CHECK(msg.find("batch was 0") != std::string::npos);
    CHECK(msg.find("test_core.cpp") != std::string::npos);
  }
}

TEST_CASE("device switch honours cpu and rejects unknown names", "[core]") {
  CHECK(resolve_device("cpu") == Device::cpu);
  CHECK_THROWS_AS(resolve_device("gpu"), ConfigError);
  const CudaStatus s = query_cuda();
  if (s.usable) {
    CHECK(resolve_device("cuda") == Device::cuda);
    CHECK(resolve_device("") == Device::cuda);
  } else {
    CHECK_THROWS_AS(resolve_device("cuda"), RuntimeError);
    CHECK(resolve_device("") == Device::cpu);
    CHECK_FALSE(s.reason.empty());
  }
}

// The peak model behind `bench`'s "of peak" figures against the spec sheets' dense figures (each
// sheet's own SM count and clock): A100 SXM 19.5 / 156 / 312 TFLOP/s fp32 / tf32 / bf16 at
// 1 410 MHz; H100 SXM 989.4 bf16 and 494.7 tf32 at 1 830 MHz, 66.9 fp32 at 1 980 MHz; RTX 3090
// 35.6 fp32 and tf32, 71 bf16 at 1 695 MHz; V100 SXM2 15.7 fp32, 125 fp16 at 1 530 MHz.
TEST_CASE("peak TFLOP/s per precision match the GPUs' spec sheets", "[core]") {
  auto gpu = [](int major, int minor, int sms, int mhz) {
    GpuInfo g;
    g.cc_major = major;
    g.cc_minor = minor;
    g.sm_count = sms;
    g.sm_clock_khz = mhz * 1000;
    return g;
  };
  const GpuInfo a100 = gpu(8, 0, 108, 1410), h100 = gpu(9, 0, 132, 1830), h100_fp32 = gpu(9, 0, 132, 1980),
                rtx3090 = gpu(8, 6, 82, 1695), v100 = gpu(7, 0, 80, 1530);
  struct Case {
    GpuInfo gpu;
    const char* precision;
    double tflops;  // 0: no peak (no tensor-core path, unknown architecture or precision)
  };
  const Case cases[] = {{a100, "fp32", 19.5},     {a100, "tf32", 156},      {a100, "bf16", 312},
                        {a100, "fp16", 312},      {h100, "bf16", 989.4},    {h100, "tf32", 494.7},
                        {h100_fp32, "fp32", 66.9}, {rtx3090, "fp32", 35.6}, {rtx3090, "tf32", 35.6},
                        {rtx3090, "bf16", 71.0},  {v100, "fp32", 15.7},     {v100, "fp16", 125.3},
                        {v100, "bf16", 0},        {v100, "tf32", 0},        {gpu(6, 1, 20, 1500), "fp32", 0},
                        {gpu(9, 9, 20, 1500), "bf16", 0}, {a100, "fp64", 0}};
  for (const Case& c : cases) {
    CAPTURE(c.gpu.cc_major, c.gpu.cc_minor, c.precision);
    CHECK(peak_tflops(c.gpu, c.precision) == Approx(c.tflops).epsilon(0.01));
  }
}

#if GENRELAB_HAVE_CUDA
TEST_CASE("CUDA status checks name the call and the status", "[core]") {
  auto message = [](auto&& f) -> std::string {
    try { f(); } catch (const RuntimeError& e) { return e.what(); }
    return "(no error)";
  };
  const std::string rt = message([] { GENRELAB_CUDA_CHECK(cudaErrorInvalidValue); });
  CHECK(rt.find("cudaErrorInvalidValue") != std::string::npos);
  CHECK(rt.find("test_core.cpp") != std::string::npos);
  const std::string fft = message([] { GENRELAB_CUDA_CHECK(CUFFT_INVALID_SIZE); });
  CHECK(fft.find("CUFFT_INVALID_SIZE") != std::string::npos);
  const std::string dnn = message([] { GENRELAB_CUDA_CHECK(CUDNN_STATUS_BAD_PARAM); });
  CHECK(dnn.find("CUDNN_STATUS_BAD_PARAM") != std::string::npos);
  const std::string blas = message([] { GENRELAB_CUDA_CHECK(CUBLAS_STATUS_INVALID_VALUE); });
  CHECK(blas.find("CUBLAS_STATUS_INVALID_VALUE") != std::string::npos);
  CHECK(message([] { GENRELAB_CUDA_CHECK(cudaSuccess); }) == "(no error)");
}

TEST_CASE("device and pinned buffers round trip and move", "[core][gpu]") {
  GENRELAB_REQUIRE_GPU();
  cuda::Stream stream;
  cuda::PinnedBuffer<float> host(1000), back(1000);
  std::iota(host.data(), host.data() + 1000, 0.5f);
  cuda::DeviceBuffer<float> dev(1000);
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(dev.data(), host.data(), dev.bytes(), cudaMemcpyHostToDevice, stream));
  cuda::DeviceBuffer<float> moved = std::move(dev);
  CHECK(dev.data() == nullptr);
  GENRELAB_CUDA_CHECK(cudaMemcpyAsync(back.data(), moved.data(), moved.bytes(), cudaMemcpyDeviceToHost, stream));
  stream.synchronize();
  for (int i = 0; i < 1000; ++i) CHECK(back[size_t(i)] == host[size_t(i)]);
}

TEST_CASE("out of GPU memory is a clear error", "[core][gpu][oom]") {
  GENRELAB_REQUIRE_GPU();
  try {
    cuda::DeviceBuffer<float> huge(size_t(1) << 45);  // 128 TiB
    FAIL("allocation succeeded");
  } catch (const RuntimeError& e) {
    CHECK(std::string(e.what()).find("out of GPU memory") != std::string::npos);
  }
}

TEST_CASE("cuFFT plan matches FFTW", "[core][gpu]") {
  GENRELAB_REQUIRE_GPU();
  const int n = 1024, batch = 3;
  std::vector<float> x(size_t(n) * batch);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(i)) + 0.1 * double(i % 7));
  std::vector<std::complex<float>> want(size_t(n / 2 + 1) * batch), got(want.size());
  CpuRealFft(n, batch, n).forward(x.data(), want.data());
  cuda::Stream stream;
  cuda::DeviceBuffer<float> dx(x.size());
  cuda::DeviceBuffer<cufftComplex> dy(want.size());
  cuda::copy_to_device(dx.data(), x.data(), x.size());
  cuda::FftPlan plan = cuda::FftPlan::r2c_1d(n, batch, n);
  GENRELAB_CUDA_CHECK(cufftSetStream(plan.get(), stream));
  GENRELAB_CUDA_CHECK(cufftExecR2C(plan.get(), dx.data(), dy.data()));
  stream.synchronize();
  cuda::copy_to_host(reinterpret_cast<cufftComplex*>(got.data()), dy.data(), got.size());
  std::vector<float> g, w;
  for (size_t i = 0; i < got.size(); ++i) {
    g.push_back(got[i].real()); g.push_back(got[i].imag());
    w.push_back(want[i].real()); w.push_back(want[i].imag());
  }
  test::require_close(g, w, 1e-3, 1e-5, "cuFFT vs FFTW");
}

TEST_CASE("events time a stream", "[core][gpu]") {
  GENRELAB_REQUIRE_GPU();
  cuda::Stream stream;
  cuda::Event start(true), stop(true);
  cuda::DeviceBuffer<float> buf(1 << 24);
  start.record(stream);
  buf.zero(stream);
  stop.record(stream);
  stop.synchronize();
  CHECK(stop.ms_since(start) >= 0.0f);
}
#endif

TEST_CASE("unravel4 splits flat indices in 32-bit and 64-bit ranges", "[core]") {
  // (d3, d2, d1, d0) = (q, 3, 5, 7): i = ((q·3 + i2)·5 + i1)·7 + i0, rebuilt by hand.
  // q = 40904450 puts the indices across 2^32 (4 294 967 250 … 4 294 967 354); 123456789 beyond it.
  for (const int64_t q : {int64_t(0), int64_t(1), int64_t(40904450), int64_t(123456789)})
    for (int64_t i2 = 0; i2 < 3; ++i2)
      for (int64_t i1 = 0; i1 < 5; ++i1)
        for (int64_t i0 = 0; i0 < 7; ++i0) {
          const int64_t i = ((q * 3 + i2) * 5 + i1) * 7 + i0;
          const Coords4 c = unravel4(i, 7, 5, 3);
          REQUIRE((c.i0 == i0 && c.i1 == i1 && c.i2 == i2 && c.i3 == q));
        }
  const Coords4 edge = unravel4(int64_t(0xffffffff), 1 << 16, 1 << 16, 1);  // the last 32-bit index
  CHECK((edge.i0 == 0xffff && edge.i1 == 0xffff && edge.i2 == 0 && edge.i3 == 0));
}
