// `genrelab` entry point: finds the subcommand (longest matching name, e.g. "data check"),
// parses its options and maps exceptions onto exit codes (2 config/usage, 1 runtime).
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/dist.h"

using namespace genrelab;

namespace {

void print_overview(std::ostream& os) {
  os << "genrelab " << GENRELAB_VERSION << " — music genre classification research framework\n\n"
     << "usage: genrelab COMMAND [ARGS...]   (genrelab COMMAND --help for details)\n\ncommands:\n";
  for (const auto& c : cli::commands()) {
    std::string name = c.name;
    name.resize(std::max<size_t>(name.size(), 16), ' ');
    os << "  " << name << "  " << c.summary << "\n";
  }
}

int run(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty() || words[0] == "--help" || words[0] == "-h" || words[0] == "help") {
    print_overview(words.empty() ? std::cerr : std::cout);
    return words.empty() ? 2 : 0;
  }
  if (words[0] == "--version") {
    std::cout << "genrelab " << GENRELAB_VERSION << "\n";
    return 0;
  }
  const cli::Command* best = nullptr;
  size_t best_words = 0;
  for (const auto& c : cli::commands()) {
    std::vector<std::string> parts;
    size_t start = 0, sp;
    while ((sp = c.name.find(' ', start)) != std::string::npos) { parts.push_back(c.name.substr(start, sp - start)); start = sp + 1; }
    parts.push_back(c.name.substr(start));
    if (parts.size() > words.size()) continue;
    bool match = true;
    for (size_t i = 0; i < parts.size(); ++i) match = match && parts[i] == words[i];
    if (match && parts.size() > best_words) { best = &c; best_words = parts.size(); }
  }
  if (!best) {
    std::vector<std::string> names;
    for (const auto& c : cli::commands()) names.push_back(c.name);
    // A group word alone ("genrelab data") lists its subcommands: on stdout when asked for with
    // --help, else as a usage error.
    std::string sub;
    for (const auto& n : names)
      if (n.compare(0, words[0].size() + 1, words[0] + " ") == 0) sub += "  genrelab " + n + "\n";
    if (!sub.empty() && words.size() > 1 && (words[1] == "--help" || words[1] == "-h")) {
      std::cout << "'" << words[0] << "' has subcommands (each takes --help):\n" << sub;
      return 0;
    }
    if (!sub.empty()) throw ConfigError("'" + words[0] + "' needs a subcommand:\n" + sub);
    const std::string guess = closest_match(words[0], names);
    throw ConfigError("unknown command '" + words[0] + "'" + (guess.empty() ? "" : " (did you mean '" + guess + "'?)") +
                      "; run 'genrelab --help' for the list");
  }
  const std::vector<std::string> rest(words.begin() + long(best_words), words.end());
  const cli::Args args(rest, best->options, best->name);
  if (args.help()) {
    std::cout << best->usage;
    if (!best->options.empty()) {
      std::cout << "\noptions:\n";
      for (const auto& o : best->options) {
        std::string left = o.name + (o.takes_value ? " VALUE" : "");
        left.resize(std::max<size_t>(left.size(), 22), ' ');
        std::cout << "  " << left << "  " << o.help << "\n";
      }
    }
    return 0;
  }
  return best->run(args);
}

int run_catching(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const ReportedError& e) {
    return e.code;
  } catch (const ConfigError& e) {
    std::cerr << "genrelab: error: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "genrelab: error: out of host memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "genrelab: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int code = run_catching(argc, argv);
  dist::shutdown(code);  // a data-parallel rank: finalize MPI, or abort the job when this rank failed alone
  return code;
}
