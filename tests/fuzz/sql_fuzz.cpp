// Fuzz target: destructive_action's SQL classifier on arbitrary statement text.
//
// The input is SQL as an agent would send it to a database tool. It goes through the plugin's
// statement summariser (libpg_query's PostgreSQL grammar, with the keyword fallback for other
// dialects) and through the whole analyzer as an SQL ActionRequest, the way the monitor judges a
// gate request. The plugin's sources are compiled into this target (tests/fuzz/CMakeLists.txt).

#include <cstdint>
#include <string>
#include <string_view>

#include <loopwarden/v1/agent.pb.h>

#include "analyzer.hpp"
#include "fuzz_support.hpp"
#include "sql_analyzer.hpp"

using namespace loopwarden;
namespace da = loopwarden::destructive_action;

namespace {

da::analyzer* judge = nullptr;  // one for the run, like one per monitor instance

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  judge = new da::analyzer(da::analyzer_settings{});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view sql(reinterpret_cast<const char*>(data), size);
  for (const auto& s : da::analyze_sql(sql)) {
    if (s.statement.empty()) fuzz::die("a statement summary without a statement kind");
    (void)da::sql_read_only(s);
  }

  v1::ActionRequest action;
  action.set_kind(v1::ACTION_KIND_SQL);
  action.set_tool("psql");
  action.set_command(std::string(sql));
  action.set_database("app");
  (void)judge->analyze(action);
  return 0;
}
