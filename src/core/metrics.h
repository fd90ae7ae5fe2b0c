// Prometheus metrics: counters, gauges and histograms with labels, rendered in
// the text exposition format (version 0.0.4). The process-wide registry is the
// one piece of global mutable state Kervan allows. All types are thread-safe;
// references returned by the registry live as long as the registry.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kervan::core {

using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void Inc(double by = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double by);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v);
  // Cumulative counts per bound, then +Inf; sum; count.
  std::vector<uint64_t> cumulative_counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_->size() + 1
  std::atomic<double> sum_{0};
};

// A metric name with a fixed set of label names; children are created on
// first use of a label-value tuple.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)),
        help_(std::move(help)),
        labels_(std::move(label_names)),
        make_(std::move(make)) {}

  // REQUIRES: values.size() == number of label names.
  T& With(const LabelValues& values) {
    std::lock_guard lock(mu_);
    auto& slot = children_[values];
    if (!slot)
      slot = make_();
    return *slot;
  }

  template <typename Fn>
  void ForEach(Fn&& fn) const {
    std::lock_guard lock(mu_);
    for (const auto& [values, child] : children_)
      fn(values, *child);
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return labels_; }

 private:
  std::string name_, help_;
  std::vector<std::string> labels_;
  std::function<std::unique_ptr<T>()> make_;
  mutable std::mutex mu_;
  std::map<LabelValues, std::unique_ptr<T>> children_;
};

class MetricsRegistry {
 public:
  // Registering a name twice returns the first family (label names must match).
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds,
                                  std::vector<std::string> label_names = {});

  // Runs before each Render(): lets a component refresh gauges it derives.
  void AddCollector(std::function<void()> collect);

  // Text exposition format 0.0.4, families in name order.
  std::string Render();

 private:
  struct HistogramFamily {
    std::vector<double> bounds;
    std::unique_ptr<Family<Histogram>> family;
  };
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family<Counter>>> counters_;
  std::map<std::string, std::unique_ptr<Family<Gauge>>> gauges_;
  std::map<std::string, HistogramFamily> histograms_;
  std::vector<std::function<void()>> collectors_;
};

MetricsRegistry& GlobalMetrics();

// Default latency buckets in seconds (100 µs .. 10 s).
std::vector<double> LatencyBuckets();

}  // namespace kervan::core
