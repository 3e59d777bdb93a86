// ClipPrefetcher: one background task per request, each splitting its clips over a few threads.
#include "clip_prefetch.h"

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>

#include "genrelab/common.h"
#include "genrelab/nvtx.h"

namespace genrelab {

ClipPrefetcher::ClipPrefetcher(std::vector<std::string> paths, DecodeOptions decode, int threads)
    : paths_(std::move(paths)), decode_(std::move(decode)),
      threads_(threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()))) {}

ClipPrefetcher::~ClipPrefetcher() { drop_pending(); }

void ClipPrefetcher::request(std::vector<int64_t> idx) {
  for (int64_t i : idx) GENRELAB_CHECK(i >= 0 && size_t(i) < paths_.size(), "clip ", i, " is not in the collection");
  queue_.push_back(std::async(std::launch::async, [this, idx = std::move(idx)] {
    NvtxRange range("decode");
    std::vector<std::vector<float>> out(idx.size());
    std::vector<std::string> errors(idx.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t k = next++; k < idx.size(); k = next++) {
        try {
          out[k] = decode_audio(paths_[size_t(idx[k])], decode_).samples;
        } catch (const AudioError& e) {
          errors[k] = std::string(e.what()) +
                      " (it decoded when training started, so it changed since: dataset.streaming reads every clip "
                      "again each epoch)";
        } catch (const std::exception& e) {
          errors[k] = paths_[size_t(idx[k])] + ": " + e.what();
        }
      }
    };
    const int n = int(std::min<size_t>(size_t(threads_), std::max<size_t>(idx.size(), 1)));
    std::vector<std::thread> pool;
    try {
      for (int t = 1; t < n; ++t) pool.emplace_back(work);
    } catch (const std::system_error&) {
      // No more threads (a process or cgroup limit): the ones started and this one do the work.
    }
    work();
    for (auto& t : pool) t.join();
    int64_t failed = 0;
    std::string first;
    for (const std::string& e : errors)
      if (!e.empty() && failed++ == 0) first = e;
    if (failed > 1) first += " (and " + std::to_string(failed - 1) + " more clips of the same step)";
    if (failed) throw RuntimeError(first);
    return out;
  }));
}

void ClipPrefetcher::drop_pending() {
  for (auto& f : queue_)
    if (f.valid()) f.wait();
  queue_.clear();
}

std::vector<std::vector<float>> ClipPrefetcher::take() {
  GENRELAB_CHECK(!queue_.empty(), "no clips were requested");
  auto f = std::move(queue_.front());
  queue_.pop_front();
  NvtxRange range("wait for decode");
  return f.get();
}

}  // namespace genrelab
