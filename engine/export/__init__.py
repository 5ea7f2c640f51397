"""Export a model (optionally with a LoRA adapter merged in) to GGUF for llama.cpp, Ollama and LM Studio."""
