// Fixture for tools/check_isa_symbols.sh's own tests (tests/cpp/CMakeLists.txt): a dispatched-style
// object whose every global symbol lies in its variant namespace.
namespace fp8lab::isa_fixture {
int clean_entry(int x) { return x + 1; }
}  // namespace fp8lab::isa_fixture
