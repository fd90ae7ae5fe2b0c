// Result<T> and Error: how every fallible call in Kervan reports failure.
//
// Expected failures are values (an Error with a closed code, a message that
// names the offending field and value, and optional structured details);
// bugs are assertions. The HTTP layer maps ErrorCode to a status in one place.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

namespace kervan::core {

enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kAborted,
  kPermissionDenied,
  kUnauthenticated,
  kResourceExhausted,
  kUnavailable,
  kDeadlineExceeded,
  kInternal,
};

// Stable snake_case name used on the wire ("invalid_argument").
std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string field;       // offending input field, empty when none
  nlohmann::json details;  // extra structured context (null when none)

  // "invalid_argument: field \"x\": must be ..." for logs and CLI output.
  std::string ToString() const;
};

Error InvalidArgument(std::string message, std::string field = {});
Error NotFound(std::string message);
Error AlreadyExists(std::string message);
Error FailedPrecondition(std::string message, nlohmann::json details = nullptr);
Error PermissionDenied(std::string message, nlohmann::json details = nullptr);
Error Unauthenticated(std::string message);
Error Unavailable(std::string message);
Error Internal(std::string message);

// Holds either a T or an Error. Accessor names follow std::expected so a later
// switch to C++23 is mechanical.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!has_value());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!has_value());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;
inline Status Ok() {
  return {};
}

// The status of a Result whose value is not needed.
template <typename T>
Status StatusOf(const Result<T>& r) {
  if (!r)
    return r.error();
  return Ok();
}

}  // namespace kervan::core

#define KERVAN_CONCAT_INNER(a, b) a##b
#define KERVAN_CONCAT(a, b) KERVAN_CONCAT_INNER(a, b)

// Returns the error of a failed Result/Status from the enclosing function.
#define RETURN_IF_ERROR(expr)                   \
  do {                                          \
    auto&& kervan_status_ = (expr);             \
    if (!kervan_status_)                        \
      return std::move(kervan_status_).error(); \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Compute());` binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(KERVAN_CONCAT(kervan_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp)                                   \
    return std::move(tmp).error();            \
  lhs = std::move(tmp).value()
