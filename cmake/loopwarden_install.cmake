# Installs the SDK as a CMake package, so an out-of-tree plugin does
#
#   find_package(loopwarden 0.1 REQUIRED)
#   loopwarden_add_plugin(my_monitor my_monitor.cpp)     # links loopwarden::sdk
#
# (docs/plugin-guide.md). The targets themselves are installed where they are defined (the SDK
# in sdk/, the executable in sidecar/, bundled plugins by loopwarden_add_plugin); this file adds
# the export set and the package files:
#
#   <libdir>/cmake/loopwarden/loopwardenConfig.cmake          dependencies, loopwarden_add_plugin
#   <libdir>/cmake/loopwarden/loopwardenConfigVersion.cmake   SameMajorVersion
#   <libdir>/cmake/loopwarden/loopwardenTargets*.cmake         loopwarden::sdk
#
# Every path in the package is relative to the install prefix, so an installed tree can be moved
# (`cmake --install build --prefix /opt/loopwarden` and then copied elsewhere).

include(CMakePackageConfigHelpers)

set(LOOPWARDEN_INSTALL_CMAKEDIR
    "${CMAKE_INSTALL_LIBDIR}/cmake/loopwarden"
    CACHE STRING "where the loopwarden CMake package files are installed (relative to the prefix)")
mark_as_advanced(LOOPWARDEN_INSTALL_CMAKEDIR)

# Install-relative directories the package config reports to its users (PATH_VARS below).
set(LOOPWARDEN_INSTALL_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
# Not the multiarch libdir: the executable finds its plugins at <bin>/../lib/loopwarden/plugins.
set(LOOPWARDEN_INSTALL_PLUGINDIR "lib/loopwarden/plugins")
set(LOOPWARDEN_INSTALL_PROTODIR "${CMAKE_INSTALL_DATADIR}/loopwarden/proto")
set(LOOPWARDEN_INSTALL_EXECUTABLE "${CMAKE_INSTALL_BINDIR}/loopwarden")

# The plugin ABI version (what the host checks, sdk/include/loopwarden/version.hpp) is not the
# package version (the loopwarden release); the config reports both.
file(STRINGS "${PROJECT_SOURCE_DIR}/sdk/include/loopwarden/version.hpp" _lw_version_lines
     REGEX "^#define LOOPWARDEN_SDK_VERSION_(MAJOR|MINOR|PATCH) [0-9]+$")
set(LOOPWARDEN_SDK_ABI_VERSION "")
foreach(_lw_part MAJOR MINOR PATCH)
  set(_lw_value "")
  foreach(_lw_line ${_lw_version_lines})
    if(_lw_line MATCHES "^#define LOOPWARDEN_SDK_VERSION_${_lw_part} ([0-9]+)$")
      set(_lw_value "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  if(_lw_value STREQUAL "")
    message(FATAL_ERROR "loopwarden_install: can't read LOOPWARDEN_SDK_VERSION_${_lw_part} from "
                        "sdk/include/loopwarden/version.hpp")
  endif()
  if(LOOPWARDEN_SDK_ABI_VERSION STREQUAL "")
    set(LOOPWARDEN_SDK_ABI_VERSION "${_lw_value}")
  else()
    string(APPEND LOOPWARDEN_SDK_ABI_VERSION ".${_lw_value}")
  endif()
endforeach()
unset(_lw_version_lines)
unset(_lw_part)
unset(_lw_value)
unset(_lw_line)

# Generated protobuf code only works with the protobuf major.minor it was generated for, and the
# host refuses a plugin built against another one; the config checks it at configure time.
if(NOT Protobuf_VERSION MATCHES "^([0-9]+)\\.([0-9]+)")
  message(FATAL_ERROR "loopwarden_install: can't tell the protobuf version (Protobuf_VERSION is "
                      "'${Protobuf_VERSION}'); find_package(Protobuf) must run first")
endif()
set(LOOPWARDEN_PROTOBUF_VERSION "${Protobuf_VERSION}")
set(LOOPWARDEN_PROTOBUF_MAJOR_MINOR "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
# loopwarden::sdk links Eigen publicly; ask for at least the
# major.minor the SDK was built with.
if(NOT Eigen3_VERSION MATCHES "^([0-9]+)\\.([0-9]+)")
  message(FATAL_ERROR "loopwarden_install: can't tell the Eigen3 version (Eigen3_VERSION is "
                      "'${Eigen3_VERSION}'); find_package(Eigen3) must run first")
endif()
set(LOOPWARDEN_EIGEN3_VERSION "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")

# Further dependencies of exported targets that show in their link interface (the host client
# library, when it exposes ZeroMQ or threads), found by the config before the targets load.
set(LOOPWARDEN_EXTRA_DEPENDENCIES "")
if(TARGET loopwarden_client)
  get_target_property(_lw_links loopwarden_client INTERFACE_LINK_LIBRARIES)
  if(_lw_links MATCHES "cppzmq")
    string(APPEND LOOPWARDEN_EXTRA_DEPENDENCIES "find_dependency(cppzmq)\n")
  endif()
  if(_lw_links MATCHES "Threads::Threads")
    string(APPEND LOOPWARDEN_EXTRA_DEPENDENCIES "find_dependency(Threads)\n")
  endif()
  unset(_lw_links)
endif()

install(
  EXPORT loopwarden_targets
  NAMESPACE loopwarden::
  FILE loopwardenTargets.cmake
  DESTINATION "${LOOPWARDEN_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/loopwardenConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/cmake/loopwardenConfig.cmake"
  INSTALL_DESTINATION "${LOOPWARDEN_INSTALL_CMAKEDIR}"
  PATH_VARS LOOPWARDEN_INSTALL_INCLUDEDIR LOOPWARDEN_INSTALL_PLUGINDIR LOOPWARDEN_INSTALL_PROTODIR
            LOOPWARDEN_INSTALL_EXECUTABLE)

write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/cmake/loopwardenConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)

install(FILES "${PROJECT_BINARY_DIR}/cmake/loopwardenConfig.cmake"
              "${PROJECT_BINARY_DIR}/cmake/loopwardenConfigVersion.cmake"
        DESTINATION "${LOOPWARDEN_INSTALL_CMAKEDIR}")
