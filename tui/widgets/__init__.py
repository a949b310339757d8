"""Reusable widgets: charts, the live job panel and the one-line job bar."""
