// Tie-aware comparison of top-k selections (the rules are stated in mla/indexer_select.hpp).
#include "mla/indexer_select.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace fp8lab::mla {
namespace {

struct Range {
  std::size_t start, end;
};
Range range_of(std::size_t i, std::size_t n, const std::int32_t* starts, const std::int32_t* ends) {
  const long long s = starts ? starts[i] : 0, e = ends ? ends[i] : static_cast<long long>(n);
  if (s < 0 || s > e || e > static_cast<long long>(n))
    throw std::invalid_argument("starts/ends: query " + std::to_string(i) + " has range [" + std::to_string(s) + ", " +
                                std::to_string(e) + "); expected 0 <= start <= end <= n = " + std::to_string(n));
  return {static_cast<std::size_t>(s), static_cast<std::size_t>(e)};
}

// The K-th largest logit of row[start, end) (K >= 1), NaN an error naming the query.
double threshold(const double* row, Range r, std::size_t K, std::size_t query) {
  std::vector<double> v(row + r.start, row + r.end);
  for (std::size_t j = 0; j < v.size(); ++j)
    if (std::isnan(v[j]))
      throw std::invalid_argument("logits: NaN at query " + std::to_string(query) + ", token " + std::to_string(r.start + j));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(K - 1), v.end(), std::greater<double>());
  return v[K - 1];
}

std::string g17(double x) {
  std::ostringstream o;
  o.precision(9);
  o << x;
  return o.str();
}

}  // namespace

std::vector<SelectionChange> selection_changes(const double* a, const double* b, std::size_t m, std::size_t n,
                                               const std::int32_t* starts, const std::int32_t* ends, int topk) {
  if (topk < 1) throw std::invalid_argument("topk: " + std::to_string(topk) + "; expected >= 1");
  std::vector<SelectionChange> out(m);
  for (std::size_t i = 0; i < m; ++i) {
    const Range r = range_of(i, n, starts, ends);
    const std::size_t K = std::min<std::size_t>(static_cast<std::size_t>(topk), r.end - r.start);
    SelectionChange& c = out[i];
    c.selected = K;
    if (K == 0) continue;
    const double* ra = a + i * n;
    const double* rb = b + i * n;
    const double ta = threshold(ra, r, K, i), tb = threshold(rb, r, K, i);
    std::size_t above_a = 0, above_b = 0, both_above = 0, a_above_b_at = 0, a_at_b_above = 0, both_at = 0;
    for (std::size_t j = r.start; j < r.end; ++j) {
      const int ca = ra[j] > ta ? 2 : ra[j] == ta ? 1 : 0, cb = rb[j] > tb ? 2 : rb[j] == tb ? 1 : 0;
      above_a += ca == 2;
      above_b += cb == 2;
      c.ties_a += ca == 1;
      c.ties_b += cb == 1;
      both_above += ca == 2 && cb == 2;
      a_above_b_at += ca == 2 && cb == 1;
      a_at_b_above += ca == 1 && cb == 2;
      both_at += ca == 1 && cb == 1;
    }
    const std::size_t ka = K - above_a, kb = K - above_b;
    const std::size_t x1 = std::min(a_above_b_at, kb), x2 = std::min(a_at_b_above, ka);
    const std::size_t x3 = std::min({both_at, kb - x1, ka - x2});
    c.changed = K - (both_above + x1 + x2 + x3);
  }
  return out;
}

std::string check_selection(const std::int32_t* indices, std::size_t m, int topk, const double* logits, std::size_t n,
                            const std::int32_t* starts, const std::int32_t* ends) {
  if (topk < 1) throw std::invalid_argument("topk: " + std::to_string(topk) + "; expected >= 1");
  const std::size_t T = static_cast<std::size_t>(topk);
  for (std::size_t i = 0; i < m; ++i) {
    const Range r = range_of(i, n, starts, ends);
    const std::size_t K = std::min(T, r.end - r.start);
    const std::int32_t* got = indices + i * T;
    const std::string q = "query " + std::to_string(i) + ": ";
    std::vector<std::int32_t> sel;
    for (std::size_t p = 0; p < T; ++p) {
      const std::int32_t x = got[p];
      if (x == -1) continue;
      if (x < 0 || static_cast<std::size_t>(x) < r.start || static_cast<std::size_t>(x) >= r.end)
        return q + "position " + std::to_string(p) + " holds index " + std::to_string(x) + ", outside the query's tokens [" +
               std::to_string(r.start) + ", " + std::to_string(r.end) + ") (and not the padding -1)";
      sel.push_back(x);
    }
    std::sort(sel.begin(), sel.end());
    for (std::size_t p = 1; p < sel.size(); ++p)
      if (sel[p] == sel[p - 1]) return q + "token " + std::to_string(sel[p]) + " is selected twice";
    if (sel.size() != K)
      return q + std::to_string(sel.size()) + " tokens selected, expected min(topk, valid tokens) = " + std::to_string(K) +
             " (the other " + std::to_string(T - K) + " positions -1)";
    if (K == 0) continue;
    const double* row = logits + i * n;
    const double t = threshold(row, r, K, i);
    for (std::int32_t x : sel)
      if (row[x] < t)
        return q + "token " + std::to_string(x) + " (logit " + g17(row[x]) + ") is selected but lies below the " +
               std::to_string(K) + "-th largest logit " + g17(t);
    for (std::size_t j = r.start; j < r.end; ++j)
      if (row[j] > t && !std::binary_search(sel.begin(), sel.end(), static_cast<std::int32_t>(j)))
        return q + "token " + std::to_string(j) + " (logit " + g17(row[j]) + ", above the " + std::to_string(K) +
               "-th largest logit " + g17(t) + ") is missing from the selection";
  }
  return "";
}

}  // namespace fp8lab::mla
