# Interface targets for warnings and sanitizers. Link them PRIVATE so they never leak to consumers.

add_library(loopwarden_warnings INTERFACE)
add_library(loopwarden::warnings ALIAS loopwarden_warnings)
target_compile_options(
  loopwarden_warnings
  INTERFACE -Wall
            -Wextra
            -Wpedantic
            -Wshadow
            -Wnon-virtual-dtor
            -Wold-style-cast
            -Wcast-align
            -Woverloaded-virtual
            -Wimplicit-fallthrough
            $<$<BOOL:${LOOPWARDEN_WERROR}>:-Werror>)

add_library(loopwarden_sanitizers INTERFACE)
add_library(loopwarden::sanitizers ALIAS loopwarden_sanitizers)
if(LOOPWARDEN_SANITIZE)
  target_compile_options(loopwarden_sanitizers INTERFACE -fsanitize=address,undefined
                                                         -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(loopwarden_sanitizers INTERFACE -fsanitize=address,undefined)
endif()
# ThreadSanitizer cannot be combined with ASan (both own the shadow memory), hence its own build.
if(LOOPWARDEN_TSAN)
  if(LOOPWARDEN_SANITIZE)
    message(FATAL_ERROR "LOOPWARDEN_TSAN and LOOPWARDEN_SANITIZE exclude each other: use one build each")
  endif()
  # Debian's libprotobuf is not built with TSan, and protobuf's map_field.h gives MapFieldBase two
  # extra members when __SANITIZE_THREAD__ is defined: our generated code and the library then
  # disagree on its layout, and the library's MapFieldBase::Destruct reads the wrong fields (every
  # TSan daemon crashed resetting its first event batch's arena; docs/sanitizers.md). So the macro
  # is undefined for our code, keeping that layout the library's; _GLIBCXX_TSAN, which libstdc++
  # derives from it (shared_ptr's TSan-visible release path), is kept by defining it here.
  # LOOPWARDEN_THREAD_SANITIZER tells our own code it runs under TSan.
  target_compile_options(loopwarden_sanitizers INTERFACE -fsanitize=thread -fno-omit-frame-pointer
                                                         -U__SANITIZE_THREAD__)
  target_compile_definitions(loopwarden_sanitizers INTERFACE _GLIBCXX_TSAN=1
                                                             LOOPWARDEN_THREAD_SANITIZER=1)
  target_link_options(loopwarden_sanitizers INTERFACE -fsanitize=thread)
endif()
# The fuzz build (tests/fuzz, preset `fuzz`): every library and plugin the fuzz targets reach is
# instrumented for libFuzzer's coverage (fuzzer-no-link) and for the sanitizers; only the fuzz
# executables themselves link libFuzzer (-fsanitize=fuzzer).
if(LOOPWARDEN_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "LOOPWARDEN_FUZZ needs clang (libFuzzer); use the `fuzz` preset")
  endif()
  target_compile_options(loopwarden_sanitizers INTERFACE -fsanitize=fuzzer-no-link,address,undefined
                                                         -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(loopwarden_sanitizers INTERFACE -fsanitize=address,undefined)
endif()

# loopwarden_add_plugin(NAME SOURCES...): a bundled monitor as a MODULE library that links only
# the SDK. Hidden visibility: only the entry symbols exported by LOOPWARDEN_PLUGIN are visible.
function(loopwarden_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE loopwarden::sdk loopwarden::warnings
                                        loopwarden::sanitizers)
  set_target_properties(
    ${name}
    PROPERTIES PREFIX ""
               OUTPUT_NAME "${name}"
               CXX_VISIBILITY_PRESET hidden
               VISIBILITY_INLINES_HIDDEN ON
               LIBRARY_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/lib/loopwarden/plugins")
  # lib/, not the multiarch libdir: `loopwarden` looks in <bin>/../lib/loopwarden/plugins.
  install(TARGETS ${name} LIBRARY DESTINATION lib/loopwarden/plugins)
  # Tests and the sidecar depend on every bundled plugin through this list.
  set_property(GLOBAL APPEND PROPERTY LOOPWARDEN_BUNDLED_PLUGINS ${name})
endfunction()
