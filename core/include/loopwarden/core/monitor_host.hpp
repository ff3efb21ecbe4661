#pragma once
// The child side of `isolation: process`: `loopwarden monitor-host --fd N` runs this. It reads a
// configure request from the engine on fd N, loads the plugin with the plugin host (the same ABI
// checks as in-process), configures it, and then serves the engine's requests one at a time,
// sending the monitor's context calls (trip, gauge, log) back as they happen, until the engine
// says shutdown or goes away.

namespace loopwarden::core {

// Serves the engine on `fd` until it is done. Returns the process exit status: 0 after a
// shutdown request or the engine closing the socket; 2 when configure failed (the reason has
// been sent to the engine) or the protocol broke.
// Thread-safety: runs on the calling thread; one per process.
int run_monitor_host(int fd);

}  // namespace loopwarden::core
