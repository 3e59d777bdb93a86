// libsndfile decoding to float mono at a requested rate, and WAV writing.
#include "genrelab/audio.h"

#include <sndfile.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "genrelab/io.h"
#include "genrelab/ops/resample.h"

namespace genrelab {

namespace {

struct SndfileCloser {
  void operator()(SNDFILE* f) const { if (f) sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

std::string format_name(int format) {
  SF_FORMAT_INFO major{}, sub{};
  major.format = format & SF_FORMAT_TYPEMASK;
  sub.format = format & SF_FORMAT_SUBMASK;
  std::string s = sf_command(nullptr, SFC_GET_FORMAT_INFO, &major, sizeof major) == 0 && major.name ? major.name : "?";
  if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &sub, sizeof sub) == 0 && sub.name) s += std::string(" ") + sub.name;
  return s;
}

// Memory source for sf_open_virtual.
struct MemorySource {
  const unsigned char* data;
  sf_count_t size, pos;
};
sf_count_t mem_length(void* user) { return static_cast<MemorySource*>(user)->size; }
sf_count_t mem_seek(sf_count_t offset, int whence, void* user) {
  auto* m = static_cast<MemorySource*>(user);
  sf_count_t p = whence == SEEK_SET ? offset : whence == SEEK_CUR ? m->pos + offset : m->size + offset;
  if (p < 0) p = 0;
  if (p > m->size) p = m->size;
  m->pos = p;
  return p;
}
sf_count_t mem_read(void* ptr, sf_count_t count, void* user) {
  auto* m = static_cast<MemorySource*>(user);
  const sf_count_t n = std::max<sf_count_t>(0, std::min(count, m->size - m->pos));
  if (n > 0) std::memcpy(ptr, m->data + m->pos, size_t(n));
  m->pos += n;
  return n;
}
sf_count_t mem_write(const void*, sf_count_t, void*) { return 0; }
sf_count_t mem_tell(void* user) { return static_cast<MemorySource*>(user)->pos; }

// libsndfile's virtual I/O into a growing byte string: a file encoded in memory, then written
// atomically.
struct MemorySink {
  std::string bytes;
  sf_count_t pos = 0;
};
sf_count_t sink_length(void* user) { return sf_count_t(static_cast<MemorySink*>(user)->bytes.size()); }
// Seeks and reads go through the MemorySource functions over the bytes written so far.
template <typename Op>
sf_count_t as_source(void* user, Op op) {
  auto* m = static_cast<MemorySink*>(user);
  MemorySource view{reinterpret_cast<const unsigned char*>(m->bytes.data()), sf_count_t(m->bytes.size()), m->pos};
  const sf_count_t r = op(&view);
  m->pos = view.pos;
  return r;
}
sf_count_t sink_seek(sf_count_t offset, int whence, void* user) {
  return as_source(user, [&](MemorySource* v) { return mem_seek(offset, whence, v); });
}
sf_count_t sink_read(void* ptr, sf_count_t count, void* user) {
  return as_source(user, [&](MemorySource* v) { return mem_read(ptr, count, v); });
}
sf_count_t sink_write(const void* ptr, sf_count_t count, void* user) {
  auto* m = static_cast<MemorySink*>(user);
  if (count <= 0) return 0;
  if (size_t(m->pos + count) > m->bytes.size()) m->bytes.resize(size_t(m->pos + count));
  std::memcpy(m->bytes.data() + m->pos, ptr, size_t(count));
  m->pos += count;
  return count;
}
sf_count_t sink_tell(void* user) { return static_cast<MemorySink*>(user)->pos; }

// Bytes per frame of an uncompressed format, or 0 when it is compressed / unknown.
int64_t bytes_per_frame(const SF_INFO& info) {
  int b = 0;
  switch (info.format & SF_FORMAT_SUBMASK) {
    case SF_FORMAT_PCM_S8: case SF_FORMAT_PCM_U8: case SF_FORMAT_ULAW: case SF_FORMAT_ALAW: b = 1; break;
    case SF_FORMAT_PCM_16: b = 2; break;
    case SF_FORMAT_PCM_24: b = 3; break;
    case SF_FORMAT_PCM_32: case SF_FORMAT_FLOAT: b = 4; break;
    case SF_FORMAT_DOUBLE: b = 8; break;
    default: return 0;
  }
  return int64_t(b) * info.channels;
}

// libsndfile quietly clamps a WAV/AU data chunk that claims more bytes than the file holds and
// only notes it in its log ("data : DECLARED (should be ACTUAL)"). A file whose data stops short
// of what its header declares is truncated (or its header lies); either way it is not trusted.
// Returns {declared, actual} data bytes when that happened.
std::optional<std::pair<int64_t, int64_t>> short_data_chunk(SNDFILE* file) {
  std::string log(16384, '\0');
  sf_command(file, SFC_GET_LOG_INFO, log.data(), int(log.size()));
  log.resize(std::strlen(log.c_str()));
  size_t pos = 0;
  while (pos < log.size()) {
    size_t end = log.find('\n', pos);
    if (end == std::string::npos) end = log.size();
    std::string line = log.substr(pos, end - pos);
    pos = end + 1;
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    std::string head = line.substr(first, 4);
    for (char& c : head) c = char(std::tolower(static_cast<unsigned char>(c)));
    const size_t colon = line.find(':'), should = line.find("(should be");
    if (head != "data" || colon == std::string::npos || should == std::string::npos) continue;
    const long long declared = std::atoll(line.c_str() + colon + 1);
    const long long actual = std::atoll(line.c_str() + should + 10);
    // 0 and 0xFFFFFFFF are the "length unknown" conventions of streamed WAV writers.
    if (declared > actual && declared != 0xFFFFFFFFLL && declared != -1) return std::make_pair(int64_t(declared), int64_t(actual));
  }
  return std::nullopt;
}

// libsndfile reports open failures through one global error slot, so opening is serialised to
// keep each thread's reason its own (opening reads only the header; decoding runs in parallel).
std::mutex& open_mutex() {
  static std::mutex m;
  return m;
}

std::string open_failure_reason() {
  const std::string why = sf_strerror(nullptr);
  if (why.find("Channel count is zero") != std::string::npos) return "the header declares 0 channels";
  // When bytes that look like MPEG (an .mp3 name, or a frame sync by chance) are no stream
  // libmpg123 can open, libsndfile 1.2 says "File does not exist or is not a regular file (possibly
  // a pipe?)": untrue here (both are checked before opening), so that detail is left out.
  if (why.find("does not exist") != std::string::npos) return "not a readable audio file";
  return "not a readable audio file (" + why + ")";
}

Audio decode_open(SndfilePtr file, const SF_INFO& info, const std::string& path, const DecodeOptions& opt) {
  if (info.channels <= 0) throw AudioError(path, "the header declares " + std::to_string(info.channels) + " channels");
  if (info.channels > 256) throw AudioError(path, "the header declares an absurd channel count (" + std::to_string(info.channels) + ")");
  // Below 1 kHz no real recording exists, and resampling a few such frames to 22 050 Hz would
  // spend seconds making millions of samples out of noise (found by fuzzing: a 3 Hz header).
  if (info.samplerate < 1000 || info.samplerate > 1'000'000)
    throw AudioError(path, "the header declares an absurd sample rate (" + std::to_string(info.samplerate) +
                               " Hz; audio from 1 kHz to 1 MHz is read)");
  if (const auto mismatch = short_data_chunk(file.get())) {
    const int64_t bpf = bytes_per_frame(info);
    if (bpf == 0)
      throw AudioError(path, "truncated: the header declares " + std::to_string(mismatch->first) +
                                 " data bytes but the file holds only " + std::to_string(mismatch->second));
    if (mismatch->first / bpf > mismatch->second / bpf)
      throw AudioError(path, "truncated: the header declares " + std::to_string(mismatch->first / bpf) +
                                 " frames but the file holds only " + std::to_string(mismatch->second / bpf));
  }
  if (info.frames <= 0) throw AudioError(path, "holds no audio samples (header only): as unusable as an empty file");
  const int out_rate = opt.sample_rate > 0 ? opt.sample_rate : info.samplerate;

  Audio out;
  out.source.frames = info.frames;
  out.source.sample_rate = info.samplerate;
  out.source.channels = info.channels;
  out.source.format = format_name(info.format);

  // Frames needed from the file: all, or enough for the requested output length.
  int64_t want = info.frames;
  if (opt.max_input_frames) want = std::min(want, *opt.max_input_frames);
  if (opt.length) {
    const double ratio = double(info.samplerate) / out_rate;
    // Extra input for the resampling filter's reach when rates differ.
    const int64_t need = int64_t(std::ceil(double(*opt.length) * ratio)) + (info.samplerate != out_rate ? 256 : 0);
    want = std::min(want, need);
  }
  const int ch = info.channels;
  // The frame count is the header's word: the output grows with what actually decodes (block by
  // block), so a header declaring 10^12 frames in a few bytes allocates nothing unbounded.
  constexpr sf_count_t kBlock = 65536;
  std::vector<float> mono;  // mono: (got,)
  mono.reserve(size_t(std::min<int64_t>(want, kBlock)));
  std::vector<float> block(ch == 1 ? 0 : size_t(kBlock) * ch);  // block: (kBlock, channels) interleaved
  int64_t got = 0;
  sf_command(file.get(), SFC_SET_SCALE_FLOAT_INT_READ, nullptr, SF_FALSE);
  while (got < want) {
    const sf_count_t frames = std::min<sf_count_t>(kBlock, want - got);
    if (ch == 1) {  // mono: straight into the output
      mono.resize(size_t(got + frames));
      const sf_count_t n = sf_readf_float(file.get(), mono.data() + got, frames);
      mono.resize(size_t(got + std::max<sf_count_t>(n, 0)));
      if (n <= 0) break;
      got += n;
      continue;
    }
    const sf_count_t n = sf_readf_float(file.get(), block.data(), frames);
    if (n <= 0) break;
    mono.resize(size_t(got + n));
    for (sf_count_t i = 0; i < n; ++i) {
      float acc = 0;
      for (int c = 0; c < ch; ++c) acc += block[size_t(i * ch + c)];
      mono[size_t(got + i)] = acc / float(ch);
    }
    got += n;
  }
  const int err = sf_error(file.get());
  if (got == 0) throw AudioError(path, err ? std::string("cannot decode: ") + sf_strerror(file.get()) : "holds no decodable audio samples");
  if (got < want) {
    if (err) throw AudioError(path, std::string("truncated or corrupt after ") + std::to_string(got) + " of " +
                                        std::to_string(info.frames) + " frames: " + sf_strerror(file.get()));
    throw AudioError(path, "truncated: the header declares " + std::to_string(info.frames) +
                               " frames but the file holds only " + std::to_string(got));
  }
  for (size_t i = 0; i < mono.size(); ++i) {
    if (!std::isfinite(mono[i]))
      throw AudioError(path, "contains a NaN or infinite sample (at frame " + std::to_string(i) + ")");
    // Float files may go beyond full scale (1), even to integer ranges (2^31 for 32-bit data), but
    // not this far: the power spectrum of such a clip overflows float32 and its features would be
    // infinite.
    if (std::abs(mono[i]) > kMaxSampleMagnitude) {
      char what[128];
      std::snprintf(what, sizeof what, "has a sample of magnitude %.3g at frame %zu, beyond 1e10 (full scale is 1)",
                    double(std::abs(mono[i])), i);
      throw AudioError(path, std::string(what) + ": corrupt or mis-scaled audio");
    }
  }

  if (info.samplerate != out_rate) mono = resample(mono, info.samplerate, out_rate);
  if (opt.length) mono.resize(size_t(*opt.length), 0.0f);
  out.samples = std::move(mono);
  out.sample_rate = out_rate;
  return out;
}

// Opens `path` for reading (its header only), or says why it cannot be.
SndfilePtr open_for_reading(const std::string& path, SF_INFO& info) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);  // through links
  if (st.type() == fs::file_type::not_found) throw AudioError(path, "no such file");
  if (ec) throw AudioError(path, ec.message());  // e.g. a loop of links
  if (fs::is_directory(st)) throw AudioError(path, "is a folder, not an audio file");
  // A pipe or a device would block the read (or never end): only files are decoded.
  if (!fs::is_regular_file(st)) throw AudioError(path, "is not a regular file (a pipe, socket or device)");
  if (fs::file_size(path, ec) == 0) throw AudioError(path, "is empty (0 bytes)");
  std::lock_guard<std::mutex> lock(open_mutex());
  SndfilePtr f(sf_open(path.c_str(), SFM_READ, &info));
  if (!f) throw AudioError(path, open_failure_reason());
  // A file without a recognised header that is named .au or .snd is opened by libsndfile as raw
  // 8 kHz mu-law, from the name alone: random bytes would "decode" as noise.
  if ((info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_RAW)
    throw AudioError(path, "not a readable audio file (no audio header)");
  return f;
}

}  // namespace

AudioInfo probe_audio(const std::string& path) {
  SF_INFO info{};
  const SndfilePtr f = open_for_reading(path, info);
  AudioInfo a;
  a.frames = info.frames;
  a.sample_rate = info.samplerate;
  a.channels = info.channels;
  a.format = format_name(info.format);
  return a;
}

Audio decode_audio(const std::string& path, const DecodeOptions& options) {
  SF_INFO info{};
  SndfilePtr f = open_for_reading(path, info);
  return decode_open(std::move(f), info, path, options);
}

Audio decode_audio_memory(const void* data, size_t size, const std::string& name, const DecodeOptions& options) {
  if (size == 0) throw AudioError(name, "is empty (0 bytes)");
  MemorySource src{static_cast<const unsigned char*>(data), sf_count_t(size), 0};
  SF_VIRTUAL_IO io{mem_length, mem_seek, mem_read, mem_write, mem_tell};
  SF_INFO info{};
  std::unique_lock<std::mutex> lock(open_mutex());
  SndfilePtr f(sf_open_virtual(&io, SFM_READ, &info, &src));
  if (!f) throw AudioError(name, open_failure_reason());
  lock.unlock();
  return decode_open(std::move(f), info, name, options);
}

void write_wav(const std::string& path, const std::vector<float>& samples, int sample_rate, WavEncoding encoding) {
  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | (encoding == WavEncoding::float32 ? SF_FORMAT_FLOAT : SF_FORMAT_PCM_16);
  // Encoded in memory, then written as any result is (write_file_atomic: PATH.tmp, fsync, rename;
  // a full disk or a folder at PATH named, no PATH.tmp left behind).
  MemorySink sink;
  SF_VIRTUAL_IO io{sink_length, sink_seek, sink_read, sink_write, sink_tell};
  std::unique_lock<std::mutex> lock(open_mutex());  // sf_strerror(nullptr) is the last open's
  SndfilePtr f(sf_open_virtual(&io, SFM_WRITE, &info, &sink));
  if (!f) throw RuntimeError("cannot encode " + path + " as WAV: " + sf_strerror(nullptr));
  lock.unlock();
  if (encoding == WavEncoding::pcm16) sf_command(f.get(), SFC_SET_CLIPPING, nullptr, SF_TRUE);
  const sf_count_t n = sf_writef_float(f.get(), samples.data(), sf_count_t(samples.size()));
  if (n != sf_count_t(samples.size())) throw RuntimeError("cannot encode " + path + " as WAV: " + sf_strerror(f.get()));
  f.reset();  // writes the header's final sizes
  write_file_atomic(path, sink.bytes);
}

const std::vector<std::string>& audio_extensions() {
  static const std::vector<std::string> ext = {".wav", ".au", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".snd"};
  return ext;
}

}  // namespace genrelab
