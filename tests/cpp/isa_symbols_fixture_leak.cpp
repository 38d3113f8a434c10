// Fixture for tools/check_isa_symbols.sh's own tests: an object that defines symbols outside its
// variant namespace, a plain global function and an inline one emitted as a weak symbol (the kind
// std::to_string left in tc_lanes_kernel.cpp's variants). The check must reject it.
int fp8lab_fixture_leaked(int x) { return x * 3; }

inline __attribute__((noinline)) int fp8lab_fixture_leaked_inline(int x) { return x - 7; }

namespace fp8lab::isa_fixture {
int leaky_entry(int x) { return fp8lab_fixture_leaked_inline(x); }
}  // namespace fp8lab::isa_fixture
