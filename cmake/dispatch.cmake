# Runtime CPU dispatch (as OpenBLAS DYNAMIC_ARCH, numpy and simdjson do): the hot kernels, listed
# in FP8LAB_DISPATCH_SOURCES (emulator/CMakeLists.txt), are compiled once per instruction set, each
# build in its own namespace fp8lab::isa_<variant> (compile definition FP8LAB_ISA_NS), and
# common/isa.cpp picks one at the first call from CPUID (FP8LAB_CPU overrides it). Everything else
# is compiled once, for the baseline (or -march=native when FP8LAB_NATIVE is on).
# Bits never depend on the variant: every flag set keeps -ffp-contract=off and no fast-math, and the
# kernels compute on integers (tests/cpp/test_isa.cpp, the gemm_digest_every_isa test).
#
# Variants, best last; their runtime checks are in common/isa.cpp (isa_supported) and must test every
# feature the flags enable:
#   portable  the compiler's baseline (x86-64: SSE2)
#   avx2      AVX2, FMA, BMI1/2, POPCNT (Haswell and later; FMA is never contracted into)
#   avx512    the above + AVX-512 F/BW/CD/DQ/VL/VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later)
include(CheckCXXSourceCompiles)

set(_fp8lab_x86 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(_fp8lab_x86 ON)
endif()
option(FP8LAB_DISPATCH "Build the hot kernels for several x86 instruction sets and choose at run time" ${_fp8lab_x86})
if(FP8LAB_DISPATCH AND NOT _fp8lab_x86)
  message(WARNING "FP8LAB_DISPATCH needs x86-64 and GCC or Clang: building the portable variant only")
  set(FP8LAB_DISPATCH OFF CACHE BOOL "" FORCE)
endif()
if(FP8LAB_DISPATCH AND CMAKE_BUILD_TYPE STREQUAL "Debug")
  message(STATUS "fp8lab: Debug build with kernel variants: inline functions compiled for AVX-512 may "
                 "run on any CPU; use it on this machine only (cmake/dispatch.cmake, isa_symbols tests)")
endif()

set(FP8LAB_ISA_FLAGS_portable "")
set(FP8LAB_ISA_FLAGS_avx2 -mavx2 -mfma -mbmi -mbmi2 -mpopcnt)
set(FP8LAB_ISA_FLAGS_avx512 ${FP8LAB_ISA_FLAGS_avx2} -mavx512f -mavx512bw -mavx512cd -mavx512dq -mavx512vl -mavx512vnni)
if(FP8LAB_DISPATCH)
  set(FP8LAB_ISA_VARIANTS portable avx2 avx512)
else()
  set(FP8LAB_ISA_VARIANTS portable)
endif()

# Adds to the area's static library fp8lab_<area> the dispatched `sources` (absolute paths), built
# once per variant as an object library with that variant's flags and the area's usage requirements
# (`deps`: the targets the area links). A variant build drops -march=native (the dev build's global
# option): its instruction set is the variant's, whatever machine builds it.
function(fp8lab_dispatch_sources area deps)
  set(sources ${ARGN})
  if(NOT sources)
    return()
  endif()
  foreach(isa IN LISTS FP8LAB_ISA_VARIANTS)
    set(obj fp8lab_${area}_isa_${isa})
    add_library(${obj} OBJECT ${sources})
    get_target_property(opts ${obj} COMPILE_OPTIONS)
    if(opts AND FP8LAB_DISPATCH)
      list(REMOVE_ITEM opts -march=native)
      set_target_properties(${obj} PROPERTIES COMPILE_OPTIONS "${opts}")
    endif()
    target_compile_options(${obj} PRIVATE ${FP8LAB_ISA_FLAGS_${isa}})
    target_compile_definitions(${obj} PRIVATE FP8LAB_ISA_NS=isa_${isa} FP8LAB_ISA_PRIMARY=$<STREQUAL:${isa},portable>)
    target_include_directories(${obj} PRIVATE ${PROJECT_SOURCE_DIR}/emulator)
    target_link_libraries(${obj} PRIVATE ${deps})
    fp8lab_dispatch_definitions(${obj})
    target_sources(fp8lab_${area} PRIVATE $<TARGET_OBJECTS:${obj}>)
    # Unoptimised builds (the Debug presets: asan, O0) do not inline std:: and other inline
    # functions, so every variant object defines dozens of them outside its namespace (88 in
    # fp32_kernel.cpp's AVX-512 object at -O0): such a library may run AVX-512 code on any CPU. They
    # are for debugging on this machine, never for shipping; the check runs on optimised builds.
    if(BUILD_TESTING AND FP8LAB_DISPATCH AND NOT isa STREQUAL "portable" AND NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
      add_test(NAME isa_symbols_${area}_${isa}
               COMMAND bash ${PROJECT_SOURCE_DIR}/tools/check_isa_symbols.sh isa_${isa} $<TARGET_OBJECTS:${obj}>
               COMMAND_EXPAND_LISTS)  # one argument per object (without it: one ;-joined path)
      set_tests_properties(isa_symbols_${area}_${isa} PROPERTIES LABELS unit)
    endif()
  endforeach()
  # std::bit_cast<V> is one weak symbol per instantiation, shared by every variant wherever a build
  # does not inline it, and a wide vector's return convention differs between variants: dispatched
  # sources use lanes_cast (common/isa.hpp), which has internal linkage. Fails on any std::bit_cast.
  if(BUILD_TESTING)
    add_test(NAME isa_sources_no_std_bit_cast_${area}
             COMMAND bash -c "! grep -n 'std::bit_cast' \"$@\"" _ ${sources}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(isa_sources_no_std_bit_cast_${area} PROPERTIES LABELS unit)
  endif()
endfunction()

# The variants built and each one's flags, for common/isa.cpp (fp8lab.build_info()) and the
# dispatched sources' entry points (FP8LAB_DISPATCH_ENTRY); private to them, so that no other
# source's flags change with the list.
function(fp8lab_dispatch_definitions target)
  set(defs FP8LAB_DISPATCH=$<BOOL:${FP8LAB_DISPATCH}>)
  foreach(isa IN LISTS FP8LAB_ISA_VARIANTS)
    string(TOUPPER ${isa} up)
    string(JOIN " " flags ${FP8LAB_ISA_FLAGS_${isa}})
    list(APPEND defs FP8LAB_BUILT_${up}=1 "FP8LAB_FLAGS_${up}=\"${flags}\"")
  endforeach()
  target_compile_definitions(${target} PRIVATE ${defs})
endfunction()
