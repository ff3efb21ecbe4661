# The plugin guide's example is built against the installed SDK.
