// Reads {"cases": [{"op": ..., ...}, ...]} as JSON on stdin and prints
// {"results": [...]} with the C++ statistics, one result per case, for
// scipy_compare.py. Ops:
//   ks {a, b}                 -> {statistic, p_value, method}
//   ks_exact {n1, n2, h}      -> {p_value}
//   kolmogorov {x: [...]}     -> {values: [...]}
//   gammaq {a: [...], x: [...]} -> {values: [...]}
//   wasserstein {u, v}        -> {value}
//   chisquare {observed, expected} -> {statistic, p_value}
//   chi2_contingency {a, b}   -> {statistic, p_value, dof}
//   jensenshannon {p, q}      -> {value}
//   psi {reference, current}  -> {value}
//   classification {labels, scores, threshold} -> {accuracy, ..., roc_auc}
//   regression {targets, predictions} -> {mae, rmse}
#include <algorithm>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "core/json.h"
#include "monitoring/stats.h"

namespace stats = kervan::monitoring::stats;
using kervan::core::Json;

namespace {

std::vector<double> Numbers(const Json& j) {
  return j.get<std::vector<double>>();
}

Json Opt(const std::optional<double>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json Run(const Json& c) {
  const std::string op = c.at("op").get<std::string>();
  if (op == "ks") {
    auto r = stats::KsTest(Numbers(c.at("a")), Numbers(c.at("b")));
    return {{"statistic", r.statistic},
            {"p_value", r.p_value},
            {"method", stats::KsMethodName(r.method)}};
  }
  if (op == "ks_exact") {
    return {{"p_value", stats::KsExactPValue(c.at("n1").get<int64_t>(), c.at("n2").get<int64_t>(),
                                             c.at("h").get<int64_t>())}};
  }
  if (op == "kolmogorov") {
    Json out = Json::array();
    for (double x : Numbers(c.at("x")))
      out.push_back(stats::KolmogorovSf(x));
    return {{"values", out}};
  }
  if (op == "gammaq") {
    auto a = Numbers(c.at("a"));
    auto x = Numbers(c.at("x"));
    Json out = Json::array();
    for (size_t i = 0; i < a.size(); ++i)
      out.push_back(stats::GammaQ(a[i], x[i]));
    return {{"values", out}};
  }
  if (op == "wasserstein") {
    auto u = Numbers(c.at("u"));
    auto v = Numbers(c.at("v"));
    std::sort(u.begin(), u.end());
    std::sort(v.begin(), v.end());
    return {{"value", stats::WassersteinSorted(u, v)}};
  }
  if (op == "chisquare") {
    auto r = stats::ChiSquare(Numbers(c.at("observed")), Numbers(c.at("expected")));
    return {{"statistic", r.statistic}, {"p_value", r.p_value}};
  }
  if (op == "chi2_contingency") {
    auto r = stats::ChiSquareHomogeneity(Numbers(c.at("a")), Numbers(c.at("b")));
    return {{"statistic", r.statistic}, {"p_value", r.p_value}, {"dof", r.dof}};
  }
  if (op == "jensenshannon") {
    return {{"value", stats::JensenShannon(Numbers(c.at("p")), Numbers(c.at("q")))}};
  }
  if (op == "psi") {
    return {{"value", stats::Psi(Numbers(c.at("reference")), Numbers(c.at("current")))}};
  }
  if (op == "classification") {
    auto labels = c.at("labels").get<std::vector<int>>();
    auto r =
        stats::Classification(labels, Numbers(c.at("scores")), c.at("threshold").get<double>());
    if (!r)
      return {{"error", r.error().message}};
    return {{"accuracy", Opt(r->accuracy)},
            {"precision", Opt(r->precision)},
            {"recall", Opt(r->recall)},
            {"f1", Opt(r->f1)},
            {"roc_auc", Opt(r->roc_auc)}};
  }
  if (op == "regression") {
    auto r = stats::Regression(Numbers(c.at("targets")), Numbers(c.at("predictions")));
    if (!r)
      return {{"error", r.error().message}};
    return {{"mae", Opt(r->mae)}, {"rmse", Opt(r->rmse)}};
  }
  return {{"error", "unknown op " + op}};
}

}  // namespace

int main() {
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  Json request = Json::parse(text, nullptr, false);
  if (request.is_discarded() || !request.contains("cases")) {
    std::cerr << "stats_tool: expected {\"cases\": [...]} on stdin\n";
    return 2;
  }
  Json results = Json::array();
  for (const Json& c : request["cases"])
    results.push_back(Run(c));
  std::cout << Json{{"results", results}}.dump() << "\n";
  return 0;
}
