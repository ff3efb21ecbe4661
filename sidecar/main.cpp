#include <iostream>

#include <loopwarden/sidecar/cli.hpp>

int main(int argc, char** argv) {
  return loopwarden::sidecar::run_cli(argc, argv, std::cout, std::cerr);
}
