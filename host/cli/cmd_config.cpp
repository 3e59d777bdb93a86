// `genrelab config keys` (the schema as a table) and `genrelab config show EXPERIMENT.json`
// (the resolved experiment after extends and --set, as JSON on stdout).
#include <iostream>

#include "genrelab/cli.h"
#include "genrelab/config.h"

namespace genrelab::cli {
namespace {

std::string default_text(const KeySpec& k) {
  if (k.type == KeyType::layers) return "the baseline CNN (17 layers)";
  return k.default_value.dump();
}

// A markdown table cell: a '|' in the text (as in "one of auto | gtzan") would end the cell, even
// inside backticks, so it is written escaped.
std::string markdown_cell(const std::string& text) {
  std::string cell;
  for (char c : text) cell += c == '|' ? std::string("\\|") : std::string(1, c);
  return cell;
}

int run_keys(const Args& args) {
  if (!args.positional().empty()) args.usage_error("takes no arguments");
  const bool markdown = args.has("--markdown");
  if (markdown) {
    std::cout << "| key | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& k : config_schema())
      std::cout << "| `" << markdown_cell(k.path) << "` | " << markdown_cell(describe_type(k)) << " | `"
                << markdown_cell(default_text(k)) << "` | " << markdown_cell(k.doc) << " |\n";
    return 0;
  }
  for (const auto& k : config_schema())
    std::cout << k.path << "\t" << describe_type(k) << "\t" << default_text(k) << "\t" << k.doc << "\n";
  return 0;
}

int run_show(const Args& args) {
  if (args.positional().size() > 1) args.usage_error("expects at most one EXPERIMENT.json");
  const std::string file = args.positional().empty() ? "" : args.positional()[0];
  const Config c = Config::load_or_defaults(file, args.all("--set"));
  std::cout << c.resolved().dump(2) << "\n";
  return 0;
}

CommandRegistrar keys{{"config keys", "every experiment key with its type, default and meaning",
                       "usage: genrelab config keys [--markdown]\n\nLists the experiment schema (tab-separated, or a markdown table).\n",
                       {{"--markdown", false, false, "print a markdown table"}}, run_keys}};
CommandRegistrar show{{"config show", "the resolved experiment (after extends and --set) as JSON",
                       "usage: genrelab config show [EXPERIMENT.json] [--set key=value ...]\n\n"
                       "Prints the fully resolved experiment on stdout; without a file, the defaults.\n",
                       {set_option()}, run_show}};

}  // namespace
}  // namespace genrelab::cli
