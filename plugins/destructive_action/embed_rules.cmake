# cmake -DIN=default_rules.yaml -DOUT=default_rules.cpp -P embed_rules.cmake
# Writes the rules file as one raw string literal (the delimiter never occurs in YAML we ship:
# checked below).
file(READ "${IN}" text)
string(FIND "${text}" ")lwrules\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )lwrules\"")
endif()
file(WRITE "${OUT}" "// Generated from default_rules.yaml by embed_rules.cmake. Do not edit.\n"
     "#include <string_view>\n"
     "namespace loopwarden::destructive_action {\n"
     "extern const std::string_view default_rules_yaml;\n"
     "const std::string_view default_rules_yaml = R\"lwrules(${text})lwrules\";\n"
     "}  // namespace loopwarden::destructive_action\n")
