"""Local tooling: a Slack stand-in, a Slack simulator and the whole stack on one machine.

``paylink demo``, the tests and the benchmarks use it; product modules never import it
(the import-linter contracts in pyproject.toml check that).
"""
