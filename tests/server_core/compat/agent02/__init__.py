"""A 0.2-style agent project (string tools), ported to server_core by changing imports only."""
