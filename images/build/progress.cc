#include "images/build/progress.h"

#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace airlock::images::build {

Progress::Progress(FILE* out, bool tty) : out_(out), tty_(tty) {}

Progress Progress::ForStderr() {
  const char* term = getenv("TERM");
  bool tty = isatty(2) == 1 && term != nullptr && strcmp(term, "dumb") != 0;
  return Progress(stderr, tty);
}

Progress::~Progress() { Clear(); }

double Progress::Now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string Progress::Bytes(uint64_t n) {
  char b[32];
  if (n >= (uint64_t{1} << 30))
    snprintf(b, sizeof b, "%.2f GB", static_cast<double>(n) / (1 << 30));
  else if (n >= (1u << 20))
    snprintf(b, sizeof b, "%.1f MB", static_cast<double>(n) / (1 << 20));
  else
    snprintf(b, sizeof b, "%.0f kB", static_cast<double>(n) / 1024);
  return b;
}

void Progress::Clear() {
  if (tty_ && bar_drawn_) {
    fputs("\r\033[K", out_);
    fflush(out_);
  }
  bar_drawn_ = false;
}

void Progress::Phase(const std::string& label) {
  Clear();
  label_ = label;
  phase_start_ = last_draw_ = Now();
  last_decile_ = -1;
  if (tty_) {
    fprintf(out_, "%s ...", label.c_str());
    bar_drawn_ = true;
  } else {
    fprintf(out_, "%s\n", label.c_str());
  }
  fflush(out_);
}

void Progress::Update(uint64_t done, uint64_t total) {
  double now = Now();
  if (tty_) {
    if (now - last_draw_ < 0.1 && done != total) return;
    last_draw_ = now;
    std::string line = "\r\033[K" + label_ + " ";
    if (total > 0) {
      const int width = 30;
      int fill = static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width);
      if (fill > width) fill = width;
      line += "[" + std::string(fill, '#') + std::string(width - fill, '-') + "] ";
      char pct[16];
      snprintf(pct, sizeof pct, "%3d%% ", static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total)));
      line += pct + Bytes(done) + "/" + Bytes(total);
    } else {
      line += Bytes(done);
    }
    char el[32];
    snprintf(el, sizeof el, " (%.0f s)", now - phase_start_);
    line += el;
    fputs(line.c_str(), out_);
    fflush(out_);
    bar_drawn_ = true;
    return;
  }
  // Plain lines: every 10% of a known total, else every 10 seconds.
  if (total > 0) {
    int decile = static_cast<int>(10.0 * static_cast<double>(done) / static_cast<double>(total));
    if (decile <= last_decile_ || decile == 0) return;
    last_decile_ = decile;
    fprintf(out_, "%s: %d%% (%s of %s)\n", label_.c_str(), decile * 10, Bytes(done).c_str(), Bytes(total).c_str());
  } else {
    if (now - last_draw_ < 10) return;
    last_draw_ = now;
    fprintf(out_, "%s: %s\n", label_.c_str(), Bytes(done).c_str());
  }
  fflush(out_);
}

void Progress::Percent(double pct) {
  if (pct < 0) pct = 0;
  if (pct > 100) pct = 100;
  double now = Now();
  if (tty_) {
    if (now - last_draw_ < 0.1 && pct < 100) return;
    last_draw_ = now;
    const int width = 30;
    int fill = static_cast<int>(pct / 100 * width);
    char tail[64];
    snprintf(tail, sizeof tail, "] %3.0f%% (%.0f s)", pct, now - phase_start_);
    std::string line = "\r\033[K" + label_ + " [" + std::string(fill, '#') + std::string(width - fill, '-') + tail;
    fputs(line.c_str(), out_);
    fflush(out_);
    bar_drawn_ = true;
    return;
  }
  int decile = static_cast<int>(pct / 10);
  if (decile <= last_decile_ || decile == 0) return;
  last_decile_ = decile;
  fprintf(out_, "%s: %d%%\n", label_.c_str(), decile * 10);
  fflush(out_);
}

void Progress::Done(const std::string& summary) {
  Clear();
  char el[32];
  snprintf(el, sizeof el, "%.1f s", Now() - phase_start_);
  fprintf(out_, "%s: %s (%s)\n", label_.c_str(), summary.c_str(), el);
  fflush(out_);
}

void Progress::Line(const std::string& text) {
  Clear();
  fprintf(out_, "%s\n", text.c_str());
  fflush(out_);
  if (tty_ && !label_.empty()) {
    fprintf(out_, "%s ...", label_.c_str());
    bar_drawn_ = true;
  }
}

}  // namespace airlock::images::build
