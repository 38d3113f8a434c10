// The element bit patterns of a QTensor, stored at the format's storage width (Format::storage_bits:
// one byte per element for formats of up to 8 bits, two up to 16, four up to 32), so a quantiser
// writes 1 byte per E4M3 element, not a 4-byte word, and Python sees the buffer as a uint8 array
// without a copy.
//
// Reads give the pattern as a uint32 whatever the width (bits[i], iteration), so consumers need
// not care; writes go through set() (checked: a pattern wider than the storage is an error, not a
// silent truncation) or, on hot paths, straight into data<T>() of the matching width.
#pragma once

#include <algorithm>
#include <cstddef>
#include <new>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fp8lab {

class ElementBits {
 public:
  ElementBits() = default;
  // n patterns of width_bits (8, 16 or 32), all zero.
  ElementBits(std::size_t n, int width_bits) : ElementBits(uninitialized(n, width_bits)) {
    if (n != 0) std::memset(raw(), 0, byte_size());
  }
  // n patterns of width_bits whose contents are unspecified until written: for a producer that
  // writes every element (the quantiser), which would otherwise pay for a zero-fill it overwrites.
  static ElementBits uninitialized(std::size_t n, int width_bits) {
    check_width(width_bits);
    ElementBits b;
    b.n_ = n;
    b.width_ = width_bits;
    // Raw storage, not value-initialised; in C++20 operator new implicitly creates the uint8/16/32
    // objects data<T>() accesses. Plain (malloc-aligned) new: glibc's aligned allocations of this
    // size are mmapped afresh on every call (a page fault per 4 KiB each time), plain ones are
    // reused from the heap after the first.
    if (n != 0) b.store_.reset(static_cast<std::byte*>(::operator new(b.byte_size())));
    return b;
  }
  // Patterns given as values (e.g. a trace's bytes, or uint32 words), each checked against the width.
  template <class It>
  static ElementBits from_values(It first, It last, int width_bits) {
    ElementBits b = uninitialized(static_cast<std::size_t>(std::distance(first, last)), width_bits);
    for (std::size_t i = 0; first != last; ++first, ++i) b.set(i, static_cast<std::uint32_t>(*first));
    return b;
  }

  ElementBits(const ElementBits& o) : ElementBits(uninitialized(o.n_, o.width_)) {
    if (n_ != 0) std::memcpy(raw(), o.raw(), byte_size());
  }
  ElementBits& operator=(const ElementBits& o) {
    if (this != &o) *this = ElementBits(o);
    return *this;
  }
  ElementBits(ElementBits&&) noexcept = default;
  ElementBits& operator=(ElementBits&&) noexcept = default;

  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int width_bits() const { return width_; }
  std::size_t byte_size() const { return n_ * static_cast<std::size_t>(width_ / 8); }
  void* raw() { return store_.get(); }
  const void* raw() const { return store_.get(); }

  // The storage as T (uint8_t, uint16_t or uint32_t, matching width_bits(); std::logic_error otherwise).
  template <class T>
  T* data() {
    check_type<T>();
    return reinterpret_cast<T*>(store_.get());
  }
  template <class T>
  const T* data() const {
    check_type<T>();
    return reinterpret_cast<const T*>(store_.get());
  }
  // f(const T* patterns) with T the storage type: one loop per width, each at its natural type.
  template <class F>
  decltype(auto) visit(F&& f) const {
    switch (width_) {
      case 8: return f(data<std::uint8_t>());
      case 16: return f(data<std::uint16_t>());
      default: return f(data<std::uint32_t>());
    }
  }

  std::uint32_t operator[](std::size_t i) const {
    switch (width_) {
      case 8: return reinterpret_cast<const std::uint8_t*>(store_.get())[i];
      case 16: return reinterpret_cast<const std::uint16_t*>(store_.get())[i];
      default: return reinterpret_cast<const std::uint32_t*>(store_.get())[i];
    }
  }
  void set(std::size_t i, std::uint32_t v) {
    if (width_ < 32 && (v >> width_) != 0)
      throw std::invalid_argument("bits: pattern " + std::to_string(v) + " does not fit the " + std::to_string(width_) +
                                  "-bit element storage");
    switch (width_) {
      case 8: reinterpret_cast<std::uint8_t*>(store_.get())[i] = static_cast<std::uint8_t>(v); break;
      case 16: reinterpret_cast<std::uint16_t*>(store_.get())[i] = static_cast<std::uint16_t>(v); break;
      default: reinterpret_cast<std::uint32_t*>(store_.get())[i] = v;
    }
  }
  // Every pattern as a uint32 word (tests, diagnostics).
  std::vector<std::uint32_t> words() const { return {begin(), end()}; }

  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = std::uint32_t;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = std::uint32_t;
    const_iterator() = default;
    const_iterator(const ElementBits* b, std::size_t i) : b_(b), i_(i) {}
    std::uint32_t operator*() const { return (*b_)[i_]; }
    const_iterator& operator++() { return ++i_, *this; }
    const_iterator operator++(int) { const_iterator t = *this; ++i_; return t; }
    difference_type operator-(const const_iterator& o) const { return static_cast<difference_type>(i_) - static_cast<difference_type>(o.i_); }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const ElementBits* b_ = nullptr;
    std::size_t i_ = 0;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, n_}; }

  // Equal patterns, element by element (the widths may differ).
  friend bool operator==(const ElementBits& a, const ElementBits& b) {
    if (a.n_ != b.n_) return false;
    if (a.width_ == b.width_) return a.n_ == 0 || std::memcmp(a.raw(), b.raw(), a.byte_size()) == 0;
    return std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  static void check_width(int w) {
    if (w != 8 && w != 16 && w != 32)
      throw std::invalid_argument("bits: element storage is 8, 16 or 32 bits wide, not " + std::to_string(w));
  }
  template <class T>
  void check_type() const {
    if (static_cast<int>(sizeof(T) * 8) != width_)
      throw std::logic_error("ElementBits: " + std::to_string(width_) + "-bit storage read as " +
                             std::to_string(sizeof(T) * 8) + "-bit patterns");
  }
  struct Free {
    void operator()(std::byte* p) const { ::operator delete(p); }
  };
  std::size_t n_ = 0;
  int width_ = 8;
  std::unique_ptr<std::byte, Free> store_;
};

}  // namespace fp8lab
