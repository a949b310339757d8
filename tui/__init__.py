"""The Textual terminal UI of pada-local: browse runs, start and watch them, review samples.

The UI only reads the run store and calls the core (`pada_local.loop`, `report`, `config`);
it never carries its own copy of a stage. `tui.app.create_app` is shared by the CLI and tests.
"""
