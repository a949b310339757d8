"""The screens: runs, one run, patterns, samples, new run, live progress, compare, help, modals."""
