// SVG plots: accuracy/loss curves, confusion heat map, bar chart (see plots.h).
#include "genrelab/plots.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace genrelab {

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v, int digits = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string header(int w, int h) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
         std::to_string(w) + "\" height=\"" + std::to_string(h) + "\" viewBox=\"0 0 " + std::to_string(w) + " " +
         std::to_string(h) + "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
}

struct Series {
  std::string name, colour;
  std::vector<double> x, y;
};

// One line-chart panel at (x0, y0) of size w × h.
void panel(std::ostringstream& os, double x0, double y0, double w, double h, const std::string& title,
           const std::vector<Series>& series, bool unit_range) {
  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]); xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]); ymax = std::max(ymax, s.y[i]);
    }
  if (xmin > xmax) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }
  if (unit_range) { ymin = 0; ymax = 1; }
  if (ymax - ymin < 1e-12) { ymax += 0.5; ymin -= 0.5; }
  if (!unit_range) ymin = std::min(ymin, 0.0);
  if (xmax == xmin) { xmax += 1; }
  const double L = x0 + 50, R = x0 + w - 10, T = y0 + 42, B = y0 + h - 40;
  auto px = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (R - L); };
  auto py = [&](double y) { return B - (y - ymin) / (ymax - ymin) * (B - T); };
  os << "<text x=\"" << (L + R) / 2 << "\" y=\"" << y0 + 18 << "\" text-anchor=\"middle\" font-weight=\"bold\">" << esc(title) << "</text>\n";
  os << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << R - L << "\" height=\"" << B - T << "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double yv = ymin + (ymax - ymin) * i / 4.0;
    os << "<line x1=\"" << L << "\" x2=\"" << R << "\" y1=\"" << py(yv) << "\" y2=\"" << py(yv) << "\" stroke=\"#eee\"/>"
       << "<text x=\"" << L - 5 << "\" y=\"" << py(yv) + 4 << "\" text-anchor=\"end\">" << num(yv) << "</text>\n";
  }
  // Epoch ticks: whole numbers, at most about six.
  const double xstep = std::max(1.0, std::ceil((xmax - xmin) / 6.0));
  for (double xv = xmin; xv <= xmax + 1e-9; xv += xstep)
    os << "<text x=\"" << px(xv) << "\" y=\"" << B + 15 << "\" text-anchor=\"middle\">" << num(xv) << "</text>\n";
  os << "<text x=\"" << (L + R) / 2 << "\" y=\"" << B + 32 << "\" text-anchor=\"middle\">epoch</text>\n";
  double lx = R;
  for (auto it = series.rbegin(); it != series.rend(); ++it) {
    if (it->x.empty()) continue;
    os << "<text x=\"" << lx << "\" y=\"" << T - 6 << "\" text-anchor=\"end\" fill=\"" << it->colour << "\">" << esc(it->name) << "</text>\n";
    lx -= 8.0 * double(it->name.size()) + 14;
  }
  for (const auto& s : series) {
    if (s.x.empty()) continue;
    os << "<polyline fill=\"none\" stroke=\"" << s.colour << "\" stroke-width=\"2\" points=\"";
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i])) os << px(s.x[i]) << "," << py(s.y[i]) << " ";
    os << "\"/>\n";
  }
}

// White → blue colour scale.
std::string heat(double t) {
  t = std::clamp(t, 0.0, 1.0);
  const int r = int(255 - t * (255 - 31)), g = int(255 - t * (255 - 78)), b = int(255 - t * (255 - 160));
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
  return buf;
}

}  // namespace

std::string curves_svg(const std::vector<EpochMetrics>& metrics, const std::string& title) {
  Series tr{"train", "#1f77b4", {}, {}}, te{"test", "#d62728", {}, {}}, va{"valid", "#2ca02c", {}, {}};
  Series trl{"train", "#1f77b4", {}, {}}, tel{"test", "#d62728", {}, {}}, val{"valid", "#2ca02c", {}, {}};
  for (const auto& m : metrics) {
    tr.x.push_back(m.epoch); tr.y.push_back(m.train_accuracy);
    te.x.push_back(m.epoch); te.y.push_back(m.test_accuracy);
    trl.x.push_back(m.epoch); trl.y.push_back(m.train_loss);
    tel.x.push_back(m.epoch); tel.y.push_back(m.test_loss);
    if (m.valid_accuracy) { va.x.push_back(m.epoch); va.y.push_back(*m.valid_accuracy); }
    if (m.valid_loss) { val.x.push_back(m.epoch); val.y.push_back(*m.valid_loss); }
  }
  std::ostringstream os;
  os << header(920, 380);
  os << "<text x=\"460\" y=\"16\" text-anchor=\"middle\" font-size=\"14\">" << esc(title) << "</text>\n";
  panel(os, 0, 20, 460, 360, "accuracy", {tr, te, va}, true);
  panel(os, 460, 20, 460, 360, "loss", {trl, tel, val}, false);
  os << "</svg>\n";
  return os.str();
}

std::string confusion_svg(const ConfusionMatrix& counts, const std::vector<std::string>& classes,
                          const std::string& title) {
  const size_t n = counts.size();
  const int cell = 44, left = 110, top = 60;
  const int w = left + int(n) * cell + 20, h = top + int(n) * cell + 110;
  std::ostringstream os;
  os << header(w, h);
  os << "<text x=\"" << w / 2 << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" << esc(title) << "</text>\n";
  os << "<text x=\"" << left + int(n) * cell / 2 << "\" y=\"42\" text-anchor=\"middle\">predicted</text>\n";
  for (size_t r = 0; r < n; ++r) {
    int64_t total = 0;
    for (int64_t c : counts[r]) total += c;
    const std::string name = r < classes.size() ? classes[r] : std::to_string(r);
    os << "<text x=\"" << left - 6 << "\" y=\"" << top + int(r) * cell + cell / 2 + 4 << "\" text-anchor=\"end\">" << esc(name) << "</text>\n";
    for (size_t c = 0; c < counts[r].size(); ++c) {
      const double t = total > 0 ? double(counts[r][c]) / double(total) : 0.0;
      const int x = left + int(c) * cell, y = top + int(r) * cell;
      os << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell << "\" height=\"" << cell << "\" fill=\"" << heat(t)
         << "\" stroke=\"#ccc\"/><text x=\"" << x + cell / 2 << "\" y=\"" << y + cell / 2 + 4
         << "\" text-anchor=\"middle\" fill=\"" << (t > 0.5 ? "white" : "black") << "\">" << counts[r][c] << "</text>\n";
    }
  }
  for (size_t c = 0; c < n; ++c) {
    const std::string name = c < classes.size() ? classes[c] : std::to_string(c);
    const int x = left + int(c) * cell + cell / 2, y = top + int(n) * cell + 8;
    os << "<text x=\"" << x << "\" y=\"" << y << "\" text-anchor=\"end\" transform=\"rotate(-60 " << x << " " << y << ")\">"
       << esc(name) << "</text>\n";
  }
  os << "<text x=\"14\" y=\"" << top + int(n) * cell / 2 << "\" transform=\"rotate(-90 14 " << top + int(n) * cell / 2
     << ")\" text-anchor=\"middle\">true</text>\n";
  os << "</svg>\n";
  return os.str();
}

std::string bar_chart_svg(const std::vector<std::string>& labels, const std::vector<double>& values,
                          const std::string& title) {
  const int bar = 22, left = 260, width = 420, top = 40;
  const int h = top + int(labels.size()) * (bar + 6) + 20, w = left + width + 80;
  std::ostringstream os;
  os << header(w, h);
  os << "<text x=\"" << w / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << esc(title) << "</text>\n";
  for (size_t i = 0; i < labels.size(); ++i) {
    const double v = i < values.size() && std::isfinite(values[i]) ? std::clamp(values[i], 0.0, 1.0) : 0.0;
    const int y = top + int(i) * (bar + 6);
    os << "<text x=\"" << left - 6 << "\" y=\"" << y + bar / 2 + 4 << "\" text-anchor=\"end\">" << esc(labels[i]) << "</text>"
       << "<rect x=\"" << left << "\" y=\"" << y << "\" width=\"" << v * width << "\" height=\"" << bar << "\" fill=\"#1f77b4\"/>"
       << "<text x=\"" << left + v * width + 4 << "\" y=\"" << y + bar / 2 + 4 << "\">" << num(100.0 * v, 3) << " %</text>\n";
  }
  os << "</svg>\n";
  return os.str();
}

}  // namespace genrelab
