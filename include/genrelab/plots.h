// SVG plots written into run directories and reports: accuracy/loss curves per epoch, the
// confusion matrix as a heat map with counts, and a bar chart. Plain SVG 1.1, no scripts.
#pragma once

#include <string>
#include <vector>

#include "genrelab/run.h"

namespace genrelab {

// Two panels: accuracy (train, test, valid) and loss per epoch.
std::string curves_svg(const std::vector<EpochMetrics>& metrics, const std::string& title);

// Heat map (row-normalised colour, raw counts printed), true class down, predicted across.
std::string confusion_svg(const ConfusionMatrix& counts, const std::vector<std::string>& classes,
                          const std::string& title);

// Horizontal bars with value labels, values in [0, 1] drawn as percentages.
std::string bar_chart_svg(const std::vector<std::string>& labels, const std::vector<double>& values,
                          const std::string& title);

}  // namespace genrelab
