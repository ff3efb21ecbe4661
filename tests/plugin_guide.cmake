# The plugin guide's example and the plugin template, built the way an out-of-tree plugin author
# builds them: against the installed SDK only (find_package(loopwarden)), then run through the
# real `loopwarden` binary. The steps are ordered by fixtures:
#
#   install ──> guide example builds ──> guide example runs
#           └─> template builds ──────> template runs
#
# They need a complete build (`cmake --install` of this build tree is the first step), and write
# only under <build>/tests/plugin_guide. The driver is tests/sdk/plugin_guide/plugin_guide_test.py.

if(NOT TARGET loopwarden)
  message(STATUS "plugin guide tests: skipped (no loopwarden executable in this build)")
  return()
endif()

# Debian's interpreter: it has python3-protobuf, which the replay writer needs.
set(plugin_guide_python /usr/bin/python3)
set(plugin_guide_script "${CMAKE_CURRENT_SOURCE_DIR}/sdk/plugin_guide/plugin_guide_test.py")
set(plugin_guide_work "${CMAKE_CURRENT_BINARY_DIR}/plugin_guide")
set(plugin_guide_prefix "${plugin_guide_work}/prefix")
# Out-of-tree projects use Ninja when there is one, as the guide does, else this build's generator.
if(CMAKE_GENERATOR STREQUAL "Ninja")
  set(plugin_guide_generator "Ninja")
else()
  find_program(plugin_guide_ninja ninja)
  if(plugin_guide_ninja)
    set(plugin_guide_generator "Ninja")
  else()
    set(plugin_guide_generator "${CMAKE_GENERATOR}")
  endif()
endif()
set(plugin_guide_common
    --python "${plugin_guide_python}" --cmake "${CMAKE_COMMAND}" --ctest "${CMAKE_CTEST_COMMAND}"
    --generator "${plugin_guide_generator}" --cxx-compiler "${CMAKE_CXX_COMPILER}")

add_test(
  NAME "plugin guide: the sdk installs as a cmake package"
  COMMAND
    "${plugin_guide_python}" "${plugin_guide_script}" install ${plugin_guide_common}
    --work "${plugin_guide_work}/install" --build-dir "${PROJECT_BINARY_DIR}"
    --source-dir "${PROJECT_SOURCE_DIR}" --prefix "${plugin_guide_prefix}"
    --libdir "${CMAKE_INSTALL_LIBDIR}"
    --probe-dir "${CMAKE_CURRENT_SOURCE_DIR}/sdk/plugin_guide/package_probe")
# RESOURCE_LOCK: `cmake --install` reads the build tree, which a test running `cmake --build` on
# it at the same time (re-configuring) could be rewriting.
set_tests_properties(
  "plugin guide: the sdk installs as a cmake package"
  PROPERTIES FIXTURES_SETUP plugin_guide_sdk RESOURCE_LOCK loopwarden_build_tree TIMEOUT 120)

add_test(
  NAME "plugin guide example builds against the installed sdk"
  COMMAND
    "${plugin_guide_python}" "${plugin_guide_script}" build ${plugin_guide_common}
    --work "${plugin_guide_work}/guide" --prefix "${plugin_guide_prefix}"
    --libdir "${CMAKE_INSTALL_LIBDIR}" --guide "${PROJECT_SOURCE_DIR}/docs/plugin-guide.md"
    --plugin stuck_metric)
set_tests_properties(
  "plugin guide example builds against the installed sdk"
  PROPERTIES FIXTURES_REQUIRED plugin_guide_sdk FIXTURES_SETUP plugin_guide_example TIMEOUT 300)

add_test(
  NAME "plugin guide example checks its config and trips in loopwarden replay"
  COMMAND
    "${plugin_guide_python}" "${plugin_guide_script}" run-guide ${plugin_guide_common}
    --work "${plugin_guide_work}/guide-run" --loopwarden "$<TARGET_FILE:loopwarden>"
    --plugin-dir "${plugin_guide_work}/guide/build" --example-dir "${plugin_guide_work}/guide/src"
    --python-dir "${LOOPWARDEN_PYTHON_DIR}")
set_tests_properties("plugin guide example checks its config and trips in loopwarden replay"
                     PROPERTIES FIXTURES_REQUIRED plugin_guide_example TIMEOUT 120)

add_test(
  NAME "plugin template builds against the installed sdk"
  COMMAND
    "${plugin_guide_python}" "${plugin_guide_script}" build ${plugin_guide_common}
    --work "${plugin_guide_work}/template" --prefix "${plugin_guide_prefix}"
    --libdir "${CMAKE_INSTALL_LIBDIR}" --source "${PROJECT_SOURCE_DIR}/examples/plugin_template"
    --plugin session_budget)
set_tests_properties(
  "plugin template builds against the installed sdk"
  PROPERTIES FIXTURES_REQUIRED plugin_guide_sdk FIXTURES_SETUP plugin_guide_template TIMEOUT 300)

add_test(
  NAME "plugin template checks its config and trips in loopwarden replay"
  COMMAND
    "${plugin_guide_python}" "${plugin_guide_script}" run-template ${plugin_guide_common}
    --work "${plugin_guide_work}/template-run" --loopwarden "$<TARGET_FILE:loopwarden>"
    --plugin-dir "${plugin_guide_work}/template/build"
    --example-dir "${PROJECT_SOURCE_DIR}/examples/plugin_template"
    --python-dir "${LOOPWARDEN_PYTHON_DIR}")
set_tests_properties("plugin template checks its config and trips in loopwarden replay"
                     PROPERTIES FIXTURES_REQUIRED plugin_guide_template TIMEOUT 120)
