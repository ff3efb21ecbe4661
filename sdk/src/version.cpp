#include <loopwarden/version.hpp>

namespace loopwarden::sdk {

const char* runtime_version() {
#define LOOPWARDEN_STR2(x) #x
#define LOOPWARDEN_STR(x) LOOPWARDEN_STR2(x)
  return LOOPWARDEN_STR(LOOPWARDEN_SDK_VERSION_MAJOR) "." LOOPWARDEN_STR(
      LOOPWARDEN_SDK_VERSION_MINOR) "." LOOPWARDEN_STR(LOOPWARDEN_SDK_VERSION_PATCH);
#undef LOOPWARDEN_STR
#undef LOOPWARDEN_STR2
}

}  // namespace loopwarden::sdk
