# The tree-sitter bash grammar, pinned and verified, as an object library of its generated C
# sources (src/parser.c, src/scanner.c). Debian ships tree-sitter's runtime (libtree-sitter-dev
# 0.20, grammar ABI 13-14) but no bash grammar; the grammar comes from the npm registry through
# the ordinary client (`npm pack`). 0.23.x is the newest series generated with ABI 14: 0.25 uses
# ABI 15, which the Debian runtime refuses.
#
# The tarball is cached in <source>/.deps (gitignored), shared by every build directory, and
# checked against both hashes below before anything is extracted: npm's own integrity value
# (sha512, the "dist.integrity" of the registry metadata, here in hex) and a sha256 recorded when
# the version was pinned. A machine without npm can pre-seed the cache, or point
# LOOPWARDEN_TREE_SITTER_BASH_TGZ at a copy; the hashes are checked all the same.
#
# Provides: the target loopwarden_tree_sitter_bash (OBJECT, PIC, C), exporting
# `const TSLanguage *tree_sitter_bash(void)`.

set(LOOPWARDEN_TREE_SITTER_BASH_VERSION "0.23.3")
set(_tsb_sha512 "dfa720fc643662621b7a205ea9eba1e1f049ea2e24815a2e0daa93c6a8a1e72b0f6a0fb31ee7f221ac4c38578cf027a997000afcbba3d68e571ea81d01fa0266")
set(_tsb_sha256 "10f4d67f56e07bc6cc34c49afb34e232269c1e0a19933880dfdb5dd738a8fc7d")
set(_tsb_name "tree-sitter-bash-${LOOPWARDEN_TREE_SITTER_BASH_VERSION}.tgz")
set(_tsb_cache "${PROJECT_SOURCE_DIR}/.deps")
set(LOOPWARDEN_TREE_SITTER_BASH_TGZ "${_tsb_cache}/${_tsb_name}"
    CACHE FILEPATH "the tree-sitter-bash ${LOOPWARDEN_TREE_SITTER_BASH_VERSION} npm tarball")

function(_tsb_verify file out_ok)
  file(SHA512 "${file}" got512)
  file(SHA256 "${file}" got256)
  if(got512 STREQUAL _tsb_sha512 AND got256 STREQUAL _tsb_sha256)
    set(${out_ok} TRUE PARENT_SCOPE)
  else()
    set(${out_ok} FALSE PARENT_SCOPE)
  endif()
endfunction()

set(_tsb_ok FALSE)
if(EXISTS "${LOOPWARDEN_TREE_SITTER_BASH_TGZ}")
  _tsb_verify("${LOOPWARDEN_TREE_SITTER_BASH_TGZ}" _tsb_ok)
  if(NOT _tsb_ok)
    message(WARNING "${LOOPWARDEN_TREE_SITTER_BASH_TGZ} does not match the pinned hashes of "
                    "tree-sitter-bash ${LOOPWARDEN_TREE_SITTER_BASH_VERSION}; fetching it again")
    file(REMOVE "${LOOPWARDEN_TREE_SITTER_BASH_TGZ}")
  endif()
endif()
if(NOT _tsb_ok)
  find_program(LOOPWARDEN_NPM npm)
  if(NOT LOOPWARDEN_NPM)
    message(FATAL_ERROR
      "destructive_action needs the tree-sitter-bash ${LOOPWARDEN_TREE_SITTER_BASH_VERSION} "
      "grammar and npm is not installed to fetch it: run scripts/install-deps.sh, or put "
      "${_tsb_name} in ${_tsb_cache}")
  endif()
  file(MAKE_DIRECTORY "${_tsb_cache}")
  set(_tsb_tmp "${_tsb_cache}/fetch-${LOOPWARDEN_TREE_SITTER_BASH_VERSION}")
  file(REMOVE_RECURSE "${_tsb_tmp}")
  file(MAKE_DIRECTORY "${_tsb_tmp}")
  message(STATUS "fetching tree-sitter-bash@${LOOPWARDEN_TREE_SITTER_BASH_VERSION} with npm pack")
  execute_process(
    COMMAND "${LOOPWARDEN_NPM}" pack "tree-sitter-bash@${LOOPWARDEN_TREE_SITTER_BASH_VERSION}"
            --pack-destination "${_tsb_tmp}" --silent
    WORKING_DIRECTORY "${_tsb_tmp}"
    RESULT_VARIABLE _tsb_rc
    OUTPUT_VARIABLE _tsb_out
    ERROR_VARIABLE _tsb_err)
  if(NOT _tsb_rc EQUAL 0 OR NOT EXISTS "${_tsb_tmp}/${_tsb_name}")
    message(FATAL_ERROR "npm pack tree-sitter-bash@${LOOPWARDEN_TREE_SITTER_BASH_VERSION} "
                        "failed (${_tsb_rc}): ${_tsb_err}")
  endif()
  _tsb_verify("${_tsb_tmp}/${_tsb_name}" _tsb_ok)
  if(NOT _tsb_ok)
    message(FATAL_ERROR "the fetched ${_tsb_name} does not match its pinned sha512/sha256: "
                        "refusing to build a parser from it (left in ${_tsb_tmp})")
  endif()
  file(RENAME "${_tsb_tmp}/${_tsb_name}" "${_tsb_cache}/${_tsb_name}")
  file(REMOVE_RECURSE "${_tsb_tmp}")
  set(LOOPWARDEN_TREE_SITTER_BASH_TGZ "${_tsb_cache}/${_tsb_name}" CACHE FILEPATH
      "the tree-sitter-bash ${LOOPWARDEN_TREE_SITTER_BASH_VERSION} npm tarball" FORCE)
endif()

# Extract only the sources (the tarball also carries prebuilt node addons, never used).
set(_tsb_dir "${CMAKE_CURRENT_BINARY_DIR}/tree-sitter-bash-${LOOPWARDEN_TREE_SITTER_BASH_VERSION}")
if(NOT EXISTS "${_tsb_dir}/package/src/parser.c")
  file(REMOVE_RECURSE "${_tsb_dir}")
  file(ARCHIVE_EXTRACT INPUT "${LOOPWARDEN_TREE_SITTER_BASH_TGZ}" DESTINATION "${_tsb_dir}"
       PATTERNS package/src/* package/LICENSE)
endif()

add_library(loopwarden_tree_sitter_bash OBJECT "${_tsb_dir}/package/src/parser.c"
                                               "${_tsb_dir}/package/src/scanner.c")
# The grammar's own tree_sitter/parser.h (ABI 14) comes first; it is the one parser.c was
# generated against. Third-party generated code: optimised even in debug builds, no warnings.
target_include_directories(loopwarden_tree_sitter_bash PRIVATE "${_tsb_dir}/package/src")
set_target_properties(loopwarden_tree_sitter_bash PROPERTIES C_STANDARD 11
                      POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
target_compile_options(loopwarden_tree_sitter_bash PRIVATE -O2 -w)
