"""Agent benchmarks: tool-calling accuracy measured on public sets read from their wheels' data files."""
