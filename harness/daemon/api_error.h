// Errors at the API edge: a status code (gRPC's numbering) and one line of
// text naming the field or the step. The daemon's logic returns these; the
// service turns them into grpc::Status unchanged.
#pragma once

#include <expected>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime/core/error.h"

namespace airlock::daemon {

enum class Code {
  kOk = 0,
  kCancelled = 1,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

struct ApiError {
  Code code = Code::kInternal;
  std::string message;
};

template <typename T>
using ApiResult = std::expected<T, ApiError>;

inline std::unexpected<ApiError> ApiFail(Code code, std::string message) {
  return std::unexpected(ApiError{code, std::move(message)});
}

// "field: what is wrong", as INVALID_ARGUMENT.
inline std::unexpected<ApiError> BadField(const std::string& field, const std::string& what) {
  return ApiFail(Code::kInvalidArgument, field + ": " + what);
}

// A runtime error, coded by its errno: ENOENT -> NOT_FOUND, EACCES/EPERM ->
// PERMISSION_DENIED, EEXIST -> ALREADY_EXISTS, ENOTDIR/EISDIR/ENOTEMPTY/
// EINVAL -> FAILED_PRECONDITION, ETIMEDOUT -> DEADLINE_EXCEEDED, ENOSPC/
// EDQUOT/EMFILE -> RESOURCE_EXHAUSTED; else INTERNAL.
inline std::unexpected<ApiError> FromError(const Error& e, const std::string& context = {}) {
  Code code = Code::kInternal;
  switch (e.err) {
    case ENOENT: code = Code::kNotFound; break;
    case EACCES: case EPERM: case EROFS: code = Code::kPermissionDenied; break;
    case EEXIST: code = Code::kAlreadyExists; break;
    case ENOTDIR: case EISDIR: case ENOTEMPTY: case EINVAL: case ELOOP: case EXDEV: case EBUSY:
      code = Code::kFailedPrecondition; break;
    case ETIMEDOUT: code = Code::kDeadlineExceeded; break;
    case ENOSPC: case EDQUOT: case EMFILE: case ENFILE: case EFBIG: code = Code::kResourceExhausted; break;
    default: break;
  }
  return ApiFail(code, context.empty() ? e.Message() : context + ": " + e.Message());
}

// A runtime Result at the API edge: its value, or FromError(its error).
template <typename T>
ApiResult<T> FromResult(Result<T> r, const std::string& context = {}) {
  if (!r) return FromError(r.error(), context);
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    return std::move(*r);
  }
}

}  // namespace airlock::daemon
