// Error values and Result<T>: every failure carries the errno, the operation
// that failed and the path or value involved (the crun model), so a message
// reads "open: ENOENT (/var/lib/airlock/pool.img)".
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

namespace airlock {

struct Error {
  int err = 0;            // errno, or 0 for a logical error (bad input)
  std::string op;         // the operation or launch step that failed
  std::string detail;     // the path or value involved; may be empty

  // "op: ENAME (detail)" or "op: detail" when err == 0.
  std::string Message() const;
};

template <typename T>
using Result = std::expected<T, Error>;

// An error from the current errno.
inline std::unexpected<Error> Errno(std::string op, std::string detail = {}) {
  return std::unexpected(Error{errno, std::move(op), std::move(detail)});
}
// An error with an explicit errno.
inline std::unexpected<Error> ErrnoValue(int err, std::string op,
                                         std::string detail = {}) {
  return std::unexpected(Error{err, std::move(op), std::move(detail)});
}
// A logical error (bad input, violated invariant): no errno.
inline std::unexpected<Error> Fail(std::string op, std::string detail) {
  return std::unexpected(Error{0, std::move(op), std::move(detail)});
}

// Symbolic errno name ("ENOENT"), or the number if unknown.
std::string ErrnoName(int err);

}  // namespace airlock

// Propagates the error of a Result-returning expression; yields its value.
#define AIRLOCK_CONCAT_(a, b) a##b
#define AIRLOCK_CONCAT(a, b) AIRLOCK_CONCAT_(a, b)
#define TRY(expr)                                                   \
  ({                                                                \
    auto AIRLOCK_CONCAT(_r, __LINE__) = (expr);                     \
    if (!AIRLOCK_CONCAT(_r, __LINE__))                              \
      return std::unexpected(std::move(AIRLOCK_CONCAT(_r, __LINE__).error())); \
    std::move(AIRLOCK_CONCAT(_r, __LINE__)).value();                \
  })
