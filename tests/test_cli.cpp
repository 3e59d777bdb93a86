// The command line's conventions: exit codes (0 ok, 2 usage/config), errors on stderr naming
// the problem, data only on stdout.
#include <fstream>
#include <iterator>

#include "genrelab/config.h"
#include "test_util.h"

using namespace genrelab;

namespace {
struct Result {
  int rc;
  std::string out, err;
};
Result run(const std::string& args) {
  const auto dir = test::temp_dir("cli");
  const std::string err_file = (dir / "stderr").string();
  Result r;
  r.rc = test::run_command(test::genrelab_binary() + " " + args + " 2>" + err_file, &r.out);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}
}  // namespace

TEST_CASE("cli unknown command exits 2 with a suggestion", "[cli]") {
  const Result r = run("trian");
  CHECK(r.rc == 2);
  CHECK(r.out.empty());
  CHECK(r.err.find("unknown command 'trian'") != std::string::npos);
}

TEST_CASE("cli unknown option exits 2 naming the option", "[cli]") {
  const Result r = run("config show --sett features.n_mels=3");
  CHECK(r.rc == 2);
  CHECK(r.err.find("--sett") != std::string::npos);
  CHECK(r.err.find("did you mean --set") != std::string::npos);
  // An empty value is not taken for the option's absence (train would fall back to output.dir).
  for (const std::string& line : {std::string("train x.json --out ''"), std::string("train x.json --out=")}) {
    const Result e = run(line);
    INFO(line);
    CHECK(e.rc == 2);
    CHECK(e.err.find("--out needs a value, got an empty one") != std::string::npos);
  }
}

TEST_CASE("cli help exits 0 on stdout", "[cli]") {
  const Result r = run("--help");
  CHECK(r.rc == 0);
  CHECK(r.out.find("commands:") != std::string::npos);
  const Result c = run("config show --help");
  CHECK(c.rc == 0);
  CHECK(c.out.find("usage: genrelab config show") != std::string::npos);
  // A group word's help lists its subcommands; the word alone is a usage error.
  const Result g = run("data --help");
  CHECK(g.rc == 0);
  CHECK(g.out.find("genrelab data check") != std::string::npos);
  CHECK(g.out.find("genrelab data synth") != std::string::npos);
  const Result alone = run("data");
  CHECK(alone.rc == 2);
  CHECK(alone.out.empty());
  CHECK(alone.err.find("genrelab data check") != std::string::npos);
}

TEST_CASE("cli integer options refuse trailing text, fractions and values out of range", "[cli]") {
  const std::string src = test::source_dir();
  // Each is refused before any work starts (no run, no file read), naming the option.
  for (const auto& [line, option] : std::vector<std::pair<std::string, std::string>>{
           {"train " + src + "/experiments/quickstart.json --device cpu --profile 2x", "--profile"},
           {"train " + src + "/experiments/quickstart.json --device cpu --profile 0", "--profile"},
           {"model summary " + src + "/experiments/seed-baseline.json --frames 12abc", "--frames"},
           {"augment /nonexistent.wav --noise 0.1 --seed 1.7 --out /nonexistent/x.wav", "--seed"},
           {"augment /nonexistent.wav --noise 0.1 --seed -1 --out /nonexistent/x.wav", "--seed"},
           {"predict /nonexistent-run a.wav --top 3x", "--top"},
           {"predict /nonexistent-run a.wav --top 0", "--top"},
           {"bench --what features --device cpu --clips 5x", "--clips"},
           {"bench --what augment --device cpu --iterations 0", "--iterations"},
           {"data synth /nonexistent/out --threads 0", "--threads"}}) {
    const Result r = run(line);
    INFO(line << "\n" << r.err);
    CHECK(r.rc == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find(option + " expects an integer") != std::string::npos);
  }
}

TEST_CASE("cli config show prints only the resolved JSON", "[cli]") {
  const Result r = run("config show --set features.n_mels=64 --set train.epochs=3");
  REQUIRE(r.rc == 0);
  const json doc = json::parse(r.out);  // stdout is exactly one JSON document
  CHECK(doc["features"]["n_mels"] == 64);
  CHECK(doc["train"]["epochs"] == 3);
  CHECK(doc["features"]["n_fft"] == 1024);
}

TEST_CASE("cli config errors exit 2 and name the key", "[cli]") {
  const Result r = run("config show --set features.n_mels=lots");
  CHECK(r.rc == 2);
  CHECK(r.out.empty());
  CHECK(r.err.find("features.n_mels") != std::string::npos);
  const Result m = run("config show /nonexistent/exp.json");
  CHECK(m.rc == 2);
  CHECK(m.err.find("/nonexistent/exp.json") != std::string::npos);
  const std::string folder = test::source_dir() + "/experiments";
  const Result f = run("config show " + folder);
  CHECK(f.rc == 2);
  CHECK(f.err.find(folder + ": is a folder, not an experiment file") != std::string::npos);
}

TEST_CASE("experiments README documents every schema key", "[cli][docs]") {
  // experiments/README.md embeds `genrelab config keys --markdown`; regenerate it with
  // tools/update-docs.sh when the schema changes.
  const Result r = run("config keys --markdown");
  REQUIRE(r.rc == 0);
  std::ifstream in(test::source_dir() + "/experiments/README.md");
  const std::string readme((std::istreambuf_iterator<char>(in)), {});
  CHECK(readme.find(r.out) != std::string::npos);
}

TEST_CASE("config keys --markdown gives every key one row of four cells", "[cli][docs]") {
  // A '|' inside a cell ("one of auto | gtzan-kaggle | ...") must be escaped, or markdown splits
  // the row into more cells and shifts the default and the meaning out of their columns.
  const Result r = run("config keys --markdown");
  REQUIRE(r.rc == 0);
  std::vector<std::string> rows;
  for (size_t start = 0, end; (end = r.out.find('\n', start)) != std::string::npos; start = end + 1)
    rows.push_back(r.out.substr(start, end - start));
  const auto& schema = config_schema();
  REQUIRE(rows.size() == schema.size() + 2);
  CHECK(rows[0] == "| key | type | default | meaning |");
  for (size_t i = 0; i < schema.size(); ++i) {
    const KeySpec& k = schema[i];
    // Cells between unescaped '|', with "\|" read back as '|'.
    std::vector<std::string> cells{""};
    const std::string& row = rows[i + 2];
    for (size_t c = 0; c < row.size(); ++c) {
      if (row[c] == '\\' && c + 1 < row.size() && row[c + 1] == '|')
        cells.back() += row[++c];
      else if (row[c] == '|')
        cells.emplace_back();
      else
        cells.back() += row[c];
    }
    INFO(row);
    REQUIRE(cells.size() == 6);  // "", the four cells, ""
    CHECK(cells[0].empty());
    CHECK(cells[5].empty());
    CHECK(cells[1] == " `" + k.path + "` ");
    CHECK(cells[2] == " " + describe_type(k) + " ");
    if (k.type != KeyType::layers) CHECK(cells[3] == " `" + k.default_value.dump() + "` ");
    CHECK(cells[4] == " " + k.doc + " ");
  }
}

TEST_CASE("cli info reports the backends", "[cli]") {
  const Result r = run("info");
  CHECK(r.rc == 0);
  CHECK(r.out.find("libsndfile") != std::string::npos);
  CHECK(r.out.find("CUDA backend:") != std::string::npos);
  // Whether NCCL is built in, and the GPUs or why none is usable, on every build (README.md,
  // docs/scale-out.md); without a GPU or without CUDA, the "GPUs:" line gives the reason.
  CHECK(r.out.find("\nNCCL: ") != std::string::npos);
  if (!query_cuda().usable) CHECK(r.out.find("\nGPUs: none usable (") != std::string::npos);
}
