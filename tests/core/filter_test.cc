#include "core/filter.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kervan::core::filter {
namespace {

Comparison ParseOne(std::string_view text) {
  auto parsed = Parse(text);
  EXPECT_TRUE(parsed) << text << ": " << (parsed ? "" : parsed.error().message);
  if (!parsed)
    return {};
  EXPECT_EQ(parsed->clauses.size(), 1u) << text;
  return parsed->clauses.empty() ? Comparison{} : parsed->clauses.front();
}

// ---- Parse: what it accepts ----

TEST(FilterParse, EmptyOrBlankIsAnEmptyFilter) {
  for (std::string_view text : {"", " ", "\t\n  \r"}) {
    auto parsed = Parse(text);
    ASSERT_TRUE(parsed) << "\"" << text << "\"";
    EXPECT_TRUE(parsed->empty());
  }
}

struct OpCase {
  const char* text;
  Entity entity;
  const char* key;
  Op op;
};

void PrintTo(const OpCase& c, std::ostream* os) {
  *os << c.text;
}

class FilterOperators : public ::testing::TestWithParam<OpCase> {};

TEST_P(FilterOperators, ParsesEveryOperator) {
  const OpCase& want = GetParam();
  Comparison c = ParseOne(want.text);
  EXPECT_EQ(c.entity, want.entity);
  EXPECT_EQ(c.key, want.key);
  EXPECT_EQ(c.op, want.op);
}

INSTANTIATE_TEST_SUITE_P(
    All, FilterOperators,
    ::testing::Values(
        OpCase{"metrics.auc = 0.9", Entity::kMetric, "auc", Op::kEq},
        OpCase{"metrics.auc != 0.9", Entity::kMetric, "auc", Op::kNe},
        OpCase{"metrics.auc < 0.9", Entity::kMetric, "auc", Op::kLt},
        OpCase{"metrics.auc <= 0.9", Entity::kMetric, "auc", Op::kLe},
        OpCase{"metrics.auc > 0.9", Entity::kMetric, "auc", Op::kGt},
        OpCase{"metrics.auc >= 0.9", Entity::kMetric, "auc", Op::kGe},
        OpCase{"params.model LIKE 'xgb%'", Entity::kParam, "model", Op::kLike},
        OpCase{"params.model ILIKE '%XGB%'", Entity::kParam, "model", Op::kILike},
        OpCase{"params.model like 'x'", Entity::kParam, "model", Op::kLike},
        OpCase{"params.model iLiKe 'x'", Entity::kParam, "model", Op::kILike},
        OpCase{"run_id IN ('a', 'b')", Entity::kAttribute, "run_id", Op::kIn},
        OpCase{"run_id in ('a')", Entity::kAttribute, "run_id", Op::kIn},
        OpCase{"run_id NOT IN ('a')", Entity::kAttribute, "run_id", Op::kNotIn},
        OpCase{"run_id not  in('a')", Entity::kAttribute, "run_id", Op::kNotIn},
        OpCase{"tags.env IS NULL", Entity::kTag, "env", Op::kIsNull},
        OpCase{"tags.env is null", Entity::kTag, "env", Op::kIsNull},
        OpCase{"params.lr IS NOT NULL", Entity::kParam, "lr", Op::kIsNotNull},
        OpCase{"params.lr Is Not Null", Entity::kParam, "lr", Op::kIsNotNull},
        OpCase{"datasets.name IN ('iris')", Entity::kDataset, "name", Op::kIn},
        OpCase{"datasets.digest NOT IN ('x')", Entity::kDataset, "digest", Op::kNotIn},
        OpCase{"attributes.start_time >= 1700000000000", Entity::kAttribute, "start_time", Op::kGe},
        OpCase{"status = 'FAILED'", Entity::kAttribute, "status", Op::kEq}));

TEST(FilterParse, EveryPrefixAlias) {
  const std::pair<const char*, Entity> aliases[] = {
      {"metrics", Entity::kMetric},
      {"metric", Entity::kMetric},
      {"params", Entity::kParam},
      {"param", Entity::kParam},
      {"parameters", Entity::kParam},
      {"parameter", Entity::kParam},
      {"tags", Entity::kTag},
      {"tag", Entity::kTag},
      {"attributes", Entity::kAttribute},
      {"attribute", Entity::kAttribute},
      {"attr", Entity::kAttribute},
      {"run", Entity::kAttribute},
      {"datasets", Entity::kDataset},
      {"dataset", Entity::kDataset},
      {"data", Entity::kData},
  };
  for (const auto& [prefix, entity] : aliases) {
    const bool numeric = entity == Entity::kMetric;
    const std::string key = entity == Entity::kDataset ? "name" : "k";
    const std::string text = std::string(prefix) + "." + key + (numeric ? " = 1" : " = 'v'");
    Comparison c = ParseOne(text);
    EXPECT_EQ(c.entity, entity) << text;
    EXPECT_EQ(c.key, key) << text;
    // A prefix may itself be quoted with backticks, as MLflow allows.
    Comparison quoted =
        ParseOne("`" + std::string(prefix) + "`." + key + (numeric ? " = 1" : " = 'v'"));
    EXPECT_EQ(quoted.entity, entity) << prefix;
  }
}

TEST(FilterParse, BareIdentifiersAreAttributes) {
  for (const char* name : {"name", "run_id", "status", "start_time", "_private", "créé"}) {
    Comparison c = ParseOne(std::string(name) + " = 'x'");
    EXPECT_EQ(c.entity, Entity::kAttribute) << name;
    EXPECT_EQ(c.key, name);
  }
  Comparison quoted = ParseOne("`run name` ILIKE '%alpha%'");
  EXPECT_EQ(quoted.entity, Entity::kAttribute);
  EXPECT_EQ(quoted.key, "run name");
  Comparison double_quoted = ParseOne("\"Run Name\" = 'x'");
  EXPECT_EQ(double_quoted.entity, Entity::kAttribute);
  EXPECT_EQ(double_quoted.key, "Run Name");
}

TEST(FilterParse, KeyQuotingStyles) {
  struct Case {
    const char* text;
    Entity entity;
    const char* key;
  };
  const Case cases[] = {
      {"metrics.`my metric` > 1", Entity::kMetric, "my metric"},
      {"metrics.\"legit name\" >= 0.243", Entity::kMetric, "legit name"},
      {"params.\"a b\" = 'x'", Entity::kParam, "a b"},
      {"tags.`mlflow.runName` = 'x'", Entity::kTag, "mlflow.runName"},
      {"tags.\"t.a.g\" = 'a'", Entity::kTag, "t.a.g"},
      {"tags.mlflow.user = 'x'", Entity::kTag, "mlflow.user"},
      {"metrics.accuracy.2.0 > 5", Entity::kMetric, "accuracy.2.0"},
      {"metrics.\"X//Y#$$@&Z\" = 3", Entity::kMetric, "X//Y#$$@&Z"},
      {"metrics.\"2019-04-02 error rate\" < 1", Entity::kMetric, "2019-04-02 error rate"},
      {"metrics.2019 < 1", Entity::kMetric, "2019"},
      {"metrics.`a``b` = 1", Entity::kMetric, "a`b"},
      {"metrics.\"a\"\"b\" = 1", Entity::kMetric, "a\"b"},
      {"params.`Größe` = 'x'", Entity::kParam, "Größe"},
      {"params.ключ = 'x'", Entity::kParam, "ключ"},
  };
  for (const Case& c : cases) {
    Comparison got = ParseOne(c.text);
    EXPECT_EQ(got.entity, c.entity) << c.text;
    EXPECT_EQ(got.key, c.key) << c.text;
  }
}

TEST(FilterParse, StringValuesAndEscapes) {
  struct Case {
    const char* text;
    const char* value;
  };
  const Case cases[] = {
      {"params.m = 'LR'", "LR"},
      {"params.m = \"LR\"", "LR"},
      {"params.m = ''", ""},
      {"params.m = \"L'Hosp\"", "L'Hosp"},
      {"params.m = 'say \"hi\"'", "say \"hi\""},
      {"params.m = 'it''s'", "it's"},
      {"params.m = 'it\\'s'", "it's"},
      {"params.m = \"a \"\"b\"\"\"", "a \"b\""},
      {"params.m = \"a \\\"b\\\"\"", "a \"b\""},
      {"params.m = 'a\\\\b'", "a\\b"},
      {"params.m = 'ends\\\\'", "ends\\"},
      {"params.m = 'C:\\path'", "C:\\path"},
      {"params.m = '50\\%'", "50\\%"},
      {"params.m = 'a AND b OR c'", "a AND b OR c"},
      {"params.m = '日本語'", "日本語"},
      {"params.m='tight'", "tight"},
  };
  for (const Case& c : cases) {
    Comparison got = ParseOne(c.text);
    EXPECT_FALSE(got.numeric) << c.text;
    EXPECT_EQ(got.text, c.value) << c.text;
  }
}

TEST(FilterParse, NumbersInEveryForm) {
  struct Case {
    const char* literal;
    double number;
    std::optional<std::int64_t> int64;
  };
  const Case cases[] = {
      {"1", 1, 1},
      {"0", 0, 0},
      {"-1", -1, -1},
      {"+7", 7, 7},
      {"1700000000123", 1700000000123.0, 1700000000123},
      {"1.5", 1.5, std::nullopt},
      {"-0.25", -0.25, std::nullopt},
      {".5", 0.5, std::nullopt},
      {"-.5", -0.5, std::nullopt},
      {"1.", 1, std::nullopt},
      {"1e3", 1000, std::nullopt},
      {"1E-3", 0.001, std::nullopt},
      {"2.5e+2", 250, std::nullopt},
      {"-4.5E2", -450, std::nullopt},
      {"9223372036854775807", 9223372036854775807.0, std::numeric_limits<std::int64_t>::max()},
      {"9223372036854775808", 9223372036854775808.0, std::nullopt},  // too big for int64
  };
  for (const Case& c : cases) {
    Comparison got = ParseOne(std::string("metrics.x > ") + c.literal);
    EXPECT_TRUE(got.numeric) << c.literal;
    EXPECT_DOUBLE_EQ(got.number, c.number) << c.literal;
    EXPECT_EQ(got.int64, c.int64) << c.literal;
    EXPECT_EQ(got.text, c.literal) << "keeps the literal as written";
  }
  // Attributes take numbers too (start_time in milliseconds), with or without spaces.
  Comparison c = ParseOne("attributes.start_time>=-5");
  EXPECT_EQ(c.op, Op::kGe);
  EXPECT_EQ(c.int64, -5);
}

TEST(FilterParse, InLists) {
  Comparison one = ParseOne("run_id IN ('a1')");
  EXPECT_EQ(one.list, (std::vector<std::string>{"a1"}));
  EXPECT_TRUE(one.text.empty());
  Comparison many = ParseOne("attributes.run_id NOT IN ( 'a' ,\"b\",'it''s' )");
  EXPECT_EQ(many.op, Op::kNotIn);
  EXPECT_EQ(many.list, (std::vector<std::string>{"a", "b", "it's"}));
  // Python's repr of a one-element tuple, as in f"run_id IN {tuple(ids)}".
  Comparison tuple = ParseOne("run_id IN ('abc',)");
  EXPECT_EQ(tuple.list, (std::vector<std::string>{"abc"}));
  Comparison tuple2 = ParseOne("run_id IN ('a', 'b', )");
  EXPECT_EQ(tuple2.list, (std::vector<std::string>{"a", "b"}));
}

TEST(FilterParse, AndIsCaseInsensitiveAndWhitespaceIsFree) {
  for (std::string_view text :
       {"metrics.rmse < 1 and params.model_class = 'LR' AND tags.team = 'risk'",
        "metrics.rmse<1 AnD params.model_class='LR' aNd tags.team='risk'",
        "  metrics.rmse\t<\n1\r\nAND\tparams.model_class =\t'LR'  and tags.team = \"risk\"  "}) {
    auto parsed = Parse(text);
    ASSERT_TRUE(parsed) << text << ": " << parsed.error().message;
    ASSERT_EQ(parsed->clauses.size(), 3u) << text;
    EXPECT_EQ(parsed->clauses[0].entity, Entity::kMetric);
    EXPECT_EQ(parsed->clauses[0].op, Op::kLt);
    EXPECT_EQ(parsed->clauses[0].int64, 1);
    EXPECT_EQ(parsed->clauses[1].key, "model_class");
    EXPECT_EQ(parsed->clauses[1].text, "LR");
    EXPECT_EQ(parsed->clauses[2].entity, Entity::kTag);
    EXPECT_EQ(parsed->clauses[2].text, "risk");
  }
  // A string value that ends right before AND.
  auto tight = Parse("params.a='x'AND params.b='y'");
  ASSERT_TRUE(tight);
  EXPECT_EQ(tight->clauses.size(), 2u);
}

TEST(FilterParse, RecordsClauseOffsets) {
  auto parsed = Parse("metrics.a > 1 AND  tags.b = 'x'");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->clauses[0].offset, 0u);
  EXPECT_EQ(parsed->clauses[1].offset, 19u);
}

TEST(FilterParse, EntityAndOperatorNames) {
  EXPECT_EQ(EntityName(Entity::kMetric), "metrics");
  EXPECT_EQ(EntityName(Entity::kParam), "params");
  EXPECT_EQ(EntityName(Entity::kTag), "tags");
  EXPECT_EQ(EntityName(Entity::kAttribute), "attributes");
  EXPECT_EQ(EntityName(Entity::kDataset), "datasets");
  EXPECT_EQ(OpText(Op::kNe), "!=");
  EXPECT_EQ(OpText(Op::kGe), ">=");
  EXPECT_EQ(OpText(Op::kILike), "ILIKE");
  EXPECT_EQ(OpText(Op::kNotIn), "NOT IN");
  EXPECT_EQ(OpText(Op::kIsNotNull), "IS NOT NULL");
}

// ---- Parse: what it refuses ----

struct ErrorCase {
  const char* text;
  std::vector<const char*> message_has;  // substrings of the message
};

void PrintTo(const ErrorCase& c, std::ostream* os) {
  *os << c.text;
}

class FilterErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(FilterErrors, NameTheProblemAndWhere) {
  auto parsed = Parse(GetParam().text);
  ASSERT_FALSE(parsed) << GetParam().text << " parsed";
  const Error& e = parsed.error();
  EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.field, "filter");
  EXPECT_EQ(e.message.rfind("filter: ", 0), 0u) << e.message;
  for (const char* part : GetParam().message_has)
    EXPECT_NE(e.message.find(part), std::string::npos)
        << "\"" << part << "\" not in: " << e.message;
}

INSTANTIATE_TEST_SUITE_P(
    All, FilterErrors,
    ::testing::Values(
        // OR and grouping.
        ErrorCase{"metrics.a > 1 OR params.b = 'x'",
                  {"OR is not supported; combine clauses with AND", "offset 14"}},
        ErrorCase{"metrics.a > 1 or params.b = 'x'", {"OR is not supported"}},
        ErrorCase{"(params.b = 'LR')", {"parentheses are not supported", "offset 0"}},
        // Structure.
        ErrorCase{"metrics.auc",
                  {"expected a comparison operator after \"metrics.auc\" at offset 11",
                   "found the end of the filter"}},
        ErrorCase{
            "metrics.auc  0.9",
            {"expected a comparison operator after \"metrics.auc\" at offset 13", "found \"0.9\""}},
        ErrorCase{"metrics.a ~ 1", {"expected a comparison operator", "found \"~\""}},
        ErrorCase{"metrics.a == 1", {"unknown operator \"==\" at offset 10"}},
        ErrorCase{"metrics.a <> 1", {"unknown operator \"<>\""}},
        ErrorCase{"metrics.a >", {"expected a value", "offset 11", "found the end of the filter"}},
        ErrorCase{"metrics.a > 1 garbage",
                  {"expected AND or the end of the filter at offset 14", "found \"garbage\""}},
        ErrorCase{"metrics.a > 1; metrics.b < 1", {"expected AND or the end", "found \";\""}},
        ErrorCase{"metrics.a > 1 AND", {"expected a clause after AND at offset 14"}},
        ErrorCase{"metrics.a > 1 AND AND metrics.b < 1", {"expected a comparison operator"}},
        ErrorCase{"1 = 1", {"expected a field such as metrics.auc", "offset 0", "found \"1\""}},
        ErrorCase{"= 'x'", {"expected a field", "found \"=\""}},
        // Strings and quoting.
        ErrorCase{"params.a = 'abc", {"unterminated string starting at offset 11"}},
        ErrorCase{"params.a = 'it\\'", {"unterminated string starting at offset 11"}},
        ErrorCase{"params.a = \"LR'", {"unterminated string"}},
        ErrorCase{"metrics.`abc > 1", {"unterminated quoted key starting at offset 8"}},
        ErrorCase{"`metrics.a > 1", {"unterminated quoted name starting at offset 0"}},
        ErrorCase{"params.a = LR",
                  {"expected a value (a quoted string or a number) after \"params.a =\"",
                   "offset 11", "found \"LR\""}},
        ErrorCase{"params.a = `LR`", {"expected a value", "found `LR`"}},
        // Prefixes and keys.
        ErrorCase{"foo.bar = 'x'", {"unknown prefix \"foo\" at offset 0", "metrics, params, tags"}},
        ErrorCase{"METRICS.a > 1", {"unknown prefix \"METRICS\""}},
        ErrorCase{"m.acc >= 0.94", {"unknown prefix \"m\""}},
        ErrorCase{"tags. = 'x'", {"expected a key after \"tags.\" at offset 5", "found \"=\""}},
        ErrorCase{"tags.`` = 'x'", {"empty key at offset 5"}},
        ErrorCase{"`` = 'x'", {"empty name at offset 0"}},
        ErrorCase{"tags.a..b = 'x'", {"malformed key \"a..b\" at offset 5", "tags.`a..b`"}},
        ErrorCase{"tags.a. = 'x'", {"malformed key \"a.\""}},
        ErrorCase{"datasets.profile = 'x'",
                  {"unknown dataset key \"profile\" at offset 9", "name, digest or context"}},
        // Value kinds.
        ErrorCase{"metrics.auc = 'x'",
                  {"expected a number for \"metrics.auc\" at offset 14", "found 'x'"}},
        ErrorCase{"metrics.auc > '0.9'", {"expected a number for \"metrics.auc\""}},
        ErrorCase{"params.lr = 0.1",
                  {"expected a quoted string for \"params.lr\" at offset 12", "found 0.1"}},
        ErrorCase{"tags.acc = 5", {"expected a quoted string for \"tags.acc\""}},
        ErrorCase{"datasets.name = 5", {"expected a quoted string for \"datasets.name\""}},
        ErrorCase{"name LIKE 5",
                  {"expected a quoted string pattern after LIKE at offset 10", "found 5"}},
        ErrorCase{"name ILIKE 5", {"expected a quoted string pattern after ILIKE"}},
        ErrorCase{"name > 'x'", {"expected a number after \">\" at offset 7", "found 'x'"}},
        ErrorCase{"metrics.acc != metrics.acc", {"expected a value"}},
        // Operators by prefix.
        ErrorCase{"metrics.a LIKE '1'",
                  {"operator LIKE is not supported for metrics at offset 10", "= != < <= > >="}},
        ErrorCase{"metrics.a IN ('1')", {"operator IN is not supported for metrics"}},
        ErrorCase{"metrics.a IS NULL", {"operator IS NULL is not supported for metrics"}},
        ErrorCase{
            "params.a > 'x'",
            {"operator > is not supported for params", "= != LIKE ILIKE IS NULL IS NOT NULL"}},
        ErrorCase{"tags.a IN ('x')", {"operator IN is not supported for tags"}},
        ErrorCase{"status IS NOT NULL", {"operator IS NOT NULL is not supported for attributes"}},
        ErrorCase{"datasets.name < 'x'", {"operator < is not supported for datasets"}},
        ErrorCase{"name NOT LIKE 'x'", {"expected IN after NOT at offset 9", "found \"LIKE\""}},
        ErrorCase{"tags.a IS 'x'", {"expected NULL or NOT NULL after IS at offset 10"}},
        ErrorCase{"tags.a IS NOT 'x'", {"expected NULL after IS NOT"}},
        // IN lists.
        ErrorCase{"run_id IN ()", {"empty IN list at offset 10"}},
        ErrorCase{"run_id NOT IN (  )", {"empty NOT IN list"}},
        ErrorCase{"run_id IN (1, 2)",
                  {"expected a quoted string in the IN list at offset 11", "found \"1\""}},
        ErrorCase{"run_id IN 'a'", {"expected a parenthesised list of quoted strings"}},
        ErrorCase{"run_id IN ('a', 'b'", {"unterminated IN list starting at offset 10"}},
        ErrorCase{"run_id IN ('a' 'b')", {"expected \",\" or \")\" in the IN list at offset 15"}},
        ErrorCase{"run_id IN ('a',,'b')", {"expected a quoted string in the IN list"}},
        // Numbers.
        ErrorCase{"metrics.a > 1.2.3", {"malformed number \"1.2.3\" at offset 12"}},
        ErrorCase{"metrics.a > 1e", {"malformed number \"1e\""}},
        ErrorCase{"metrics.a > 12abc", {"malformed number \"12abc\""}},
        ErrorCase{"metrics.a > 0x10", {"malformed number"}},
        ErrorCase{"metrics.a > 1e999", {"number 1e999 at offset 12 is out of range"}},
        ErrorCase{"metrics.a > -", {"expected a value"}},
        // The error is located in the clause that has it.
        ErrorCase{"metrics.a > 1 AND params.b > 'x'",
                  {"operator > is not supported for params at offset 27"}}));

// ---- order_by ----

TEST(FilterOrderBy, ParsesFieldAndDirection) {
  struct Case {
    const char* text;
    Entity entity;
    const char* key;
    bool ascending;
  };
  const Case cases[] = {
      {"metrics.auc DESC", Entity::kMetric, "auc", false},
      {"metrics.auc desc", Entity::kMetric, "auc", false},
      {"attributes.start_time", Entity::kAttribute, "start_time", true},
      {"name ASC", Entity::kAttribute, "name", true},
      {"name aSc", Entity::kAttribute, "name", true},
      {"start_time", Entity::kAttribute, "start_time", true},
      {"metrics.`Mean Square Error` DESC", Entity::kMetric, "Mean Square Error", false},
      {"metrics.\"key1\"  desc", Entity::kMetric, "key1", false},
      {"params.`my_param` DESC", Entity::kParam, "my_param", false},
      {"tags.mlflow.user", Entity::kTag, "mlflow.user", true},
      {"  last_update_time\tDESC  ", Entity::kAttribute, "last_update_time", false},
  };
  for (const Case& c : cases) {
    auto got = ParseOrderBy(c.text);
    ASSERT_TRUE(got) << c.text << ": " << got.error().message;
    EXPECT_EQ(got->entity, c.entity) << c.text;
    EXPECT_EQ(got->key, c.key) << c.text;
    EXPECT_EQ(got->ascending, c.ascending) << c.text;
  }
}

TEST(FilterOrderBy, ErrorsNameTheProblem) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "expected a field to order by"},
      {"   ", "expected a field to order by"},
      {"metrics.A != 1", "expected ASC or DESC after \"metrics.A\" at offset 10, found \"!=\""},
      {"attribute.run_id ACS", "expected ASC or DESC after \"attribute.run_id\" at offset 17"},
      {"attribute.run_id decs", "found \"decs\""},
      {"name DESC extra", "expected the end of order_by after \"DESC\" at offset 10"},
      {"m.acc", "unknown prefix \"m\""},
      {"`metrics.A", "unterminated quoted name"},
      {"datasets.name", "cannot order by dataset field \"datasets.name\""},
      {"metrics.", "expected a key after \"metrics.\" at offset 8, found the end of order_by"},
  };
  for (const auto& [text, part] : cases) {
    auto got = ParseOrderBy(text);
    ASSERT_FALSE(got) << text;
    EXPECT_EQ(got.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(got.error().field, "order_by") << text;
    EXPECT_EQ(got.error().message.rfind("order_by: ", 0), 0u) << got.error().message;
    EXPECT_NE(got.error().message.find(part), std::string::npos)
        << "\"" << part << "\" not in: " << got.error().message;
  }
}

// ---- Format ----

TEST(FilterFormat, CanonicalTextReadsBackToTheSameClauses) {
  const std::pair<const char*, const char*> cases[] = {
      {"metric.auc>0.9 and params.lr='0.1'", "metrics.auc > 0.9 AND params.lr = '0.1'"},
      {"name = 'x'", "attributes.name = 'x'"},
      {"tags.`mlflow.runName` = \"it's\"", "tags.mlflow.runName = 'it''s'"},
      {"metrics.`my metric` >= 1e3", "metrics.`my metric` >= 1e3"},
      {"metrics.`a``b` < -2", "metrics.`a``b` < -2"},
      {"params.p LIKE '50\\%'", "params.p LIKE '50\\\\%'"},
      {"run_id not in ('a', \"b\",)", "attributes.run_id NOT IN ('a', 'b')"},
      {"tags.env is not null", "tags.env IS NOT NULL"},
      {"", ""},
  };
  for (const auto& [text, canonical] : cases) {
    auto parsed = Parse(text);
    ASSERT_TRUE(parsed) << text;
    const std::string formatted = Format(*parsed);
    EXPECT_EQ(formatted, canonical) << text;
    auto again = Parse(formatted);
    ASSERT_TRUE(again) << formatted << ": " << again.error().message;
    ASSERT_EQ(again->clauses.size(), parsed->clauses.size());
    for (std::size_t i = 0; i < parsed->clauses.size(); ++i) {
      Comparison a = parsed->clauses[i];
      Comparison b = again->clauses[i];
      a.offset = b.offset = 0;
      EXPECT_EQ(a, b) << text;
    }
  }
}

// ---- Like ----

struct LikeCase {
  const char* value;
  const char* pattern;
  bool case_insensitive;
  bool matches;
};

void PrintTo(const LikeCase& c, std::ostream* os) {
  *os << '"' << c.value << "\" " << (c.case_insensitive ? "ILIKE" : "LIKE") << " \"" << c.pattern
      << '"';
}

class FilterLike : public ::testing::TestWithParam<LikeCase> {};

TEST_P(FilterLike, MatchesLikeSql) {
  const LikeCase& c = GetParam();
  EXPECT_EQ(Like(c.value, c.pattern, c.case_insensitive), c.matches)
      << "\"" << c.value << "\" " << (c.case_insensitive ? "ILIKE" : "LIKE") << " \"" << c.pattern
      << "\"";
}

INSTANTIATE_TEST_SUITE_P(
    All, FilterLike,
    ::testing::Values(
        // Literal text.
        LikeCase{"abc", "abc", false, true}, LikeCase{"abc", "abd", false, false},
        LikeCase{"abc", "ab", false, false}, LikeCase{"ab", "abc", false, false},
        LikeCase{"C+W bar", "C+W bar", false, true}, LikeCase{"a.c", "a.c", false, true},
        LikeCase{"abc", "a.c", false, false}, LikeCase{"a[b]c", "a[b]c", false, true},
        // Empty value and pattern.
        LikeCase{"", "", false, true}, LikeCase{"a", "", false, false},
        LikeCase{"", "%", false, true}, LikeCase{"", "_", false, false},
        // %.
        LikeCase{"xgboost", "xgb%", false, true}, LikeCase{"sklearn", "xgb%", false, false},
        LikeCase{"my-xgb", "%xgb", false, true}, LikeCase{"axgbz", "%xgb%", false, true},
        LikeCase{"abc", "%", false, true}, LikeCase{"abc", "%%%", false, true},
        LikeCase{"abcabc", "a%c", false, true}, LikeCase{"abcabd", "a%c", false, false},
        LikeCase{"jamie-foo C+W bar", "jamie-foo C+%", false, true},
        // _.
        LikeCase{"abc", "a_c", false, true}, LikeCase{"ac", "a_c", false, false},
        LikeCase{"abc", "___", false, true}, LikeCase{"abcd", "___", false, false},
        LikeCase{"abcd", "_%_", false, true}, LikeCase{"a", "_%_", false, false},
        // A character is a code point, not a byte.
        LikeCase{"é", "_", false, true}, LikeCase{"日本", "__", false, true},
        LikeCase{"日本", "_", false, false}, LikeCase{"日本語", "日%", false, true},
        LikeCase{"naïve", "na_ve", false, true}, LikeCase{"🎉x", "_x", false, true},
        // A byte that is not UTF-8 is one character and matches only itself.
        LikeCase{"\xff", "_", false, true},
        LikeCase{"\xff"
                 "a",
                 "_a", false, true},
        LikeCase{"\xc3", "\xc3", false, true}, LikeCase{"\xc3\xa9", "\xc3", false, false},
        LikeCase{"\xe6\x97", "__", false, true},  // truncated sequence: two stray bytes
        // Escapes.
        LikeCase{"50%", "50\\%", false, true}, LikeCase{"500", "50\\%", false, false},
        LikeCase{"a_b", "a\\_b", false, true}, LikeCase{"axb", "a\\_b", false, false},
        LikeCase{"a\\b", "a\\\\b", false, true}, LikeCase{"a\\", "a\\", false, true},
        // Case: LIKE is exact, ILIKE folds.
        LikeCase{"ABC", "abc", false, false}, LikeCase{"ABC", "abc", true, true},
        LikeCase{"LogisticRegression", "%logistic%", true, true},
        LikeCase{"LogisticRegression", "%logistic%", false, false},
        LikeCase{"École", "école%", true, true}, LikeCase{"École", "école%", false, false},
        LikeCase{"ŁÓDŹ", "łódź", true, true}, LikeCase{"ΣΟΦΊΑ", "σοφία", true, true},
        LikeCase{"ΟΔΟΣ", "οδος", true, true}, LikeCase{"ПРИВЕТ", "привет", true, true},
        LikeCase{"ЁЖ", "ёж", true, true}, LikeCase{"Ÿ", "ÿ", true, true},
        LikeCase{"×", "÷", true, false}, LikeCase{"A_", "a\\_", true, true}));

TEST(FilterLike, PathologicalPatternsStayFast) {
  const std::string value(20000, 'a');
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(Like(value, "%a%a%a%a%a%a%a%a%b", false));
  EXPECT_TRUE(Like(value + "b", "%a%a%a%a%a%a%a%a%b", false));
  EXPECT_FALSE(Like(value, std::string(50, '_') + "%b%", true));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// ---- Matches ----

TEST(FilterMatches, NumbersCompareNumerically) {
  Comparison gt = ParseOne("metrics.auc > 0.9");
  EXPECT_TRUE(Matches(gt, 0.95));
  EXPECT_FALSE(Matches(gt, 0.9));
  EXPECT_FALSE(Matches(gt, 0.5));
  EXPECT_TRUE(Matches(ParseOne("metrics.auc >= 0.9"), 0.9));
  EXPECT_TRUE(Matches(ParseOne("metrics.auc <= 0.9"), 0.9));
  EXPECT_TRUE(Matches(ParseOne("metrics.auc < 1"), 0.9));
  EXPECT_TRUE(Matches(ParseOne("metrics.auc = 1"), 1.0));
  EXPECT_TRUE(Matches(ParseOne("metrics.auc != 1"), 2.0));
  EXPECT_TRUE(Matches(ParseOne("metrics.loss < -1e-3"), -0.5));
  // An int64 attribute compares with an integer literal exactly, beyond
  // double precision (2^53 + 1 vs 2^53).
  Comparison eq = ParseOne("start_time = 9007199254740992");
  EXPECT_TRUE(Matches(eq, std::int64_t{9007199254740992}));
  EXPECT_FALSE(Matches(eq, std::int64_t{9007199254740993}));
  EXPECT_TRUE(Matches(ParseOne("start_time > 9007199254740992"), std::int64_t{9007199254740993}));
  // ... and with a float literal as a double.
  EXPECT_TRUE(Matches(ParseOne("start_time >= 1.5e3"), std::int64_t{1500}));
  EXPECT_TRUE(Matches(ParseOne("metrics.n = 3"), std::int64_t{3}));
}

TEST(FilterMatches, NanMatchesOnlyNotEqual) {
  const double nan = std::nan("");
  EXPECT_FALSE(Matches(ParseOne("metrics.x = 1"), nan));
  EXPECT_FALSE(Matches(ParseOne("metrics.x < 1"), nan));
  EXPECT_FALSE(Matches(ParseOne("metrics.x >= 1"), nan));
  EXPECT_TRUE(Matches(ParseOne("metrics.x != 1"), nan));
}

TEST(FilterMatches, StringsCompareExactly) {
  EXPECT_TRUE(Matches(ParseOne("params.m = 'LR'"), std::string("LR")));
  EXPECT_FALSE(Matches(ParseOne("params.m = 'LR'"), std::string("lr")));
  EXPECT_TRUE(Matches(ParseOne("params.m != 'LR'"), std::string("lr")));
  EXPECT_TRUE(Matches(ParseOne("params.m LIKE 'L%'"), std::string("LR")));
  EXPECT_FALSE(Matches(ParseOne("params.m LIKE 'l%'"), std::string("LR")));
  EXPECT_TRUE(Matches(ParseOne("params.m ILIKE 'l%'"), std::string("LR")));
  EXPECT_TRUE(Matches(ParseOne("run_id IN ('a', 'b')"), std::string("b")));
  EXPECT_FALSE(Matches(ParseOne("run_id IN ('a', 'b')"), std::string("B")));
  EXPECT_TRUE(Matches(ParseOne("run_id NOT IN ('a', 'b')"), std::string("c")));
  EXPECT_FALSE(Matches(ParseOne("run_id NOT IN ('a', 'b')"), std::string("a")));
}

TEST(FilterMatches, AbsentValuesMatchOnlyIsNull) {
  const FieldValue absent;
  EXPECT_TRUE(Matches(ParseOne("tags.env IS NULL"), absent));
  EXPECT_FALSE(Matches(ParseOne("tags.env IS NOT NULL"), absent));
  EXPECT_FALSE(Matches(ParseOne("tags.env IS NULL"), std::string("")));
  EXPECT_TRUE(Matches(ParseOne("tags.env IS NOT NULL"), std::string("prod")));
  // As in MLflow, a missing value fails every comparison, even != and NOT IN.
  EXPECT_FALSE(Matches(ParseOne("tags.env = 'prod'"), absent));
  EXPECT_FALSE(Matches(ParseOne("tags.env != 'prod'"), absent));
  EXPECT_FALSE(Matches(ParseOne("run_id NOT IN ('a')"), absent));
  EXPECT_FALSE(Matches(ParseOne("metrics.auc != 1"), absent));
}

TEST(FilterMatches, MismatchedKindsNeverMatch) {
  EXPECT_FALSE(Matches(ParseOne("start_time = 5"), std::string("5")));
  EXPECT_FALSE(Matches(ParseOne("start_time != 5"), std::string("5")));
  EXPECT_FALSE(Matches(ParseOne("name = '5'"), 5.0));
  EXPECT_FALSE(Matches(ParseOne("name != '5'"), std::int64_t{5}));
  // A clause Parse() could not produce (< with a string) matches nothing.
  Comparison odd{.entity = Entity::kAttribute, .key = "name", .op = Op::kLt, .text = "b"};
  EXPECT_FALSE(Matches(odd, std::string("a")));
}

TEST(FilterMatches, FilterIsTheConjunctionOfItsClauses) {
  const std::map<std::string, FieldValue> run = {
      {"metrics.auc", 0.93},
      {"params.lr", std::string("0.1")},
      {"tags.team", std::string("risk")},
      {"attributes.start_time", std::int64_t{1700000000000}},
  };
  const FieldLookup lookup = [&](const Comparison& c) -> FieldValue {
    auto it = run.find(std::string(EntityName(c.entity)) + "." + c.key);
    return it == run.end() ? FieldValue{} : it->second;
  };
  auto matches = [&](std::string_view text) {
    auto parsed = Parse(text);
    EXPECT_TRUE(parsed) << text;
    return parsed && Matches(*parsed, lookup);
  };
  EXPECT_TRUE(matches(""));
  EXPECT_TRUE(matches("metrics.auc > 0.9 and params.lr = '0.1' and tags.team = 'risk'"));
  EXPECT_FALSE(matches("metrics.auc > 0.9 and params.lr = '0.2'"));
  EXPECT_TRUE(matches("start_time >= 1700000000000 AND tags.owner IS NULL"));
  EXPECT_FALSE(matches("tags.team ILIKE 'R%' AND metrics.loss < 1"));
}

// ---- Validate ----

constexpr Entity kRunEntities[] = {Entity::kMetric, Entity::kParam, Entity::kTag,
                                   Entity::kAttribute, Entity::kDataset};
constexpr AttributeKey kRunAttributes[] = {
    {.name = "run_id", .in_list = true},
    {.name = "status"},
    {.name = "run_name"},
    {.name = "start_time", .numeric = true},
};
constexpr Schema kRuns{kRunEntities, kRunAttributes};

constexpr Entity kExperimentEntities[] = {Entity::kAttribute, Entity::kTag};
constexpr AttributeKey kExperimentAttributes[] = {{.name = "name"},
                                                  {.name = "creation_time", .numeric = true}};
constexpr Schema kExperiments{kExperimentEntities, kExperimentAttributes};

// Event data (rules and pipeline triggers): any operator, dotted paths, and
// searches that do not list kData refuse it.
TEST(FilterData, EventDataFieldsParseAndSearchesRefuseThem) {
  auto f = Parse("data.action = 'retrain' AND data.metrics.auc >= 0.9 AND data.note IS NULL");
  ASSERT_TRUE(f) << f.error().message;
  ASSERT_EQ(f->clauses.size(), 3u);
  EXPECT_EQ(f->clauses[0].entity, Entity::kData);
  EXPECT_EQ(f->clauses[1].key, "metrics.auc");
  EXPECT_EQ(f->clauses[2].op, Op::kIsNull);
  EXPECT_EQ(Format(*f),
            "data.action = 'retrain' AND data.metrics.auc >= 0.9 AND data.note IS NULL");
  auto refused = Validate(*f, kRuns);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("data are not supported"), std::string::npos)
      << refused.error().message;
}

TEST(FilterValidate, AcceptsWhatTheSearchKnows) {
  for (std::string_view text : {"", "metrics.auc > 1 AND params.a = 'x' AND tags.b LIKE 'y%'",
                                "run_id IN ('a', 'b') AND status != 'FAILED' AND start_time >= 5",
                                "datasets.name = 'iris' AND attributes.run_name ILIKE '%x%'"}) {
    auto parsed = Parse(text);
    ASSERT_TRUE(parsed) << text;
    auto status = Validate(*parsed, kRuns);
    EXPECT_TRUE(status) << text << ": " << status.error().message;
  }
  auto order = ParseOrderBy("creation_time DESC");
  ASSERT_TRUE(order);
  EXPECT_TRUE(Validate(*order, kExperiments));
}

TEST(FilterValidate, RefusesWithTheClauseNamed) {
  const std::tuple<const char*, const Schema*, const char*> cases[] = {
      {"metrics.auc > 1", &kExperiments,
       "metrics are not supported by this search (clause at offset 0); use attributes, tags"},
      {"name = 'x' AND foo = 'y'", &kExperiments,
       "unknown attribute \"foo\" (clause at offset 15); valid attributes: name, creation_time"},
      {"start_time = 'x'", &kRuns, "attribute \"start_time\" compares with numbers"},
      {"start_time LIKE '1%'", &kRuns, "found LIKE with a string"},
      {"status = 1", &kRuns,
       "attribute \"status\" compares with quoted strings (clause at offset 0), found 1"},
      {"status IN ('A', 'B')", &kRuns, "attribute \"status\" does not support IN"},
  };
  for (const auto& [text, schema, part] : cases) {
    auto parsed = Parse(text);
    ASSERT_TRUE(parsed) << text;
    auto status = Validate(*parsed, *schema);
    ASSERT_FALSE(status) << text;
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(status.error().field, "filter");
    EXPECT_NE(status.error().message.find(part), std::string::npos)
        << "\"" << part << "\" not in: " << status.error().message;
  }
  auto order = ParseOrderBy("metrics.auc");
  ASSERT_TRUE(order);
  auto status = Validate(*order, kExperiments);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().field, "order_by");
  EXPECT_NE(status.error().message.find("metrics are not supported"), std::string::npos);
  auto unknown = ParseOrderBy("experiment_id");
  ASSERT_TRUE(unknown);
  auto unknown_status = Validate(*unknown, kExperiments);
  ASSERT_FALSE(unknown_status);
  EXPECT_NE(unknown_status.error().message.find("unknown attribute \"experiment_id\""),
            std::string::npos);
}

TEST(JsonField, ReadsDottedPathsAsDataClausesSeeThem) {
  nlohmann::json d = {{"to", "Rejected"},
                      {"data", {{"metrics", {{"auc", 0.91}, {"rows", 200}}}, {"ok", true}}},
                      {"list", {1, 2}},
                      {"none", nullptr}};
  EXPECT_EQ(JsonField(d, "to"), FieldValue(std::string("Rejected")));
  EXPECT_EQ(JsonField(d, "data.metrics.auc"), FieldValue(0.91));
  EXPECT_EQ(JsonField(d, "data.metrics.rows"), FieldValue(int64_t{200}));
  EXPECT_EQ(JsonField(d, "data.ok"), FieldValue(std::string("true")));
  EXPECT_EQ(JsonField(d, "list"), FieldValue(std::string("[1,2]")));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(JsonField(d, "none")));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(JsonField(d, "data.metrics.missing")));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(JsonField(d, "to.deeper")));
}

}  // namespace
}  // namespace kervan::core::filter
