"""pytest face of EdgeLab (options, markers, fixtures); filled in by the foundation work."""
