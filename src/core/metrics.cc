#include "core/metrics.h"

#include <cmath>

#include <fmt/format.h>

namespace kervan::core {
namespace {

void AtomicAdd(std::atomic<double>& a, double by) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + by, std::memory_order_relaxed)) {
  }
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v))
    return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

std::string LabelSet(const std::vector<std::string>& names, const LabelValues& values,
                     const std::string& extra = {}) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!out.empty())
      out += ',';
    out += names[i] + "=\"" + EscapeLabel(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!out.empty())
      out += ',';
    out += extra;
  }
  return out.empty() ? std::string() : "{" + out + "}";
}

void Header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Counter::Inc(double by) {
  AtomicAdd(value_, by);
}
void Gauge::Add(double by) {
  AtomicAdd(value_, by);
}

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i)
    counts_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_->size() && v > (*bounds_)[i])
    ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  std::vector<uint64_t> out(bounds_->size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    acc += counts_[i].load(std::memory_order_relaxed);
    out[i] = acc;
  }
  return out;
}

Family<Counter>& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                             std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  auto& slot = counters_[name];
  if (!slot) {
    slot = std::make_unique<Family<Counter>>(name, help, std::move(label_names),
                                             [] { return std::make_unique<Counter>(); });
  }
  return *slot;
}

Family<Gauge>& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                         std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  auto& slot = gauges_[name];
  if (!slot) {
    slot = std::make_unique<Family<Gauge>>(name, help, std::move(label_names),
                                           [] { return std::make_unique<Gauge>(); });
  }
  return *slot;
}

Family<Histogram>& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                                 std::vector<double> bounds,
                                                 std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  auto& slot = histograms_[name];
  if (!slot.family) {
    slot.bounds = std::move(bounds);
    const std::vector<double>* b = &slot.bounds;
    slot.family = std::make_unique<Family<Histogram>>(
        name, help, std::move(label_names), [b] { return std::make_unique<Histogram>(b); });
  }
  return *slot.family;
}

void MetricsRegistry::AddCollector(std::function<void()> collect) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collect));
}

std::string MetricsRegistry::Render() {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  for (auto& c : collectors)
    c();

  std::lock_guard lock(mu_);
  std::map<std::string, std::string> blocks;  // name -> text, for a stable order
  for (auto& [name, fam] : counters_) {
    std::string out;
    Header(out, name, fam->help(), "counter");
    fam->ForEach([&](const LabelValues& v, const Counter& c) {
      out += name + LabelSet(fam->label_names(), v) + " " + FormatValue(c.value()) + "\n";
    });
    blocks[name] = std::move(out);
  }
  for (auto& [name, fam] : gauges_) {
    std::string out;
    Header(out, name, fam->help(), "gauge");
    fam->ForEach([&](const LabelValues& v, const Gauge& g) {
      out += name + LabelSet(fam->label_names(), v) + " " + FormatValue(g.value()) + "\n";
    });
    blocks[name] = std::move(out);
  }
  for (auto& [name, hf] : histograms_) {
    std::string out;
    auto& fam = *hf.family;
    Header(out, name, fam.help(), "histogram");
    fam.ForEach([&](const LabelValues& v, const Histogram& h) {
      auto counts = h.cumulative_counts();
      for (size_t i = 0; i < counts.size(); ++i) {
        std::string le = i < hf.bounds.size() ? FormatValue(hf.bounds[i]) : "+Inf";
        out += name + "_bucket" + LabelSet(fam.label_names(), v, "le=\"" + le + "\"") + " " +
               std::to_string(counts[i]) + "\n";
      }
      out += name + "_sum" + LabelSet(fam.label_names(), v) + " " + FormatValue(h.sum()) + "\n";
      out += name + "_count" + LabelSet(fam.label_names(), v) + " " +
             std::to_string(counts.back()) + "\n";
    });
    blocks[name] = std::move(out);
  }
  std::string text;
  for (auto& [_, block] : blocks)
    text += block;
  return text;
}

MetricsRegistry& GlobalMetrics() {
  static MetricsRegistry* registry = new MetricsRegistry();  // never destroyed: used at exit
  return *registry;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

}  // namespace kervan::core
