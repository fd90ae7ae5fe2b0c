#include "core/filter.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

#include <fmt/format.h>

namespace kervan::core::filter {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
// Bytes of multi-byte UTF-8 characters count as letters, as they do for
// sqlparse (which MLflow uses), so unquoted keys may be in any script.
bool IsWordStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsWordChar(char c) {
  return IsWordStart(c) || IsDigit(c);
}
bool IsQuote(char c) {
  return c == '\'' || c == '"' || c == '`';
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) { return lower(x) == y; });
}

struct PrefixAlias {
  std::string_view name;
  Entity entity;
};
// MLflow's identifiers and their alternates; matched case-sensitively, as MLflow does.
constexpr PrefixAlias kPrefixes[] = {
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

// A dataset has these fields whatever is searched (MLflow's DATASET_ATTRIBUTES).
constexpr std::string_view kDatasetKeys[] = {"name", "digest", "context"};

bool IsOrdering(Op op) {
  return op == Op::kLt || op == Op::kLe || op == Op::kGt || op == Op::kGe;
}
bool IsPattern(Op op) {
  return op == Op::kLike || op == Op::kILike;
}
bool IsList(Op op) {
  return op == Op::kIn || op == Op::kNotIn;
}
bool IsNullTest(Op op) {
  return op == Op::kIsNull || op == Op::kIsNotNull;
}

// MLflow's VALID_METRIC/PARAM/TAG/STRING_ATTRIBUTE/NUMERIC_ATTRIBUTE/DATASET
// _COMPARATORS, with IS [NOT] NULL for params and tags.
bool OpAllowed(Entity entity, Op op) {
  switch (entity) {
    case Entity::kMetric:
      return op == Op::kEq || op == Op::kNe || IsOrdering(op);
    case Entity::kParam:
    case Entity::kTag:
      return op == Op::kEq || op == Op::kNe || IsPattern(op) || IsNullTest(op);
    case Entity::kAttribute:
      return !IsNullTest(op);
    case Entity::kData:
      return true;
    case Entity::kDataset:
      return op == Op::kEq || op == Op::kNe || IsPattern(op) || IsList(op);
  }
  return false;
}

std::string_view OpsFor(Entity entity) {
  switch (entity) {
    case Entity::kMetric:
      return "= != < <= > >=";
    case Entity::kParam:
    case Entity::kTag:
      return "= != LIKE ILIKE IS NULL IS NOT NULL";
    case Entity::kAttribute:
      return "= != < <= > >= LIKE ILIKE IN NOT IN";
    case Entity::kData:
      return "= != < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL";
    case Entity::kDataset:
      return "= != LIKE ILIKE IN NOT IN";
  }
  return "";
}

// At most `limit` bytes of `s`, cut on a UTF-8 character boundary.
std::string Snip(std::string_view s, std::size_t limit = 40) {
  if (s.size() <= limit)
    return std::string(s);
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80)
    --end;
  return std::string(s.substr(0, end)) + "...";
}

class Parser {
 public:
  // `field` names the input in errors ("filter", "order_by").
  Parser(std::string_view text, std::string_view field) : text_(text), field_(field) {}

  bool AtEnd() const { return pos_ >= text_.size(); }
  std::size_t pos() const { return pos_; }
  void Advance(std::size_t n) { pos_ = std::min(pos_ + n, text_.size()); }
  void SkipSpace() {
    while (!AtEnd() && IsSpace(text_[pos_]))
      ++pos_;
  }

  Error Fail(const std::string& message) const {
    return InvalidArgument(fmt::format("{}: {}", field_, message), std::string(field_));
  }

  // What stands at `at`, for "found ..." in messages.
  std::string Found(std::size_t at) const {
    while (at < text_.size() && IsSpace(text_[at]))
      ++at;
    if (at >= text_.size())
      return fmt::format("the end of {}", field_ == "filter" ? "the filter" : field_);
    std::size_t end = at + 1;
    const char c = text_[at];
    if (IsQuote(c)) {
      while (end < text_.size() && text_[end] != c)
        ++end;
      end = std::min(end + 1, text_.size());
      return Snip(text_.substr(at, end - at));
    }
    if (IsWordChar(c) || c == '.') {
      while (end < text_.size() && (IsWordChar(text_[end]) || text_[end] == '.'))
        ++end;
    } else {
      while (end < text_.size() && !IsSpace(text_[end]) && !IsWordChar(text_[end]) &&
             !IsQuote(text_[end]))
        ++end;
    }
    return fmt::format("\"{}\"", Snip(text_.substr(at, end - at)));
  }

  // The run of word characters at `at` (empty when none).
  std::string_view WordAt(std::size_t at) const {
    std::size_t end = at;
    while (end < text_.size() && IsWordChar(text_[end]))
      ++end;
    return text_.substr(at, end - at);
  }

  // Reads a '...', "..." or `...` token at pos_ and returns its text. A doubled
  // quote stands for the quote; in '...' and "..." a backslash before the
  // quote or another backslash escapes it, and any other backslash is kept.
  Result<std::string> ReadQuoted(std::string_view what) {
    const std::size_t start = pos_;
    const char q = text_[pos_++];
    std::string out;
    while (!AtEnd()) {
      const char c = text_[pos_];
      if (c == q) {
        if (pos_ + 1 < text_.size() && text_[pos_ + 1] == q) {
          out += q;
          pos_ += 2;
          continue;
        }
        ++pos_;
        return out;
      }
      if (c == '\\' && q != '`' && pos_ + 1 < text_.size() &&
          (text_[pos_ + 1] == q || text_[pos_ + 1] == '\\')) {
        out += text_[pos_ + 1];
        pos_ += 2;
        continue;
      }
      out += c;
      ++pos_;
    }
    return Fail(fmt::format("unterminated {} starting at offset {}", what, start));
  }

  // identifier := key | prefix "." key. Sets `written` to the identifier's text.
  Status ParseIdentifier(Entity& entity, std::string& key, std::string_view& written) {
    const std::size_t start = pos_;
    std::string first;
    const char c = AtEnd() ? '\0' : text_[pos_];
    if (c == '`' || c == '"') {
      ASSIGN_OR_RETURN(first, ReadQuoted("quoted name"));
    } else if (!AtEnd() && IsWordStart(c)) {
      first = WordAt(start);
      pos_ += first.size();
    } else if (c == '(') {
      return Fail(fmt::format("parentheses are not supported (offset {}); combine clauses with AND",
                              start));
    } else {
      return Fail(fmt::format(
          "expected a field such as metrics.auc, params.lr, tags.team or name at offset {}, "
          "found {}",
          start, Found(start)));
    }
    if (AtEnd() || text_[pos_] != '.') {
      if (first.empty())
        return Fail(fmt::format("empty name at offset {}", start));
      entity = Entity::kAttribute;
      key = std::move(first);
      written = text_.substr(start, pos_ - start);
      return Ok();
    }

    const auto* alias = std::find_if(std::begin(kPrefixes), std::end(kPrefixes),
                                     [&](const PrefixAlias& p) { return p.name == first; });
    if (alias == std::end(kPrefixes)) {
      return Fail(fmt::format(
          "unknown prefix \"{}\" at offset {}; expected metrics, params, tags, attributes or "
          "datasets (or metric, param, parameter(s), tag, attribute, attr, run, dataset, data)",
          Snip(first), start));
    }
    entity = alias->entity;
    ++pos_;  // the '.'
    const std::size_t key_at = pos_;
    if (!AtEnd() && (text_[pos_] == '`' || text_[pos_] == '"')) {
      ASSIGN_OR_RETURN(key, ReadQuoted("quoted key"));
    } else if (!AtEnd() && IsWordChar(text_[pos_])) {
      while (!AtEnd() && (IsWordChar(text_[pos_]) || text_[pos_] == '.'))
        ++pos_;
      key = text_.substr(key_at, pos_ - key_at);
      if (key.back() == '.' || key.find("..") != std::string::npos) {
        return Fail(fmt::format(
            "malformed key \"{}\" at offset {}; quote keys with special characters, e.g. {}.`{}`",
            Snip(key), key_at, Snip(first), Snip(key)));
      }
    } else {
      return Fail(fmt::format("expected a key after \"{}\" at offset {}, found {}",
                              Snip(text_.substr(start, key_at - start)), key_at, Found(key_at)));
    }
    if (key.empty())
      return Fail(fmt::format("empty key at offset {}", key_at));
    if (entity == Entity::kDataset && std::find(std::begin(kDatasetKeys), std::end(kDatasetKeys),
                                                key) == std::end(kDatasetKeys)) {
      return Fail(
          fmt::format("unknown dataset key \"{}\" at offset {}; expected name, digest or context",
                      Snip(key), key_at));
    }
    written = text_.substr(start, pos_ - start);
    return Ok();
  }

  Result<Op> ParseOperator(std::string_view written) {
    SkipSpace();
    const std::size_t at = pos_;
    auto expected = [&] {
      return Fail(fmt::format("expected a comparison operator after \"{}\" at offset {}, found {}",
                              Snip(written), at, Found(at)));
    };
    if (AtEnd())
      return expected();
    const std::string_view rest = text_.substr(at);
    std::optional<Op> symbol;
    std::size_t length = 1;
    if (rest.starts_with("!=")) {
      symbol = Op::kNe;
      length = 2;
    } else if (rest.starts_with("<=")) {
      symbol = Op::kLe;
      length = 2;
    } else if (rest.starts_with(">=")) {
      symbol = Op::kGe;
      length = 2;
    } else if (rest[0] == '=') {
      symbol = Op::kEq;
    } else if (rest[0] == '<') {
      symbol = Op::kLt;
    } else if (rest[0] == '>') {
      symbol = Op::kGt;
    }
    if (symbol) {
      // "==", "<>", "=>" and the like are not MLflow operators.
      if (length < rest.size() &&
          std::string_view("=<>!").find(rest[length]) != std::string::npos) {
        std::size_t end = length;
        while (end < rest.size() && std::string_view("=<>!").find(rest[end]) != std::string::npos)
          ++end;
        return Fail(fmt::format(
            "unknown operator \"{}\" at offset {}; use = != < <= > >=", rest.substr(0, end), at));
      }
      pos_ += length;
      return *symbol;
    }

    const std::string_view word = WordAt(at);
    auto keyword_after = [&](std::string_view keyword) {
      SkipSpace();
      const std::string_view next = WordAt(pos_);
      if (!EqualsIgnoreCase(next, keyword))
        return false;
      pos_ += next.size();
      return true;
    };
    if (EqualsIgnoreCase(word, "like") || EqualsIgnoreCase(word, "ilike") ||
        EqualsIgnoreCase(word, "in")) {
      pos_ += word.size();
      return word.size() == 4 ? Op::kLike : word.size() == 5 ? Op::kILike : Op::kIn;
    }
    if (EqualsIgnoreCase(word, "not")) {
      pos_ += word.size();
      if (keyword_after("in"))
        return Op::kNotIn;
      return Fail(fmt::format("expected IN after NOT at offset {}, found {}", pos_, Found(pos_)));
    }
    if (EqualsIgnoreCase(word, "is")) {
      pos_ += word.size();
      if (keyword_after("null"))
        return Op::kIsNull;
      if (keyword_after("not")) {
        if (keyword_after("null"))
          return Op::kIsNotNull;
        return Fail(
            fmt::format("expected NULL after IS NOT at offset {}, found {}", pos_, Found(pos_)));
      }
      return Fail(fmt::format("expected NULL or NOT NULL after IS at offset {}, found {}", pos_,
                              Found(pos_)));
    }
    return expected();
  }

  Status ParseNumber(Comparison& c) {
    const std::size_t start = pos_;
    if (text_[pos_] == '-' || text_[pos_] == '+')
      ++pos_;
    bool integer = true;
    while (!AtEnd() && IsDigit(text_[pos_]))
      ++pos_;
    if (!AtEnd() && text_[pos_] == '.') {
      integer = false;
      ++pos_;
      while (!AtEnd() && IsDigit(text_[pos_]))
        ++pos_;
    }
    bool malformed = false;
    if (!AtEnd() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integer = false;
      ++pos_;
      if (!AtEnd() && (text_[pos_] == '-' || text_[pos_] == '+'))
        ++pos_;
      malformed = AtEnd() || !IsDigit(text_[pos_]);
      while (!AtEnd() && IsDigit(text_[pos_]))
        ++pos_;
    }
    if (!AtEnd() && (IsWordChar(text_[pos_]) || text_[pos_] == '.')) {
      malformed = true;
      while (!AtEnd() && (IsWordChar(text_[pos_]) || text_[pos_] == '.'))
        ++pos_;
    }
    const std::string_view literal = text_.substr(start, pos_ - start);
    if (malformed)
      return Fail(fmt::format("malformed number \"{}\" at offset {}", Snip(literal), start));
    const std::string_view digits = literal[0] == '+' ? literal.substr(1) : literal;
    double number = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
    if (ec == std::errc::result_out_of_range)
      return Fail(fmt::format("number {} at offset {} is out of range", Snip(literal), start));
    if (ec != std::errc() || end != digits.data() + digits.size())
      return Fail(fmt::format("malformed number \"{}\" at offset {}", Snip(literal), start));
    c.numeric = true;
    c.number = number;
    c.text = std::string(literal);
    if (integer) {
      std::int64_t value = 0;
      auto [iend, iec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (iec == std::errc() && iend == digits.data() + digits.size())
        c.int64 = value;
    }
    return Ok();
  }

  bool AtNumber() const {
    auto digit_at = [&](std::size_t i) { return i < text_.size() && IsDigit(text_[i]); };
    std::size_t i = pos_;
    if (text_[i] == '-' || text_[i] == '+')
      ++i;
    return digit_at(i) || (i < text_.size() && text_[i] == '.' && digit_at(i + 1));
  }

  Status ParseList(Comparison& c) {
    const std::size_t list_at = pos_;
    if (AtEnd() || text_[pos_] != '(') {
      return Fail(
          fmt::format("expected a parenthesised list of quoted strings such as ('a', 'b') after {} "
                      "at offset {}, found {}",
                      OpText(c.op), list_at, Found(list_at)));
    }
    ++pos_;
    SkipSpace();
    if (!AtEnd() && text_[pos_] == ')')
      return Fail(fmt::format("empty {} list at offset {}; it needs at least one quoted string",
                              OpText(c.op), list_at));
    auto unterminated = [&] {
      return Fail(fmt::format("unterminated {} list starting at offset {}; expected \")\"",
                              OpText(c.op), list_at));
    };
    while (true) {
      SkipSpace();
      if (AtEnd())
        return unterminated();
      if (text_[pos_] != '\'' && text_[pos_] != '"') {
        return Fail(fmt::format("expected a quoted string in the {} list at offset {}, found {}",
                                OpText(c.op), pos_, Found(pos_)));
      }
      ASSIGN_OR_RETURN(std::string item, ReadQuoted("string"));
      c.list.push_back(std::move(item));
      SkipSpace();
      if (AtEnd())
        return unterminated();
      if (text_[pos_] == ')') {
        ++pos_;
        return Ok();
      }
      if (text_[pos_] != ',') {
        return Fail(fmt::format("expected \",\" or \")\" in the {} list at offset {}, found {}",
                                OpText(c.op), pos_, Found(pos_)));
      }
      ++pos_;
      SkipSpace();
      // A trailing comma, as Python writes a one-element tuple: ('a',).
      if (!AtEnd() && text_[pos_] == ')') {
        ++pos_;
        return Ok();
      }
    }
  }

  Result<Comparison> ParseClause() {
    Comparison c;
    c.offset = pos_;
    std::string_view written;
    RETURN_IF_ERROR(ParseIdentifier(c.entity, c.key, written));
    SkipSpace();
    const std::size_t op_at = pos_;
    ASSIGN_OR_RETURN(c.op, ParseOperator(written));
    if (!OpAllowed(c.entity, c.op)) {
      return Fail(fmt::format("operator {} is not supported for {} at offset {} ({} take {})",
                              OpText(c.op), EntityName(c.entity), op_at, EntityName(c.entity),
                              OpsFor(c.entity)));
    }
    if (IsNullTest(c.op))
      return c;
    SkipSpace();
    const std::size_t value_at = pos_;
    if (IsList(c.op)) {
      RETURN_IF_ERROR(ParseList(c));
      return c;
    }
    if (!AtEnd() && (text_[pos_] == '\'' || text_[pos_] == '"')) {
      ASSIGN_OR_RETURN(c.text, ReadQuoted("string"));
    } else if (!AtEnd() && AtNumber()) {
      RETURN_IF_ERROR(ParseNumber(c));
    } else {
      return Fail(fmt::format(
          "expected a value (a quoted string or a number) after \"{} {}\" at offset {}, found {}",
          Snip(written), OpText(c.op), value_at, Found(value_at)));
    }
    const std::string raw = Snip(text_.substr(value_at, pos_ - value_at));
    if (c.entity == Entity::kMetric && !c.numeric) {
      return Fail(fmt::format("expected a number for \"{}\" at offset {}, found {}", Snip(written),
                              value_at, raw));
    }
    if ((c.entity == Entity::kParam || c.entity == Entity::kTag || c.entity == Entity::kDataset) &&
        c.numeric) {
      return Fail(fmt::format("expected a quoted string for \"{}\" at offset {}, found {}",
                              Snip(written), value_at, raw));
    }
    if (IsOrdering(c.op) && !c.numeric) {
      return Fail(fmt::format("expected a number after \"{}\" at offset {}, found {}", OpText(c.op),
                              value_at, raw));
    }
    if (IsPattern(c.op) && c.numeric) {
      return Fail(fmt::format("expected a quoted string pattern after {} at offset {}, found {}",
                              OpText(c.op), value_at, raw));
    }
    return c;
  }

 private:
  std::string_view text_;
  std::string_view field_;
  std::size_t pos_ = 0;
};

// ---- Like ----

// An invalid UTF-8 byte b decodes to kInvalidByte + b: never a real code point.
constexpr char32_t kInvalidByte = 0x110000;

void Decode(std::string_view s, std::vector<char32_t>& out) {
  out.clear();
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t length = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    if ((b0 & 0xE0) == 0xC0) {
      length = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      length = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      length = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool valid = length != 0 && i + length <= s.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      valid = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    valid = valid && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (valid) {
      out.push_back(cp);
      i += length;
    } else {
      out.push_back(kInvalidByte + b0);
      ++i;
    }
  }
}

// Simple lower-case folding for the scripts Like() promises.
char32_t Fold(char32_t c) {
  if (c < 0x80)
    return (c >= 'A' && c <= 'Z') ? c + 0x20 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7)  // Latin-1 capitals
    return c + 0x20;
  if (c >= 0x100 && c <= 0x17F) {  // Latin Extended-A: pairs of capital, small
    if (c <= 0x12F || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
      return c | 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
      return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x178)  // Ÿ
      return 0xFF;
    return c;
  }
  if (c >= 0x386 && c <= 0x3C2) {  // Greek
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
      return c + 0x20;
    if (c == 0x386)
      return 0x3AC;
    if (c >= 0x388 && c <= 0x38A)
      return c + 0x25;
    if (c == 0x38C)
      return 0x3CC;
    if (c == 0x38E || c == 0x38F)
      return c + 0x3F;
    if (c == 0x3C2)  // final sigma
      return 0x3C3;
    return c;
  }
  if (c >= 0x400 && c <= 0x40F)  // Cyrillic Ѐ..Џ
    return c + 0x50;
  if (c >= 0x410 && c <= 0x42F)  // Cyrillic А..Я
    return c + 0x20;
  return c;
}

enum class PatternKind { kLiteral, kOne, kAny };
struct PatternItem {
  PatternKind kind;
  char32_t ch;
};

}  // namespace

std::string_view EntityName(Entity entity) {
  switch (entity) {
    case Entity::kMetric:
      return "metrics";
    case Entity::kParam:
      return "params";
    case Entity::kTag:
      return "tags";
    case Entity::kAttribute:
      return "attributes";
    case Entity::kDataset:
      return "datasets";
    case Entity::kData:
      return "data";
  }
  return "attributes";
}

std::string_view OpText(Op op) {
  switch (op) {
    case Op::kEq:
      return "=";
    case Op::kNe:
      return "!=";
    case Op::kLt:
      return "<";
    case Op::kLe:
      return "<=";
    case Op::kGt:
      return ">";
    case Op::kGe:
      return ">=";
    case Op::kLike:
      return "LIKE";
    case Op::kILike:
      return "ILIKE";
    case Op::kIn:
      return "IN";
    case Op::kNotIn:
      return "NOT IN";
    case Op::kIsNull:
      return "IS NULL";
    case Op::kIsNotNull:
      return "IS NOT NULL";
  }
  return "=";
}

Result<Filter> Parse(std::string_view text) {
  Parser parser(text, "filter");
  Filter filter;
  parser.SkipSpace();
  if (parser.AtEnd())
    return filter;
  while (true) {
    ASSIGN_OR_RETURN(Comparison clause, parser.ParseClause());
    filter.clauses.push_back(std::move(clause));
    parser.SkipSpace();
    if (parser.AtEnd())
      return filter;
    const std::size_t at = parser.pos();
    const std::string_view word = parser.WordAt(at);
    if (EqualsIgnoreCase(word, "or")) {
      return parser.Fail(
          fmt::format("OR is not supported; combine clauses with AND (OR at offset {})", at));
    }
    if (!EqualsIgnoreCase(word, "and")) {
      return parser.Fail(fmt::format("expected AND or the end of the filter at offset {}, found {}",
                                     at, parser.Found(at)));
    }
    parser.Advance(word.size());
    parser.SkipSpace();
    if (parser.AtEnd()) {
      return parser.Fail(
          fmt::format("expected a clause after AND at offset {}, found the end of the filter", at));
    }
  }
}

Result<OrderBy> ParseOrderBy(std::string_view text) {
  Parser parser(text, "order_by");
  OrderBy order_by;
  parser.SkipSpace();
  if (parser.AtEnd()) {
    return parser.Fail(
        "expected a field to order by, such as \"metrics.auc DESC\" or \"start_time\", found "
        "nothing");
  }
  const std::size_t start = parser.pos();
  std::string_view written;
  RETURN_IF_ERROR(parser.ParseIdentifier(order_by.entity, order_by.key, written));
  if (order_by.entity == Entity::kDataset) {
    return parser.Fail(
        fmt::format("cannot order by dataset field \"{}\" at offset {}", Snip(written), start));
  }
  parser.SkipSpace();
  if (parser.AtEnd())
    return order_by;
  const std::size_t at = parser.pos();
  const std::string_view word = parser.WordAt(at);
  if (EqualsIgnoreCase(word, "asc")) {
    order_by.ascending = true;
  } else if (EqualsIgnoreCase(word, "desc")) {
    order_by.ascending = false;
  } else {
    return parser.Fail(fmt::format("expected ASC or DESC after \"{}\" at offset {}, found {}",
                                   Snip(written), at, parser.Found(at)));
  }
  parser.Advance(word.size());
  parser.SkipSpace();
  if (!parser.AtEnd()) {
    return parser.Fail(
        fmt::format("expected the end of order_by after \"{}\" at offset {}, found {}", word,
                    parser.pos(), parser.Found(parser.pos())));
  }
  return order_by;
}

namespace {

// A key that Parse() reads back unquoted after a prefix: word characters in
// dot-separated, non-empty segments.
bool IsPlainKey(std::string_view key) {
  if (key.empty() || key.front() == '.' || key.back() == '.' ||
      key.find("..") != std::string_view::npos)
    return false;
  return std::all_of(key.begin(), key.end(), [](char c) { return IsWordChar(c) || c == '.'; });
}

void AppendQuotedString(std::string& out, std::string_view s) {
  out += '\'';
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\\')
      out += "\\\\";
    else
      out += c;
  }
  out += '\'';
}

}  // namespace

std::string Format(const Filter& filter) {
  std::string out;
  for (const Comparison& c : filter.clauses) {
    if (!out.empty())
      out += " AND ";
    out += EntityName(c.entity);
    out += '.';
    if (IsPlainKey(c.key)) {
      out += c.key;
    } else {
      out += '`';
      for (char ch : c.key)
        out += ch == '`' ? std::string("``") : std::string(1, ch);
      out += '`';
    }
    out += ' ';
    out += OpText(c.op);
    if (IsNullTest(c.op))
      continue;
    out += ' ';
    if (IsList(c.op)) {
      out += '(';
      for (std::size_t i = 0; i < c.list.size(); ++i) {
        if (i > 0)
          out += ", ";
        AppendQuotedString(out, c.list[i]);
      }
      out += ')';
    } else if (c.numeric) {
      if (!c.text.empty())
        out += c.text;
      else if (c.int64)
        out += std::to_string(*c.int64);
      else
        out += fmt::format("{}", c.number);
    } else {
      AppendQuotedString(out, c.text);
    }
  }
  return out;
}

bool Like(std::string_view value, std::string_view pattern, bool case_insensitive) {
  std::vector<char32_t> chars;
  Decode(pattern, chars);
  std::vector<PatternItem> items;
  items.reserve(chars.size());
  for (std::size_t i = 0; i < chars.size(); ++i) {
    const char32_t c = chars[i];
    if (c == '%') {
      if (items.empty() || items.back().kind != PatternKind::kAny)
        items.push_back({PatternKind::kAny, 0});
    } else if (c == '_') {
      items.push_back({PatternKind::kOne, 0});
    } else if (c == '\\' && i + 1 < chars.size()) {
      ++i;
      items.push_back({PatternKind::kLiteral, case_insensitive ? Fold(chars[i]) : chars[i]});
    } else {
      items.push_back({PatternKind::kLiteral, case_insensitive ? Fold(c) : c});
    }
  }
  Decode(value, chars);
  if (case_insensitive) {
    for (char32_t& c : chars)
      c = Fold(c);
  }

  // Greedy matching that backtracks only to the last %: O(value * pattern).
  constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::size_t v = 0;
  std::size_t p = 0;
  std::size_t star = kNone;
  std::size_t resume = 0;
  while (v < chars.size()) {
    if (p < items.size() && (items[p].kind == PatternKind::kOne ||
                             (items[p].kind == PatternKind::kLiteral && items[p].ch == chars[v]))) {
      ++v;
      ++p;
    } else if (p < items.size() && items[p].kind == PatternKind::kAny) {
      star = p++;
      resume = v;
    } else if (star != kNone) {
      p = star + 1;
      v = ++resume;
    } else {
      return false;
    }
  }
  while (p < items.size() && items[p].kind == PatternKind::kAny)
    ++p;
  return p == items.size();
}

bool Matches(const Comparison& clause, const FieldValue& value) {
  const bool absent = std::holds_alternative<std::monostate>(value);
  if (clause.op == Op::kIsNull)
    return absent;
  if (clause.op == Op::kIsNotNull)
    return !absent;
  if (absent)
    return false;

  if (const auto* s = std::get_if<std::string>(&value)) {
    if (clause.numeric)
      return false;
    const auto in_list = [&] {
      return std::find(clause.list.begin(), clause.list.end(), *s) != clause.list.end();
    };
    switch (clause.op) {
      case Op::kEq:
        return *s == clause.text;
      case Op::kNe:
        return *s != clause.text;
      case Op::kLike:
        return Like(*s, clause.text, false);
      case Op::kILike:
        return Like(*s, clause.text, true);
      case Op::kIn:
        return in_list();
      case Op::kNotIn:
        return !in_list();
      default:
        return false;  // strings are not ordered by this language
    }
  }

  if (!clause.numeric)
    return false;
  const auto* exact = std::get_if<std::int64_t>(&value);
  if (exact != nullptr && clause.int64) {
    const std::int64_t a = *exact;
    const std::int64_t b = *clause.int64;
    switch (clause.op) {
      case Op::kEq:
        return a == b;
      case Op::kNe:
        return a != b;
      case Op::kLt:
        return a < b;
      case Op::kLe:
        return a <= b;
      case Op::kGt:
        return a > b;
      case Op::kGe:
        return a >= b;
      default:
        return false;
    }
  }
  const double a = exact != nullptr ? static_cast<double>(*exact) : std::get<double>(value);
  const double b = clause.number;
  switch (clause.op) {
    case Op::kEq:
      return a == b;
    case Op::kNe:
      return a != b;  // true for NaN, as in MLflow's in-memory search
    case Op::kLt:
      return a < b;
    case Op::kLe:
      return a <= b;
    case Op::kGt:
      return a > b;
    case Op::kGe:
      return a >= b;
    default:
      return false;
  }
}

bool Matches(const Filter& filter, const FieldLookup& lookup) {
  return std::all_of(filter.clauses.begin(), filter.clauses.end(),
                     [&](const Comparison& c) { return Matches(c, lookup(c)); });
}

namespace {

std::string EntityList(std::span<const Entity> entities) {
  std::string out;
  for (Entity e : entities) {
    if (!out.empty())
      out += ", ";
    out += EntityName(e);
  }
  return out.empty() ? "none" : out;
}

std::string AttributeList(std::span<const AttributeKey> keys) {
  std::string out;
  for (const AttributeKey& k : keys) {
    if (!out.empty())
      out += ", ";
    out += k.name;
  }
  return out.empty() ? "none" : out;
}

// The prefix and attribute key checks shared by filters and order_by.
Result<const AttributeKey*> CheckField(Entity entity, const std::string& key, const Schema& schema,
                                       std::string_view field, std::string_view where) {
  if (std::find(schema.entities.begin(), schema.entities.end(), entity) == schema.entities.end()) {
    return InvalidArgument(
        fmt::format("{}: {} are not supported by this search ({}); use {}", field,
                    EntityName(entity), where, EntityList(schema.entities)),
        std::string(field));
  }
  if (entity != Entity::kAttribute)
    return nullptr;
  const auto attribute = std::find_if(schema.attributes.begin(), schema.attributes.end(),
                                      [&](const AttributeKey& a) { return a.name == key; });
  if (attribute == schema.attributes.end()) {
    return InvalidArgument(fmt::format("{}: unknown attribute \"{}\" ({}); valid attributes: {}",
                                       field, Snip(key), where, AttributeList(schema.attributes)),
                           std::string(field));
  }
  return &*attribute;
}

}  // namespace

Status Validate(const Filter& filter, const Schema& schema) {
  for (const Comparison& c : filter.clauses) {
    const std::string where = fmt::format("clause at offset {}", c.offset);
    ASSIGN_OR_RETURN(const AttributeKey* attribute,
                     CheckField(c.entity, c.key, schema, "filter", where));
    if (attribute == nullptr)
      continue;
    if (attribute->numeric && !c.numeric) {
      return InvalidArgument(
          fmt::format("filter: attribute \"{}\" compares with numbers using = != < <= > >= ({}), "
                      "found {} with {}",
                      Snip(c.key), where, OpText(c.op), IsList(c.op) ? "a list" : "a string"),
          "filter");
    }
    if (!attribute->numeric && c.numeric) {
      return InvalidArgument(
          fmt::format("filter: attribute \"{}\" compares with quoted strings ({}), found {}",
                      Snip(c.key), where, Snip(c.text)),
          "filter");
    }
    if (IsList(c.op) && !attribute->in_list) {
      return InvalidArgument(fmt::format("filter: attribute \"{}\" does not support {} ({})",
                                         Snip(c.key), OpText(c.op), where),
                             "filter");
    }
  }
  return Ok();
}

Status Validate(const OrderBy& order_by, const Schema& schema) {
  ASSIGN_OR_RETURN(const AttributeKey* attribute,
                   CheckField(order_by.entity, order_by.key, schema, "order_by",
                              fmt::format("ordering by {}.{}", EntityName(order_by.entity),
                                          Snip(order_by.key))));
  (void)attribute;
  return Ok();
}

FieldValue JsonField(const nlohmann::json& document, std::string_view dotted_path) {
  const nlohmann::json* at = &document;
  while (!dotted_path.empty()) {
    size_t dot = dotted_path.find('.');
    std::string part(dotted_path.substr(0, dot));
    dotted_path = dot == std::string_view::npos ? "" : dotted_path.substr(dot + 1);
    if (!at->is_object() || !at->contains(part))
      return {};
    at = &(*at)[part];
  }
  if (at->is_number_integer())
    return at->get<int64_t>();
  if (at->is_number())
    return at->get<double>();
  if (at->is_string())
    return at->get<std::string>();
  if (at->is_boolean())
    return std::string(at->get<bool>() ? "true" : "false");
  if (at->is_null())
    return {};
  return at->dump();
}

}  // namespace kervan::core::filter
