#include "core/result.h"

namespace kervan::core {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kFailedPrecondition:
      return "failed_precondition";
    case ErrorCode::kAborted:
      return "aborted";
    case ErrorCode::kPermissionDenied:
      return "permission_denied";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kResourceExhausted:
      return "resource_exhausted";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

std::string Error::ToString() const {
  std::string out(ErrorCodeName(code));
  out += ": ";
  out += message;
  return out;
}

Error InvalidArgument(std::string message, std::string field) {
  return {ErrorCode::kInvalidArgument, std::move(message), std::move(field), nullptr};
}
Error NotFound(std::string message) {
  return {ErrorCode::kNotFound, std::move(message), {}, nullptr};
}
Error AlreadyExists(std::string message) {
  return {ErrorCode::kAlreadyExists, std::move(message), {}, nullptr};
}
Error FailedPrecondition(std::string message, nlohmann::json details) {
  return {ErrorCode::kFailedPrecondition, std::move(message), {}, std::move(details)};
}
Error PermissionDenied(std::string message, nlohmann::json details) {
  return {ErrorCode::kPermissionDenied, std::move(message), {}, std::move(details)};
}
Error Unauthenticated(std::string message) {
  return {ErrorCode::kUnauthenticated, std::move(message), {}, nullptr};
}
Error Unavailable(std::string message) {
  return {ErrorCode::kUnavailable, std::move(message), {}, nullptr};
}
Error Internal(std::string message) {
  return {ErrorCode::kInternal, std::move(message), {}, nullptr};
}

}  // namespace kervan::core
