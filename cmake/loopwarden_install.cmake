# Installs the SDK as a CMake package; see docs/plugin-guide.md.
