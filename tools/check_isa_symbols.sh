#!/usr/bin/env bash
# Usage: check_isa_symbols.sh NAMESPACE OBJECT...   (a CTest per kernel variant, cmake/dispatch.cmake)
# A variant's objects are compiled with wider instruction sets than the rest of fp8lab. Any global
# or weak symbol they define that does not belong to their own namespace (an inline function or a
# template instantiated outside it, e.g. std::vector<T>::_M_default_append) could be merged by the
# linker with the baseline copy of the same name, and the AVX-512 copy could then run on a CPU
# without AVX-512. So every such symbol must mention the variant's namespace in its mangled name.
# Exit 0: clean; 1: a symbol outside the namespace; 2: usage error or an object nm cannot read
# (never a pass: an unread object proves nothing).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NAMESPACE OBJECT..." >&2
  exit 2
fi
ns=$1
shift
mangled="${#ns}${ns}"   # e.g. 10isa_avx512, as the Itanium ABI writes a namespace
bad=0
for o in "$@"; do
  if [ ! -f "$o" ]; then
    echo "$o: no such object file" >&2
    exit 2
  fi
  if ! syms=$(nm --defined-only "$o"); then
    echo "$o: nm could not read it" >&2
    exit 2
  fi
  while read -r sym; do
    [ -n "$sym" ] || continue
    case "$sym" in
      *"$mangled"*|DW.ref.__gxx_personality_v0) ;;
      *) echo "$o: defines $(echo "$sym" | c++filt) outside namespace $ns"; bad=1 ;;
    esac
  done <<< "$(awk '$2 ~ /^[A-TV-Z]$/ {print $3}' <<< "$syms")"
done
if [ "$bad" -ne 0 ]; then
  echo "Move the code into namespace fp8lab::FP8LAB_ISA_NS (an anonymous namespace inside it) or out of the dispatched source."
  exit 1
fi
echo "$ns: every global symbol of $# object(s) is in its namespace"
