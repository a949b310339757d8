"""The Textual terminal UI of pada-local: browse runs, start and watch them, review samples.

The UI reads and writes runs only through the run ledger (`pada_local.ledger.runs`) and the read
model built on it (`pada_local.ledger.report`), and calls the core (`loop`, `config`, `export`); it
never carries its own copy of a stage or of a ledger rule. `tui.app.create_app` is shared by
the CLI and tests.
"""
