// Progress of long steps (issue 8): mmdebstrap, package downloads, layer
// conversion, import of large layers. On a terminal one line is redrawn in
// place with a bar ("\r" and an erase), at most ~10 times a second; on
// anything else (a log, a CI job, a pipe) plain lines are written: one per
// phase, and for a long byte count one every 10% or 10 seconds, so logs stay
// short and readable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace airlock::images::build {

class Progress {
 public:
  // Writes to `out`; `tty` chooses the bar. Tests pass a file and false.
  Progress(FILE* out, bool tty);
  // stderr, with a bar if stderr is a terminal (and TERM isn't "dumb").
  static Progress ForStderr();
  ~Progress();

  // A new phase ("base: downloading packages with apt"). Ends the previous
  // one's bar.
  void Phase(const std::string& label);
  // Bytes (or items) done of `total` in the current phase; total 0 means
  // unknown (a byte count without a bar).
  void Update(uint64_t done, uint64_t total);
  // A fraction of the current phase (0-100) when it isn't counted in bytes
  // (apt's download status, mmdebstrap's phase).
  void Percent(double pct);
  // Ends the current phase with a summary ("done in 12.3 s").
  void Done(const std::string& summary);
  // A line of its own (a warning, a step's failure), clearing any bar.
  void Line(const std::string& text);

  bool tty() const { return tty_; }

 private:
  void Clear();
  static std::string Bytes(uint64_t n);
  double Now() const;

  FILE* out_;
  bool tty_;
  std::string label_;
  double phase_start_ = 0, last_draw_ = 0;
  int last_decile_ = -1;
  bool bar_drawn_ = false;
};

}  // namespace airlock::images::build
