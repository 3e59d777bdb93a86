// Decoding: real GTZAN clips against their FLAC headers and soundfile, 44.1 kHz stereo input
// against librosa's soxr_hq resampling, OGG Vorbis and MP3 against their encoded tones and
// soundfile, tone and aliasing checks, cut/pad, the WAV writer, and every bad input with its
// documented reason.
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "codec_fixtures.h"
#include "genrelab/audio.h"
#include "genrelab/io.h"
#include "test_util.h"

using namespace genrelab;
namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

// The 50 clips of gtzan-mini (genres/<genre>/<genre>.000NN.flac), sorted.
std::vector<std::string> mini_clips(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& g : fs::directory_iterator(dir + "/genres"))
    for (const auto& f : fs::directory_iterator(g.path()))
      if (f.path().extension() == ".flac") out.push_back(f.path().string());
  std::sort(out.begin(), out.end());
  REQUIRE(out.size() == 50);
  return out;
}

// FLAC STREAMINFO read by hand (independent of libsndfile): rate, channels, bits, total samples.
struct FlacInfo {
  int rate, channels, bits;
  int64_t frames;
};
FlacInfo flac_streaminfo(const std::string& path) {
  const std::string b = read_file(path);
  REQUIRE(b.size() > 42);
  REQUIRE(b.compare(0, 4, "fLaC") == 0);
  REQUIRE((b[4] & 0x7f) == 0);  // first metadata block is STREAMINFO
  auto u = [&](size_t i) { return uint64_t(static_cast<unsigned char>(b[i])); };
  // STREAMINFO starts at byte 8; bytes 18..25 hold rate(20) channels-1(3) bits-1(5) total(36).
  const uint64_t v = (u(18) << 56) | (u(19) << 48) | (u(20) << 40) | (u(21) << 32) | (u(22) << 24) | (u(23) << 16) |
                     (u(24) << 8) | u(25);
  return {int(v >> 44), int((v >> 41) & 7) + 1, int((v >> 36) & 31) + 1, int64_t(v & 0xfffffffffull)};
}

std::vector<float> read_f32(const std::string& path) {
  const std::string b = read_file(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// Writes interleaved float frames with libsndfile. frames: (n, channels).
void write_sf(const std::string& path, const std::vector<float>& frames, int channels, int rate, int format) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  REQUIRE(f != nullptr);
  REQUIRE(sf_writef_float(f, frames.data(), sf_count_t(frames.size() / size_t(channels))) ==
          sf_count_t(frames.size() / size_t(channels)));
  sf_close(f);
}

// The synthetic 44.1 kHz stereo test signal of tools/golden/audio_reference.py. (11025, 2) interleaved.
std::vector<float> stereo_test_signal() {
  const int n = 11025;
  const double sr = 44100;
  std::vector<float> x(size_t(2 * n));
  for (int i = 0; i < n; ++i) {
    const double t = i / sr;
    const double l = 0.4 * std::sin(2 * kPi * 440 * t) + 0.2 * std::sin(2 * kPi * 3000 * t) +
                     0.1 * std::sin(2 * kPi * 9000 * t) + 0.1 * std::sin(2 * kPi * 15000 * t);
    const double r =
        0.3 * std::sin(2 * kPi * 1234.5 * t + 0.3) + 0.2 * std::sin(2 * kPi * (200 * t + 7800 / 0.25 / 2 * t * t));
    x[size_t(2 * i)] = float(l);
    x[size_t(2 * i + 1)] = float(r);
  }
  return x;
}

// Relative RMS error of `got` against `want` over [from, to).
double rel_rms(const std::vector<float>& got, const std::vector<float>& want, size_t from, size_t to) {
  double e = 0, s = 0;
  for (size_t i = from; i < to; ++i) {
    e += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    s += double(want[i]) * want[i];
  }
  return std::sqrt(e / s);
}

// `path` decoded and resampled to 22050 Hz by soundfile + soxr_hq, librosa's resampler
// (tools/golden/audio_reference.py resample, through a file in `tmp`).
std::vector<float> soxr_resampled(const std::string& py, const std::string& path, const fs::path& tmp) {
  const std::string out = (tmp / "ref.f32").string();
  REQUIRE(test::run_command("'" + py + "' '" + test::source_dir() + "/tools/golden/audio_reference.py' resample '" +
                            path + "' '" + out + "'") == 0);
  return read_f32(out);
}

// Amplitude of the `hz` component of x (sample rate sr) over [from, to), by projection.
double tone_amplitude(const std::vector<float>& x, double hz, double sr, size_t from, size_t to) {
  double c = 0, s = 0;
  for (size_t i = from; i < to; ++i) {
    c += x[i] * std::cos(2 * kPi * hz * double(i) / sr);
    s += x[i] * std::sin(2 * kPi * hz * double(i) / sr);
  }
  return 2 * std::hypot(c, s) / double(to - from);
}

// --- WAV byte builders for the bad-input table ---
void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s += char((v >> (8 * i)) & 0xff);
}
void put16(std::string& s, uint16_t v) {
  s += char(v & 0xff);
  s += char(v >> 8);
}
// A canonical 44-byte-header WAV; `declared` overrides the data chunk's byte count.
std::string wav_bytes(int channels, uint32_t rate, int bits, int format, const std::string& data,
                      int64_t declared = -1) {
  std::string fmt;
  const int block = std::max(channels, 1) * bits / 8;
  put16(fmt, uint16_t(format));
  put16(fmt, uint16_t(channels));
  put32(fmt, rate);
  put32(fmt, rate * uint32_t(block));
  put16(fmt, uint16_t(block));
  put16(fmt, uint16_t(bits));
  std::string body = "WAVEfmt ";
  put32(body, 16);
  body += fmt + "data";
  put32(body, uint32_t(declared >= 0 ? declared : int64_t(data.size())));
  body += data;
  std::string out = "RIFF";
  put32(out, uint32_t(body.size()));
  return out + body;
}
std::string pcm16_data(int n, int channels = 1) {
  std::string d;
  for (int i = 0; i < n * channels; ++i) put16(d, uint16_t(int16_t(10000 * std::sin(i * 0.05))));
  return d;
}
std::string write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}
std::string decode_error(const std::string& path) {
  try {
    decode_audio(path);
  } catch (const AudioError& e) {
    CHECK(e.path == path);
    CHECK(std::string(e.what()) == path + ": " + e.reason);
    return e.reason;
  }
  return "(decoded without error)";
}

}  // namespace

TEST_CASE("real clips decode at 22050 Hz with the FLAC header's frame count", "[audio]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  for (const std::string& path : mini_clips(dir)) {
    const FlacInfo fi = flac_streaminfo(path);
    INFO(path);
    REQUIRE(fi.rate == 22050);
    REQUIRE(fi.channels == 1);
    REQUIRE(fi.bits == 16);
    const Audio a = decode_audio(path);
    CHECK(a.sample_rate == 22050);
    CHECK(int64_t(a.samples.size()) == fi.frames);
    CHECK(a.source.frames == fi.frames);
    CHECK(a.source.format == "FLAC (Free Lossless Audio Codec) Signed 16 bit PCM");
    // 16-bit PCM scaled by 1/32768: every sample is an integer over 32768.
    size_t off_grid = 0;
    for (float v : a.samples) off_grid += std::fabs(double(v) * 32768.0 - std::round(double(v) * 32768.0)) > 1e-6;
    CHECK(off_grid == 0);
  }
}

TEST_CASE("real clips decode to the same floats as soundfile", "[audio][python]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  const std::string py = test::python_with_or_skip("soundfile");
  if (py.empty()) return;
  const auto tmp = test::temp_dir("audio-soundfile");
  std::vector<std::string> clips;
  const auto all = mini_clips(dir);
  for (size_t i = 0; i < all.size(); i += 5) clips.push_back(all[i]);  // one clip per genre
  std::string cmd = "'" + py + "' '" + test::source_dir() + "/tools/golden/audio_reference.py' decode";
  for (const auto& c : clips) cmd += " '" + c + "'";
  REQUIRE(test::run_command(cmd + " '" + tmp.string() + "'") == 0);
  for (size_t i = 0; i < clips.size(); ++i) {
    const auto want = read_f32((tmp / (std::to_string(i) + ".f32")).string());
    const Audio a = decode_audio(clips[i]);
    test::require_close(a.samples, want, 0.0, 0.0, clips[i]);  // bit-identical
  }
}

TEST_CASE("44.1 kHz stereo decodes to the soxr_hq resampling of the channel mean", "[audio]") {
  // Golden from tools/golden/audio_reference.py golden (librosa 0.11 soxr_hq).
  const auto tmp = test::temp_dir("audio-stereo");
  const std::string path = (tmp / "stereo44.wav").string();
  write_sf(path, stereo_test_signal(), 2, 44100, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
  const Audio a = decode_audio(path);
  CHECK(a.source.channels == 2);
  CHECK(a.source.sample_rate == 44100);
  CHECK(a.sample_rate == 22050);
  const auto want = read_f32(test::source_dir() + "/tests/data/golden/resample_44k_stereo_soxr.f32");
  REQUIRE(a.samples.size() == want.size());  // ceil(11025 / 2) = 5513
  // Interior (away from the 0.25 s clip's edges, where the two filters pad differently): measured
  // 5.6e-6 relative RMS error, allowed 3e-5. Whole clip, edges included: measured 4.9e-4, allowed 2e-3.
  const double interior = rel_rms(a.samples, want, 64, want.size() - 64);
  INFO("relative RMS error vs soxr_hq (interior): " << interior);
  CHECK(interior < 3e-5);
  CHECK(rel_rms(a.samples, want, 0, want.size()) < 2e-3);
}

TEST_CASE("a 44.1 kHz stereo real clip decodes like librosa soxr_hq", "[audio][python]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  const std::string py = test::python_with_or_skip("soundfile, soxr");
  if (py.empty()) return;
  // A real clip, upsampled by 2 with our resampler into two different channels.
  const auto tmp = test::temp_dir("audio-stereo-real");
  const Audio mono = decode_audio(dir + "/genres/rock/rock.00001.flac", {22050, int64_t(5 * 22050), {}});
  const Audio up = [&] {
    const std::string m = (tmp / "mono.wav").string();
    write_wav(m, mono.samples, 22050);
    return decode_audio(m, {44100, {}, {}});
  }();
  std::vector<float> st(up.samples.size() * 2);
  for (size_t i = 0; i < up.samples.size(); ++i) {
    st[2 * i] = up.samples[i];
    st[2 * i + 1] = 0.5f * up.samples[i] + 0.1f * up.samples[(i + 7) % up.samples.size()];
  }
  const std::string path = (tmp / "stereo44.wav").string();
  write_sf(path, st, 2, 44100, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
  const auto want = soxr_resampled(py, path, tmp);
  const Audio a = decode_audio(path);
  REQUIRE(a.samples.size() == want.size());
  // Measured 1.0e-5 relative RMS error on music (4e-5 on a whole 30 s clip); allowed 5e-5.
  const double err = rel_rms(a.samples, want, 64, want.size() - 64);
  INFO("relative RMS error vs soxr_hq: " << err);
  CHECK(err < 5e-5);
}

TEST_CASE("resampling keeps a tone's amplitude and frequency and removes aliases", "[audio]") {
  const auto tmp = test::temp_dir("audio-tones");
  const int n = 44100;  // 1 s at 44.1 kHz
  // Passband tones keep amplitude within 0.1 % and match the ideal 22050 Hz sine sample by sample.
  for (double hz : {100.0, 1000.0, 5000.0, 9500.0}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = float(0.5 * std::sin(2 * kPi * hz * i / 44100.0));
    const std::string p = (tmp / "tone.wav").string();
    write_wav(p, x, 44100);
    const Audio a = decode_audio(p);
    REQUIRE(a.samples.size() == 22050);
    INFO(hz << " Hz");
    CHECK(tone_amplitude(a.samples, hz, 22050, 1000, 21050) == Approx(0.5).epsilon(1e-3));
    std::vector<float> ideal(22050);
    for (int j = 0; j < 22050; ++j) ideal[size_t(j)] = float(0.5 * std::sin(2 * kPi * hz * j / 22050.0));
    const std::vector<float> got(a.samples.begin() + 1000, a.samples.end() - 1000),
        want(ideal.begin() + 1000, ideal.end() - 1000);
    test::require_close(got, want, 2e-3, 0.0, "tone " + std::to_string(hz));
  }
  // Tones above the new Nyquist (11025 Hz) are suppressed by at least 60 dB (their aliases would
  // land at 22050 - f).
  for (double hz : {12000.0, 15000.0, 20000.0}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = float(0.5 * std::sin(2 * kPi * hz * i / 44100.0));
    const std::string p = (tmp / "alias.wav").string();
    write_wav(p, x, 44100);
    const Audio a = decode_audio(p);
    double rms = 0;
    for (size_t i = 1000; i < 21050; ++i) rms += double(a.samples[i]) * a.samples[i];
    rms = std::sqrt(rms / 20050);
    INFO(hz << " Hz: residual RMS " << rms << " (input RMS 0.354)");
    CHECK(rms < 0.354 * 1e-3);
    CHECK(tone_amplitude(a.samples, 22050 - hz, 22050, 1000, 21050) < 0.5e-3);
  }
}

TEST_CASE("OGG Vorbis and MP3 decode to their encoded tones", "[audio]") {
  const auto tmp = test::temp_dir("audio-lossy");
  // 0.9 s from 0.05 s in: 19845 samples at 22050 Hz hold whole periods of both tones (396 of
  // 440 Hz, 594 of 660 Hz), so each projection sees its own tone alone.
  const size_t from = 1102, to = from + 19845;
  for (const test::LossyFormat& fmt : test::kLossyFormats) {
    INFO(fmt.name);
    const std::string p = (tmp / (std::string("tones") + fmt.ext)).string();
    test::write_tone_pair(p, fmt.format);
    const AudioInfo info = probe_audio(p);
    CHECK(info.format == fmt.name);
    CHECK(info.sample_rate == 44100);
    CHECK(info.channels == 2);
    // Exactly the frames written: Vorbis's last granule position holds the length, and LAME's
    // Info tag holds its encoder delay (576 + 529 decoder) and the padding to whole 1152-frame
    // frames, which libmpg123's gapless mode (libsndfile turns it on) trims; without the tag an
    // MP3 would decode 1105 frames early and up to 1151 long.
    CHECK(info.frames == test::kTonePairFrames);
    const Audio a = decode_audio(p);
    REQUIRE(a.samples.size() == 22050);
    std::vector<float> ideal(22050);  // the channel mean of what was encoded
    for (size_t i = 0; i < ideal.size(); ++i) ideal[i] = float(test::tone_pair_mono(int64_t(i), 22050));
    // Amplitudes: 0.25 and 0.125 (half of 0.5 and 0.25); measured +0.7 % for Vorbis (at
    // libsndfile's default quality), +0.06 % and +0.02 % for MP3; allowed 2 %.
    const double a440 = tone_amplitude(a.samples, 440, 22050, from, to);
    const double a660 = tone_amplitude(a.samples, 660, 22050, from, to);
    INFO("amplitudes " << a440 << " at 440 Hz, " << a660 << " at 660 Hz");
    CHECK(a440 == Approx(0.25).epsilon(0.02));
    CHECK(a660 == Approx(0.125).epsilon(0.02));
    // Sample by sample, in time: measured 0.9 % (Vorbis) and 0.5 % (MP3) relative RMS error;
    // allowed 2 %. A shift by one sample would leave 12 % (2 pi 440 / 22050 of the 440 Hz tone).
    const double err = rel_rms(a.samples, ideal, 0, ideal.size());
    INFO("relative RMS error against the encoded tones: " << err);
    CHECK(err < 0.02);
    // At the file's own rate, unresampled: 44100 samples, the same error bound.
    const Audio native = decode_audio(p, {0, {}, {}});
    REQUIRE(native.samples.size() == 44100);
    std::vector<float> ideal44(44100);
    for (size_t i = 0; i < ideal44.size(); ++i) ideal44[i] = float(test::tone_pair_mono(int64_t(i), 44100));
    CHECK(rel_rms(native.samples, ideal44, 0, ideal44.size()) < 0.02);
  }
}

TEST_CASE("OGG Vorbis and MP3 decode like soundfile and soxr_hq", "[audio][python]") {
  const std::string py = test::python_with_or_skip("soundfile, soxr");
  if (py.empty()) return;
  // soundfile carries its own libsndfile, libvorbis and libmpg123: an independent decode.
  const auto tmp = test::temp_dir("audio-lossy-soundfile");
  const std::string ref = "'" + py + "' '" + test::source_dir() + "/tools/golden/audio_reference.py' ";
  for (const test::LossyFormat& fmt : test::kLossyFormats) {
    INFO(fmt.name);
    const std::string p = (tmp / (std::string("tones") + fmt.ext)).string();
    test::write_tone_pair(p, fmt.format);
    // The channel mean at 44.1 kHz, as soundfile decodes it: measured bit-identical for MP3 and
    // within 1.2e-7 for Vorbis (float rounding); allowed 1e-6.
    REQUIRE(test::run_command(ref + "decode '" + p + "' '" + tmp.string() + "'") == 0);
    const auto mean = read_f32((tmp / "0.f32").string());
    const Audio native = decode_audio(p, {0, {}, {}});
    test::require_close(native.samples, mean, 1e-6, 0.0, std::string(fmt.name) + " at 44.1 kHz");
    // Resampled to 22050 Hz: soundfile + soxr_hq against our decoder + resampler. Measured 3.5e-6
    // (Vorbis) and 4.5e-6 (MP3) relative RMS error away from the edges, allowed 2e-5; 1.5e-5 and
    // 1.8e-5 over the whole clip, allowed 1e-4.
    const auto want = soxr_resampled(py, p, tmp);
    const Audio a = decode_audio(p);
    REQUIRE(a.samples.size() == want.size());
    const double interior = rel_rms(a.samples, want, 64, want.size() - 64);
    INFO("relative RMS error vs soundfile + soxr_hq (interior): " << interior);
    CHECK(interior < 2e-5);
    CHECK(rel_rms(a.samples, want, 0, want.size()) < 1e-4);
  }
}

TEST_CASE("decode cuts and zero-pads to a requested length", "[audio]") {
  const auto tmp = test::temp_dir("audio-length");
  std::vector<float> x(30000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(double(i) * 0.01)) * 0.5f;
  const std::string p = (tmp / "x.wav").string();
  write_wav(p, x, 22050);
  DecodeOptions o;
  o.length = 617400;
  const Audio padded = decode_audio(p, o);
  REQUIRE(padded.samples.size() == 617400);
  CHECK(std::equal(x.begin(), x.end(), padded.samples.begin()));
  CHECK(std::all_of(padded.samples.begin() + 30000, padded.samples.end(), [](float v) { return v == 0.0f; }));
  o.length = 1000;
  const Audio cut = decode_audio(p, o);
  CHECK(cut.samples == std::vector<float>(x.begin(), x.begin() + 1000));
  // Resampled and cut: the same samples as resampling the whole file, then cutting.
  write_wav(p, x, 44100);
  const Audio whole = decode_audio(p);
  o.length = 5000;
  const Audio part = decode_audio(p, o);
  CHECK(part.samples == std::vector<float>(whole.samples.begin(), whole.samples.begin() + 5000));
  // sample_rate 0 keeps the file's rate.
  o = {};
  o.sample_rate = 0;
  const Audio native = decode_audio(p, o);
  CHECK(native.sample_rate == 44100);
  CHECK(native.samples == x);
}

TEST_CASE("decode cuts a real clip to the baseline's 617400 samples", "[audio]") {
  GENRELAB_REQUIRE_TEST_AUDIO(dir);
  const std::string p = dir + "/genres/jazz/jazz.00002.flac";
  const Audio whole = decode_audio(p);
  DecodeOptions o;
  o.length = 617400;
  const Audio cut = decode_audio(p, o);
  REQUIRE(cut.samples.size() == 617400);
  CHECK(cut.samples == std::vector<float>(whole.samples.begin(), whole.samples.begin() + 617400));
}

TEST_CASE("WAV writer round trips pcm16 and float32", "[audio]") {
  const auto tmp = test::temp_dir("audio-wav");
  const std::vector<float> x = {0.0f, 0.25f, -0.5f, 0.999f, -1.0f, 1.5f, -2.25f, 1e-5f};
  const std::string pf = (tmp / "f.wav").string(), pi = (tmp / "i.wav").string();
  write_wav(pf, x, 16000, WavEncoding::float32);
  const Audio f = decode_audio(pf, {16000, {}, {}});
  CHECK(f.samples == x);  // float keeps values beyond ±1 exactly
  CHECK(f.source.format == "WAV (Microsoft) 32 bit float");
  write_wav(pi, x, 16000, WavEncoding::pcm16);
  const Audio i = decode_audio(pi, {16000, {}, {}});
  CHECK(i.source.format == "WAV (Microsoft) Signed 16 bit PCM");
  // pcm16: v → round(v·32767) clipped to [-32768, 32767], read back as /32768.
  std::vector<float> want;
  for (float v : x) want.push_back(float(std::clamp(std::lrint(double(v) * 32767.0), -32768L, 32767L) / 32768.0));
  test::require_close(i.samples, want, 1.0 / 32768 + 1e-7, 0.0, "pcm16 round trip");
  CHECK(fs::exists(pf));
  CHECK_FALSE(fs::exists(pf + ".tmp"));
  CHECK_THROWS_AS(write_wav((tmp / "no-such-folder" / "x.wav").string(), x, 16000), RuntimeError);
}

TEST_CASE("bad audio files give their documented reasons", "[audio]") {
  const auto tmp = test::temp_dir("audio-bad");
  const std::string good = wav_bytes(1, 22050, 16, 1, pcm16_data(1000));
  struct Case {
    std::string name, bytes, reason;
  };
  std::string nan_data;
  for (int i = 0; i < 100; ++i) {
    float v = i == 50 ? NAN : 0.1f;
    nan_data.append(reinterpret_cast<const char*>(&v), 4);
  }
  const std::vector<Case> cases = {
      {"truncated-in-data.wav", good.substr(0, 44 + 800),
       "truncated: the header declares 1000 frames but the file holds only 400"},
      {"truncated-in-header.wav", good.substr(0, 30), "not a readable audio file ("},
      {"empty.wav", "", "is empty (0 bytes)"},
      {"text.wav", std::string(200, 'x') + "\nthis is a text file\n",
       "not a readable audio file (Format not recognised.)"},
      {"header-lies.wav", wav_bytes(1, 22050, 16, 1, pcm16_data(1000), 4000),
       "truncated: the header declares 2000 frames but the file holds only 1000"},
      {"zero-channels.wav", wav_bytes(0, 22050, 16, 1, std::string(2000, '\0')), "the header declares 0 channels"},
      {"absurd-rate.wav", wav_bytes(1, 2000000000u, 16, 1, pcm16_data(1000)),
       "the header declares an absurd sample rate (2000000000 Hz"},
      // Found by fuzzing: 814 frames at 3 Hz took 12 s to resample to 22 050 Hz.
      {"3hz-rate.wav", wav_bytes(1, 3u, 16, 1, pcm16_data(814)), "the header declares an absurd sample rate (3 Hz"},
      {"nan.wav", wav_bytes(1, 22050, 32, 3, nan_data), "contains a NaN or infinite sample (at frame 50)"},
      {"header-only.wav", wav_bytes(1, 22050, 16, 1, ""),
       "holds no audio samples (header only): as unusable as an empty file"},
  };
  for (const auto& c : cases) {
    const std::string p = write_bytes(tmp / c.name, c.bytes);
    INFO(c.name);
    const std::string reason = decode_error(p);
    CHECK(reason.compare(0, c.reason.size(), c.reason) == 0);
    // The in-memory decoder gives the same reason (except for the file-system checks).
    if (!c.bytes.empty()) {
      try {
        decode_audio_memory(c.bytes.data(), c.bytes.size(), c.name);
        FAIL("decoded from memory without error");
      } catch (const AudioError& e) {
        CHECK(e.reason.compare(0, c.reason.size(), c.reason) == 0);
      }
    }
  }
  CHECK(decode_error((tmp / "missing.wav").string()) == "no such file");
  fs::create_directories(tmp / "folder.wav");
  CHECK(decode_error((tmp / "folder.wav").string()) == "is a folder, not an audio file");
  // The good bytes decode: 1000 frames.
  CHECK(decode_audio(write_bytes(tmp / "good.wav", good), {22050, {}, {}}).samples.size() == 1000);
}

TEST_CASE("a truncated FLAC and AU are reported as truncated", "[audio]") {
  const auto tmp = test::temp_dir("audio-trunc");
  std::vector<float> x(22050);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(0.3 * std::sin(double(i) * 0.07) + 0.1 * std::sin(double(i) * 0.013));
  const std::string au = (tmp / "tone.au").string(), flac = (tmp / "tone.flac").string();
  write_sf(au, x, 1, 22050, SF_FORMAT_AU | SF_FORMAT_PCM_16);
  write_sf(flac, x, 1, 22050, SF_FORMAT_FLAC | SF_FORMAT_PCM_16);
  const std::string au_bytes = read_file(au), flac_bytes = read_file(flac);
  write_bytes(tmp / "cut.au", au_bytes.substr(0, 20000));
  write_bytes(tmp / "cut.flac", flac_bytes.substr(0, flac_bytes.size() / 2));
  // AU: big-endian data offset at byte 4; 16-bit mono frames after it.
  const uint32_t offset = uint32_t(static_cast<unsigned char>(au_bytes[4])) << 24 |
                          uint32_t(static_cast<unsigned char>(au_bytes[5])) << 16 |
                          uint32_t(static_cast<unsigned char>(au_bytes[6])) << 8 |
                          uint32_t(static_cast<unsigned char>(au_bytes[7]));
  CHECK(decode_error((tmp / "cut.au").string()) ==
        "truncated: the header declares 22050 frames but the file holds only " + std::to_string((20000 - offset) / 2));
  CHECK(decode_error((tmp / "cut.flac").string()).rfind("truncated", 0) == 0);
  CHECK(decode_audio(au).samples.size() == 22050);
}

TEST_CASE("a header declaring absurdly many frames is truncated not a huge allocation", "[audio]") {
  // A 1 s FLAC whose STREAMINFO claims 2^36 - 1 samples (256 GiB as float32): the decoder must
  // read what is there and report the shortfall, never size its output from the header.
  const auto tmp = test::temp_dir("audio-huge-header");
  std::vector<float> x(22050);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(0.3 * std::sin(double(i) * 0.07));
  const std::string flac = (tmp / "tone.flac").string();
  write_sf(flac, x, 1, 22050, SF_FORMAT_FLAC | SF_FORMAT_PCM_16);
  std::string bytes = read_file(flac);
  REQUIRE(bytes.compare(0, 4, "fLaC") == 0);
  // STREAMINFO starts at byte 8; its total-samples field is the low 36 bits of bytes 18..25.
  bytes[21] = char(uint8_t(bytes[21]) | 0x0f);
  for (int i = 22; i < 26; ++i) bytes[size_t(i)] = char(0xff);
  const std::string lied = write_bytes(tmp / "lies.flac", bytes);
  CHECK(probe_audio(lied).frames == (int64_t(1) << 36) - 1);
  const std::string reason = decode_error(lied);
  CHECK(reason.rfind("truncated", 0) == 0);
  CHECK_THAT(reason, Catch::Contains("68719476735"));
  try {
    decode_audio_memory(bytes.data(), bytes.size(), "lies.flac");
    FAIL("decoded from memory without error");
  } catch (const AudioError& e) {
    CHECK(e.reason.rfind("truncated", 0) == 0);
  }
}

TEST_CASE("random bytes named .mp3 or .au or .snd are not readable audio files", "[audio]") {
  // libsndfile reports bytes named .mp3 that libmpg123 cannot open as "File does not exist or is
  // not a regular file", and opens bytes named .au or .snd that lack the ".snd" header as raw
  // 8 kHz mu-law (which then read as "truncated: the header declares N frames ..."): both mislead.
  const auto tmp = test::temp_dir("audio-random-names");
  std::string bytes(4096, '\0');
  uint32_t x = 12345;
  for (char& c : bytes) {
    x = x * 1664525u + 1013904223u;  // LCG; bytes = its top 8 bits
    c = char(x >> 24);
  }
  CHECK(decode_error(write_bytes(tmp / "noise.mp3", bytes)) == "not a readable audio file");
  CHECK(decode_error(write_bytes(tmp / "noise.au", bytes)) == "not a readable audio file (no audio header)");
  CHECK(decode_error(write_bytes(tmp / "noise.snd", bytes)) == "not a readable audio file (no audio header)");
  CHECK_THROWS_WITH(probe_audio((tmp / "noise.au").string()), Catch::Contains("(no audio header)"));
  CHECK(decode_error(write_bytes(tmp / "noise.wav", bytes)) == "not a readable audio file (Format not recognised.)");
}
