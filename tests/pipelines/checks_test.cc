#include "pipelines/checks.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stdlib.h>

#include <gtest/gtest.h>

namespace kervan::pipelines {
namespace {

namespace fs = std::filesystem;
using core::ErrorCode;

// ---- CSV ----

struct CsvCase {
  std::string name;
  std::string text;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

TEST(ParseCsv, ReadsRfc4180) {
  const std::vector<CsvCase> cases = {
      {"plain", "a,b\n1,2\n3,4\n", {"a", "b"}, {{"1", "2"}, {"3", "4"}}},
      {"no final newline", "a,b\n1,2", {"a", "b"}, {{"1", "2"}}},
      {"crlf", "a,b\r\n1,2\r\n3,4\r\n", {"a", "b"}, {{"1", "2"}, {"3", "4"}}},
      {"quoted separator", "a,b\n\"x,y\",2\n", {"a", "b"}, {{"x,y", "2"}}},
      {"escaped quote", "a,b\n\"say \"\"hi\"\"\",\"\"\"\"\n", {"a", "b"}, {{"say \"hi\"", "\""}}},
      {"embedded newline", "a,b\n\"line1\nline2\",2\n", {"a", "b"}, {{"line1\nline2", "2"}}},
      {"embedded crlf kept", "a,b\r\n\"x\r\ny\",2\r\n", {"a", "b"}, {{"x\r\ny", "2"}}},
      {"empty cells", "a,b,c\n,,\n1,,3\n", {"a", "b", "c"}, {{"", "", ""}, {"1", "", "3"}}},
      {"quoted empty", "a,b\n\"\",x\n", {"a", "b"}, {{"", "x"}}},
      {"trailing separator", "a,b\n1,\n", {"a", "b"}, {{"1", ""}}},
      {"blank lines skipped", "a,b\n\n1,2\r\n\r\n3,4\n\n", {"a", "b"}, {{"1", "2"}, {"3", "4"}}},
      {"byte order mark", "\xEF\xBB\xBFid,v\n1,2\n", {"id", "v"}, {{"1", "2"}}},
      {"stray quote inside unquoted field", "a\nab\"c\n", {"a"}, {{"ab\"c"}}},
      {"header only", "a,b\n", {"a", "b"}, {}},
      {"spaces kept", "a,b\n x , y \n", {"a", "b"}, {{" x ", " y "}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<CsvTable> table = ParseCsv(c.text);
    ASSERT_TRUE(table) << table.error().ToString();
    EXPECT_EQ(table->header, c.header);
    EXPECT_EQ(table->rows, c.rows);
  }
}

struct CsvErrorCase {
  std::string name;
  std::string text;
  std::string message;  // a substring of the error message
};

TEST(ParseCsv, ErrorsNameTheLine) {
  const std::vector<CsvErrorCase> cases = {
      {"too few fields", "a,b\n1,2\n3\n", "csv line 3: row has 1 fields, the header has 2"},
      {"too many fields", "a,b\n1,2,3\n", "csv line 2: row has 3 fields, the header has 2"},
      // The embedded newline counts as a line of the file.
      {"line after embedded newline", "a,b\n\"x\ny\",2\n1,2,3\n", "csv line 4:"},
      {"line after crlf", "a,b\r\n1,2\r\n\r\n1\r\n", "csv line 4:"},
      {"unterminated quote", "a,b\n1,2\n\"open,2\n3,4\n",
       "csv line 3: quoted field is never closed"},
      {"text after closing quote", "a,b\n\"x\"y,2\n", "csv line 2: unexpected character 'y'"},
      {"empty", "", "no header row"},
      {"only blank lines", "\n\r\n", "no header row"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<CsvTable> table = ParseCsv(c.text);
    ASSERT_FALSE(table);
    EXPECT_EQ(table.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(table.error().message.find(c.message), std::string::npos) << table.error().message;
  }
}

// ---- files ----

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kervan-checks-XXXXXX").string();
    char* made = mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path Write(const std::string& relative, std::string_view content) const {
    fs::path p = path_ / relative;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    return p;
  }

 private:
  fs::path path_;
};

TEST(ReadCsv, MissingFileIsNotFoundAndParseErrorsNameThePath) {
  TempDir dir;
  Result<CsvTable> missing = ReadCsv(dir.path() / "nope.csv");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);

  fs::path bad = dir.Write("bad.csv", "a,b\n1\n");
  Result<CsvTable> parsed = ReadCsv(bad);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(parsed.error().message.find(bad.string() + ": csv line 2"), std::string::npos)
      << parsed.error().message;
}

// ---- expectations ----

constexpr std::string_view kLocation = "steps.validate.expectations[2]";

Expectation MustParse(const Json& json) {
  Result<Expectation> e = ExpectationFromJson(json, kLocation);
  EXPECT_TRUE(e) << e.error().ToString();
  return e ? *e : Expectation{};
}

// Rows count from 1 after the header.
constexpr std::string_view kData =
    "id,name,score,flag,code\n"
    "1,alice,0.5,true,A1\n"
    "2,bob,1.5,FALSE,B2\n"
    "3,,0.25,true,xx\n"
    "3,dave,abc,maybe,C3\n"
    "5,eve,,false,D4\n";

struct ExpectationCase {
  Json expectation;
  bool passed;
  int64_t failing_rows;
  std::vector<std::string> examples;
  std::string detail;
};

TEST(Validate, EachKindPassesAndFails) {
  Result<CsvTable> table = ParseCsv(kData);
  ASSERT_TRUE(table);
  const std::vector<ExpectationCase> cases = {
      {{{"expect", "column_exists"}, {"column", "code"}},
       true,
       0,
       {},
       "column \"code\" is present"},
      {{{"expect", "column_exists"}, {"column", "label"}},
       false,
       0,
       {},
       "column \"label\" is missing (columns: id, name, score, flag, code)"},
      {{{"expect", "type"}, {"column", "id"}, {"type", "int"}},
       true,
       0,
       {},
       "0 of 5 non-null values are not int"},
      {{{"expect", "type"}, {"column", "id"}, {"type", "float"}},
       true,
       0,
       {},
       "0 of 5 non-null values are not float"},
      {{{"expect", "type"}, {"column", "score"}, {"type", "float"}},
       false,
       1,
       {"row 4: \"abc\""},
       "1 of 4 non-null values is not float"},
      {{{"expect", "type"}, {"column", "score"}, {"type", "int"}},
       false,
       4,
       {"row 1: \"0.5\"", "row 2: \"1.5\"", "row 3: \"0.25\"", "row 4: \"abc\""},
       "4 of 4 non-null values are not int"},
      {{{"expect", "type"}, {"column", "flag"}, {"type", "bool"}},
       false,
       1,
       {"row 4: \"maybe\""},
       "1 of 5 non-null values is not bool"},
      {{{"expect", "type"}, {"column", "name"}, {"type", "string"}},
       true,
       0,
       {},
       "0 of 4 non-null values are not string"},
      {{{"expect", "not_null"}, {"column", "id"}}, true, 0, {}, "0 of 5 rows are null"},
      {{{"expect", "not_null"}, {"column", "name"}},
       false,
       1,
       {"row 3: \"\""},
       "1 of 5 rows is null"},
      {{{"expect", "range"}, {"column", "score"}, {"min", 0}, {"max", 1}},
       false,
       2,
       {"row 2: \"1.5\"", "row 4: \"abc\""},
       "2 of 4 non-null values are outside [0, 1] or not numbers"},
      {{{"expect", "range"}, {"column", "id"}, {"min", 1}},
       true,
       0,
       {},
       "0 of 5 non-null values are below 1 or not numbers"},
      {{{"expect", "range"}, {"column", "id"}, {"max", 4.5}},
       false,
       1,
       {"row 5: \"5\""},
       "1 of 5 non-null values is above 4.5 or not numbers"},
      {{{"expect", "allowed_values"},
        {"column", "flag"},
        {"values", Json::array({true, false, "FALSE"})}},
       false,
       1,
       {"row 4: \"maybe\""},
       "1 of 5 non-null values is not one of true, false, FALSE"},
      {{{"expect", "allowed_values"}, {"column", "id"}, {"values", Json::array({1, 2, 3, 5})}},
       true,
       0,
       {},
       "0 of 5 non-null values are not one of 1, 2, 3, 5"},
      {{{"expect", "unique"}, {"column", "id"}},
       false,
       1,
       {"row 4: \"3\""},
       "1 of 5 non-null values repeat an earlier value"},
      {{{"expect", "unique"}, {"column", "name"}},
       true,
       0,
       {},
       "0 of 4 non-null values repeat an earlier value"},
      {{{"expect", "row_count"}, {"min", 1}, {"max", 10}},
       true,
       0,
       {},
       "5 rows, expected between 1 and 10"},
      {{{"expect", "row_count"}, {"min", 10}}, false, 0, {}, "5 rows, expected at least 10"},
      {{{"expect", "row_count"}, {"max", 4}}, false, 0, {}, "5 rows, expected at most 4"},
      {{{"expect", "regex"}, {"column", "code"}, {"pattern", "[A-Z][0-9]"}},
       false,
       1,
       {"row 3: \"xx\""},
       "1 of 5 non-null values does not match [A-Z][0-9]"},
      // regex_match: the pattern must cover the whole cell, not a part of it.
      {{{"expect", "regex"}, {"column", "name"}, {"pattern", "[a-z]+"}},
       true,
       0,
       {},
       "0 of 4 non-null values do not match [a-z]+"},
      {{{"expect", "regex"}, {"column", "name"}, {"pattern", "li"}},
       false,
       4,
       {"row 1: \"alice\"", "row 2: \"bob\"", "row 4: \"dave\"", "row 5: \"eve\""},
       "4 of 4 non-null values do not match li"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.expectation.dump());
    Expectation e = MustParse(c.expectation);
    ValidationReport report = Validate(*table, {e});
    ASSERT_EQ(report.results.size(), 1u);
    const ExpectationResult& r = report.results[0];
    EXPECT_EQ(r.passed, c.passed);
    EXPECT_EQ(report.passed, c.passed);
    EXPECT_EQ(r.failing_rows, c.failing_rows);
    EXPECT_EQ(r.examples, c.examples);
    EXPECT_EQ(r.detail, c.detail);
    EXPECT_EQ(r.expectation.ToJson(), e.ToJson());
  }
}

TEST(Validate, MissingColumnFailsThatExpectationOnly) {
  Result<CsvTable> table = ParseCsv(kData);
  ASSERT_TRUE(table);
  for (const char* kind : {"type", "not_null", "range", "allowed_values", "unique", "regex"}) {
    SCOPED_TRACE(kind);
    Expectation e;
    e.expect = kind;
    e.column = "label";
    e.type = "int";
    e.min = 0;
    e.values = {"a"};
    e.pattern = ".*";
    ValidationReport report =
        Validate(*table, {e, MustParse({{"expect", "not_null"}, {"column", "id"}})});
    ASSERT_EQ(report.results.size(), 2u);
    EXPECT_FALSE(report.passed);
    EXPECT_FALSE(report.results[0].passed);
    EXPECT_EQ(report.results[0].detail,
              "column \"label\" is missing (columns: id, name, score, flag, code)");
    EXPECT_TRUE(report.results[1].passed);
  }
}

TEST(Validate, WarningsDoNotFailTheReport) {
  Result<CsvTable> table = ParseCsv(kData);
  ASSERT_TRUE(table);
  std::vector<Expectation> expectations = {
      MustParse({{"expect", "not_null"}, {"column", "name"}, {"severity", "warning"}}),
      MustParse({{"expect", "unique"}, {"column", "id"}, {"severity", "warning"}}),
      MustParse({{"expect", "not_null"}, {"column", "id"}}),
  };
  ValidationReport report = Validate(*table, expectations);
  EXPECT_TRUE(report.passed);
  ASSERT_EQ(report.results.size(), 3u);
  EXPECT_FALSE(report.results[0].passed);
  EXPECT_FALSE(report.results[1].passed);
  EXPECT_TRUE(report.results[2].passed);

  // The same failure at severity error fails it.
  expectations.push_back(MustParse({{"expect", "unique"}, {"column", "id"}}));
  EXPECT_FALSE(Validate(*table, expectations).passed);
}

TEST(Validate, KeepsAtMostFiveExamplesButCountsEveryRow) {
  std::string text = "v\n";
  for (int i = 0; i < 12; ++i)
    text += "x" + std::to_string(i) + "\n";
  Result<CsvTable> table = ParseCsv(text);
  ASSERT_TRUE(table);
  ValidationReport report =
      Validate(*table, {MustParse({{"expect", "type"}, {"column", "v"}, {"type", "int"}})});
  const ExpectationResult& r = report.results.at(0);
  EXPECT_EQ(r.failing_rows, 12);
  EXPECT_EQ(r.examples, (std::vector<std::string>{"row 1: \"x0\"", "row 2: \"x1\"", "row 3: \"x2\"",
                                                  "row 4: \"x3\"", "row 5: \"x4\""}));
}

TEST(Validate, NullCellsAreIgnoredExceptByNotNull) {
  Result<CsvTable> table = ParseCsv("v\n\"\"\n1\n\"\"\n");
  ASSERT_TRUE(table);
  for (const Json& json : std::vector<Json>{
           {{"expect", "type"}, {"column", "v"}, {"type", "int"}},
           {{"expect", "range"}, {"column", "v"}, {"min", 0}, {"max", 1}},
           {{"expect", "allowed_values"}, {"column", "v"}, {"values", Json::array({"1"})}},
           {{"expect", "unique"}, {"column", "v"}},
           {{"expect", "regex"}, {"column", "v"}, {"pattern", "[0-9]"}},
       }) {
    SCOPED_TRACE(json.dump());
    EXPECT_TRUE(Validate(*table, {MustParse(json)}).results.at(0).passed);
  }
  ExpectationResult not_null =
      Validate(*table, {MustParse({{"expect", "not_null"}, {"column", "v"}})}).results.at(0);
  EXPECT_FALSE(not_null.passed);
  EXPECT_EQ(not_null.failing_rows, 2);
}

TEST(Validate, ExamplesEscapeAndTruncateCells) {
  std::string long_cell(200, 'z');
  Result<CsvTable> table = ParseCsv("v\n\"a \"\"q\"\"\"\n" + long_cell + "\n");
  ASSERT_TRUE(table);
  ExpectationResult r =
      Validate(*table, {MustParse({{"expect", "type"}, {"column", "v"}, {"type", "int"}})})
          .results.at(0);
  ASSERT_EQ(r.examples.size(), 2u);
  EXPECT_EQ(r.examples[0], "row 1: \"a \\\"q\\\"\"");
  EXPECT_EQ(r.examples[1], "row 2: \"" + std::string(80, 'z') + "\"...");
}

TEST(Validate, ReportJson) {
  Result<CsvTable> table = ParseCsv("a,b\n1,\n");
  ASSERT_TRUE(table);
  ValidationReport report =
      Validate(*table, {MustParse({{"expect", "not_null"}, {"column", "b"}})});
  Json expected = {
      {"passed", false},
      {"rows", 1},
      {"columns", Json::array({"a", "b"})},
      {"results",
       Json::array(
           {Json{{"expectation", {{"expect", "not_null"}, {"column", "b"}, {"severity", "error"}}},
                 {"passed", false},
                 {"failing_rows", 1},
                 {"examples", Json::array({"row 1: \"\""})},
                 {"detail", "1 of 1 row is null"}}})},
  };
  EXPECT_EQ(report.ToJson(), expected);
}

TEST(ValidateCsv, ReadsTheFile) {
  TempDir dir;
  fs::path csv = dir.Write("data.csv", kData);
  Result<ValidationReport> report =
      ValidateCsv(csv, {MustParse({{"expect", "row_count"}, {"min", 5}, {"max", 5}})});
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_TRUE(report->passed);
  EXPECT_EQ(report->rows, 5);
  EXPECT_EQ(report->columns, (std::vector<std::string>{"id", "name", "score", "flag", "code"}));

  Result<ValidationReport> missing = ValidateCsv(dir.path() / "missing.csv", {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

struct FromJsonErrorCase {
  Json json;
  std::string field;  // after the location
};

TEST(ExpectationFromJson, ErrorsNameTheField) {
  const std::vector<FromJsonErrorCase> cases = {
      {{{"expect", "not_null"}, {"column", "c"}, {"colour", 1}}, ".colour"},
      {{{"expect", "nope"}, {"column", "c"}}, ".expect"},
      {{{"column", "c"}}, ".expect"},
      {{{"expect", 3}, {"column", "c"}}, ".expect"},
      {{{"expect", "not_null"}}, ".column"},
      {{{"expect", "not_null"}, {"column", ""}}, ".column"},
      {{{"expect", "not_null"}, {"column", 7}}, ".column"},
      {{{"expect", "type"}, {"column", "c"}}, ".type"},
      {{{"expect", "type"}, {"column", "c"}, {"type", "decimal"}}, ".type"},
      {{{"expect", "range"}, {"column", "c"}, {"min", 2}, {"max", 1}}, ".min"},
      {{{"expect", "range"}, {"column", "c"}}, ".min"},
      {{{"expect", "range"}, {"column", "c"}, {"max", "1"}}, ".max"},
      {{{"expect", "row_count"}, {"min", 10}, {"max", 1}}, ".min"},
      {{{"expect", "row_count"}}, ".min"},
      {{{"expect", "row_count"}, {"min", 1}, {"column", "c"}}, ".column"},
      {{{"expect", "regex"}, {"column", "c"}, {"pattern", "(unclosed"}}, ".pattern"},
      {{{"expect", "regex"}, {"column", "c"}, {"pattern", "[z-a]"}}, ".pattern"},
      {{{"expect", "regex"}, {"column", "c"}}, ".pattern"},
      {{{"expect", "allowed_values"}, {"column", "c"}}, ".values"},
      {{{"expect", "allowed_values"}, {"column", "c"}, {"values", Json::array()}}, ".values"},
      {{{"expect", "allowed_values"}, {"column", "c"}, {"values", "a"}}, ".values"},
      {{{"expect", "allowed_values"}, {"column", "c"}, {"values", Json::array({"a", {{"b", 1}}})}},
       ".values[1]"},
      {{{"expect", "not_null"}, {"column", "c"}, {"severity", "fatal"}}, ".severity"},
      {{{"expect", "not_null"}, {"column", "c"}, {"pattern", "x"}}, ".pattern"},
      {{{"expect", "unique"}, {"column", "c"}, {"min", 1}}, ".min"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json.dump());
    Result<Expectation> e = ExpectationFromJson(c.json, kLocation);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.error().field, std::string(kLocation) + c.field);
    EXPECT_NE(e.error().message.find(std::string(kLocation) + c.field), std::string::npos)
        << e.error().message;
  }
  Result<Expectation> not_object = ExpectationFromJson(Json::array(), kLocation);
  ASSERT_FALSE(not_object);
  EXPECT_EQ(not_object.error().field, kLocation);
}

TEST(ExpectationFromJson, ReadsEveryKindAndRoundTrips) {
  const std::vector<Json> cases = {
      {{"expect", "column_exists"}, {"column", "c"}},
      {{"expect", "type"}, {"column", "c"}, {"type", "bool"}, {"severity", "warning"}},
      {{"expect", "not_null"}, {"column", "c"}},
      {{"expect", "range"}, {"column", "c"}, {"min", -1.5}},
      {{"expect", "range"}, {"column", "c"}, {"min", 0}, {"max", 0}},
      {{"expect", "allowed_values"}, {"column", "c"}, {"values", Json::array({"a", 1, 2.5, true})}},
      {{"expect", "unique"}, {"column", "c"}},
      {{"expect", "row_count"}, {"max", 100}},
      {{"expect", "regex"}, {"column", "c"}, {"pattern", "^[0-9]+$"}},
  };
  for (const Json& json : cases) {
    SCOPED_TRACE(json.dump());
    Expectation e = MustParse(json);
    EXPECT_EQ(e.expect, json["expect"]);
    Result<Expectation> again = ExpectationFromJson(e.ToJson(), kLocation);
    ASSERT_TRUE(again) << again.error().ToString();
    EXPECT_EQ(again->ToJson(), e.ToJson());
  }
  Expectation values = MustParse(cases[5]);
  EXPECT_EQ(values.values, (std::vector<std::string>{"a", "1", "2.5", "true"}));
  EXPECT_EQ(MustParse(cases[0]).severity, "error");
  EXPECT_EQ(MustParse(cases[1]).severity, "warning");
  Expectation range = MustParse(cases[3]);
  EXPECT_EQ(range.min, -1.5);
  EXPECT_FALSE(range.max.has_value());
}

// ---- digests ----

TEST(DigestPath, FileIsSha256OfItsBytes) {
  TempDir dir;
  // FIPS 180-2's "abc" test vector.
  EXPECT_EQ(*DigestPath(dir.Write("abc.txt", "abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(*DigestPath(dir.Write("empty", "")),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string binary("a\0b\xff", 4);
  EXPECT_EQ(*DigestPath(dir.Write("bin", binary)), "sha256:" + core::Sha256Hex(binary));
}

TEST(DigestPath, MissingPathIsNotFound) {
  TempDir dir;
  Result<std::string> d = DigestPath(dir.path() / "absent");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, ErrorCode::kNotFound);
}

TEST(DigestPath, DirectoryHashesItsFilesInPathOrder) {
  TempDir dir;
  fs::path root = dir.path() / "data";
  dir.Write("data/b.txt", "bee");
  dir.Write("data/a.txt", "ay");
  dir.Write("data/sub/c.txt", "sea");
  std::string manifest;
  for (auto [name, content] : std::vector<std::pair<std::string, std::string>>{
           {"a.txt", "ay"}, {"b.txt", "bee"}, {"sub/c.txt", "sea"}}) {
    manifest += name;
    manifest += '\0';
    manifest += "sha256:" + core::Sha256Hex(content) + "\n";
  }
  Result<std::string> digest = DigestPath(root);
  ASSERT_TRUE(digest) << digest.error().ToString();
  EXPECT_EQ(*digest, "sha256:" + core::Sha256Hex(manifest));
  EXPECT_EQ(*DigestPath(root), *digest);  // stable

  // The same tree elsewhere has the same digest: only relative paths count.
  TempDir other;
  other.Write("copy/sub/c.txt", "sea");
  other.Write("copy/a.txt", "ay");
  other.Write("copy/b.txt", "bee");
  EXPECT_EQ(*DigestPath(other.path() / "copy"), *digest);

  // Empty directories hold no content.
  fs::create_directories(root / "empty");
  EXPECT_EQ(*DigestPath(root), *digest);

  dir.Write("data/sub/c.txt", "sea!");
  std::string changed = *DigestPath(root);
  EXPECT_NE(changed, *digest);
  dir.Write("data/sub/c.txt", "sea");
  EXPECT_EQ(*DigestPath(root), *digest);

  fs::rename(root / "b.txt", root / "bb.txt");
  std::string renamed = *DigestPath(root);
  EXPECT_NE(renamed, *digest);
  fs::rename(root / "bb.txt", root / "b.txt");
  EXPECT_EQ(*DigestPath(root), *digest);

  dir.Write("data/new.txt", "");
  EXPECT_NE(*DigestPath(root), *digest);
}

TEST(DigestPath, SymlinksInsideADirectoryHashTheirTargetText) {
  TempDir dir;
  fs::path root = dir.path() / "data";
  dir.Write("data/a.txt", "ay");
  dir.Write("outside/secret.txt", "big");
  fs::create_directory_symlink("../outside", root / "link");
  std::string manifest = std::string("a.txt") + '\0' + "sha256:" + core::Sha256Hex("ay") + "\n" +
                         "link" + '\0' + "sha256:" + core::Sha256Hex("../outside") + "\n";
  EXPECT_EQ(*DigestPath(root), "sha256:" + core::Sha256Hex(manifest));
  // The path itself is followed.
  fs::create_directory_symlink(root, dir.path() / "alias");
  EXPECT_EQ(*DigestPath(dir.path() / "alias"), *DigestPath(root));
}

// ---- profiles ----

TEST(ProfilePath, CsvTypesAndMissingCounts) {
  TempDir dir;
  const std::string text =
      "i,f,b,s,mixed_bool,empty,big,special\n"
      "1,1,true,x,true,,9223372036854775807,nan\n"
      "-2,2.5,FALSE,,1,,9223372036854775808,inf\n"
      "+3,,True,3,,,1,0x10\n"
      ",1e3,,,,,,\n";
  fs::path csv = dir.Write("data.csv", text);
  Result<DatasetProfile> profile = ProfilePath(csv);
  ASSERT_TRUE(profile) << profile.error().ToString();
  EXPECT_EQ(profile->digest, "sha256:" + core::Sha256Hex(text));
  EXPECT_EQ(profile->digest, *DigestPath(csv));
  EXPECT_EQ(profile->bytes, static_cast<int64_t>(text.size()));
  EXPECT_EQ(profile->rows, 4);
  struct Want {
    std::string name, type;
    int64_t missing;
  };
  const std::vector<Want> want = {
      {"i", "int", 1},          {"f", "float", 1},           {"b", "bool", 1},
      {"s", "string", 2},       {"mixed_bool", "string", 2},  // bools with numbers: strings
      {"empty", "string", 4},    // no non-null cell: nothing narrower fits
      {"big", "float", 1},       // beyond int64: a float
      {"special", "string", 1},  // nan, inf and hex are not numbers
  };
  ASSERT_EQ(profile->columns.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].name);
    EXPECT_EQ(profile->columns[i].name, want[i].name);
    EXPECT_EQ(profile->columns[i].type, want[i].type);
    EXPECT_EQ(profile->columns[i].missing, want[i].missing);
  }
  Json json = profile->ToJson();
  EXPECT_EQ(json["rows"], 4);
  EXPECT_EQ(json["schema"][0], (Json{{"name", "i"}, {"type", "int"}, {"missing", 1}}));
  EXPECT_EQ(json["digest"], profile->digest);
}

TEST(ProfilePath, OtherFilesAndDirectoriesHaveNoSchema) {
  TempDir dir;
  fs::path file = dir.Write("model.json", "{\"a\": 1}");
  Result<DatasetProfile> profile = ProfilePath(file);
  ASSERT_TRUE(profile);
  EXPECT_FALSE(profile->rows.has_value());
  EXPECT_TRUE(profile->columns.empty());
  EXPECT_EQ(profile->ToJson(), (Json{{"digest", *DigestPath(file)}, {"bytes", 8}}));

  dir.Write("tree/a.csv", "x\n1\n");
  dir.Write("tree/sub/b.bin", "12345");
  Result<DatasetProfile> tree = ProfilePath(dir.path() / "tree");
  ASSERT_TRUE(tree);
  EXPECT_EQ(tree->digest, *DigestPath(dir.path() / "tree"));
  EXPECT_EQ(tree->bytes, 4 + 5);
  EXPECT_FALSE(tree->rows.has_value());
  EXPECT_FALSE(tree->ToJson().contains("schema"));
}

TEST(ProfilePath, ErrorsForMissingPathsAndBrokenCsv) {
  TempDir dir;
  Result<DatasetProfile> missing = ProfilePath(dir.path() / "absent.csv");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);

  Result<DatasetProfile> broken = ProfilePath(dir.Write("broken.CSV", "a,b\n\"x\n"));
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(broken.error().message.find("csv line 2"), std::string::npos);
}

}  // namespace
}  // namespace kervan::pipelines
