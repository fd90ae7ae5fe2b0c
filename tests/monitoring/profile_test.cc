// CSV columns and reference profiles.
#include "monitoring/profile.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "monitoring/stats.h"

namespace kervan::monitoring {
namespace {

std::string ErrorOf(std::string_view csv, const CsvOptions& options = {}) {
  auto r = ColumnsFromCsv(csv, options);
  return r ? "<ok>" : r.error().message;
}

TEST(Csv, ParsesQuotesEscapesAndCrlf) {
  auto cols = ColumnsFromCsv(
      "age,city,note,code\r\n"
      "31,\"Izmir\",\"said \"\"hi\"\", left\",7\r\n"
      ",Ankara,\"two\nlines\",8\r\n"
      "2.5e1,,x,9\r\n");
  ASSERT_TRUE(cols) << cols.error().message;
  ASSERT_EQ(cols->size(), 4u);
  const Column& age = (*cols)[0];
  ASSERT_TRUE(age.is_numeric());
  EXPECT_EQ(age.numeric()[0], 31);
  EXPECT_TRUE(std::isnan(age.numeric()[1]));  // empty = missing
  EXPECT_EQ(age.numeric()[2], 25);
  const Column& city = (*cols)[1];
  ASSERT_FALSE(city.is_numeric());
  EXPECT_EQ(city.categorical()[0], "Izmir");
  EXPECT_FALSE(city.categorical()[2]);
  EXPECT_EQ((*cols)[2].categorical()[0], "said \"hi\", left");
  EXPECT_EQ((*cols)[2].categorical()[1], "two\nlines");
  EXPECT_TRUE((*cols)[3].is_numeric());
}

TEST(Csv, TypesAndOptions) {
  const char* csv = "id,zip,score,label\n1,06100,0.5,1\n2,35000,x,0\n3,34000,,1\n";
  auto cols = ColumnsFromCsv(csv, {.categorical = {"zip"}, .skip = {"label", "id"}});
  ASSERT_TRUE(cols) << cols.error().message;
  ASSERT_EQ(cols->size(), 2u);
  EXPECT_EQ((*cols)[0].name, "zip");
  ASSERT_FALSE((*cols)[0].is_numeric());
  EXPECT_EQ((*cols)[0].categorical()[0], "06100");  // text kept as written
  EXPECT_FALSE((*cols)[1].is_numeric());            // "x" makes score categorical
  // Not a number: spaces, a leading '+', inf and nan.
  for (const char* cell : {" 1", "+1", "inf", "nan", "1e999", "0x10"}) {
    auto c = ColumnsFromCsv(std::string("v\n1\n") + cell + "\n");
    ASSERT_TRUE(c);
    EXPECT_FALSE((*c)[0].is_numeric()) << cell;
  }
  // No final line end, blank lines skipped, an all-empty column is numeric.
  auto c = ColumnsFromCsv("a,b\n1,\n\n2,");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)[0].numeric().size(), 2u);
  EXPECT_TRUE((*c)[1].is_numeric());
}

TEST(Csv, ErrorsNameTheRowAndColumn) {
  EXPECT_EQ(ErrorOf(""), "csv: no header row");
  EXPECT_EQ(ErrorOf("a,b\n1,2\n3\n"), "csv row 3: expected 2 fields, got 1");
  EXPECT_EQ(ErrorOf("a,b\n1,\"2\n"), "csv row 2, field 2: unterminated quoted field");
  EXPECT_EQ(ErrorOf("a,b\n1,2\"x\n"), "csv row 2, field 2: a quote inside an unquoted field");
  EXPECT_EQ(ErrorOf("a,b\n\"1\"x,2\n"), "csv row 2, field 1: characters after the closing quote");
  EXPECT_EQ(ErrorOf("a,a\n1,2\n"), "csv row 1: column \"a\" appears twice");
  EXPECT_EQ(ErrorOf("a,,b\n1,2,3\n"), "csv row 1: column 2 has an empty name");
  EXPECT_EQ(ErrorOf("a\n1\n", {.skip = {"label"}}),
            "field \"skip\": column \"label\" is not in the csv header");
  auto r = ColumnsFromCsv("a\n1\n", {.categorical = {"b"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "categorical");
  EXPECT_EQ(r.error().code, core::ErrorCode::kInvalidArgument);
}

TEST(Profile, NumericSummary) {
  Column c{"x", Column::Numeric{4, 1, NAN, 3, 2, INFINITY}};
  auto p = BuildProfile(std::span<const Column>(&c, 1));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->rows, 6);
  const FeatureProfile& f = p->features[0];
  EXPECT_EQ(f.type, FeatureType::kNumeric);
  EXPECT_EQ(f.count, 4);
  EXPECT_EQ(f.missing, 2);  // NaN and inf
  EXPECT_EQ(f.min, 1);
  EXPECT_EQ(f.max, 4);
  EXPECT_DOUBLE_EQ(f.mean, 2.5);
  EXPECT_DOUBLE_EQ(f.std, std::sqrt(1.25));  // population
  ASSERT_EQ(f.quantiles.size(), 7u);
  EXPECT_DOUBLE_EQ(f.quantiles[3], 2.5);   // p50
  EXPECT_DOUBLE_EQ(f.quantiles[0], 1.03);  // p1: numpy.quantile([1,2,3,4], .01)
  EXPECT_EQ(f.sample, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_TRUE(f.sample_is_complete());
  ASSERT_EQ(f.histogram_edges.size(), 9u);
  ASSERT_EQ(f.histogram_counts.size(), 10u);
  int64_t total = 0;
  for (auto n : f.histogram_counts)
    total += n;
  EXPECT_EQ(total, 4);
}

TEST(Profile, LimitedSampleIsEvenlySpacedOrderStatistics) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  Column c{"x", Column::Numeric(100000)};
  for (double& v : std::get<Column::Numeric>(c.values))
    v = normal(rng);
  auto p = BuildProfile(std::span<const Column>(&c, 1), {.sample_limit = 1000});
  ASSERT_TRUE(p);
  const FeatureProfile& f = p->features[0];
  ASSERT_EQ(f.sample.size(), 1000u);
  EXPECT_FALSE(f.sample_is_complete());
  std::vector<double> sorted = c.numeric();
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(f.sample[0], sorted[50]);       // rank floor(0.5 * 100)
  EXPECT_EQ(f.sample[999], sorted[99950]);  // rank floor(999.5 * 100)
  // The KS statistic against any data moves by at most 1/(2 * sample_limit).
  std::vector<double> other(3000);
  for (double& v : other)
    v = normal(rng) * 1.2 + 0.1;
  std::sort(other.begin(), other.end());
  const double full = stats::KsTestSorted(sorted, other).statistic;
  const double approx = stats::KsTestSortedWithSize(f.sample, f.count, other).statistic;
  EXPECT_LE(std::abs(full - approx), 1.0 / 2000 + 1e-12);
}

TEST(Profile, CategoricalFrequenciesKeepTheMostCommon) {
  Column c{"color",
           Column::Categorical{"red", "blue", "red", std::nullopt, "green", "blue", "red", "teal"}};
  auto p = BuildProfile(std::span<const Column>(&c, 1), {.max_categories = 2});
  ASSERT_TRUE(p);
  const FeatureProfile& f = p->features[0];
  EXPECT_EQ(f.type, FeatureType::kCategorical);
  EXPECT_EQ(f.count, 7);
  EXPECT_EQ(f.missing, 1);
  EXPECT_EQ(f.frequencies, (std::map<std::string, int64_t>{{"red", 3}, {"blue", 2}}));
  EXPECT_EQ(f.other_count, 2);  // green, teal
}

TEST(Profile, RejectsRaggedOrDuplicateColumns) {
  std::vector<Column> cols{{"a", Column::Numeric{1, 2}}, {"b", Column::Numeric{1}}};
  auto p = BuildProfile(cols);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().field, "b");
  cols[1] = {"a", Column::Numeric{1, 2}};
  EXPECT_FALSE(BuildProfile(cols));
  EXPECT_FALSE(BuildProfile({}, {.sample_limit = 0}));
}

Profile MixedProfile() {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(10, 3);
  std::vector<Column> cols{{"x", Column::Numeric(3000)},
                           {"empty", Column::Numeric(3000, NAN)},
                           {"c", Column::Categorical(3000)}};
  for (size_t i = 0; i < 3000; ++i) {
    std::get<Column::Numeric>(cols[0].values)[i] = i % 17 == 0 ? NAN : normal(rng) / 7;
    std::get<Column::Categorical>(cols[2].values)[i] =
        i % 13 == 0 ? std::nullopt : std::optional<std::string>("k\"" + std::to_string(i % 7));
  }
  auto p = BuildProfile(cols, {.sample_limit = 500, .max_categories = 5});
  EXPECT_TRUE(p);
  return *p;
}

TEST(Profile, JsonRoundTripIsExact) {
  Profile p = MixedProfile();
  Json j = p.ToJson();
  auto back = Profile::FromJson(Json::parse(j.dump()));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->ToJson(), j);
  EXPECT_EQ(back->features[0].sample, p.features[0].sample);
  EXPECT_EQ(back->features[0].std, p.features[0].std);
  EXPECT_EQ(back->features[2].other_count, p.features[2].other_count);
  EXPECT_GT(p.features[2].other_count, 0);  // 7 categories, 5 kept
  EXPECT_EQ(back->features[1].count, 0);
  EXPECT_EQ(j["features"][0]["type"], "numeric");
  EXPECT_TRUE(j["features"][0]["quantiles"].contains("p99"));
}

TEST(Profile, FromJsonNamesTheBadField) {
  const Json good = MixedProfile().ToJson();
  auto field_of = [](const Json& j) {
    auto r = Profile::FromJson(j);
    return r ? std::string("<ok>") : r.error().field;
  };
  EXPECT_EQ(field_of(good), "<ok>");
  Json j = good;
  j["features"][0]["std"] = -1;
  EXPECT_EQ(field_of(j), "features[0].std");
  j = good;
  j["features"][0]["type"] = "text";
  EXPECT_EQ(field_of(j), "features[0].type");
  j = good;
  j["features"][0]["sample"][0] = 1e9;  // no longer ascending
  EXPECT_EQ(field_of(j), "features[0].sample");
  j = good;
  j["features"][0]["histogram"]["counts"][0] = -3;
  EXPECT_EQ(field_of(j), "features[0].histogram.counts[0]");
  j = good;
  j["features"][0]["quantiles"].erase("p5");
  EXPECT_EQ(field_of(j), "features[0].quantiles.p5");
  j = good;
  j["features"][2]["frequencies"]["k\"1"] = 0;
  EXPECT_EQ(field_of(j), "features[2].frequencies.k\"1");
  j = good;
  j["features"][2]["other_count"] = 1;
  EXPECT_EQ(field_of(j), "features[2].frequencies");
  j = good;
  j["features"][1]["missing"] = 2;
  EXPECT_EQ(field_of(j), "features[1].missing");
  j = good;
  j["features"][0]["colour"] = 1;
  EXPECT_EQ(field_of(j), "features[0].colour");
  j = good;
  j["features"][1]["name"] = "x";
  EXPECT_EQ(field_of(j), "features[1].name");
  j = good;
  j.erase("rows");
  EXPECT_EQ(field_of(j), "rows");
}

}  // namespace
}  // namespace kervan::monitoring
