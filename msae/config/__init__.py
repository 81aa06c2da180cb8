"""Stage configs: one frozen, typed, torch-free model per `msae` stage (msae.config.base explains
the mechanism). The command line, the params schema and `msae params check` derive from them."""
