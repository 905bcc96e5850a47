"""`edgelab` command line (placeholder until the CLI lands in this change)."""

def main() -> int:
    return 0
